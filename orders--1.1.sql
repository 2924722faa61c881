/* orders--1.1.sql: the Order aggregate, its outbox and its repository API */

\echo Use "CREATE EXTENSION orders" to load this file. \quit

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
    CONSTRAINT order_events_pkey PRIMARY KEY (position)
);

ALTER SEQUENCE @extschema@.order_events_position_seq
    OWNED BY @extschema@.order_events.position;

COMMENT ON TABLE @extschema@.order_events IS
    'Outbox of order domain events; written only by the orders_* functions';

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
