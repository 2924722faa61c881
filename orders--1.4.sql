/* orders--1.4.sql: the Order aggregate, its outbox and its repository API */

\echo Use "CREATE EXTENSION orders" to load this file. \quit

-- The schema must be one only superusers own and create in: the SQL
-- functions below name their helpers and tables by the schema's name, and
-- whoever could rename the schema or add objects to it could make them run
-- code of its own, with the privileges of whoever calls them.
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

-- The aggregate's value types ------------------------------------------------

CREATE TYPE @extschema@.order_status AS ENUM
    ('pending', 'confirmed', 'shipped', 'delivered', 'cancelled');

CREATE TYPE @extschema@.order_line AS (
    product_id   uuid,
    product_name text,
    quantity     integer,
    unit_price   bigint          -- minor units (cents)
);

CREATE TYPE @extschema@.order_address AS (
    street      text,
    city        text,
    postal_code text,
    country     text
);

-- The aggregate: one row per order, its row type is the aggregate ------------
--
-- The invariants live in C (src/invariants.c) and run before any write; the
-- table carries only what the storage itself relies on.  Its columns must stay
-- in this order: the C code checks the layout once per session and refuses a
-- table that was altered behind its back.

CREATE TABLE @extschema@.orders (
    id               uuid                       NOT NULL,
    customer_id      uuid                       NOT NULL,
    status           @extschema@.order_status   NOT NULL,
    currency         text                       NOT NULL,
    lines            @extschema@.order_line[]   NOT NULL,
    shipping_address @extschema@.order_address,
    total            bigint                     NOT NULL,
    version          integer                    NOT NULL,
    created_at       timestamptz                NOT NULL,
    updated_at       timestamptz                NOT NULL,
    CONSTRAINT orders_pkey PRIMARY KEY (id)
);

COMMENT ON TABLE @extschema@.orders IS
    'Order aggregates; written only through orders_add, orders_save and orders_remove';

-- The outbox: one row per domain event, written in the writer's transaction --

CREATE SEQUENCE @extschema@.order_events_position_seq AS bigint;

CREATE TABLE @extschema@.order_events (
    position    bigint      NOT NULL,
    xid         xid8        NOT NULL,   -- writer's transaction, for gap-free reading
    order_id    uuid        NOT NULL,
    type        text        NOT NULL,
    version     integer     NOT NULL,   -- the order's version after the event
    payload     jsonb       NOT NULL,
    occurred_at timestamptz NOT NULL,
    relay       boolean     NOT NULL DEFAULT false,   -- NOTIFY sent by the relay worker
    CONSTRAINT order_events_pkey PRIMARY KEY (position)
);

ALTER SEQUENCE @extschema@.order_events_position_seq
    OWNED BY @extschema@.order_events.position;

COMMENT ON TABLE @extschema@.order_events IS
    'Outbox of order domain events; written only by the orders_* functions';
COMMENT ON COLUMN @extschema@.order_events.relay IS
    'true: the relay worker sends this event''s NOTIFY (orders.notify = relay)';

-- Nobody writes these tables directly; the functions write them through the
-- table access method and so need no grant on them.
REVOKE ALL ON @extschema@.orders, @extschema@.order_events,
              @extschema@.order_events_position_seq FROM PUBLIC;

-- pg_dump keeps member tables' definitions only; these keep their data too.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.orders', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.order_events', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.order_events_position_seq', '');

-- The repository API ---------------------------------------------------------

CREATE FUNCTION @extschema@.orders_next_id()
RETURNS uuid
AS 'MODULE_PATHNAME', 'orders_next_id'
LANGUAGE C VOLATILE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.orders_next_id() IS
    'A new time-ordered UUID (version 7)';

CREATE FUNCTION @extschema@.orders_add(
    customer_id      uuid,
    currency         text,
    lines            @extschema@.order_line[] DEFAULT '{}',
    shipping_address @extschema@.order_address DEFAULT NULL,
    id               uuid DEFAULT NULL)
RETURNS @extschema@.orders
AS 'MODULE_PATHNAME', 'orders_add'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.orders_add(uuid, text, @extschema@.order_line[], @extschema@.order_address, uuid) IS
    'Adds a pending order after checking every invariant; emits order_added';

CREATE FUNCTION @extschema@.orders_get(id uuid)
RETURNS SETOF @extschema@.orders
AS 'MODULE_PATHNAME', 'orders_get'
LANGUAGE C STABLE STRICT PARALLEL SAFE ROWS 1;

COMMENT ON FUNCTION @extschema@.orders_get(uuid) IS
    'The whole order, or no row; needs SELECT on orders';

CREATE FUNCTION @extschema@.orders_remove(id uuid, expected_version integer DEFAULT NULL)
RETURNS @extschema@.orders
AS 'MODULE_PATHNAME', 'orders_remove'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.orders_remove(uuid, integer) IS
    'Removes an order that is not in flight; emits order_removed';

-- Writing is a privilege: granted explicitly, never to PUBLIC by default.
REVOKE ALL ON FUNCTION
    @extschema@.orders_add(uuid, text, @extschema@.order_line[], @extschema@.order_address, uuid),
    @extschema@.orders_remove(uuid, integer)
FROM PUBLIC;


-- Saving a changed order --------------------------------------------------------

CREATE FUNCTION @extschema@.orders_save(o @extschema@.orders)
RETURNS @extschema@.orders
AS 'MODULE_PATHNAME', 'orders_save'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.orders_save(@extschema@.orders) IS
    'Stores a changed order read at o.version; emits the events the change means';

REVOKE ALL ON FUNCTION @extschema@.orders_save(@extschema@.orders) FROM PUBLIC;

-- Queries -------------------------------------------------------------------------
--
-- Keyset pagination goes by id, which is time-ordered (UUIDv7): each index
-- ends in id, so a filtered page is one ordered index range scan.

CREATE INDEX orders_customer_idx ON @extschema@.orders (customer_id, id);
CREATE INDEX orders_status_idx ON @extschema@.orders (status, id);

-- A single SQL statement, so the planner inlines it into the caller's query
-- and plans it with the caller's values: a filter that is NULL folds away,
-- and the one that is given picks its index.  Every name in it is qualified,
-- operators too, because an inlined body is parsed under the caller's
-- search_path.
CREATE FUNCTION @extschema@.orders_find(
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

COMMENT ON FUNCTION @extschema@.orders_find(uuid, @extschema@.order_status, bigint, bigint, timestamptz, timestamptz, uuid, integer) IS
    'Orders matching every filter given, by id (creation order), after after_id, at most max_rows (NULL: all)';

-- The WHERE clause of orders_count and orders_total: only the filters given,
-- so each call is planned for the filters it has.  Parameters, not values,
-- go into the text.
CREATE FUNCTION @extschema@.orders_filter_sql(
    customer_id uuid, status @extschema@.order_status, min_total bigint, max_total bigint,
    created_from timestamptz, created_before timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'true'
        || CASE WHEN $1 IS NULL THEN '' ELSE ' AND o.customer_id OPERATOR(pg_catalog.=) $1' END
        || CASE WHEN $2 IS NULL THEN '' ELSE ' AND o.status OPERATOR(pg_catalog.=) $2' END
        || CASE WHEN $3 IS NULL THEN '' ELSE ' AND o.total OPERATOR(pg_catalog.>=) $3' END
        || CASE WHEN $4 IS NULL THEN '' ELSE ' AND o.total OPERATOR(pg_catalog.<=) $4' END
        || CASE WHEN $5 IS NULL THEN '' ELSE ' AND o.created_at OPERATOR(pg_catalog.>=) $5' END
        || CASE WHEN $6 IS NULL THEN '' ELSE ' AND o.created_at OPERATOR(pg_catalog.<) $6' END
$$;

CREATE FUNCTION @extschema@.orders_count(
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

COMMENT ON FUNCTION @extschema@.orders_count(uuid, @extschema@.order_status, bigint, bigint, timestamptz, timestamptz) IS
    'How many orders match every filter given';

-- Totals are only added up within a currency: one row per currency.
CREATE FUNCTION @extschema@.orders_total(
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

COMMENT ON FUNCTION @extschema@.orders_total(uuid, @extschema@.order_status, bigint, bigint, timestamptz, timestamptz) IS
    'Per currency: how many orders match every filter given, and the sum of their totals';


-- Gap-free reading ---------------------------------------------------------------
--
-- Positions are taken when a transaction writes and become visible when it
-- commits, in another order: a reader that moved past position 11 while 10
-- was still in flight would lose 10.  So a consumer's checkpoint is not a
-- position but a transaction snapshot, as in PgQ: the events it has
-- acknowledged are exactly those whose writing transaction is visible in its
-- acked_snapshot.  Its next batch is the events visible in a newer snapshot
-- (batch_snapshot) and not in the acknowledged one, read in position order;
-- batch_position is how far into that batch it has acknowledged.  Every
-- committed event falls into exactly one batch, whatever the commit order.
-- Reading takes no lock a writer waits for.

CREATE INDEX order_events_xid_idx ON @extschema@.order_events (xid);

-- One order's events, by version: how orders_add knows an id was used
-- before (an id is never reused: an order's versions only go up).
CREATE INDEX order_events_order_idx ON @extschema@.order_events (order_id, version);

-- A consumer belongs to the role that registered it (owner): only that
-- role, its members and superusers may read, acknowledge or unregister it.
-- Written by the C functions of src/consumers.c, which check that.
CREATE TABLE @extschema@.order_event_consumers (
    name           text        NOT NULL,
    acked_snapshot pg_snapshot NOT NULL,
    batch_snapshot pg_snapshot,
    batch_position bigint      NOT NULL DEFAULT 0,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    acked_at       timestamptz,
    owner          regrole     NOT NULL,
    CONSTRAINT order_event_consumers_pkey PRIMARY KEY (name)
);

COMMENT ON TABLE @extschema@.order_event_consumers IS
    'Named consumers of the outbox and their checkpoints; written only by the orders_events_* functions';

REVOKE ALL ON @extschema@.order_event_consumers FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.order_event_consumers', '');

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


CREATE INDEX order_events_relay_idx ON @extschema@.order_events (xid) WHERE relay;

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
