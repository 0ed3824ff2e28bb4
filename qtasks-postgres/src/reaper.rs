//! The reaper of expired records: finished tasks past their result TTL, expired `try_claim`
//! claims and heartbeats are deleted in batches of 1000 (`FOR UPDATE SKIP LOCKED`, so reapers
//! of several processes share the work), every `reap_ms`. Started by the first claim (workers
//! reap; producers only read, and every read skips expired rows). Expired leases are not its
//! business: claims, starts and renewals return them at once.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::client::Connections;
use crate::statements::Statements;

pub(crate) struct Reaper {
    conns: Arc<Connections>,
    every: Duration,
    statements: Arc<[String; 3]>,
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
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    if let Err(e) = reap(&conns, &statements).await {
                        tracing::warn!(error = %e, "cannot delete expired records; trying again later");
                    }
                }
            }));
        }
    }
}

/// Deletes every expired row, 1000 per statement.
async fn reap(conns: &Connections, statements: &[String; 3]) -> qtasks_core::Result<()> {
    let what = "deleting expired records";
    let conn = conns.get("storage", what).await?;
    for sql in statements {
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
