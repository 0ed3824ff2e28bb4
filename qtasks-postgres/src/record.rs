//! Rows to task records, and the small conversions between our types and PostgreSQL's. Nothing
//! here trusts a row: an unknown status or a negative count is an error naming the task, never
//! a panic.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use qtasks_core::backend::Lease;
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

/// The uuid and token arrays of leases, for the functions that take them.
pub(crate) fn lease_arrays(leases: &[Lease]) -> (Vec<Uuid>, Vec<i64>) {
    leases.iter().map(|l| (l.uuid, token_sql(l.token))).unzip()
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
    let mut task = Task::new(
        uuid,
        name.unwrap_or_default(),
        priority,
        Payload::from_bytes(args.unwrap_or_default()),
        created_at,
    );
    task.status = status;
    task.updated_at = row.try_get(6).map_err(field)?;
    let result: Option<Vec<u8>> = row.try_get(7).map_err(field)?;
    task.returning = result.map(Payload::from_bytes);
    task.traceback = row.try_get(8).map_err(field)?;
    task.cancel_reason = row.try_get(9).map_err(field)?;
    let attempts: i32 = row.try_get(10).map_err(field)?;
    task.attempts = u32::try_from(attempts).unwrap_or(0);
    let dead: Option<String> = row.try_get(11).map_err(field)?;
    if let Some(reason) = dead {
        task.extra = BTreeMap::from([("dead_letter".to_string(), reason)]);
    }
    Ok(task)
}
