/* orders--1.3--1.4.sql: hardening.  Consumers belong to roles, no function
   is SECURITY DEFINER, reading events needs what reading orders needs, and
   an order id is never used twice. */

\echo Use "ALTER EXTENSION orders UPDATE TO '1.4'" to load this file. \quit

-- See orders--1.4.sql: the schema must be one only superusers own and create in.
-- The name the SQL functions below use for the schema: the relay worker
-- refuses to call them once the schema has another name (src/catalog.c).
CREATE FUNCTION @extschema@.orders_installed_schema()
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$SELECT '@extschema@'::pg_catalog.text$$;

CREATE FUNCTION @extschema@.orders_assert_trusted_schema()
RETURNS void
AS 'MODULE_PATHNAME', 'orders_assert_trusted_schema'
LANGUAGE C STABLE;
SELECT @extschema@.orders_assert_trusted_schema();

-- Every SQL function that names the schema gets its body again, with the
-- schema's name as it is now: orders_installed_schema() above vouches for
-- all of them (the relay worker refuses a schema renamed since).

CREATE OR REPLACE FUNCTION @extschema@.orders_find(
    customer_id    uuid DEFAULT NULL,
    status         @extschema@.order_status DEFAULT NULL,
    min_total      bigint DEFAULT NULL,
    max_total      bigint DEFAULT NULL,
    created_from   timestamptz DEFAULT NULL,
    created_before timestamptz DEFAULT NULL,
    after_id       uuid DEFAULT NULL,
    max_rows       integer DEFAULT 100)
RETURNS SETOF @extschema@.orders
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT o.*
    FROM @extschema@.orders o
    WHERE ($1 IS NULL OR o.customer_id OPERATOR(pg_catalog.=) $1)
      AND ($2 IS NULL OR o.status OPERATOR(pg_catalog.=) $2)
      AND ($3 IS NULL OR o.total OPERATOR(pg_catalog.>=) $3)
      AND ($4 IS NULL OR o.total OPERATOR(pg_catalog.<=) $4)
      AND ($5 IS NULL OR o.created_at OPERATOR(pg_catalog.>=) $5)
      AND ($6 IS NULL OR o.created_at OPERATOR(pg_catalog.<) $6)
      AND ($7 IS NULL OR o.id OPERATOR(pg_catalog.>) $7)
    ORDER BY o.id
    LIMIT $8
$$;

CREATE OR REPLACE FUNCTION @extschema@.orders_count(
    customer_id    uuid DEFAULT NULL,
    status         @extschema@.order_status DEFAULT NULL,
    min_total      bigint DEFAULT NULL,
    max_total      bigint DEFAULT NULL,
    created_from   timestamptz DEFAULT NULL,
    created_before timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE 'SELECT count(*) FROM @extschema@.orders o WHERE '
            || @extschema@.orders_filter_sql($1, $2, $3, $4, $5, $6)
        INTO n USING $1, $2, $3, $4, $5, $6;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.orders_total(
    customer_id    uuid DEFAULT NULL,
    status         @extschema@.order_status DEFAULT NULL,
    min_total      bigint DEFAULT NULL,
    max_total      bigint DEFAULT NULL,
    created_from   timestamptz DEFAULT NULL,
    created_before timestamptz DEFAULT NULL)
RETURNS TABLE (currency text, orders bigint, total numeric)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY EXECUTE
        'SELECT o.currency, count(*), sum(o.total) FROM @extschema@.orders o WHERE '
        || @extschema@.orders_filter_sql($1, $2, $3, $4, $5, $6)
        || ' GROUP BY o.currency ORDER BY o.currency'
        USING $1, $2, $3, $4, $5, $6;
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.orders_events_batch(
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

-- One order's events, by version: how orders_add knows an id was used before.
CREATE INDEX order_events_order_idx ON @extschema@.order_events (order_id, version);

-- Consumers get an owner.  Who registered them before 1.4 is not known:
-- they go to the role that runs this update, and the relay worker's to the
-- bootstrap superuser.  Give each to its application's role with
--   UPDATE order_event_consumers SET owner = 'billing_app' WHERE name = 'billing';
-- The C functions enforce what the CHECK on name did.
ALTER TABLE @extschema@.order_event_consumers
    DROP CONSTRAINT order_event_consumers_name,
    ADD COLUMN owner regrole;
UPDATE @extschema@.order_event_consumers
SET owner = CASE WHEN name = 'orders_relay' THEN 10::oid::regrole
                 ELSE current_user::regrole END;
ALTER TABLE @extschema@.order_event_consumers ALTER COLUMN owner SET NOT NULL;

-- Consumers ----------------------------------------------------------------------
--
-- Nothing here is SECURITY DEFINER: each function runs as its caller, reads
-- order_events with the caller's own privileges and row-level security (an
-- event carries a whole order, so consuming needs SELECT on orders and on
-- order_events), and changes a checkpoint only through the C functions
-- below, which check that the caller owns the consumer.

CREATE OR REPLACE FUNCTION @extschema@.orders_events_register(consumer text, from_start boolean DEFAULT false)
RETURNS boolean
AS 'MODULE_PATHNAME', 'orders_events_register'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION @extschema@.orders_events_register(text, boolean) IS
    'Registers a named consumer owned by the current role, from now on or from the first event kept; false if it exists';

CREATE OR REPLACE FUNCTION @extschema@.orders_events_unregister(consumer text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'orders_events_unregister'
LANGUAGE C VOLATILE;

-- The consumer's row, locked: one reader or acknowledger of a name at a time.
CREATE OR REPLACE FUNCTION @extschema@.orders_events_consumer(consumer text)
RETURNS @extschema@.order_event_consumers
AS 'MODULE_PATHNAME', 'orders_events_consumer'
LANGUAGE C VOLATILE;

-- Moves the checkpoint of a consumer the caller owns.
CREATE OR REPLACE FUNCTION @extschema@.orders_events_checkpoint(
    consumer text, acked_snapshot pg_snapshot, batch_snapshot pg_snapshot,
    batch_position bigint, acked boolean)
RETURNS void
AS 'MODULE_PATHNAME', 'orders_events_checkpoint'
LANGUAGE C VOLATILE;

-- The relay worker's pass (src/relay.c): the next events it must notify,
-- acknowledged in the same transaction as the NOTIFYs it then sends, so
-- that they are sent at its commit or not at all.  It reads only relay
-- events, through the partial index: the outbox's other traffic costs it
-- nothing.  Its consumer belongs to the bootstrap superuser.
CREATE OR REPLACE FUNCTION @extschema@.orders_events_relay_batch(max_events integer)
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
    PERFORM @extschema@.orders_events_register('orders_relay'::text, true);
    c := @extschema@.orders_events_consumer('orders_relay'::text);
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
        PERFORM @extschema@.orders_events_checkpoint('orders_relay'::text, c.batch_snapshot,
                                                     NULL::pg_snapshot, 0::bigint, true);
    ELSE
        PERFORM @extschema@.orders_events_checkpoint('orders_relay'::text, c.acked_snapshot,
                                                     c.batch_snapshot, last, true);
    END IF;
END
$$;

REVOKE ALL ON FUNCTION @extschema@.orders_events_relay_batch(integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@.orders_events_read(consumer text, max_events integer DEFAULT 100)
RETURNS SETOF @extschema@.order_events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c @extschema@.order_event_consumers;
    now_snapshot pg_snapshot;
    n bigint;
BEGIN
    IF max_events IS NULL OR max_events < 1 THEN
        RAISE EXCEPTION 'max_events must be at least 1' USING ERRCODE = '22023';
    END IF;
    c := @extschema@.orders_events_consumer(consumer);
    -- taken once the consumer is ours: a reader that waited for another
    -- must not open a batch older than the checkpoint that one left
    now_snapshot := pg_current_snapshot();

    IF c.batch_snapshot IS NOT NULL THEN
        -- what is left of the batch in progress: events not acknowledged
        -- before a crash come again
        RETURN QUERY SELECT * FROM @extschema@.orders_events_batch(
            c.acked_snapshot, c.batch_snapshot, c.batch_position, max_events);
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n > 0 THEN
            RETURN;
        END IF;
        -- the batch is done: its snapshot is the new checkpoint
        c.acked_snapshot := c.batch_snapshot;
    END IF;

    -- a new batch: everything committed since the checkpoint
    PERFORM @extschema@.orders_events_checkpoint(consumer, c.acked_snapshot, now_snapshot,
                                                 0::bigint, false);
    RETURN QUERY SELECT * FROM @extschema@.orders_events_batch(
        c.acked_snapshot, now_snapshot, 0, max_events);
END
$$;

COMMENT ON FUNCTION @extschema@.orders_events_read(text, integer) IS
    'The consumer''s next events in position order, from its checkpoint; unacknowledged ones again';

CREATE OR REPLACE FUNCTION @extschema@.orders_events_ack(consumer text, last_position bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c @extschema@.order_event_consumers;
BEGIN
    IF last_position IS NULL THEN
        RAISE EXCEPTION 'last_position must not be null' USING ERRCODE = '22004';
    END IF;
    c := @extschema@.orders_events_consumer(consumer);
    IF c.batch_snapshot IS NULL THEN
        RETURN;                         -- nothing read, nothing to acknowledge
    END IF;
    IF EXISTS (SELECT FROM @extschema@.orders_events_batch(
                   c.acked_snapshot, c.batch_snapshot, last_position, 1)) THEN
        PERFORM @extschema@.orders_events_checkpoint(consumer, c.acked_snapshot, c.batch_snapshot,
                                                     greatest(c.batch_position, last_position), true);
    ELSE
        -- the whole batch is acknowledged: it becomes the checkpoint
        PERFORM @extschema@.orders_events_checkpoint(consumer, c.batch_snapshot, NULL::pg_snapshot,
                                                     0::bigint, true);
    END IF;
END
$$;

COMMENT ON FUNCTION @extschema@.orders_events_ack(text, bigint) IS
    'Acknowledges the events read, up to and including last_position';

-- Monitoring: needs SELECT on order_event_consumers and order_events.
CREATE OR REPLACE FUNCTION @extschema@.orders_events_consumers()
RETURNS TABLE (name text, pending bigint, oldest_pending timestamptz, lag interval,
               registered_at timestamptz, acked_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.name, p.pending, p.oldest, now() - p.oldest, c.registered_at, c.acked_at
    FROM @extschema@.order_event_consumers c,
         LATERAL (SELECT count(*) AS pending, min(e.occurred_at) AS oldest
                  FROM @extschema@.order_events e
                  WHERE e.xid >= pg_snapshot_xmin(c.acked_snapshot)
                    AND NOT pg_visible_in_snapshot(e.xid, c.acked_snapshot)
                    AND NOT (c.batch_snapshot IS NOT NULL
                             AND pg_visible_in_snapshot(e.xid, c.batch_snapshot)
                             AND e.position <= c.batch_position)) p
    ORDER BY c.name
$$;

COMMENT ON FUNCTION @extschema@.orders_events_consumers() IS
    'Each consumer, with the committed events it has not acknowledged and how old the oldest is';

-- Retention: needs DELETE on order_events and SELECT on order_event_consumers
-- (the table owner has both).

CREATE OR REPLACE FUNCTION @extschema@.orders_events_purge(older_than interval DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    horizon xid8;
    n bigint;
BEGIN
    -- below the smallest checkpoint's xmax, an event every checkpoint sees is
    -- acknowledged by all; events still in flight are never seen, so kept
    SELECT min(pg_snapshot_xmax(acked_snapshot)) INTO horizon
    FROM @extschema@.order_event_consumers;

    DELETE FROM @extschema@.order_events e
    WHERE (horizon IS NOT NULL
           AND e.xid < horizon
           AND NOT EXISTS (SELECT FROM @extschema@.order_event_consumers c
                           WHERE NOT pg_visible_in_snapshot(e.xid, c.acked_snapshot)))
       OR (older_than IS NOT NULL AND e.occurred_at < now() - older_than);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

COMMENT ON FUNCTION @extschema@.orders_events_purge(interval) IS
    'Removes the events every registered consumer has acknowledged, and those older than older_than';

-- Registering and reading are granted by function (with SELECT on orders and
-- order_events); the helpers they call run as the caller and check ownership
-- themselves, so anyone may call them.
REVOKE ALL ON FUNCTION
    @extschema@.orders_events_batch(pg_snapshot, pg_snapshot, bigint, integer, boolean),
    @extschema@.orders_events_consumer(text),
    @extschema@.orders_events_checkpoint(text, pg_snapshot, pg_snapshot, bigint, boolean)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.orders_events_batch(pg_snapshot, pg_snapshot, bigint, integer, boolean),
    @extschema@.orders_events_consumer(text),
    @extschema@.orders_events_checkpoint(text, pg_snapshot, pg_snapshot, bigint, boolean)
TO PUBLIC;
REVOKE ALL ON FUNCTION
    @extschema@.orders_events_register(text, boolean),
    @extschema@.orders_events_unregister(text),
    @extschema@.orders_events_read(text, integer),
    @extschema@.orders_events_ack(text, bigint),
    @extschema@.orders_events_consumers(),
    @extschema@.orders_events_purge(interval)
FROM PUBLIC;
