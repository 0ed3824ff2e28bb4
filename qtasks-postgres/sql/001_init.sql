-- 001_init.sql: the tables and functions of one qtasks schema (migration 1).
--
-- `{schema}` is replaced by the schema's name (checked to be a plain identifier) when the
-- migration runs. Every row belongs to one app (`app`), so several apps can share a schema.
--
-- A task is queued while its status is `new` or `retry`: ready when `run_at` has passed,
-- scheduled (delayed, retry backoff) before. Lower `priority` runs first, then earlier
-- `run_at`, then enqueue order (`seq`). A claimed task has status `process`, a lease deadline
-- (`lease_until`) and a fencing token (`token`); a claim is current while `lease_until` is set
-- and the token matches. `started`: the worker began running it, so losing the lease counts a
-- delivery (`deliveries`); `suspect`: its worker vanished while running it, so it runs alone.
-- Finished records expire at `expires_at` (the result TTL); dead-lettered ones (`dead_at`,
-- `dead_reason`) stay until the dead-letter cap drops them.

CREATE TABLE {schema}.tasks (
    app           text        NOT NULL,
    uuid          uuid        NOT NULL,
    -- NULL or empty name, NULL args: a malformed row (written by hand or by another tool),
    -- dead-lettered by the claim as `malformed_record`.
    name          text,
    priority      integer     NOT NULL DEFAULT 0,
    args          bytea,
    status        text        NOT NULL DEFAULT 'new',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    run_at        timestamptz NOT NULL DEFAULT now(),
    seq           bigserial   NOT NULL,
    attempts      integer     NOT NULL DEFAULT 0,
    deliveries    integer     NOT NULL DEFAULT 0,
    token         bigint,
    lease_until   timestamptz,
    started       boolean     NOT NULL DEFAULT false,
    suspect       boolean     NOT NULL DEFAULT false,
    result        bytea,
    traceback     text,
    cancel_reason text,
    dead_reason   text,
    dead_at       timestamptz,
    expires_at    timestamptz,
    PRIMARY KEY (app, uuid)
-- Room on each page, so that updates that change no indexed column (a task's start) are HOT
-- (no index entry written).
) WITH (fillfactor = 60);

-- The ready queue, in claim order.
CREATE INDEX tasks_ready ON {schema}.tasks (app, priority, run_at, seq)
    WHERE status IN ('new', 'retry') AND NOT suspect;
-- When the next queued task is due (idle workers sleep until then).
CREATE INDEX tasks_due ON {schema}.tasks (app, run_at) WHERE status IN ('new', 'retry');
-- Suspects, oldest first.
CREATE INDEX tasks_suspects ON {schema}.tasks (app, updated_at)
    WHERE status IN ('new', 'retry') AND suspect;
-- Leases, by deadline (the reaper of expired leases, the next deadline).
CREATE INDEX tasks_leases ON {schema}.tasks (app, lease_until) WHERE lease_until IS NOT NULL;
-- Finished records, by expiry (the reaper of expired records).
CREATE INDEX tasks_expiry ON {schema}.tasks (expires_at) WHERE expires_at IS NOT NULL;
-- The dead-letter, newest last.
CREATE INDEX tasks_dead ON {schema}.tasks (app, dead_at) WHERE dead_at IS NOT NULL;
-- Malformed queued rows (tiny: normally empty).
CREATE INDEX tasks_malformed ON {schema}.tasks (app)
    WHERE status IN ('new', 'retry') AND (name IS NULL OR name = '' OR args IS NULL);

-- Fencing tokens: one per claim, increasing.
CREATE SEQUENCE {schema}.tokens;

-- The global config's key-value store.
CREATE TABLE {schema}.kv (
    app   text NOT NULL,
    key   text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (app, key)
);

-- `try_claim`: one timer fire per tick across every process.
CREATE TABLE {schema}.claims (
    app        text        NOT NULL,
    key        text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (app, key)
);

-- Worker heartbeats.
CREATE TABLE {schema}.workers (
    app        text        NOT NULL,
    worker     text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (app, worker)
);

-- Which busy worker finishes its tasks to take a suspect that waited a whole lease.
CREATE TABLE {schema}.drain (
    app        text        PRIMARY KEY,
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Paused claims: a task name, or '' for the whole app (enqueues go on).
CREATE TABLE {schema}.pauses (
    app    text NOT NULL,
    target text NOT NULL,
    PRIMARY KEY (app, target)
);

-- The LISTEN/NOTIFY channel of kind `w` (wake idle workers), `d` (finished uuids, for
-- `wait`) or `c` (cancel requests) of an app: short, and safe as an identifier.
CREATE FUNCTION {schema}.channel(p_kind text, p_app text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'qtasks_' || p_kind || '_' || substr(md5('{schema}' || chr(1) || p_app), 1, 24)
$$;

-- Publishes finished uuids on the `d` channel, 200 per notification (payloads are capped at
-- 8000 bytes). Delivered when the transaction commits.
CREATE FUNCTION {schema}.notify_done(p_app text, p_ids uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify({schema}.channel('d', p_app), string_agg(x.u::text, ','))
    FROM (SELECT u, (row_number() OVER () - 1) / 200 AS g FROM unnest(p_ids) AS u) AS x
    GROUP BY x.g;
END $$;

-- Keeps the newest `p_cap` dead-lettered records of an app, deleting older ones.
CREATE FUNCTION {schema}.trim_dead(p_app text, p_cap integer) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM {schema}.tasks t
    WHERE t.app = p_app AND t.uuid IN (
        SELECT d.uuid FROM {schema}.tasks d
        WHERE d.app = p_app AND d.dead_at IS NOT NULL
        ORDER BY d.dead_at DESC OFFSET p_cap)
$$;

-- A claim is current while its row has status `process` (which is when `lease_until` is set)
-- and its token. The functions that take a batch of leases join `unnest` of the batch with the
-- rows by primary key, and test the status, not `lease_until` (the partial index of leases
-- would tempt the planner to scan every lease of the app). Those plans need the table's
-- statistics: the reaper analyzes a fresh or fast-growing table (src/reaper.rs).

-- Writes new tasks (status `new`), each with its queue position, in one statement. A uuid
-- that exists is left alone (a producer may retry an enqueue whose reply it lost), unless its
-- record has expired; a uuid twice in one batch is written once. Wakes idle workers when the
-- transaction commits. Returns how many tasks were written.
CREATE FUNCTION {schema}.enqueue(
    p_app text, p_uuids uuid[], p_names text[], p_prios integer[], p_args bytea[],
    p_created timestamptz[], p_delay_ms bigint[]
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    INSERT INTO {schema}.tasks AS t
        (app, uuid, name, priority, args, status, created_at, updated_at, run_at)
    SELECT p_app, d.u, d.n, d.p, d.a, 'new', d.c, now(),
           now() + greatest(d.d, 0) * interval '1 millisecond'
    FROM (
        SELECT DISTINCT ON (i.u) i.u, i.n, i.p, i.a, i.c, i.d, i.k
        FROM unnest(p_uuids, p_names, p_prios, p_args, p_created, p_delay_ms)
             WITH ORDINALITY AS i(u, n, p, a, c, d, k)
        ORDER BY i.u, i.k
    ) AS d
    ORDER BY d.k
    ON CONFLICT (app, uuid) DO UPDATE SET
        name = EXCLUDED.name, priority = EXCLUDED.priority, args = EXCLUDED.args,
        status = 'new', created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
        run_at = EXCLUDED.run_at, attempts = 0, deliveries = 0, token = NULL,
        lease_until = NULL, started = false, suspect = false, result = NULL,
        traceback = NULL, cancel_reason = NULL, dead_reason = NULL, dead_at = NULL,
        expires_at = NULL
    WHERE t.expires_at IS NOT NULL AND t.expires_at <= now();
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        PERFORM pg_notify({schema}.channel('w', p_app), '');
    END IF;
    RETURN v_n;
END $$;

-- Returns expired leases (at most 1000): a task that had not started (prefetched by a worker
-- that vanished) goes back to its place without a delivery counted; one that had started
-- counts a delivery and becomes a suspect, or goes to the dead-letter (`crashed_worker`) after
-- `p_max_deliveries`. Returns the dead-lettered tasks, for the caller to log.
CREATE FUNCTION {schema}.reap(p_app text, p_max_deliveries integer, p_dead_max integer)
RETURNS TABLE (uuid uuid, name text, info text)
LANGUAGE plpgsql AS $$
DECLARE
    v_dead uuid[];
    v_back integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {schema}.tasks t
                   WHERE t.app = p_app AND t.lease_until < now()) THEN
        RETURN;
    END IF;
    WITH expired AS (
        SELECT t.uuid,
               t.status = 'process' AS held,
               t.status = 'process' AND t.started AS crashed,
               t.status = 'process' AND t.started AND t.deliveries >= p_max_deliveries AS dead
        FROM {schema}.tasks t
        WHERE t.app = p_app AND t.lease_until < now()
        ORDER BY t.lease_until
        LIMIT 1000
        FOR UPDATE SKIP LOCKED
    ), upd AS (
        UPDATE {schema}.tasks t SET
            lease_until = NULL,
            started = false,
            deliveries = t.deliveries + e.crashed::integer,
            suspect = t.suspect OR e.crashed,
            status = CASE WHEN e.dead THEN 'error' WHEN e.held THEN 'new' ELSE t.status END,
            updated_at = CASE WHEN e.held THEN now() ELSE t.updated_at END,
            dead_reason = CASE WHEN e.dead THEN 'crashed_worker' ELSE t.dead_reason END,
            dead_at = CASE WHEN e.dead THEN clock_timestamp() ELSE t.dead_at END,
            traceback = CASE WHEN e.dead THEN
                'crashed_worker: task ' || coalesce(t.name, '?') || ' (' || t.uuid || ') started '
                || (t.deliveries + 1) || ' times and each time its worker vanished before '
                || 'finishing it (crashed, killed, or frozen past its lease): too many '
                || 'deliveries (max_deliveries ' || p_max_deliveries || '). Check what makes '
                || 'its workers die; the task is kept in the dead-letter and not run'
                ELSE t.traceback END
        FROM expired e
        WHERE t.app = p_app AND t.uuid = e.uuid
        RETURNING t.uuid, t.name, t.traceback, e.dead, e.held
    )
    SELECT array_agg(u.uuid) FILTER (WHERE u.dead),
           count(*) FILTER (WHERE u.held AND NOT u.dead)
    INTO v_dead, v_back
    FROM upd u;
    IF v_back > 0 THEN
        PERFORM pg_notify({schema}.channel('w', p_app), '');
    END IF;
    IF v_dead IS NOT NULL THEN
        PERFORM {schema}.trim_dead(p_app, p_dead_max);
        PERFORM {schema}.notify_done(p_app, v_dead);
        RETURN QUERY SELECT t.uuid, t.name, t.traceback FROM {schema}.tasks t
            WHERE t.app = p_app AND t.uuid = ANY (v_dead);
    END IF;
END $$;

-- Reaps expired leases, dead-letters malformed ready rows, then claims up to `p_max` ready
-- tasks (lowest priority first, FIFO within one) with a lease and a fencing token each,
-- skipping rows other claimers hold (FOR UPDATE SKIP LOCKED). A suspect is claimed alone, by
-- a caller that holds no other task (`p_idle`); when one has waited a whole lease, one busy
-- caller at a time is told to drain (finish what it holds, then claim again as idle). Paused
-- task names are skipped; a paused app claims nothing.
-- Rows: `task` (a claimed task), `suspect` (the one claimed task is a suspect), `dead` (an
-- entry taken out: uuid, name, what is wrong in `info`), and when nothing was claimed one
-- `wait` row: `token` is how many ms until the next scheduled task, lease deadline or overdue
-- suspect (-1: none), `info` is `drain` when the caller should drain.
CREATE FUNCTION {schema}.claim(
    p_app text, p_max integer, p_lease_ms bigint, p_max_deliveries integer,
    p_dead_max integer, p_idle boolean, p_caller text
) RETURNS TABLE (kind text, uuid uuid, name text, priority integer, args bytea,
                 attempt integer, token bigint, info text)
LANGUAGE plpgsql
-- The ready queue is read in the order of `tasks_ready`, never sorted: without statistics (a
-- fresh table) the planner would sort the whole queue to take a batch. No JIT: the penalty of a
-- disabled sort must not make the planner compile a statement that takes microseconds.
SET enable_sort = off
SET jit = off
AS $$
DECLARE
    v_lease interval := p_lease_ms * interval '1 millisecond';
    v_until timestamptz := now() + p_lease_ms * interval '1 millisecond';
    v_bad uuid[];
    v_n integer := 0;
    v_mode text := '';
    v_oldest timestamptz;
    v_next timestamptz;
    v_wait bigint := -1;
    v_ms bigint;
    v_paused text[];
BEGIN
    -- A claim lost in a server crash leaves its tasks queued (they run, maybe again): at least
    -- once holds without waiting for the WAL flush.
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY SELECT 'dead'::text, r.uuid, r.name, 0, NULL::bytea, 0, 0::bigint, r.info
        FROM {schema}.reap(p_app, p_max_deliveries, p_dead_max) r;

    -- Malformed ready rows: dead-lettered one by one, never delivered.
    IF EXISTS (SELECT 1 FROM {schema}.tasks t WHERE t.app = p_app
               AND t.status IN ('new', 'retry')
               AND (t.name IS NULL OR t.name = '' OR t.args IS NULL)) THEN
        WITH bad AS (
            SELECT t.uuid FROM {schema}.tasks t WHERE t.app = p_app
                AND t.status IN ('new', 'retry') AND t.run_at <= now()
                AND (t.name IS NULL OR t.name = '' OR t.args IS NULL)
            LIMIT 100 FOR UPDATE SKIP LOCKED
        ), upd AS (
            UPDATE {schema}.tasks t SET
                status = 'error', dead_reason = 'malformed_record', dead_at = clock_timestamp(),
                updated_at = now(), lease_until = NULL,
                traceback = 'malformed_record: the record has no ' || concat_ws(', ',
                    CASE WHEN t.name IS NULL OR t.name = '' THEN 'task name (name)' END,
                    CASE WHEN t.args IS NULL THEN 'arguments (args)' END)
                    || '; the task is kept in the dead-letter and not run'
            FROM bad b WHERE t.app = p_app AND t.uuid = b.uuid
            RETURNING t.uuid
        )
        SELECT array_agg(u.uuid) INTO v_bad FROM upd u;
        IF v_bad IS NOT NULL THEN
            PERFORM {schema}.trim_dead(p_app, p_dead_max);
            PERFORM {schema}.notify_done(p_app, v_bad);
            RETURN QUERY SELECT 'dead'::text, t.uuid, t.name, 0, NULL::bytea, 0, 0::bigint,
                    t.traceback
                FROM {schema}.tasks t WHERE t.app = p_app AND t.uuid = ANY (v_bad);
        END IF;
    END IF;

    -- Paused claims: the whole app (nothing is claimed), or task names (skipped).
    v_paused := ARRAY(SELECT p.target FROM {schema}.pauses p WHERE p.app = p_app);
    IF '' = ANY (v_paused) THEN
        RETURN QUERY SELECT 'wait'::text, NULL::uuid, NULL::text, 0, NULL::bytea, 0,
            -1::bigint, ''::text;
        RETURN;
    END IF;

    -- Suspects run alone.
    SELECT min(t.updated_at) INTO v_oldest FROM {schema}.tasks t
        WHERE t.app = p_app AND t.status IN ('new', 'retry') AND t.suspect
          AND t.run_at <= now();
    IF v_oldest IS NOT NULL THEN
        IF p_idle THEN
            RETURN QUERY
            WITH s AS (
                SELECT t.uuid FROM {schema}.tasks t
                WHERE t.app = p_app AND t.status IN ('new', 'retry') AND t.suspect
                  AND t.run_at <= now() AND t.name <> '' AND t.args IS NOT NULL
                  AND t.name <> ALL (v_paused)
                ORDER BY t.updated_at LIMIT 1 FOR UPDATE SKIP LOCKED
            )
            UPDATE {schema}.tasks t SET
                status = 'process', attempts = t.attempts + 1,
                token = nextval('{schema}.tokens'), lease_until = v_until, started = false,
                updated_at = now()
            FROM s WHERE t.app = p_app AND t.uuid = s.uuid
            RETURNING 'suspect'::text, t.uuid, t.name, t.priority, t.args, t.attempts, t.token,
                NULL::text;
            GET DIAGNOSTICS v_n = ROW_COUNT;
            IF v_n > 0 THEN
                v_mode := 'suspect';
            END IF;
            DELETE FROM {schema}.drain d WHERE d.app = p_app AND d.holder = p_caller;
        ELSIF now() - v_oldest >= v_lease THEN
            -- Overdue: one busy caller at a time drains, to claim it once idle.
            INSERT INTO {schema}.drain AS d (app, holder, expires_at)
                VALUES (p_app, p_caller, v_until)
                ON CONFLICT (app) DO UPDATE SET holder = EXCLUDED.holder,
                    expires_at = EXCLUDED.expires_at
                WHERE d.expires_at <= now();
            IF EXISTS (SELECT 1 FROM {schema}.drain d
                       WHERE d.app = p_app AND d.holder = p_caller) THEN
                v_mode := 'drain';
            END IF;
        ELSE
            v_wait := greatest(1, ceil(extract(epoch FROM v_oldest + v_lease - now()) * 1000))::bigint;
        END IF;
    END IF;

    IF v_mode = '' THEN
        RETURN QUERY
        WITH picked AS (
            SELECT t.uuid FROM {schema}.tasks t
            WHERE t.app = p_app AND t.status IN ('new', 'retry') AND NOT t.suspect
              AND t.run_at <= now() AND t.name <> '' AND t.args IS NOT NULL
              AND t.name <> ALL (v_paused)
            ORDER BY t.priority, t.run_at, t.seq
            LIMIT p_max
            FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE {schema}.tasks t SET
                status = 'process', attempts = t.attempts + 1,
                token = nextval('{schema}.tokens'), lease_until = v_until, started = false,
                updated_at = now()
            FROM picked p WHERE t.app = p_app AND t.uuid = p.uuid
            RETURNING t.uuid, t.name, t.priority, t.args, t.attempts, t.token, t.run_at, t.seq
        )
        SELECT 'task'::text, c.uuid, c.name, c.priority, c.args, c.attempts, c.token,
               NULL::text
        FROM claimed c ORDER BY c.priority, c.run_at, c.seq;
        GET DIAGNOSTICS v_n = ROW_COUNT;
    END IF;

    IF v_n = 0 THEN
        SELECT min(t.run_at) INTO v_next FROM {schema}.tasks t
            WHERE t.app = p_app AND t.status IN ('new', 'retry') AND t.run_at > now();
        IF v_next IS NOT NULL THEN
            v_ms := greatest(1, ceil(extract(epoch FROM v_next - now()) * 1000))::bigint;
            v_wait := CASE WHEN v_wait < 0 THEN v_ms ELSE least(v_wait, v_ms) END;
        END IF;
        SELECT min(t.lease_until) INTO v_next FROM {schema}.tasks t
            WHERE t.app = p_app AND t.lease_until IS NOT NULL;
        IF v_next IS NOT NULL THEN
            v_ms := greatest(1, ceil(extract(epoch FROM v_next - now()) * 1000))::bigint;
            v_wait := CASE WHEN v_wait < 0 THEN v_ms ELSE least(v_wait, v_ms) END;
        END IF;
        RETURN QUERY SELECT 'wait'::text, NULL::uuid, NULL::text, 0, NULL::bytea, 0, v_wait,
            v_mode;
    ELSIF v_mode = '' THEN
        -- Work may be left: pass the wake-up on to another idle worker.
        IF v_n >= p_max THEN
            PERFORM pg_notify({schema}.channel('w', p_app), '');
        END IF;
    END IF;
END $$;

-- Acknowledges finished executions: stores each outcome (kind `s` success with `p_results`,
-- `e` error, `c` cancel, `r` retry after `p_delays` ms, `d` dead-letter with `p_reasons`;
-- traceback or reason in `p_texts`), frees the lease, and notifies the tasks that became final.
-- Only a current claim (lease held, token matching) is acknowledged, once per batch. Returns
-- the 1-based positions of the rejected completions.
CREATE FUNCTION {schema}.complete(
    p_app text, p_ttl_ms bigint, p_dead_max integer, p_uuids uuid[], p_tokens bigint[],
    p_kinds text[], p_results bytea[], p_texts text[], p_reasons text[], p_delays bigint[]
) RETURNS integer[]
LANGUAGE plpgsql AS $$
DECLARE
    v_first integer[];
    v_ok integer[];
    v_done uuid[];
    v_retry boolean;
    v_dead boolean;
BEGIN
    -- An acknowledgement lost in a server crash leaves its task claimed: its lease expires
    -- and it runs again (at least once). So it does not wait for the WAL flush either; the
    -- enqueue, which must never be lost once acknowledged, does.
    PERFORM set_config('synchronous_commit', 'off', true);
    -- Only the first of the same lease twice in the batch counts.
    v_first := ARRAY(SELECT DISTINCT ON (x.u, x.tok) x.k::integer
                     FROM unnest(p_uuids, p_tokens) WITH ORDINALITY AS x(u, tok, k)
                     ORDER BY x.u, x.tok, x.k);
    WITH upd AS (
        UPDATE {schema}.tasks t SET
            status = CASE f.kind WHEN 's' THEN 'success' WHEN 'c' THEN 'cancel'
                                 WHEN 'r' THEN 'retry' ELSE 'error' END,
            result = CASE WHEN f.kind = 's' THEN f.res ELSE t.result END,
            traceback = CASE WHEN f.kind IN ('e', 'r', 'd') THEN f.txt ELSE t.traceback END,
            cancel_reason = CASE WHEN f.kind = 'c' THEN f.txt ELSE t.cancel_reason END,
            dead_reason = CASE WHEN f.kind = 'd' THEN f.reason ELSE t.dead_reason END,
            dead_at = CASE WHEN f.kind = 'd' THEN clock_timestamp() ELSE t.dead_at END,
            run_at = CASE WHEN f.kind = 'r'
                THEN now() + greatest(f.delay, 0) * interval '1 millisecond' ELSE t.run_at END,
            suspect = CASE WHEN f.kind = 'r' THEN false ELSE t.suspect END,
            expires_at = CASE WHEN f.kind IN ('s', 'e', 'c')
                THEN now() + p_ttl_ms * interval '1 millisecond' ELSE NULL END,
            lease_until = NULL,
            started = false,
            updated_at = now()
        FROM unnest(p_uuids, p_tokens, p_kinds, p_results, p_texts, p_reasons, p_delays)
            WITH ORDINALITY AS f(u, tok, kind, res, txt, reason, delay, pos)
        WHERE t.app = p_app AND t.uuid = f.u AND t.token = f.tok AND t.status = 'process'
          AND f.pos = ANY (v_first)
        RETURNING f.pos, t.uuid, f.kind
    )
    SELECT array_agg(u.pos::integer), array_agg(u.uuid) FILTER (WHERE u.kind <> 'r'),
           bool_or(u.kind = 'r'), bool_or(u.kind = 'd')
    INTO v_ok, v_done, v_retry, v_dead
    FROM upd u;
    IF v_dead THEN
        PERFORM {schema}.trim_dead(p_app, p_dead_max);
    END IF;
    IF v_done IS NOT NULL THEN
        PERFORM {schema}.notify_done(p_app, v_done);
    END IF;
    IF v_retry THEN
        PERFORM pg_notify({schema}.channel('w', p_app), '');
    END IF;
    RETURN ARRAY(SELECT k FROM generate_subscripts(p_uuids, 1) AS k
                 WHERE k <> ALL (coalesce(v_ok, '{}'::integer[])));
END $$;

-- Returns claimed tasks to their place in the queue without counting the attempt (graceful
-- shutdown). Claims that are no longer current are left alone. Returns how many went back.
CREATE FUNCTION {schema}.requeue(p_app text, p_uuids uuid[], p_tokens bigint[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    WITH upd AS (
        UPDATE {schema}.tasks t SET
            status = 'new', attempts = greatest(t.attempts - 1, 0), lease_until = NULL,
            started = false, updated_at = now()
        FROM unnest(p_uuids, p_tokens) AS i(u, tok)
        WHERE t.app = p_app AND t.uuid = i.u AND t.token = i.tok AND t.status = 'process'
        RETURNING 1
    )
    SELECT count(*) INTO v_n FROM upd;
    IF v_n > 0 THEN
        PERFORM pg_notify({schema}.channel('w', p_app), '');
    END IF;
    RETURN v_n;
END $$;

-- Marks claimed tasks as started (`p_renew` false) or renews their leases (`p_renew` true),
-- after reaping expired leases (a lease past its deadline is no longer current, and its task
-- must not start). Rows: `lost` with the 1-based position of each given lease that is not
-- current, and `dead` for each task the reaper dead-lettered.
CREATE FUNCTION {schema}.touch(
    p_app text, p_renew boolean, p_lease_ms bigint, p_max_deliveries integer,
    p_dead_max integer, p_uuids uuid[], p_tokens bigint[]
) RETURNS TABLE (kind text, pos integer, uuid uuid, name text, info text)
LANGUAGE plpgsql AS $$
BEGIN
    -- A start or renewal lost in a server crash only makes a lease shorter or a delivery
    -- uncounted: no need to wait for the WAL flush.
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY SELECT 'dead'::text, 0, r.uuid, r.name, r.info
        FROM {schema}.reap(p_app, p_max_deliveries, p_dead_max) r;
    RETURN QUERY
    WITH upd AS (
        UPDATE {schema}.tasks t SET
            started = CASE WHEN p_renew THEN t.started ELSE true END,
            lease_until = CASE WHEN p_renew
                THEN now() + p_lease_ms * interval '1 millisecond' ELSE t.lease_until END
        FROM unnest(p_uuids, p_tokens) AS i(u, tok)
        WHERE t.app = p_app AND t.uuid = i.u AND t.token = i.tok AND t.status = 'process'
        RETURNING t.uuid, t.token
    )
    SELECT 'lost'::text, x.k::integer, x.u, NULL::text, NULL::text
    FROM unnest(p_uuids, p_tokens) WITH ORDINALITY AS x(u, tok, k)
    WHERE NOT EXISTS (SELECT 1 FROM upd u WHERE u.uuid = x.u AND u.token = x.tok);
END $$;

-- Cancels a queued or scheduled task; for a running one, publishes a cancel request
-- (`uuid\nreason` on the `c` channel) to the workers. Returns `cancelled`, `running`,
-- `finished` or `not_found`.
CREATE FUNCTION {schema}.cancel(p_app text, p_uuid uuid, p_reason text, p_ttl_ms bigint)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
BEGIN
    SELECT t.status INTO v_status FROM {schema}.tasks t
        WHERE t.app = p_app AND t.uuid = p_uuid
          AND (t.expires_at IS NULL OR t.expires_at > now())
        FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'not_found';
    END IF;
    IF v_status IN ('new', 'retry') THEN
        UPDATE {schema}.tasks t SET status = 'cancel', cancel_reason = p_reason,
            updated_at = now(), expires_at = now() + p_ttl_ms * interval '1 millisecond'
        WHERE t.app = p_app AND t.uuid = p_uuid;
        PERFORM {schema}.notify_done(p_app, ARRAY[p_uuid]);
        RETURN 'cancelled';
    ELSIF v_status = 'process' THEN
        PERFORM pg_notify({schema}.channel('c', p_app), p_uuid::text || chr(10) || left(p_reason, 1000));
        RETURN 'running';
    END IF;
    RETURN 'finished';
END $$;
