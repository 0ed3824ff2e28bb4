//! Rows to task records, and the small conversions between our types and PostgreSQL's. Nothing
//! here trusts a row: an unknown status or a negative count is an error naming the task, never
//! a panic.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use qtasks_core::backend::{decode_attempt, envelope, Lease};
use qtasks_core::{Payload, Task, TaskStatus};
use tokio_postgres::Row;
use uuid::Uuid;

/// A duration in whole milliseconds (saturating), as PostgreSQL's `bigint`.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A fencing token as stored (`bigint`); a token beyond it matches no claim.
pub(crate) fn token_sql(token: u64) -> i64 {
    i64::try_from(token).unwrap_or(-1)
}

/// The positions of `uuids` in the order their rows are locked: by uuid (stable, so the first
/// of the same lease twice stays first). Every batch function gets its batch in this order, so
/// two batches that share rows (an acknowledgement and a renewal of the same worker, say) lock
/// them in the same order and never deadlock.
pub(crate) fn lock_order(uuids: impl Iterator<Item = Uuid>) -> Vec<usize> {
    let uuids: Vec<Uuid> = uuids.collect();
    let mut order: Vec<usize> = (0..uuids.len()).collect();
    order.sort_by_key(|&i| uuids[i]);
    order
}

/// The uuid and token arrays of leases in lock order, with that order (position `k` of the
/// arrays, from 1, is `leases[order[k - 1]]`).
pub(crate) fn lease_arrays(leases: &[Lease]) -> (Vec<Uuid>, Vec<i64>, Vec<usize>) {
    let order = lock_order(leases.iter().map(|l| l.uuid));
    let (uuids, tokens) = order
        .iter()
        .map(|&i| (leases[i].uuid, token_sql(leases[i].token)))
        .unzip();
    (uuids, tokens, order)
}

/// The lease at 1-based position `pos` of arrays built in `order`.
pub(crate) fn at_position(leases: &[Lease], order: &[usize], pos: i32) -> Option<Lease> {
    let k = usize::try_from(pos).ok()?.checked_sub(1)?;
    order.get(k).and_then(|&i| leases.get(i)).copied()
}

/// A row of [`RECORD_COLUMNS`](crate::statements::RECORD_COLUMNS) as a task record.
pub(crate) fn decode_record(row: &Row) -> Result<Task, String> {
    let uuid: Uuid = row.try_get(0).map_err(|e| e.to_string())?;
    let field = |e: tokio_postgres::Error| format!("the record of task {uuid} cannot be read: {e}");
    let name: Option<String> = row.try_get(1).map_err(field)?;
    let status: String = row.try_get(2).map_err(field)?;
    let status = TaskStatus::parse(&status).ok_or_else(|| {
        format!("the record of task {uuid} has the unknown status {status:?} (written by something else than qtasks?)")
    })?;
    let priority: i32 = row.try_get(3).map_err(field)?;
    let args: Option<Vec<u8>> = row.try_get(4).map_err(field)?;
    let created_at: SystemTime = row.try_get(5).map_err(field)?;
    // The stored arguments may carry the enqueue time and the producer's span context.
    let (meta, args) = envelope::split(args.unwrap_or_default());
    let mut task = Task::new(uuid, name.unwrap_or_default(), priority, args, created_at);
    task.status = status;
    task.updated_at = row.try_get(6).map_err(field)?;
    let result: Option<Vec<u8>> = row.try_get(7).map_err(field)?;
    task.returning = result.map(Payload::from_bytes);
    task.traceback = row.try_get(8).map_err(field)?;
    task.cancel_reason = row.try_get(9).map_err(field)?;
    let attempts: i32 = row.try_get(10).map_err(field)?;
    task.attempts = u32::try_from(attempts).unwrap_or(0);
    let history: Option<Vec<String>> = row.try_get(12).map_err(field)?;
    task.history = history
        .unwrap_or_default()
        .iter()
        .filter_map(|entry| {
            let (attempt, run) = entry.split_once(':')?;
            decode_attempt(attempt.parse().ok()?, run)
        })
        .collect();
    let progress: Option<Vec<u8>> = row.try_get(13).map_err(field)?;
    task.progress = progress.map(Payload::from_bytes);
    let dead: Option<String> = row.try_get(11).map_err(field)?;
    if let Some(reason) = dead {
        task.extra = BTreeMap::from([("dead_letter".to_string(), reason)]);
    }
    if let Some(trace) = meta.trace {
        trace.write_extra(&mut task.extra);
    }
    Ok(task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_go_in_lock_order_and_positions_map_back() {
        let (a, b) = (Uuid::from_u128(2), Uuid::from_u128(1));
        let leases = [
            Lease { uuid: a, token: 7 },
            Lease { uuid: b, token: 3 },
            Lease { uuid: a, token: 9 },
        ];
        let (uuids, tokens, order) = lease_arrays(&leases);
        assert_eq!(uuids, [b, a, a]);
        assert_eq!(tokens, [3, 7, 9], "the first of one uuid stays first");
        assert_eq!(at_position(&leases, &order, 1), Some(leases[1]));
        assert_eq!(at_position(&leases, &order, 3), Some(leases[2]));
        assert_eq!(at_position(&leases, &order, 0), None);
        assert_eq!(at_position(&leases, &order, 4), None);
        assert_eq!(token_sql(u64::MAX), -1);
    }
}
