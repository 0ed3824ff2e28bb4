//! The Lua scripts: every state change of a task is one atomic script call, for a whole batch.
//!
//! The scripts are the files in `qtasks-redis/lua/`, compiled in with `include_str!`: one file
//! per script, each starting with a comment header (what it does, its `KEYS`, `ARGV` and
//! reply), and `prelude.lua` with the helpers they share. A script's text, as Redis sees it, is
//! its `#!lua` flags line, then the prelude's code, then the script's code, without either
//! header (see [`script`]).
//!
//! The flags decide what a full Redis (`maxmemory` reached, `noeviction`) lets run: the
//! scripts that keep queued work moving and free memory (claim, complete, requeue, renew,
//! started, cancel, heartbeat) are `allow-oom`, so workers drain a full Redis; the read-only
//! ones are `no-writes`; enqueue has no flag, so Redis refuses it up front, before it writes
//! anything, with an `OOM` error.
//!
//! Every script returns, as the last element of its reply, the entries it dropped or
//! dead-lettered (a queue entry that is not a task, a record with a field missing or a key of
//! another type): the caller logs them (`broker::log_dropped`).
//!
//! Each script gets the key prefix (`{app}:`) as `ARGV[1]` and builds its keys from it; all of
//! them share the `{app}` hash tag, so they live in one Redis Cluster slot. The first key is
//! also passed as `KEYS[1]` so a cluster client routes the call to that slot. Time is the
//! server's (`TIME`), so producers and workers on machines with skewed clocks agree.
//!
//! Key layout (see `docs/redis.md`):
//! - `t:<uuid>` hash: the task record (`n` name, `p` priority, `a` args, `s` status,
//!   `c` created ms, `u` updated ms, `at` attempts, `rc` deliveries lost after the task
//!   started, `sq` set while it is a suspect,
//!   `r` result, `tb` traceback, `cr` cancel reason, `dr` dead-letter reason, `h<attempt>` an
//!   ended attempt as `backend::encode_attempt` writes it, the last 20). A claimed
//!   task's status is `process` while its `run` entry is there, whatever `s` says (`s` keeps
//!   `new` or `retry`: a claim writes no record);
//! - `prios` zset: the priorities that have ready tasks; `q:<priority>` list: ready entries
//!   `<uuid>:<attempts so far>:<priority>:<name length>:<name><args>`, everything a claim
//!   needs, so a claim reads no record (pushed left, claimed from the right, returned to the
//!   right to run next; a bare uuid, as earlier versions queued, is claimed through its
//!   record);
//! - `sched` zset: delayed tasks and retry backoff, scored by due time (ms);
//! - `lease` zset: claimed tasks as `<uuid>:<token>`, scored by lease deadline (ms), which is
//!   how the reaper finds expired claims; `run` hash: uuid -> `<token>:<attempt>:<claimed ms>`
//!   for every current claim, written and removed with its `lease` member: a claim is current
//!   exactly while its `run` entry has its token, which is how acknowledgements, renewals,
//!   starts and requeues check the fencing token (one `HMGET` per batch); `started` set: the
//!   members of `lease` whose task started (`Broker::started`, or the claim for the
//!   tasks a worker's free lanes begin at once), removed with them;
//! - `suspect` list: tasks whose worker vanished while running them, claimed one at a time by
//!   an idle worker (FIFO); `drain` string (with a TTL): which busy worker finishes what it
//!   holds to take an overdue suspect;
//! - `tok` string: the fencing-token counter; `wake` list (at most one element): wakes one
//!   idle worker; `dead` list: dead-lettered uuids, and `!<reason>:<entry>` for entries that
//!   are not task records (garbage in a queue, a key of another type), capped;
//! - `lat:<minute ms>` hashes (three hours): the latency counts of the attempts that ended in
//!   that minute (`q<bucket>`, `e<bucket>`), added by the complete script (with `h<attempt>`
//!   only while the indexes are on);
//! - `kv` hash, `claim:<key>` strings, `workers` zset: the global config;
//! - `ix:<status>` zsets: the per-status indexes (uuids scored by the ms of their record's
//!   last change), written by the scripts that change a status while the `ixon` string exists
//!   (`RedisOptions::status_index`), read by the dashboard's listing; the final statuses' are trimmed and expire with the result TTL (so a
//!   dead-lettered record, which does not expire, leaves the `error` index after it);
//! - `paused` hash: the paused task names (`*`: the whole app), which claims skip;
//! - channels `done` (finished uuids, comma separated) and `cancel` (`uuid\nreason`).

use std::sync::LazyLock;

use deadpool_redis::redis::Script;

/// `lua/prelude.lua`: the helpers every script starts with.
const PRELUDE: &str = include_str!("../lua/prelude.lua");

/// A script file's code: the file without its comment header (the leading lines that start
/// with `--`), so the header documents the file without changing the script Redis runs.
fn code(file: &str) -> &str {
    let mut rest = file;
    while rest.starts_with("--") {
        rest = rest.split_once('\n').map_or("", |(_, after)| after);
    }
    rest
}

/// How Redis may run a script: its `#!lua` line, which must be the first line of its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flags {
    /// Refused up front when Redis is over `maxmemory`: new work.
    Plain,
    /// Runs when Redis is over `maxmemory`: keeps queued work moving, frees memory.
    AllowOom,
    /// Only reads: runs when Redis is full (and on replicas).
    NoWrites,
}

impl Flags {
    fn line(self) -> &'static str {
        match self {
            Flags::Plain => "#!lua",
            Flags::AllowOom => "#!lua flags=allow-oom",
            Flags::NoWrites => "#!lua flags=no-writes",
        }
    }
}

/// A script's text: its flags line, the prelude's code, then the script file's code.
fn text(file: &str, flags: Flags) -> String {
    format!("{}\n{}\n{}", flags.line(), code(PRELUDE), code(file))
}

fn script(file: &str, flags: Flags) -> Script {
    Script::new(&text(file, flags))
}

/// `lua/enqueue.lua`: writes new tasks (idempotent per uuid). Refused when Redis is full.
pub(crate) static ENQUEUE: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/enqueue.lua"), Flags::Plain));

/// `lua/claim.lua`: reaps expired leases, moves due tasks, claims a batch with leases.
pub(crate) static CLAIM: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/claim.lua"), Flags::AllowOom));

/// `lua/complete.lua`: acknowledges finished tasks, rejecting stale fencing tokens.
pub(crate) static COMPLETE: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/complete.lua"), Flags::AllowOom));

/// `lua/requeue.lua`: returns claimed tasks to the front of their queue (graceful shutdown).
pub(crate) static REQUEUE: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/requeue.lua"), Flags::AllowOom));

/// `lua/renew.lua`: extends the leases still held, then reaps expired ones.
pub(crate) static RENEW: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/renew.lua"), Flags::AllowOom));

/// `lua/started.lua`: records that claimed tasks start (a lost lease then counts).
pub(crate) static STARTED: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/started.lua"), Flags::AllowOom));

/// `lua/progress.lua`: stores a running task's progress while its claim is current (refused
/// when Redis is full: progress is not worth a write then).
pub(crate) static PROGRESS: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/progress.lua"), Flags::Plain));

/// `lua/cancel.lua`: cancels a queued task, or asks the workers to cancel a running one.
pub(crate) static CANCEL: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/cancel.lua"), Flags::AllowOom));

/// `lua/stats.lua`: the queue's counts.
pub(crate) static STATS: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/stats.lua"), Flags::NoWrites));

/// `lua/retry_dead.lua`: queues failed tasks again.
pub(crate) static RETRY_DEAD: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/retry_dead.lua"), Flags::Plain));
/// `lua/delete.lua`: deletes finished tasks.
pub(crate) static DELETE: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/delete.lua"), Flags::AllowOom));
/// `lua/purge.lua`: deletes old finished tasks found in the per-status indexes.
pub(crate) static PURGE: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/purge.lua"), Flags::AllowOom));
/// `lua/heartbeat.lua`: records a worker's heartbeat, forgets expired workers.
pub(crate) static HEARTBEAT: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/heartbeat.lua"), Flags::AllowOom));

/// `lua/live_workers.lua`: the workers whose heartbeat has not expired.
pub(crate) static LIVE_WORKERS: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/live_workers.lua"), Flags::NoWrites));

#[cfg(test)]
mod tests {
    use super::*;

    /// Every script file, by name.
    const FILES: [(&str, &str); 15] = [
        ("prelude", PRELUDE),
        ("enqueue", include_str!("../lua/enqueue.lua")),
        ("claim", include_str!("../lua/claim.lua")),
        ("complete", include_str!("../lua/complete.lua")),
        ("requeue", include_str!("../lua/requeue.lua")),
        ("renew", include_str!("../lua/renew.lua")),
        ("started", include_str!("../lua/started.lua")),
        ("cancel", include_str!("../lua/cancel.lua")),
        ("stats", include_str!("../lua/stats.lua")),
        ("heartbeat", include_str!("../lua/heartbeat.lua")),
        ("live_workers", include_str!("../lua/live_workers.lua")),
        ("retry_dead", include_str!("../lua/retry_dead.lua")),
        ("delete", include_str!("../lua/delete.lua")),
        ("purge", include_str!("../lua/purge.lua")),
        ("progress", include_str!("../lua/progress.lua")),
    ];

    #[test]
    fn headers_document_each_file_and_are_left_out() {
        for (name, file) in FILES {
            assert!(
                file.starts_with(&format!("-- {name}.lua: ")),
                "{name}.lua starts with its header"
            );
            let code = code(file);
            // The header ends at a blank line; the code has no line of the header left.
            assert!(
                code.starts_with('\n'),
                "{name}.lua: a blank line after the header"
            );
            assert!(
                !code.contains(&format!("{name}.lua:")),
                "{name}.lua: header left out"
            );
            assert!(code.trim_end().len() > 10, "{name}.lua has code");
            if name != "prelude" {
                for part in ["KEYS[1]:", "ARGV:", "Reply:"] {
                    assert!(
                        file.contains(&format!("-- {part}")),
                        "{name}.lua documents {part}"
                    );
                }
            }
        }
    }

    /// Every script as Redis runs it compiles: a syntax error names its file here, instead
    /// of failing the first test that calls it with a bare `ERR Error compiling script`.
    #[cfg(feature = "testing")]
    #[tokio::test]
    async fn every_script_compiles_on_redis() {
        let Some(url) = crate::server::test_url() else {
            return;
        };
        let client = deadpool_redis::redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        for (name, file) in FILES.iter().skip(1) {
            let loaded: Result<String, _> = deadpool_redis::redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(text(file, Flags::AllowOom))
                .query_async(&mut conn)
                .await;
            assert!(loaded.is_ok(), "{name}.lua does not compile: {loaded:?}");
        }
    }

    #[test]
    fn scripts_start_with_their_flags_then_the_prelude() {
        let text = text(FILES[2].1, Flags::AllowOom);
        assert!(
            text.starts_with("#!lua flags=allow-oom\n\nlocal P = ARGV[1]\n"),
            "{text}"
        );
        assert!(text.contains("\nlocal function reap("));
        assert!(text.ends_with("return {wait, out, mode, REPORT}\n"));
        assert_eq!(CLAIM.get_hash(), Script::new(&text).get_hash());
        let enqueue = super::text(FILES[1].1, Flags::Plain);
        assert!(enqueue.starts_with("#!lua\n\nlocal P"), "{enqueue}");
        assert_eq!(ENQUEUE.get_hash(), Script::new(&enqueue).get_hash());
        assert!(super::text(FILES[8].1, Flags::NoWrites).starts_with("#!lua flags=no-writes\n"));
    }
}
