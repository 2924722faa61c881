/* orders--1.2--1.3.sql: orders.notify = relay */

\echo Use "ALTER EXTENSION orders UPDATE TO '1.3'" to load this file. \quit

-- Events written with orders.notify = relay: the relay worker sends their
-- NOTIFY after the writer commits (src/relay.c).  A new column with a
-- constant default: no rewrite of the outbox.
ALTER TABLE @extschema@.order_events ADD COLUMN relay boolean NOT NULL DEFAULT false;

COMMENT ON COLUMN @extschema@.order_events.relay IS
    'true: the relay worker sends this event''s NOTIFY (orders.notify = relay)';

DROP FUNCTION @extschema@.orders_events_batch(pg_snapshot, pg_snapshot, bigint, integer);

-- The events of a batch: visible in batch, not in acked, after position;
-- with relay_only, just those whose NOTIFY the relay worker sends.  Planned
-- at each call with the snapshots' values, so the xid range picks the index
-- (the partial one for relay_only) however large the outbox has grown.
CREATE FUNCTION @extschema@.orders_events_batch(
    acked pg_snapshot, batch pg_snapshot, after_position bigint, max_events integer,
    relay_only boolean DEFAULT false)
RETURNS SETOF @extschema@.order_events
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- the xid range alone picks the rows (an index on position would only
    -- mislead the planner: every position is "> 0"); then the snapshots
    -- decide, and position orders
    RETURN QUERY EXECUTE
        'WITH candidates AS MATERIALIZED (
             SELECT e.* FROM @extschema@.order_events e
             WHERE e.xid >= pg_snapshot_xmin($1) AND e.xid < pg_snapshot_xmax($2)'
        || CASE WHEN relay_only THEN ' AND e.relay' ELSE '' END || ')
         SELECT c.* FROM candidates c
         WHERE pg_visible_in_snapshot(c.xid, $2)
           AND NOT pg_visible_in_snapshot(c.xid, $1)
           AND c.position > $3
         ORDER BY c.position
         LIMIT $4'
        USING acked, batch, after_position, max_events;
END
$$;

REVOKE ALL ON FUNCTION @extschema@.orders_events_batch(pg_snapshot, pg_snapshot, bigint, integer, boolean) FROM PUBLIC;

CREATE INDEX order_events_relay_idx ON @extschema@.order_events (xid) WHERE relay;

-- The relay worker's pass (src/relay.c): the next events it must notify,
-- acknowledged in the same transaction as the NOTIFYs it then sends, so
-- that they are sent at its commit or not at all.  It reads only relay
-- events, through the partial index: the outbox's other traffic costs it
-- nothing.
CREATE FUNCTION @extschema@.orders_events_relay_batch(max_events integer)
RETURNS SETOF @extschema@.order_events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c @extschema@.order_event_consumers;
    e @extschema@.order_events;
    n integer := 0;
    last bigint;
BEGIN
    -- from the start: every relay event since the install is the worker's
    INSERT INTO @extschema@.order_event_consumers (name, acked_snapshot)
    VALUES ('orders_relay', '1:1:') ON CONFLICT (name) DO NOTHING;
    c := @extschema@.orders_events_consumer('orders_relay');
    IF c.batch_snapshot IS NULL THEN
        c.batch_snapshot := pg_current_snapshot();
        c.batch_position := 0;
    END IF;
    FOR e IN SELECT * FROM @extschema@.orders_events_batch(
                 c.acked_snapshot, c.batch_snapshot, c.batch_position, max_events, true)
    LOOP
        RETURN NEXT e;
        n := n + 1;
        last := e.position;
    END LOOP;
    IF n < max_events THEN
        -- all of this batch's relay events are out: it is the new checkpoint
        UPDATE @extschema@.order_event_consumers
        SET acked_snapshot = c.batch_snapshot, batch_snapshot = NULL, batch_position = 0,
            acked_at = now()
        WHERE name = 'orders_relay';
    ELSE
        UPDATE @extschema@.order_event_consumers
        SET batch_snapshot = c.batch_snapshot, batch_position = last, acked_at = now()
        WHERE name = 'orders_relay';
    END IF;
END
$$;

REVOKE ALL ON FUNCTION @extschema@.orders_events_relay_batch(integer) FROM PUBLIC;
