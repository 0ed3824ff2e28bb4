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
