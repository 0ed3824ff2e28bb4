//! The reaper of expired records: finished tasks past their result TTL, expired `try_claim`
//! claims and heartbeats are deleted in batches of 1000 (`FOR UPDATE SKIP LOCKED`, so reapers
//! of several processes share the work), every `reap_ms`. Started by the first claim (workers
//! reap; producers only read, and every read skips expired rows). Expired leases are not its
//! business: claims, starts and renewals return them at once.
//!
//! It also keeps the planner's statistics of the tasks table from lagging far behind: when the
//! table was never analyzed, or has more than doubled since, it runs `ANALYZE` (at once when it
//! starts, then on its passes). Autovacuum does that too, but only once a minute at best, and a
//! fresh queue that fills in seconds would meanwhile be planned as an empty table.
//!
//! And it vacuums the tasks table when its dead row versions pile up far beyond what autovacuum
//! lets stand (the migration sets the table's autovacuum to act after 1 % of changes): on a
//! server with `autovacuum = off`, or with autovacuum far behind, nothing else would, and the
//! table and its indexes would grow without end. The hot statements do not depend on it (they
//! find rows by uuid, and the ready queue's index scans skip entries they found dead), but
//! the disk and the cache do.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::client::Connections;
use crate::statements::Statements;

pub(crate) struct Reaper {
    conns: Arc<Connections>,
    every: Duration,
    statements: Arc<[String; 7]>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl Reaper {
    pub(crate) fn new(conns: Arc<Connections>, every: Duration, sql: &Statements) -> Self {
        let stop = CancellationToken::new();
        Reaper {
            conns,
            every,
            statements: Arc::new([
                sql.reap_records.clone(),
                sql.reap_claims.clone(),
                sql.reap_workers.clone(),
                sql.needs_analyze.clone(),
                sql.analyze.clone(),
                sql.needs_vacuum.clone(),
                sql.vacuum.clone(),
            ]),
            task: Mutex::new(None),
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
        }
    }

    pub(crate) fn ensure_started(&self) {
        let mut task = self.task.lock();
        if task.as_ref().is_none_or(|t| t.is_finished()) {
            let (conns, statements, stop, every) = (
                self.conns.clone(),
                self.statements.clone(),
                self.stop.clone(),
                self.every,
            );
            *task = Some(tokio::spawn(async move {
                let mut first = true;
                loop {
                    if !first {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(every) => {}
                        }
                    }
                    first = false;
                    if let Err(e) = reap(&conns, &statements).await {
                        tracing::warn!(error = %e, "cannot delete expired records; trying again later");
                    }
                }
            }));
        }
    }
}

/// Deletes every expired row, 1000 per statement, analyzes the tasks table when its
/// statistics are missing or far behind, and vacuums it when its dead rows pile up.
async fn reap(conns: &Connections, statements: &[String; 7]) -> qtasks_core::Result<()> {
    let what = "deleting expired records";
    let conn = conns.get("storage", what).await?;
    let [records, claims, workers, needs_analyze, analyze, needs_vacuum, vacuum] = statements;
    let stale = conn
        .query_opt(needs_analyze.as_str(), &[])
        .await
        .map_err(|e| conns.error("storage", "reading the table statistics", &e))?
        .is_some_and(|row| row.try_get::<_, Option<bool>>(0).ok().flatten() == Some(true));
    if stale {
        conn.batch_execute(analyze)
            .await
            .map_err(|e| conns.error("storage", "analyzing the tasks table", &e))?;
    }
    let dead = conn
        .query_opt(needs_vacuum.as_str(), &[])
        .await
        .map_err(|e| conns.error("storage", "reading the table statistics", &e))?
        .is_some_and(|row| row.try_get::<_, Option<bool>>(0).ok().flatten() == Some(true));
    if dead {
        let started = std::time::Instant::now();
        conn.batch_execute(vacuum)
            .await
            .map_err(|e| conns.error("storage", "vacuuming the tasks table", &e))?;
        tracing::debug!(elapsed = ?started.elapsed(), "vacuumed the tasks table");
    }
    for sql in [records, claims, workers] {
        let stmt = conn
            .prepare_cached(sql)
            .await
            .map_err(|e| conns.error("storage", what, &e))?;
        loop {
            let n = conn
                .execute(&stmt, &[])
                .await
                .map_err(|e| conns.error("storage", what, &e))?;
            if n < 1000 {
                break;
            }
        }
    }
    Ok(())
}
