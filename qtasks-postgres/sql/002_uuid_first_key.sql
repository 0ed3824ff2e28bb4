-- 002_uuid_first_key.sql: plans that do not depend on the table's statistics (migration 2).
--
-- Migration 1 keyed the tasks by (app, uuid). Every batch statement (claim, start, renew,
-- acknowledge, requeue, reap) finds its rows by `app = $1 AND uuid = <each uuid of the batch>`,
-- and with that key the planner had a second way in: the key's prefix, `app = $1` alone. The
-- estimate for `app = $1` comes from the statistics of the last ANALYZE, and a new app (or a
-- table analyzed while it was small, or never again because autovacuum is off or behind) is
-- estimated at one row. The planner then scanned every row of the app through the key's
-- prefix and filtered by uuid, once per batch: 13,000 rows read to update 280, 3.6 million
-- join-filter comparisons per claim, and end to end fell from 10 k to 200 tasks/s as the table
-- grew (docs/benchmarks.md). With the uuid first, no index of the table leads with `app` alone
-- (the other indexes are partial, and only the statements that mean them imply their
-- predicates): a batch can only be found by its uuids, whatever the statistics say.
ALTER TABLE {schema}.tasks DROP CONSTRAINT tasks_pkey;
ALTER TABLE {schema}.tasks ADD CONSTRAINT tasks_pkey PRIMARY KEY (uuid, app);

-- When the next delayed task is due (idle workers sleep until then): only the rows that were
-- scheduled for later when last written (a delay or a retry backoff: `run_at` after
-- `updated_at`; every write of a queued row sets `updated_at` to its transaction's time), no
-- longer every queued row, so that an immediate enqueue writes one index entry fewer. A row
-- due after now() was always written with a later `run_at`, so the sleep time is the same.
DROP INDEX {schema}.tasks_due;
CREATE INDEX tasks_due ON {schema}.tasks (app, run_at)
    WHERE status IN ('new', 'retry') AND run_at > updated_at;

-- The table is update-heavy (a task is inserted, updated three times, deleted after the result
-- TTL): vacuum and analyze it after a small fraction of changes, without cost delays, instead of
-- the server's defaults (a fifth of the table). Where autovacuum is off on the server, the
-- reaper vacuums the table itself (src/reaper.rs).
ALTER TABLE {schema}.tasks SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 2000,
    autovacuum_analyze_scale_factor = 0.05,
    autovacuum_analyze_threshold = 2000,
    autovacuum_vacuum_cost_delay = 0
);

-- The batch functions of migration 1, replaced: each finds its rows by `uuid = ANY (..)` on the
-- uuid-first key and joins the batch's arrays by hash, with nested loops, merge joins and
-- sequential scans turned off for their statements. Migration 1's versions joined `unnest` of
-- the batch with the table, and on a misestimate the planner made the table the outer side and
-- ran the `unnest` once per row: 1024 x 1024 rows per acknowledgement on a fresh table, the
-- reason small runs were slow too. Each function's comment in 001_init.sql still holds.

CREATE OR REPLACE FUNCTION {schema}.trim_dead(p_app text, p_cap integer) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM {schema}.tasks t
    WHERE t.uuid = ANY (ARRAY(
        SELECT d.uuid FROM {schema}.tasks d
        WHERE d.app = p_app AND d.dead_at IS NOT NULL
        ORDER BY d.dead_at DESC OFFSET p_cap)) AND t.app = p_app
$$;

CREATE OR REPLACE FUNCTION {schema}.reap(p_app text, p_max_deliveries integer, p_dead_max integer)
RETURNS TABLE (uuid uuid, name text, info text)
LANGUAGE plpgsql
-- Plans fixed whatever the statistics say (see the top of this file): rows are found by
-- `uuid = ANY (..)` on the key, joins are hash joins, never a nested loop over a misestimate.
SET enable_nestloop = off
SET enable_mergejoin = off
SET enable_seqscan = off
SET jit = off
AS $$
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
        WHERE t.uuid = ANY (ARRAY(SELECT x.uuid FROM expired x)) AND t.app = p_app
          AND t.uuid = e.uuid
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

CREATE OR REPLACE FUNCTION {schema}.claim(
    p_app text, p_max integer, p_lease_ms bigint, p_max_deliveries integer,
    p_dead_max integer, p_idle boolean, p_caller text
) RETURNS TABLE (kind text, uuid uuid, name text, priority integer, args bytea,
                 attempt integer, token bigint, info text)
LANGUAGE plpgsql
-- The ready queue is read in the order of `tasks_ready`, never sorted: without statistics (a
-- fresh table) the planner would sort the whole queue to take a batch. No JIT: the penalty of a
-- disabled sort must not make the planner compile a statement that takes microseconds. The
-- claimed rows are updated where the ready queue's scan locked them (`ctid = ANY`, a TID scan:
-- no second lookup through the key; a locked row cannot move), not joined.
SET enable_sort = off
SET enable_nestloop = off
SET enable_mergejoin = off
SET enable_seqscan = off
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
            WHERE t.uuid = ANY (ARRAY(SELECT b.uuid FROM bad b)) AND t.app = p_app
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
            WHERE t.uuid = ANY (ARRAY(SELECT s.uuid FROM s)) AND t.app = p_app
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
            SELECT t.ctid FROM {schema}.tasks t
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
            WHERE t.ctid = ANY (ARRAY(SELECT p.ctid FROM picked p))
            RETURNING t.uuid, t.name, t.priority, t.args, t.attempts, t.token, t.run_at, t.seq
        )
        SELECT 'task'::text, c.uuid, c.name, c.priority, c.args, c.attempts, c.token,
               NULL::text
        FROM claimed c ORDER BY c.priority, c.run_at, c.seq;
        GET DIAGNOSTICS v_n = ROW_COUNT;
    END IF;

    IF v_n = 0 THEN
        SELECT min(t.run_at) INTO v_next FROM {schema}.tasks t
            WHERE t.app = p_app AND t.status IN ('new', 'retry') AND t.run_at > t.updated_at
              AND t.run_at > now();
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

CREATE OR REPLACE FUNCTION {schema}.complete(
    p_app text, p_ttl_ms bigint, p_dead_max integer, p_uuids uuid[], p_tokens bigint[],
    p_kinds text[], p_results bytea[], p_texts text[], p_reasons text[], p_delays bigint[]
) RETURNS integer[]
LANGUAGE plpgsql
-- Plans fixed whatever the statistics say (see the top of this file): rows are found by
-- `uuid = ANY (..)` on the key, joins are hash joins, never a nested loop over a misestimate.
SET enable_nestloop = off
SET enable_mergejoin = off
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    v_ok integer[];
    v_done uuid[];
    v_retry boolean;
    v_dead boolean;
BEGIN
    -- An acknowledgement lost in a server crash leaves its task claimed: its lease expires
    -- and it runs again (at least once). So it does not wait for the WAL flush either; the
    -- enqueue, which must never be lost once acknowledged, does.
    PERFORM set_config('synchronous_commit', 'off', true);
    WITH f AS (
        -- Only the first of the same lease twice in the batch counts.
        SELECT DISTINCT ON (x.u, x.tok) x.*
        FROM unnest(p_uuids, p_tokens, p_kinds, p_results, p_texts, p_reasons, p_delays)
            WITH ORDINALITY AS x(u, tok, kind, res, txt, reason, delay, pos)
        ORDER BY x.u, x.tok, x.pos
    ), upd AS (
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
        FROM f
        WHERE t.uuid = ANY (p_uuids) AND t.app = p_app AND t.uuid = f.u AND t.token = f.tok
          AND t.status = 'process'
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
                 EXCEPT SELECT unnest(v_ok) ORDER BY 1);
END $$;

CREATE OR REPLACE FUNCTION {schema}.requeue(p_app text, p_uuids uuid[], p_tokens bigint[])
RETURNS integer
LANGUAGE plpgsql
-- Plans fixed whatever the statistics say (see the top of this file): rows are found by
-- `uuid = ANY (..)` on the key, joins are hash joins, never a nested loop over a misestimate.
SET enable_nestloop = off
SET enable_mergejoin = off
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    v_n integer;
BEGIN
    WITH upd AS (
        UPDATE {schema}.tasks t SET
            status = 'new', attempts = greatest(t.attempts - 1, 0), lease_until = NULL,
            started = false, updated_at = now()
        FROM unnest(p_uuids, p_tokens) AS i(u, tok)
        WHERE t.uuid = ANY (p_uuids) AND t.app = p_app AND t.uuid = i.u AND t.token = i.tok
          AND t.status = 'process'
        RETURNING 1
    )
    SELECT count(*) INTO v_n FROM upd;
    IF v_n > 0 THEN
        PERFORM pg_notify({schema}.channel('w', p_app), '');
    END IF;
    RETURN v_n;
END $$;

CREATE OR REPLACE FUNCTION {schema}.touch(
    p_app text, p_renew boolean, p_lease_ms bigint, p_max_deliveries integer,
    p_dead_max integer, p_uuids uuid[], p_tokens bigint[]
) RETURNS TABLE (kind text, pos integer, uuid uuid, name text, info text)
LANGUAGE plpgsql
-- Plans fixed whatever the statistics say (see the top of this file): rows are found by
-- `uuid = ANY (..)` on the key, joins are hash joins, never a nested loop over a misestimate.
SET enable_nestloop = off
SET enable_mergejoin = off
SET enable_seqscan = off
SET jit = off
AS $$
BEGIN
    -- A start or renewal lost in a server crash only makes a lease shorter or a delivery
    -- uncounted: no need to wait for the WAL flush.
    PERFORM set_config('synchronous_commit', 'off', true);
    -- A start only needs its lease to be current (not past its deadline): the claim that
    -- follows reaps expired leases, so a start costs no reap on the path from claim to run.
    IF p_renew THEN
        RETURN QUERY SELECT 'dead'::text, 0, r.uuid, r.name, r.info
            FROM {schema}.reap(p_app, p_max_deliveries, p_dead_max) r;
    END IF;
    RETURN QUERY
    WITH upd AS (
        UPDATE {schema}.tasks t SET
            started = CASE WHEN p_renew THEN t.started ELSE true END,
            lease_until = CASE WHEN p_renew
                THEN now() + p_lease_ms * interval '1 millisecond' ELSE t.lease_until END
        FROM unnest(p_uuids, p_tokens) AS i(u, tok)
        WHERE t.uuid = ANY (p_uuids) AND t.app = p_app AND t.uuid = i.u AND t.token = i.tok
          AND t.status = 'process' AND (p_renew OR t.lease_until > now())
        RETURNING t.uuid, t.token
    )
    SELECT 'lost'::text, x.k::integer, x.u, NULL::text, NULL::text
    FROM unnest(p_uuids, p_tokens) WITH ORDINALITY AS x(u, tok, k)
    WHERE NOT EXISTS (SELECT 1 FROM upd u WHERE u.uuid = x.u AND u.token = x.tok);
END $$;

-- Enqueue as in migration 1, without sorting the batch (payloads and all) twice when no uuid is
-- in it twice, which is the normal case: only the uuids are checked for duplicates (a hash),
-- and the rows go in the batch's order (their `seq`, the FIFO order, follows it).
CREATE OR REPLACE FUNCTION {schema}.enqueue(
    p_app text, p_uuids uuid[], p_names text[], p_prios integer[], p_args bytea[],
    p_created timestamptz[], p_delay_ms bigint[]
) RETURNS integer
LANGUAGE plpgsql
SET jit = off
AS $$
DECLARE
    v_n integer;
BEGIN
    IF (SELECT count(DISTINCT u) FROM unnest(p_uuids) AS u) = cardinality(p_uuids) THEN
        INSERT INTO {schema}.tasks AS t
            (app, uuid, name, priority, args, status, created_at, updated_at, run_at)
        SELECT p_app, i.u, i.n, i.p, i.a, 'new', i.c, now(),
               now() + greatest(i.d, 0) * interval '1 millisecond'
        FROM unnest(p_uuids, p_names, p_prios, p_args, p_created, p_delay_ms)
             AS i(u, n, p, a, c, d)
        ON CONFLICT (app, uuid) DO UPDATE SET
            name = EXCLUDED.name, priority = EXCLUDED.priority, args = EXCLUDED.args,
            status = 'new', created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
            run_at = EXCLUDED.run_at, attempts = 0, deliveries = 0, token = NULL,
            lease_until = NULL, started = false, suspect = false, result = NULL,
            traceback = NULL, cancel_reason = NULL, dead_reason = NULL, dead_at = NULL,
            expires_at = NULL
        WHERE t.expires_at IS NOT NULL AND t.expires_at <= now();
    ELSE
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
    END IF;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        PERFORM pg_notify({schema}.channel('w', p_app), '');
    END IF;
    RETURN v_n;
END $$;
