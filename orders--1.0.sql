/* orders--1.0.sql: the Order aggregate, its outbox and its repository API */

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
