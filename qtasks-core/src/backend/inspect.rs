//! The inspection and administration types: what the dashboard and the API ask a backend
//! ([`TaskQuery`], [`TaskPage`], [`Cursor`], [`Pauses`], [`MinuteCount`]), through the
//! [`Storage`](super::Storage) methods `list`, `throughput` and the
//! [`Broker`](super::Broker) methods `retry_dead`, `delete`, `purge`, `pause`, `resume`,
//! `pauses`.
//!
//! Listing reads a per-status index ordered by the time of the record's last change
//! (`updated_at`), newest first, so it never scans the key space: a sorted set per status in
//! Redis, an append-only list per status and shard in memory.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::task::payload::Payload;
use crate::task::record::Task;
use crate::task::status::TaskStatus;

/// Every status, in the order the dashboard shows them.
pub const ALL_STATUSES: [TaskStatus; 6] = [
    TaskStatus::New,
    TaskStatus::Process,
    TaskStatus::Retry,
    TaskStatus::Success,
    TaskStatus::Error,
    TaskStatus::Cancel,
];

/// The most tasks one page of a listing holds.
pub const MAX_PAGE: usize = 500;

/// What to list: every filter is optional; tasks come newest first (by `updated_at`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskQuery {
    /// Only tasks with this status; `None`: every status.
    pub status: Option<TaskStatus>,
    /// Only tasks of this registered name.
    pub task_name: Option<String>,
    /// Only tasks that last changed at or after this time.
    pub since: Option<SystemTime>,
    /// Only tasks that last changed before this time.
    pub until: Option<SystemTime>,
    /// Only tasks whose arguments, as JSON text, contain this text.
    pub text: Option<String>,
    /// Where the previous page ended ([`TaskPage::next`]).
    pub cursor: Option<Cursor>,
    /// How many tasks at most (1 to [`MAX_PAGE`]; 0 means 50).
    pub limit: usize,
}

impl TaskQuery {
    /// The page size asked, within 1 to [`MAX_PAGE`].
    pub fn page_size(&self) -> usize {
        match self.limit {
            0 => 50,
            n => n.min(MAX_PAGE),
        }
    }

    /// Whether `task` passes the name and text filters (the index walk gives the status, the
    /// time range and the cursor).
    pub fn matches(&self, task: &Task) -> bool {
        self.matches_fields(&task.task_name, &task.args)
    }

    /// [`TaskQuery::matches`] on a record's task name and arguments (for a backend whose
    /// records are not [`Task`]s).
    pub fn matches_fields(&self, task_name: &str, args: &Payload) -> bool {
        if let Some(name) = &self.task_name {
            if task_name != name {
                return false;
            }
        }
        if let Some(text) = &self.text {
            let found = args
                .to_json()
                .is_some_and(|json| json.to_string().contains(text.as_str()));
            if !found {
                return false;
            }
        }
        true
    }

    /// The window of index positions this query reads: tasks changed in `[since, until)`
    /// and, with a cursor, strictly before it.
    pub fn upper_bound(&self) -> Option<Cursor> {
        let until = self.until.map(|t| Cursor {
            at_ms: unix_ms(t),
            uuid: Uuid::nil(),
        });
        match (self.cursor, until) {
            (Some(c), Some(u)) => Some(c.min(u)),
            (c, u) => c.or(u),
        }
    }

    /// The oldest change time this query reads (ms since the Unix epoch).
    pub fn lower_ms(&self) -> u64 {
        self.since.map_or(0, unix_ms)
    }
}

/// A position in a listing: the last task of a page, by its change time and uuid. Its text
/// form (`<ms>-<uuid>`) is what the API hands out and takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// The task's `updated_at`, in ms since the Unix epoch.
    pub at_ms: u64,
    /// The task's id (orders tasks changed in the same millisecond).
    pub uuid: Uuid,
}

impl Cursor {
    /// The cursor right after `task` in a newest-first listing.
    pub fn after(task: &Task) -> Cursor {
        Cursor {
            at_ms: unix_ms(task.updated_at),
            uuid: task.uuid,
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.at_ms, self.uuid)
    }
}

impl FromStr for Cursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Cursor> {
        let bad = || Error::Config {
            key: "cursor".into(),
            value: s.into(),
            expected: "the `next` value of the previous page (`<ms>-<uuid>`)".into(),
        };
        let (ms, uuid) = s.split_once('-').ok_or_else(bad)?;
        Ok(Cursor {
            at_ms: ms.parse().map_err(|_| bad())?,
            uuid: Uuid::try_parse(uuid).map_err(|_| bad())?,
        })
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct TaskPage {
    /// The tasks, newest first.
    pub tasks: Vec<Task>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

impl TaskPage {
    /// A page from up to `size + 1` tasks, newest first: the extra one only tells there is
    /// a next page.
    pub fn from_candidates(mut tasks: Vec<Task>, size: usize) -> TaskPage {
        tasks.sort_by_cached_key(|t| std::cmp::Reverse(Cursor::after(t)));
        let more = tasks.len() > size;
        tasks.truncate(size);
        let next = if more {
            tasks.last().map(Cursor::after)
        } else {
            None
        };
        TaskPage { tasks, next }
    }
}

/// What is paused: claims of these stop (enqueues go on) until resumed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pauses {
    /// The whole app: no task is claimed.
    pub app: bool,
    /// These task names are not claimed.
    pub tasks: BTreeSet<String>,
    /// These named queues (`default` for the default one) are not claimed from.
    #[serde(default)]
    pub queues: BTreeSet<String>,
}

impl Pauses {
    /// Whether a task of this name may be claimed now.
    pub fn blocks(&self, task_name: &str) -> bool {
        self.app || self.tasks.contains(task_name)
    }

    /// Whether nothing is paused.
    pub fn is_empty(&self) -> bool {
        !self.app && self.tasks.is_empty() && self.queues.is_empty()
    }

    /// Whether queue `queue` (`None`: the default queue) is paused.
    pub fn blocks_queue(&self, queue: Option<&str>) -> bool {
        !self.queues.is_empty()
            && self
                .queues
                .contains(queue.unwrap_or(crate::control::DEFAULT_QUEUE))
    }
}

/// What to pause or resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseTarget {
    /// Every task of the app.
    App,
    /// The tasks of one name.
    Task(String),
    /// The tasks of one named queue (`default` for the tasks that name none).
    Queue(String),
}

/// Tasks that finished within one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteCount {
    /// The minute's start, in ms since the Unix epoch.
    pub minute_ms: u64,
    /// Tasks that ended with `success`.
    pub success: u64,
    /// Tasks that ended with `error`.
    pub error: u64,
}

/// A histogram of durations in microseconds, in log-linear buckets (four per power of two:
/// each bucket's width is at most a quarter of its start, so a quantile read from it is
/// within 25 % of the true one), from 1 us to about 71 minutes (longer ones count in the last
/// bucket). The buckets are what every backend stores, as (bucket, count) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: Box<[u64; LATENCY_BUCKETS]>,
}

/// How many buckets a [`LatencyHistogram`] has.
pub const LATENCY_BUCKETS: usize = 128;

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: Box::new([0; LATENCY_BUCKETS]),
        }
    }
}

impl LatencyHistogram {
    /// The bucket of a duration: its microseconds below 8 as they are, above by their
    /// power of two and the next two bits.
    pub fn bucket(d: Duration) -> usize {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if us < 8 {
            return us as usize;
        }
        let log = 63 - us.leading_zeros() as usize;
        (4 * (log - 1) + ((us >> (log - 2)) & 3) as usize).min(LATENCY_BUCKETS - 1)
    }

    /// The upper end of a bucket, in microseconds.
    pub fn bucket_end_us(bucket: usize) -> u64 {
        if bucket < 8 {
            return bucket as u64 + 1;
        }
        let log = bucket / 4 + 1;
        (5 + (bucket % 4) as u64) << (log - 2)
    }

    /// Counts `n` durations in `bucket` (ignored beyond the last).
    pub fn add(&mut self, bucket: usize, n: u64) {
        if let Some(c) = self.counts.get_mut(bucket) {
            *c += n;
        }
    }

    /// Counts one duration.
    pub fn record(&mut self, d: Duration) {
        self.add(Self::bucket(d), 1);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }

    /// How many durations it holds.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The non-empty buckets with their counts.
    pub fn buckets(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(b, &n)| (b, n))
    }

    /// The `q` quantile (0 to 1) in milliseconds, as the upper end of the bucket it falls in
    /// (`None` when empty).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, n) in self.buckets() {
            seen += n;
            if seen >= rank {
                return Some(Self::bucket_end_us(b) as f64 / 1000.0);
            }
        }
        None
    }

    /// p50 and p95 with the count.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count(),
            p50_ms: self.quantile_ms(0.5),
            p95_ms: self.quantile_ms(0.95),
        }
    }
}

/// A latency distribution in a few numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// How many durations.
    pub count: u64,
    /// The median, in ms (`None` without durations).
    pub p50_ms: Option<f64>,
    /// The 95th percentile, in ms.
    pub p95_ms: Option<f64>,
}

/// The latency of the attempts that ended within one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MinuteLatency {
    /// The minute's start, in ms since the Unix epoch.
    pub minute_ms: u64,
    /// Enqueue to start, of the first attempts.
    pub queue: LatencySummary,
    /// Start to end, of every attempt.
    pub execution: LatencySummary,
}

/// What a latency histogram measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LatencyKind {
    /// Enqueue to the start of the first attempt.
    Queue,
    /// One attempt, start to end.
    Execution,
}

impl LatencyKind {
    /// The one-letter name backends store (`q`, `e`).
    pub fn as_str(self) -> &'static str {
        match self {
            LatencyKind::Queue => "q",
            LatencyKind::Execution => "e",
        }
    }

    /// Parses [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "q" => Some(LatencyKind::Queue),
            "e" => Some(LatencyKind::Execution),
            _ => None,
        }
    }
}

/// The latency counts of one acknowledged batch, per minute (of each attempt's end), kind
/// and bucket: what a backend adds to its per-minute histograms in the same step as the
/// completions (`Broker::complete`). Built once here for every backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyBatch {
    /// `(minute start ms, kind, bucket, count)`, sorted, one entry per key.
    pub counts: Vec<(u64, LatencyKind, usize, u64)>,
}

/// The latencies the completions that carry a run measured: `(minute start ms of the
/// attempt's end, kind, bucket)`, an execution time for each and a queue time for first
/// attempts. What every backend counts, in its own store.
pub fn latencies(
    done: &[super::Completion],
) -> impl Iterator<Item = (u64, LatencyKind, usize)> + '_ {
    done.iter().filter_map(|c| c.run.as_ref()).flat_map(|run| {
        let minute = unix_ms(run.finished_at) / 60_000 * 60_000;
        let took = run
            .finished_at
            .duration_since(run.started_at)
            .unwrap_or_default();
        let execution = (
            minute,
            LatencyKind::Execution,
            LatencyHistogram::bucket(took),
        );
        let queue = run
            .queued
            .map(|w| (minute, LatencyKind::Queue, LatencyHistogram::bucket(w)));
        std::iter::once(execution).chain(queue)
    })
}

impl LatencyBatch {
    /// The counts of the completions that carry a run ([`latencies`], counted).
    pub fn of(done: &[super::Completion]) -> Self {
        let mut all = std::collections::BTreeMap::new();
        for key in latencies(done) {
            *all.entry(key).or_insert(0) += 1;
        }
        LatencyBatch {
            counts: all.into_iter().map(|((m, k, b), n)| (m, k, b, n)).collect(),
        }
    }

    /// Whether there is nothing to count.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// The per-minute latency summaries of the last `minutes` minutes up to `now`, oldest first,
/// from `(minute start ms, kind, bucket, count)` counts read from a backend (those of other
/// minutes are ignored).
pub fn latency_minutes(
    now: SystemTime,
    minutes: u32,
    counts: impl IntoIterator<Item = (u64, LatencyKind, usize, u64)>,
) -> Vec<MinuteLatency> {
    let starts: Vec<u64> = minute_buckets(now, minutes)
        .iter()
        .map(|b| b.minute_ms)
        .collect();
    let mut hists: Vec<(LatencyHistogram, LatencyHistogram)> =
        starts.iter().map(|_| Default::default()).collect();
    for (minute, kind, bucket, n) in counts {
        if let Ok(i) = starts.binary_search(&minute) {
            let (queue, execution) = &mut hists[i];
            match kind {
                LatencyKind::Queue => queue.add(bucket, n),
                LatencyKind::Execution => execution.add(bucket, n),
            }
        }
    }
    starts
        .into_iter()
        .zip(hists)
        .map(|(minute_ms, (queue, execution))| MinuteLatency {
            minute_ms,
            queue: queue.summary(),
            execution: execution.summary(),
        })
        .collect()
}

/// What `purge` removes: final records (`success`, `error`, `cancel`) of these statuses that
/// last changed before `before`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge {
    /// Which final statuses (others are ignored: queued and running tasks are never purged).
    pub statuses: Vec<TaskStatus>,
    /// Only records that last changed before this time.
    pub before: SystemTime,
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    // Seconds times 1000 plus the milliseconds of the second: no 128-bit division (this runs
    // at every status change of the memory backend's index).
    t.duration_since(UNIX_EPOCH).map_or(0, |d| {
        d.as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(d.subsec_millis()))
    })
}

/// The time `ms` milliseconds after the Unix epoch.
pub fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The minute starts of the last `minutes` minutes up to `now`, oldest first, with zero counts.
pub fn minute_buckets(now: SystemTime, minutes: u32) -> Vec<MinuteCount> {
    let this_minute = unix_ms(now) / 60_000 * 60_000;
    (0..u64::from(minutes))
        .rev()
        .map(|back| MinuteCount {
            minute_ms: this_minute.saturating_sub(back * 60_000),
            ..MinuteCount::default()
        })
        .collect()
}

/// The error of a backend that lacks an inspection or administration capability.
pub fn unsupported(component: &'static str, what: &str) -> Error {
    Error::backend(
        component,
        format!(
            "this backend cannot {what}; the memory and Redis backends can (a wrapper made with \
             `map_backend` must forward this method to the backend it wraps)"
        ),
    )
}

#[cfg(test)]
mod latency_tests {
    use super::*;

    #[test]
    fn buckets_are_within_a_quarter_of_their_values() {
        for us in [
            0_u64,
            1,
            7,
            8,
            9,
            15,
            16,
            100,
            999,
            1000,
            12_345,
            1 << 31,
            (1 << 32) - 1,
        ] {
            let b = LatencyHistogram::bucket(Duration::from_micros(us));
            let end = LatencyHistogram::bucket_end_us(b);
            let start = if b == 0 {
                0
            } else {
                LatencyHistogram::bucket_end_us(b - 1)
            };
            assert!(
                start <= us && us < end,
                "{us} us in bucket {b} [{start}, {end})"
            );
            assert!(end - start <= (start / 4).max(1), "{us}: [{start}, {end})");
        }
        assert_eq!(
            LatencyHistogram::bucket(Duration::from_secs(100_000)),
            LATENCY_BUCKETS - 1
        );
    }

    #[test]
    fn quantiles_and_minutes() {
        let mut h = LatencyHistogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile_ms(0.5).unwrap();
        let p95 = h.quantile_ms(0.95).unwrap();
        assert!((50.0..=62.5).contains(&p50), "{p50}");
        assert!((95.0..=118.75).contains(&p95), "{p95}");
        assert_eq!(LatencyHistogram::default().quantile_ms(0.5), None);

        let now = from_unix_ms(10 * 60_000 + 5);
        let b = LatencyHistogram::bucket(Duration::from_millis(2));
        let out = latency_minutes(
            now,
            3,
            [
                (9 * 60_000, LatencyKind::Execution, b, 3),
                (10 * 60_000, LatencyKind::Queue, b, 1),
                (2 * 60_000, LatencyKind::Queue, b, 1),
            ],
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].execution.count, 3);
        assert_eq!(out[2].queue.count, 1);
        assert_eq!(out[0].queue.count + out[0].execution.count, 0);
    }
}
