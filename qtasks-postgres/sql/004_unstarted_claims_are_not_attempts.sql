-- Migration 4: the reaper gives back the attempt of a claim whose task never started (a
-- prefetched task of a worker that vanished), as the Redis backend and `requeue` do: only a
-- start counts as an attempt. Migration 2's `reap` with that one change.

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
            -- A claim that never started its task is not an attempt (as on Redis).
            attempts = CASE WHEN e.held AND NOT e.crashed THEN greatest(t.attempts - 1, 0)
                ELSE t.attempts END,
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
