//! Flow control in the memory backend: unique keys and debounce (at enqueue), concurrency
//! slots and rate permits (at claim).
//!
//! Lock order: the flow lock is the innermost one. Enqueues decide unique keys while they hold
//! the queue lock (so two enqueues of one key never both win), reading a holder's record
//! between two short holds of the flow lock; claims and completions take it inside a shard's
//! lock. A holder is checked when its key is asked for (lazily): a key whose task finished,
//! was deleted or expired is free without anything having to release it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use qtasks_core::control::TaskLimits;
use uuid::Uuid;

/// Separates a task name from its key in slot and rate keys.
const SEPARATOR: char = '\u{1f}';

/// Everything behind the backend's flow lock.
#[derive(Default)]
pub(crate) struct Flow {
    /// The limits per task name (`Broker::set_limits`).
    limits: HashMap<String, TaskLimits>,
    /// Unique key -> the task holding it.
    unique: HashMap<String, Uuid>,
    /// Task -> its unique key and how long the key stays taken after it finished.
    unique_of: HashMap<Uuid, (String, Duration)>,
    /// Unique keys held after their task finished, until when.
    held_after: VecDeque<(Instant, String, Uuid)>,
    /// Task -> its concurrency and rate keys (tasks limited per key only).
    keys: HashMap<Uuid, (Option<String>, Option<String>)>,
    /// Concurrency slot key -> the claimed tasks holding its slots.
    running: HashMap<String, HashSet<Uuid>>,
    /// Task -> the slot key it holds while claimed.
    slot_of: HashMap<Uuid, String>,
    /// Rate key -> its theoretical arrival time (the next permit, one interval of burst).
    rates: HashMap<String, Instant>,
    /// Debounced tasks -> when they are due now (earlier entries in the delayed heap are stale).
    pub(crate) debounce_due: HashMap<Uuid, Instant>,
}

/// Whether a claim may take a task now.
pub(crate) enum Admit {
    /// Yes (its slot and permit are taken).
    Yes,
    /// Not now: a slot frees when a task of its key finishes (`None`), or a permit comes at
    /// this time.
    Later(Option<Instant>),
}

impl Flow {
    /// Replaces the limits per task name.
    pub(crate) fn set_limits(&mut self, limits: &[TaskLimits]) {
        self.limits = limits
            .iter()
            .map(|l| (l.task_name.clone(), l.clone()))
            .collect();
    }

    /// The task holding unique key `key`, if the key is taken.
    pub(crate) fn holder(&self, key: &str) -> Option<Uuid> {
        self.unique.get(key).copied()
    }

    /// `uuid` takes unique key `key`, held `hold_after` past its end.
    pub(crate) fn take_unique(&mut self, key: String, uuid: Uuid, hold_after: Duration) {
        self.unique.insert(key.clone(), uuid);
        self.unique_of.insert(uuid, (key, hold_after));
    }

    /// Notes a task's per-key limit keys.
    pub(crate) fn set_keys(
        &mut self,
        uuid: Uuid,
        concurrency: Option<String>,
        rate: Option<String>,
    ) {
        if concurrency.is_some() || rate.is_some() {
            self.keys.insert(uuid, (concurrency, rate));
        }
    }

    /// Whether a claim may take task `uuid` of `name` now; when it may, takes its slot and
    /// permit.
    pub(crate) fn admit(&mut self, uuid: Uuid, name: &str, now: Instant) -> Admit {
        let Some(rule) = self.limits.get(name) else {
            return Admit::Yes;
        };
        let (ckey, rkey) = self.keys.get(&uuid).cloned().unwrap_or_default();
        let slot = rule.concurrency.map(|limit| {
            let key = keyed(name, rule.concurrency_per_key, ckey.as_deref());
            (key, limit)
        });
        if let Some((key, limit)) = &slot {
            let held = self.running.get(key).map_or(0, HashSet::len);
            if held >= *limit as usize {
                return Admit::Later(None);
            }
        }
        let permit = rule.rate.map(|rate| {
            let key = keyed(name, rule.rate_per_key, rkey.as_deref());
            (key, rate.interval())
        });
        if let Some((key, interval)) = &permit {
            // GCRA with a burst of two: a claim that comes a little late does not lose the
            // permit it was due, so the rate holds on average.
            let tat = self.rates.get(key).map_or(now, |t| (*t).max(now));
            if tat > now + *interval {
                return Admit::Later(Some(tat - *interval));
            }
            self.rates.insert(key.clone(), tat + *interval);
        }
        if let Some((key, _)) = slot {
            self.running.entry(key.clone()).or_default().insert(uuid);
            self.slot_of.insert(uuid, key);
        }
        Admit::Yes
    }

    /// Frees the slot task `uuid` holds (its claim ended); true when it held one.
    pub(crate) fn release(&mut self, uuid: &Uuid) -> bool {
        let Some(key) = self.slot_of.remove(uuid) else {
            return false;
        };
        if let Some(set) = self.running.get_mut(&key) {
            set.remove(uuid);
            if set.is_empty() {
                self.running.remove(&key);
            }
        }
        true
    }

    /// Task `uuid` is final: its keys go, its unique key is free (or held until `now` plus
    /// its `unique_for`).
    pub(crate) fn finished(&mut self, uuid: &Uuid, now: Instant) {
        self.keys.remove(uuid);
        self.debounce_due.remove(uuid);
        if let Some((key, hold_after)) = self.unique_of.remove(uuid) {
            if hold_after.is_zero() {
                if self.unique.get(&key) == Some(uuid) {
                    self.unique.remove(&key);
                }
            } else {
                self.held_after.push_back((now + hold_after, key, *uuid));
            }
        }
        // Keys held after their task past their time go.
        while let Some((until, _, _)) = self.held_after.front() {
            if *until > now {
                break;
            }
            if let Some((_, key, holder)) = self.held_after.pop_front() {
                if self.unique.get(&key) == Some(&holder) {
                    self.unique.remove(&key);
                }
            }
        }
    }
}

/// `name`, or `name` 0x1F `key` for a limit per key.
fn keyed(name: &str, per_key: bool, key: Option<&str>) -> String {
    match (per_key, key) {
        (true, Some(key)) => format!("{name}{SEPARATOR}{key}"),
        _ => name.to_string(),
    }
}
