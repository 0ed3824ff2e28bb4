-- Migration 5: the history of a task's attempts (which worker ran each, from when to when, how
-- it ended: the last 20) and the latency per minute the dashboard charts, both written by
-- `complete` from the runs the workers report. Migration 2's `complete` with three more
-- parameters; the old one stays for processes of the version before.

-- `<attempt>:<start ms>:<ms it took>:<status letter>:<worker>` per ended attempt, oldest first
-- (`backend::encode_attempt`).
ALTER TABLE {schema}.tasks ADD COLUMN history text[];

-- Counts per minute (of the attempts' end) and field: `q<bucket>` enqueue to start of first
-- attempts, `e<bucket>` execution (the buckets of `LatencyHistogram`); kept three hours.
CREATE TABLE {schema}.latency (
    app    text   NOT NULL,
    minute bigint NOT NULL,
    field  text   NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (app, minute, field)
);

CREATE OR REPLACE FUNCTION {schema}.complete(
    p_app text, p_ttl_ms bigint, p_dead_max integer, p_uuids uuid[], p_tokens bigint[],
    p_kinds text[], p_results bytea[], p_texts text[], p_reasons text[], p_delays bigint[],
    p_runs text[], p_lat_minutes bigint[], p_lat_fields text[], p_lat_counts bigint[]
) RETURNS integer[]
LANGUAGE plpgsql
-- Plans fixed whatever the statistics say (see migration 2): rows are found by
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
    PERFORM set_config('synchronous_commit', 'off', true);
    WITH f AS (
        -- Only the first of the same lease twice in the batch counts.
        SELECT DISTINCT ON (x.u, x.tok) x.*
        FROM unnest(p_uuids, p_tokens, p_kinds, p_results, p_texts, p_reasons, p_delays, p_runs)
            WITH ORDINALITY AS x(u, tok, kind, res, txt, reason, delay, run, pos)
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
            -- The last 20 attempts.
            history = CASE WHEN coalesce(f.run, '') = '' THEN t.history
                ELSE (coalesce(t.history, '{}') || (t.attempts::text || ':' || f.run))
                     [greatest(1, coalesce(cardinality(t.history), 0) - 18):] END,
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
    IF cardinality(p_lat_minutes) > 0 THEN
        -- The batch's counts come sorted, so concurrent workers lock the rows in one order.
        INSERT INTO {schema}.latency AS l (app, minute, field, n)
        SELECT p_app, x.m, x.f, x.c FROM unnest(p_lat_minutes, p_lat_fields, p_lat_counts)
            AS x(m, f, c)
        ON CONFLICT (app, minute, field) DO UPDATE SET n = l.n + excluded.n;
        DELETE FROM {schema}.latency l WHERE l.app = p_app
            AND l.minute < floor(extract(epoch FROM now()) * 1000)::bigint - 3 * 3600 * 1000;
    END IF;
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
