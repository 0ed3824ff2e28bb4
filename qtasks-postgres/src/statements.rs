//! The SQL statements of one backend, with its schema's name put in once (the schema is a
//! checked plain identifier). Each is prepared once per pooled connection (`prepare_cached`).
//! The mutations call the functions of `sql/*.sql` (the newest definition of each wins): one
//! statement, one transaction, per batch.

/// The statements, for one schema.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) enqueue: String,
    pub(crate) claim: String,
    pub(crate) complete: String,
    pub(crate) requeue: String,
    pub(crate) touch: String,
    pub(crate) cancel: String,
    pub(crate) get: String,
    pub(crate) ready_by_priority: String,
    pub(crate) counts: String,
    pub(crate) by_status: String,
    pub(crate) dead_letters: String,
    pub(crate) kv_set: String,
    pub(crate) kv_get: String,
    pub(crate) kv_delete: String,
    pub(crate) kv_all: String,
    pub(crate) try_claim: String,
    pub(crate) heartbeat: String,
    pub(crate) heartbeat_gone: String,
    pub(crate) live_workers: String,
    pub(crate) reap_records: String,
    pub(crate) reap_claims: String,
    pub(crate) reap_workers: String,
    pub(crate) needs_analyze: String,
    pub(crate) needs_vacuum: String,
    pub(crate) vacuum: String,
    pub(crate) list: String,
    pub(crate) throughput: String,
    pub(crate) latency: String,
    pub(crate) retry_dead: String,
    pub(crate) delete: String,
    pub(crate) purge: String,
    pub(crate) pause: String,
    pub(crate) resume: String,
    pub(crate) pauses: String,
    pub(crate) analyze: String,
    pub(crate) progress: String,
}

/// The columns `get` and the dead-letter read, in the order `decode_record` expects.
pub(crate) const RECORD_COLUMNS: &str = "uuid, name, status, priority, args, created_at, \
    updated_at, result, traceback, cancel_reason, attempts, dead_reason, history, progress";

impl Statements {
    pub(crate) fn new(s: &str) -> Self {
        Statements {
            enqueue: format!("SELECT {s}.enqueue($1, $2, $3, $4, $5, $6, $7)"),
            claim: format!(
                "SELECT kind, uuid, name, priority, args, attempt, token, info \
                 FROM {s}.claim_starting($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            complete: format!(
                "SELECT {s}.complete($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ),
            requeue: format!("SELECT {s}.requeue($1, $2, $3)"),
            touch: format!(
                "SELECT kind, pos, uuid, name, info FROM {s}.touch($1, $2, $3, $4, $5, $6, $7)"
            ),
            cancel: format!("SELECT {s}.cancel($1, $2, $3, $4)"),
            get: format!(
                "SELECT {RECORD_COLUMNS} FROM {s}.tasks WHERE app = $1 AND uuid = $2 \
                 AND (expires_at IS NULL OR expires_at > now())"
            ),
            ready_by_priority: format!(
                "SELECT priority, count(*) FROM {s}.tasks WHERE app = $1 \
                 AND status IN ('new', 'retry') AND run_at <= now() GROUP BY priority"
            ),
            counts: format!(
                "SELECT count(*) FILTER (WHERE status IN ('new', 'retry') AND run_at > now()), \
                        count(*) FILTER (WHERE lease_until IS NOT NULL), \
                        count(*) FILTER (WHERE dead_at IS NOT NULL) \
                 FROM {s}.tasks WHERE app = $1"
            ),
            by_status: format!(
                "SELECT status, count(*) FROM {s}.tasks WHERE app = $1 \
                 AND (expires_at IS NULL OR expires_at > now()) GROUP BY status"
            ),
            dead_letters: format!(
                "SELECT {RECORD_COLUMNS} FROM {s}.tasks WHERE app = $1 AND dead_at IS NOT NULL \
                 ORDER BY dead_at DESC LIMIT $2"
            ),
            kv_set: format!(
                "INSERT INTO {s}.kv (app, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (app, key) DO UPDATE SET value = EXCLUDED.value"
            ),
            kv_get: format!("SELECT value FROM {s}.kv WHERE app = $1 AND key = $2"),
            kv_delete: format!("DELETE FROM {s}.kv WHERE app = $1 AND key = $2"),
            kv_all: format!("SELECT key, value FROM {s}.kv WHERE app = $1"),
            try_claim: format!(
                "INSERT INTO {s}.claims AS c (app, key, expires_at) \
                 VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond') \
                 ON CONFLICT (app, key) DO UPDATE SET expires_at = EXCLUDED.expires_at \
                 WHERE c.expires_at <= now() RETURNING 1"
            ),
            heartbeat: format!(
                "INSERT INTO {s}.workers (app, worker, expires_at) \
                 VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond') \
                 ON CONFLICT (app, worker) DO UPDATE SET expires_at = EXCLUDED.expires_at"
            ),
            heartbeat_gone: format!("DELETE FROM {s}.workers WHERE app = $1 AND worker = $2"),
            live_workers: format!(
                "SELECT worker FROM {s}.workers WHERE app = $1 AND expires_at > now() \
                 ORDER BY worker"
            ),
            reap_records: format!(
                "DELETE FROM {s}.tasks WHERE ctid = ANY (ARRAY(SELECT ctid FROM {s}.tasks \
                 WHERE expires_at <= now() LIMIT 1000 FOR UPDATE SKIP LOCKED))"
            ),
            reap_claims: format!(
                "DELETE FROM {s}.claims WHERE ctid = ANY (ARRAY(SELECT ctid FROM {s}.claims \
                 WHERE expires_at <= now() LIMIT 1000 FOR UPDATE SKIP LOCKED))"
            ),
            reap_workers: format!(
                "DELETE FROM {s}.workers WHERE ctid = ANY (ARRAY(SELECT ctid FROM {s}.workers \
                 WHERE expires_at <= now() LIMIT 1000 FOR UPDATE SKIP LOCKED))"
            ),
            needs_analyze: format!(
                "SELECT c.reltuples < 0 OR s.n_live_tup > 2 * c.reltuples + 1000 \
                 FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid \
                 WHERE c.oid = '{s}.tasks'::regclass"
            ),
            analyze: format!("ANALYZE {s}.tasks"),
            // A running task's progress, while its claim (token) is current.
            progress: format!(
                "UPDATE {s}.tasks SET progress = $4 \
                 WHERE uuid = $2 AND app = $1 AND token = $3 AND status = 'process' \
                 RETURNING uuid"
            ),
            // Dead row versions far beyond what autovacuum lets stand (it is off on the server,
            // or behind): the reaper vacuums. Each task leaves about three dead versions.
            needs_vacuum: format!(
                "SELECT s.n_dead_tup > 20000 + 0.2 * s.n_live_tup \
                 FROM pg_stat_user_tables s WHERE s.relid = '{s}.tasks'::regclass"
            ),
            // SKIP_LOCKED: when autovacuum (or another process's reaper) vacuums the table
            // already, this one does not wait for it.
            vacuum: format!("VACUUM (SKIP_LOCKED) {s}.tasks"),
            // Inspection (the dashboard): not on a hot path, so no index of its own; the rows of
            // one app are read in change order with the filters the table can apply.
            list: format!(
                "SELECT {RECORD_COLUMNS} FROM {s}.tasks WHERE app = $1 \
                 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR name = $3) \
                 AND (expires_at IS NULL OR expires_at > now()) \
                 AND floor(extract(epoch FROM updated_at) * 1000)::bigint >= $4 \
                 AND ($5::bigint IS NULL \
                      OR (floor(extract(epoch FROM updated_at) * 1000)::bigint, uuid) < ($5, $6)) \
                 ORDER BY floor(extract(epoch FROM updated_at) * 1000)::bigint DESC, uuid DESC \
                 LIMIT $7"
            ),
            throughput: format!(
                "SELECT (floor(extract(epoch FROM updated_at) * 1000)::bigint / 60000) * 60000, \
                        count(*) FILTER (WHERE status = 'success'), \
                        count(*) FILTER (WHERE status = 'error') \
                 FROM {s}.tasks WHERE app = $1 AND status IN ('success', 'error') \
                 AND updated_at >= $2 AND (expires_at IS NULL OR expires_at > now()) GROUP BY 1"
            ),
            latency: format!(
                "SELECT minute, field, n FROM {s}.latency WHERE app = $1 AND minute >= $2"
            ),
            retry_dead: format!(
                "WITH r AS (UPDATE {s}.tasks SET status = 'new', run_at = now(), updated_at = now(), \
                     attempts = 0, deliveries = 0, token = NULL, lease_until = NULL, \
                     started = false, suspect = false, result = NULL, dead_reason = NULL, \
                     dead_at = NULL, expires_at = NULL \
                   WHERE app = $1 AND uuid = ANY ($2) AND status = 'error' RETURNING uuid) \
                 SELECT r.uuid, pg_notify({s}.channel('w', $1), '') FROM r"
            ),
            delete: format!(
                "DELETE FROM {s}.tasks WHERE app = $1 AND uuid = ANY ($2) \
                 AND status IN ('success', 'error', 'cancel') RETURNING uuid"
            ),
            purge: format!(
                "DELETE FROM {s}.tasks WHERE app = $1 AND status = ANY ($2) \
                 AND status IN ('success', 'error', 'cancel') AND updated_at < $3"
            ),
            pause: format!(
                "INSERT INTO {s}.pauses (app, target) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            ),
            resume: format!(
                "WITH d AS (DELETE FROM {s}.pauses WHERE app = $1 AND target = $2) \
                 SELECT pg_notify({s}.channel('w', $1), '')"
            ),
            pauses: format!("SELECT target FROM {s}.pauses WHERE app = $1"),
        }
    }
}
