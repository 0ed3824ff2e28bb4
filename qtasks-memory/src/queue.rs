//! The ready queue: per priority a FIFO of fresh tasks plus a small heap of returned ones;
//! the delayed tasks (not yet due, or waiting for a retry) in a heap by due time; and the
//! finished records waiting for their result TTL to pass.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use qtasks_core::control::{QueueSelection, QueueTurns, DEFAULT_QUEUE};
use uuid::Uuid;

/// Everything behind the backend's queue lock.
#[derive(Default)]
pub(crate) struct Queue {
    /// The tasks of the default queue that can be claimed now.
    pub(crate) ready: Ready,
    /// The tasks of named queues that can be claimed now.
    pub(crate) named: BTreeMap<&'static str, Ready>,
    /// Tasks due later: (due, enqueue sequence number, uuid), the earliest first.
    pub(crate) delayed: BinaryHeap<Reverse<(Instant, u64, Uuid)>>,
    /// The next enqueue sequence number.
    pub(crate) next_seq: u64,
    /// Finished records and when they expire (milliseconds after the backend's `epoch`: 8
    /// bytes fewer per record than an `Instant`), oldest first.
    pub(crate) expiry: VecDeque<(u64, Uuid)>,
}

impl Queue {
    /// Queues a ready task in its queue (`None`: the default one).
    pub(crate) fn push(
        &mut self,
        queue: Option<&'static str>,
        priority: i32,
        seq: u64,
        uuid: Uuid,
    ) {
        match queue {
            None => self.ready.push(priority, seq, uuid),
            Some(name) => self
                .named
                .entry(name)
                .or_default()
                .push(priority, seq, uuid),
        }
    }

    /// The next ready task of queue `queue` (`None`: the default one).
    pub(crate) fn pop(&mut self, queue: Option<&str>) -> Option<Uuid> {
        match queue {
            None => self.ready.pop(),
            Some(name) => self.named.get_mut(name)?.pop(),
        }
    }
}

/// The queues this backend's claims take from, with their turns.
pub(crate) struct ClaimQueues {
    /// Per queue of the selection, its key (`None`: the default queue).
    pub(crate) names: Vec<Option<Arc<str>>>,
    pub(crate) turns: QueueTurns,
}

impl ClaimQueues {
    pub(crate) fn new(selection: QueueSelection) -> Self {
        let names = selection
            .queues
            .iter()
            .map(|(name, _)| (name != DEFAULT_QUEUE).then(|| Arc::from(name.as_str())))
            .collect();
        ClaimQueues {
            names,
            turns: QueueTurns::new(selection),
        }
    }
}

impl Default for ClaimQueues {
    fn default() -> Self {
        ClaimQueues::new(QueueSelection::equal([DEFAULT_QUEUE]))
    }
}

/// The ready tasks: the lowest priority number first, then the oldest (lowest enqueue
/// sequence number).
///
/// One binary heap over every ready task cost a sift through the whole (cache-cold) heap per
/// claimed task. Tasks are enqueued in sequence order, so within one priority a FIFO keeps
/// them ordered for free; only a requeued or retried task comes back with an older sequence
/// number, and those go to a small heap that `pop` merges by sequence number.
#[derive(Default)]
pub(crate) struct Ready {
    pub(crate) by_priority: BTreeMap<i32, PriorityQueue>,
    pub(crate) len: usize,
}

/// The ready tasks of one priority.
#[derive(Default)]
pub(crate) struct PriorityQueue {
    /// Ascending sequence numbers.
    fresh: VecDeque<(u64, Uuid)>,
    /// Entries older than `fresh`'s newest when they arrived.
    returned: BinaryHeap<Reverse<(u64, Uuid)>>,
}

impl PriorityQueue {
    pub(crate) fn len(&self) -> usize {
        self.fresh.len() + self.returned.len()
    }

    fn pop(&mut self) -> Option<Uuid> {
        let fresh = self.fresh.front().map(|(seq, _)| *seq);
        let returned = self.returned.peek().map(|Reverse((seq, _))| *seq);
        match (fresh, returned) {
            (Some(f), Some(r)) if r < f => self.returned.pop().map(|Reverse((_, u))| u),
            (Some(_), _) => self.fresh.pop_front().map(|(_, u)| u),
            (None, _) => self.returned.pop().map(|Reverse((_, u))| u),
        }
    }
}

impl Ready {
    pub(crate) fn push(&mut self, priority: i32, seq: u64, uuid: Uuid) {
        let queue = self.by_priority.entry(priority).or_default();
        if queue.fresh.back().is_none_or(|(newest, _)| *newest < seq) {
            queue.fresh.push_back((seq, uuid));
        } else {
            queue.returned.push(Reverse((seq, uuid)));
        }
        self.len += 1;
    }

    pub(crate) fn pop(&mut self) -> Option<Uuid> {
        let mut first = self.by_priority.first_entry()?;
        let uuid = first.get_mut().pop();
        if first.get().len() == 0 {
            first.remove();
        }
        if uuid.is_some() {
            self.len -= 1;
        }
        uuid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_pops_by_priority_then_sequence() {
        let ids: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
        let mut ready = Ready::default();
        ready.push(5, 0, ids[0]);
        ready.push(0, 1, ids[1]);
        ready.push(0, 3, ids[3]);
        ready.push(-1, 4, ids[4]);
        // Requeued with an older sequence number: runs before the newer ones of its priority.
        ready.push(0, 2, ids[2]);
        ready.push(5, 5, ids[5]);
        assert_eq!(ready.len, 6);
        let order: Vec<Uuid> = std::iter::from_fn(|| ready.pop()).collect();
        assert_eq!(order, [ids[4], ids[1], ids[2], ids[3], ids[0], ids[5]]);
        assert_eq!(ready.len, 0);
        assert!(ready.by_priority.is_empty());
    }
}
