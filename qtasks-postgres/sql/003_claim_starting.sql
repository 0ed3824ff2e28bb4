-- Migration 3: a claim that also marks the first tasks it claims started (`claim_starting`),
-- for a worker that has that many lanes free: those tasks run at once, without a `touch`
-- call of their own between the claim and the run (one round trip and one row update fewer
-- per such task). The claim itself is migration 2's `claim`, unchanged.

CREATE OR REPLACE FUNCTION {schema}.claim_starting(
    p_app text, p_max integer, p_lease_ms bigint, p_max_deliveries integer,
    p_dead_max integer, p_idle boolean, p_caller text, p_start integer
) RETURNS TABLE (kind text, uuid uuid, name text, priority integer, args bytea,
                 attempt integer, token bigint, info text)
LANGUAGE plpgsql
SET enable_nestloop = off
SET enable_mergejoin = off
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    v_row record;
    v_first uuid[] := '{}';
BEGIN
    -- The rows come in claim order: reaped tasks (`dead`) first, then the claimed ones.
    FOR v_row IN SELECT * FROM {schema}.claim(p_app, p_max, p_lease_ms, p_max_deliveries,
                                               p_dead_max, p_idle, p_caller) LOOP
        IF v_row.kind IN ('task', 'suspect') AND cardinality(v_first) < p_start THEN
            v_first := v_first || v_row.uuid;
        END IF;
        kind := v_row.kind; uuid := v_row.uuid; name := v_row.name;
        priority := v_row.priority; args := v_row.args; attempt := v_row.attempt;
        token := v_row.token; info := v_row.info;
        RETURN NEXT;
    END LOOP;
    IF cardinality(v_first) > 0 THEN
        -- Claimed in this transaction: current, so marked as `touch` marks a start.
        UPDATE {schema}.tasks t SET started = true
        WHERE t.uuid = ANY (v_first) AND t.app = p_app AND t.status = 'process';
    END IF;
END $$;
