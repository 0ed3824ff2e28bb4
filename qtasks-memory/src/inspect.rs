//! Inspection and administration: listing from the per-status indexes, counts, the finished
//! tasks and the latency per minute, retrying and deleting failed tasks, purging finished ones, and pauses.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use qtasks_core::backend::inspect::{
    latencies, latency_minutes, minute_buckets, unix_ms, LatencyHistogram, LatencyKind,
    MinuteCount, MinuteLatency, PauseTarget, Pauses, Purge, TaskPage, TaskQuery, ALL_STATUSES,
};
use qtasks_core::backend::Completion;
use qtasks_core::TaskStatus;
use uuid::Uuid;

use crate::records::DEAD_LETTER;
use crate::MemoryBackend;

/// How many minutes of finished-task counts are kept.
const MINUTES_KEPT: usize = 24 * 60;
/// How many minutes of latency histograms are kept (two histograms of 1 KB each a minute).
const LATENCY_MINUTES_KEPT: usize = 3 * 60;

/// The latency histograms of the attempts that ended in one minute.
#[derive(Debug, Default)]
pub(crate) struct MinuteHistograms {
    minute_ms: u64,
    queue: LatencyHistogram,
    execution: LatencyHistogram,
}

impl MemoryBackend {
    /// What is paused, or `None` when nothing is (one atomic load: claims pay nothing more
    /// while nothing is paused).
    pub(crate) fn pauses(&self) -> Option<Pauses> {
        if !self.any_paused.load(Ordering::Acquire) {
            return None;
        }
        Some(self.pauses.lock().clone())
    }

    /// Pauses or resumes claims; a resume wakes the claims that wait.
    pub(crate) fn pause(&self, target: &PauseTarget, paused: bool) {
        let mut pauses = self.pauses.lock();
        match (target, paused) {
            (PauseTarget::App, p) => pauses.app = p,
            (PauseTarget::Task(name), true) => {
                pauses.tasks.insert(name.clone());
            }
            (PauseTarget::Task(name), false) => {
                pauses.tasks.remove(name);
            }
            (PauseTarget::Queue(name), true) => {
                pauses.queues.insert(name.clone());
            }
            (PauseTarget::Queue(name), false) => {
                pauses.queues.remove(name);
            }
        }
        self.any_paused.store(!pauses.is_empty(), Ordering::Release);
        drop(pauses);
        if !paused {
            self.wake.notify_waiters();
        }
    }

    /// How many records have `status` now.
    pub(crate) fn count(&self, status: TaskStatus) -> u64 {
        self.records
            .shards()
            .map(|shard| shard.lock().index.count(status))
            .sum()
    }

    /// Adds one acknowledged batch's finished tasks to the current minute's counts.
    pub(crate) fn count_finished(&self, now: SystemTime, batch: MinuteCount) {
        if batch.success == 0 && batch.error == 0 {
            return;
        }
        let minute_ms = unix_ms(now) / 60_000 * 60_000;
        let mut minutes = self.finished.lock();
        match minutes.back_mut() {
            Some(last) if last.minute_ms == minute_ms => {
                last.success += batch.success;
                last.error += batch.error;
            }
            _ => {
                minutes.push_back(MinuteCount { minute_ms, ..batch });
                if minutes.len() > MINUTES_KEPT {
                    minutes.pop_front();
                }
            }
        }
    }

    /// Adds the latencies an acknowledged batch's runs measured to their minutes' histograms.
    pub(crate) fn count_latency(&self, done: &[Completion]) {
        let mut kept = None;
        for (minute_ms, kind, bucket) in latencies(done) {
            let minutes = kept.get_or_insert_with(|| self.latency.lock());
            let at = match minutes.iter().rposition(|m| m.minute_ms == minute_ms) {
                Some(at) => at,
                None => {
                    minutes.push_back(MinuteHistograms {
                        minute_ms,
                        ..MinuteHistograms::default()
                    });
                    if minutes.len() > LATENCY_MINUTES_KEPT {
                        minutes.pop_front();
                    }
                    minutes.len() - 1
                }
            };
            let m = &mut minutes[at];
            match kind {
                LatencyKind::Queue => m.queue.add(bucket, 1),
                LatencyKind::Execution => m.execution.add(bucket, 1),
            }
        }
    }

    /// The latency per minute of the last `minutes` minutes, oldest first.
    pub(crate) fn latency_per_minute(&self, minutes: u32) -> Vec<MinuteLatency> {
        let kept = self.latency.lock();
        let mut counts = Vec::new();
        for m in kept.iter() {
            for (kind, hist) in [
                (LatencyKind::Queue, &m.queue),
                (LatencyKind::Execution, &m.execution),
            ] {
                counts.extend(hist.buckets().map(|(b, n)| (m.minute_ms, kind, b, n)));
            }
        }
        drop(kept);
        latency_minutes(SystemTime::now(), minutes, counts)
    }

    /// The finished tasks per minute of the last `minutes` minutes, oldest first.
    pub(crate) fn finished_per_minute(&self, minutes: u32) -> Vec<MinuteCount> {
        let mut out = minute_buckets(SystemTime::now(), minutes);
        let counted: VecDeque<MinuteCount> = self.finished.lock().clone();
        for bucket in &mut out {
            if let Some(c) = counted.iter().find(|c| c.minute_ms == bucket.minute_ms) {
                bucket.success = c.success;
                bucket.error = c.error;
            }
        }
        out
    }

    /// One page of the listing: each shard's best candidates, merged.
    pub(crate) fn list_page(&self, query: &TaskQuery) -> TaskPage {
        self.expire(Instant::now());
        let size = query.page_size();
        let statuses: Vec<TaskStatus> = match query.status {
            Some(s) => vec![s],
            None => ALL_STATUSES.to_vec(),
        };
        // First where the best candidates are (no record copied), then the page's records.
        let mut keys = Vec::new();
        for shard in self.records.shards() {
            let shard = shard.lock();
            for status in &statuses {
                keys.extend(shard.index.select(*status, &shard.map, query, size + 1));
            }
        }
        keys.sort_unstable_by(|a, b| b.cmp(a));
        keys.truncate(size + 1);
        let tasks = keys
            .iter()
            .filter_map(|k| {
                let shard = self.records.shard(&k.uuid).lock();
                shard.get(&k.uuid).map(|slot| slot.task(k.uuid))
            })
            .filter(|t| query.status.is_none_or(|s| t.status == s))
            .collect();
        TaskPage::from_candidates(tasks, size)
    }

    /// Queues failed tasks again (status `error` -> `new`), out of the dead-letter.
    pub(crate) fn retry_failed(&self, uuids: &[Uuid]) -> Vec<Uuid> {
        let now_wall = SystemTime::now();
        let mut queued = Vec::new();
        let mut entries = Vec::new();
        let mut undead = 0;
        for uuid in uuids {
            let mut shard = self.records.shard(uuid).lock();
            shard.update(uuid, |slot| {
                if slot.status != TaskStatus::Error {
                    return;
                }
                if slot.rare_mut().extra.remove(DEAD_LETTER).is_some() {
                    undead += 1;
                }
                slot.status = TaskStatus::New;
                slot.set_traceback(None);
                slot.touch(now_wall);
                slot.token += 1;
                entries.push((slot.queue(), slot.priority, slot.seq, *uuid));
                queued.push(*uuid);
            });
        }
        if !entries.is_empty() {
            let mut q = self.queue.lock();
            for (queue, priority, seq, uuid) in entries {
                q.push(queue, priority, seq, uuid);
            }
            drop(q);
            self.wake.notify_waiters();
        }
        self.forget_dead(undead);
        queued
    }

    /// Deletes finished records.
    pub(crate) fn delete_finished(&self, uuids: &[Uuid]) -> Vec<Uuid> {
        let mut deleted = Vec::new();
        let mut undead = 0;
        for uuid in uuids {
            let mut shard = self.records.shard(uuid).lock();
            if !shard.get(uuid).is_some_and(|s| s.status.is_final()) {
                continue;
            }
            if let Some(slot) = shard.remove(uuid) {
                if slot.is_dead_letter() {
                    undead += 1;
                }
                deleted.push(*uuid);
            }
        }
        self.forget_dead(undead);
        deleted
    }

    /// Deletes the finished records `purge` selects; returns how many.
    pub(crate) fn purge_finished(&self, purge: &Purge) -> u64 {
        let before_ms = unix_ms(purge.before);
        let mut purged = 0;
        let mut undead = 0;
        for shard in self.records.shards() {
            let mut shard = shard.lock();
            for status in purge.statuses.iter().filter(|s| s.is_final()) {
                for uuid in shard.index.older_than(*status, &shard.map, before_ms) {
                    if let Some(slot) = shard.remove(&uuid) {
                        if slot.is_dead_letter() {
                            undead += 1;
                        }
                        purged += 1;
                    }
                }
            }
        }
        self.forget_dead(undead);
        purged
    }

    fn forget_dead(&self, n: u64) {
        if n > 0 {
            let mut dead = self.dead_letter.lock();
            *dead = dead.saturating_sub(n);
        }
    }
}
