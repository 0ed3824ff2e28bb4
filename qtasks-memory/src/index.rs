//! The per-status index of one record shard: for each status, the records that entered it, in
//! the order they did (by `updated_at`, newest last), and how many records have it now.
//!
//! A status change appends one entry and never searches: an entry goes stale when its record
//! moves on (its generation `ix` no longer matches the record's), and the list is compacted
//! when stale entries outnumber live ones, so each change costs O(1) amortized. Listing walks
//! a list from its newest end, skipping stale entries; counts per status are exact counters.

use std::collections::VecDeque;

use qtasks_core::backend::inspect::{Cursor, TaskQuery};
use qtasks_core::TaskStatus;
use rustc_hash::FxHashMap;
use uuid::Uuid;

use crate::records::Slot;

/// How far back an entry is moved to keep a list ordered by time: `updated_at` is taken just
/// before a shard's lock, so two writers can append in the opposite order of their clocks (by
/// a few entries at most; only a clock stepped back leaves a list out of order, beyond this).
const REORDER_MAX: usize = 64;

/// One index entry: a record entered the status at `at_ms`, as its `ix`-th index change.
#[derive(Debug, Clone, Copy)]
struct Entry {
    at_ms: u64,
    uuid: Uuid,
    ix: u32,
}

/// The per-status lists and counts of one shard.
#[derive(Default)]
pub(crate) struct StatusIndex {
    lists: [VecDeque<Entry>; 6],
    counts: [u64; 6],
}

/// The position of a status in the index's arrays.
pub(crate) fn slot_of(status: TaskStatus) -> usize {
    match status {
        TaskStatus::New => 0,
        TaskStatus::Process => 1,
        TaskStatus::Retry => 2,
        TaskStatus::Success => 3,
        TaskStatus::Error => 4,
        TaskStatus::Cancel => 5,
    }
}

impl StatusIndex {
    /// Notes that `slot`'s record entered its current status (a new generation of it).
    pub(crate) fn entered(&mut self, uuid: Uuid, slot: &mut Slot) {
        slot.ix = slot.ix.wrapping_add(1);
        let s = slot_of(slot.status);
        self.counts[s] += 1;
        let entry = Entry {
            at_ms: slot.updated_ns / 1_000_000,
            uuid,
            ix: slot.ix,
        };
        // Kept ordered by time: almost always the newest, appended after one comparison.
        let list = &mut self.lists[s];
        if list.back().is_none_or(|last| last.at_ms <= entry.at_ms) {
            list.push_back(entry);
            return;
        }
        let mut at = list.len();
        while at > 0 && list.len() - at < REORDER_MAX && list[at - 1].at_ms > entry.at_ms {
            at -= 1;
        }
        list.insert(at, entry);
    }

    /// Notes that a record of status `status` left it (moved on, or was removed).
    pub(crate) fn left(&mut self, status: TaskStatus) {
        let s = slot_of(status);
        self.counts[s] = self.counts[s].saturating_sub(1);
    }

    /// Drops `status`'s stale entries when they outnumber the live ones.
    pub(crate) fn compact(&mut self, status: TaskStatus, map: &FxHashMap<Uuid, Box<Slot>>) {
        let s = slot_of(status);
        if self.lists[s].len() as u64 <= 2 * self.counts[s] + 64 {
            return;
        }
        self.lists[s].retain(|e| live(map, e, status));
    }

    /// How many records have `status` now.
    pub(crate) fn count(&self, status: TaskStatus) -> u64 {
        self.counts[slot_of(status)]
    }

    /// Where the live records of `status` that `query` selects are, newest first, at least
    /// `max` of them when there are (a few more when several share the last millisecond).
    pub(crate) fn select(
        &self,
        status: TaskStatus,
        map: &FxHashMap<Uuid, Box<Slot>>,
        query: &TaskQuery,
        max: usize,
    ) -> Vec<Cursor> {
        let list = &self.lists[slot_of(status)];
        let upper = query.upper_bound();
        let lower = query.lower_ms();
        // Entries newer than the upper bound are skipped at once (the list is ordered by time).
        let end = match upper {
            Some(c) => list.partition_point(|e| e.at_ms <= c.at_ms),
            None => list.len(),
        };
        let mut out: Vec<Cursor> = Vec::new();
        let mut oldest = u64::MAX;
        for e in list.range(..end).rev() {
            if e.at_ms < lower {
                break;
            }
            // Enough: older entries cannot come before what was found (those of the same ms
            // can, by uuid).
            if out.len() >= max && e.at_ms < oldest {
                break;
            }
            let key = Cursor {
                at_ms: e.at_ms,
                uuid: e.uuid,
            };
            if e.at_ms < lower || upper.is_some_and(|u| key >= u) || !live(map, e, status) {
                continue;
            }
            if map
                .get(&e.uuid)
                .is_some_and(|slot| query.matches_fields(&slot.task_name, &slot.args))
            {
                oldest = oldest.min(e.at_ms);
                out.push(key);
            }
        }
        out
    }

    /// The uuids of the live records of `status` that last changed before `before_ms`.
    pub(crate) fn older_than(
        &self,
        status: TaskStatus,
        map: &FxHashMap<Uuid, Box<Slot>>,
        before_ms: u64,
    ) -> Vec<Uuid> {
        self.lists[slot_of(status)]
            .iter()
            .take_while(|e| e.at_ms < before_ms)
            .filter(|e| e.at_ms < before_ms && live(map, e, status))
            .map(|e| e.uuid)
            .collect()
    }
}

/// Whether `e` is the current index entry of its record.
fn live(map: &FxHashMap<Uuid, Box<Slot>>, e: &Entry, status: TaskStatus) -> bool {
    map.get(&e.uuid)
        .is_some_and(|s| s.ix == e.ix && s.status == status)
}
