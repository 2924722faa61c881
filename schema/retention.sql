/* schema/retention.sql: removing the events every consumer is done with */

-- An event is kept until every registered consumer has acknowledged it, so
-- a consumer that stops reading holds the outbox back: unregister the ones
-- that are gone.  older_than removes older events whatever the consumers'
-- checkpoints say.  Needs DELETE on order_events and SELECT on
-- order_event_consumers (the table owner has both): the function runs as
-- its caller.
CREATE FUNCTION @extschema@.orders_events_purge(older_than interval DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    below xid8;
    horizon xid8;
    n bigint;
    m bigint;
BEGIN
    -- Checkpoints are one node's snapshots: on a cluster, only age tells.
    IF @extschema@.orders_distributed() THEN
        IF EXISTS (SELECT FROM @extschema@.order_event_consumers) THEN
            RAISE EXCEPTION 'orders_events_purge() cannot judge a Citus cluster''s events by its consumers'
                USING ERRCODE = '0A000',
                      HINT = 'Unregister the consumers; then orders_events_purge(older_than) removes events by age.';
        END IF;
        IF older_than IS NULL THEN
            RETURN 0;
        END IF;
        DELETE FROM @extschema@.order_events e WHERE e.occurred_at < now() - older_than;
        GET DIAGNOSTICS n = ROW_COUNT;
        RETURN n;
    END IF;
    -- Below every checkpoint's xmin, every event is acknowledged by all: one
    -- range of the xid index, no test per row.  Between that and the
    -- smallest xmax, each checkpoint is asked.  Events still in flight are
    -- never seen, so kept.
    SELECT min(pg_snapshot_xmin(acked_snapshot)), min(pg_snapshot_xmax(acked_snapshot))
    INTO below, horizon
    FROM @extschema@.order_event_consumers;

    DELETE FROM @extschema@.order_events e WHERE e.xid < below;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM @extschema@.order_events e
    WHERE e.xid >= below AND e.xid < horizon
      AND NOT EXISTS (SELECT FROM @extschema@.order_event_consumers c
                      WHERE NOT pg_visible_in_snapshot(e.xid, c.acked_snapshot));
    GET DIAGNOSTICS m = ROW_COUNT;
    n := n + m;
    IF older_than IS NOT NULL THEN
        DELETE FROM @extschema@.order_events e WHERE e.occurred_at < now() - older_than;
        GET DIAGNOSTICS m = ROW_COUNT;
        n := n + m;
    END IF;
    RETURN n;
END
$$;

COMMENT ON FUNCTION @extschema@.orders_events_purge(interval) IS
    'Removes the events every registered consumer has acknowledged, and those older than older_than';
