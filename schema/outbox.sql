/* schema/outbox.sql: the outbox, one row per domain event */

-- Every write of an order inserts its events here in the writer's own
-- transaction (src/events.c): commit, and the order and its events exist
-- together; roll back, and neither does.  Consumers read the events after
-- commit (consuming.sql), and the relay worker sends the NOTIFY of those a
-- writer left to it (relay.sql).  As with orders, only the extension's
-- functions write the table, through the heap, and the C code reads its
-- columns by number (src/orders.h: Anum_order_events_*): relay and the
-- envelope come last, as in a database updated from a version without them.

-- A position is taken when the event is written, and becomes visible when
-- its transaction commits: positions order the events, but commit in
-- another order (see "Gap-free reading" in consumers.sql).
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
    -- the envelope, from 1.8: the columns Debezium's outbox event router
    -- reads by default (id, aggregatetype, type, payload; its key is
    -- order_id), the payload's shape version, and the writer's metadata
    id             uuid,                             -- NULL for events written before 1.8
    aggregatetype  text     NOT NULL DEFAULT 'order',
    schema_version smallint NOT NULL DEFAULT 1,
    metadata       jsonb,                            -- orders.event_metadata; NULL: none
    CONSTRAINT order_events_pkey PRIMARY KEY (position)
);

ALTER SEQUENCE @extschema@.order_events_position_seq
    OWNED BY @extschema@.order_events.position;

COMMENT ON TABLE @extschema@.order_events IS
    'Outbox of order domain events; written only by the orders_* functions';
COMMENT ON COLUMN @extschema@.order_events.relay IS
    'true: the relay worker sends this event''s NOTIFY (orders.notify = relay)';
COMMENT ON COLUMN @extschema@.order_events.id IS
    'The event''s own id, a time-ordered UUID; NULL for events written before 1.8';
COMMENT ON COLUMN @extschema@.order_events.schema_version IS
    'The version of the payload''s shape for this event type';
COMMENT ON COLUMN @extschema@.order_events.metadata IS
    'The writer''s orders.event_metadata (correlation, causation, actor, trace context); NULL: none';

-- One order's events, by version: how orders_add knows an id was used
-- before (an id is never reused: an order's versions only go up).
CREATE INDEX order_events_order_idx ON @extschema@.order_events (order_id, version);

-- One transaction's events, in position order: how a batch finds the late
-- events of the transactions that were running at its checkpoint
-- (orders_events_batch), and how retention takes everything below a
-- transaction id as one range (orders_events_purge).
CREATE INDEX order_events_xid_idx ON @extschema@.order_events (xid, position);

-- The relay worker reads only relay events, in position order: the rest of
-- the outbox's traffic costs it nothing.
CREATE INDEX order_events_relay_idx ON @extschema@.order_events (position) WHERE relay;

-- The values of order_events.type, from the C code that writes them.
CREATE FUNCTION @extschema@.orders_event_types()
RETURNS text[]
AS 'MODULE_PATHNAME', 'orders_event_types'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.orders_event_types() IS
    'Every event type the extension writes';

-- Which of a consumer group's 16 parts an order's events belong to
-- (groups.sql): from the order's id alone, so all of an order's events go
-- to one part, the same on every major and platform (hash partitioning
-- relies on the same function staying put).
CREATE FUNCTION @extschema@.orders_event_part(order_id uuid)
RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (pg_catalog.uuid_hash_extended(order_id, 0) OPERATOR(pg_catalog.&) 15)::integer;

COMMENT ON FUNCTION @extschema@.orders_event_part(uuid) IS
    'The part (0 to 15) of a consumer group that reads an order''s events';

-- pg_dump keeps member tables' definitions only; these keep the events and
-- the next position too.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.order_events', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.order_events_position_seq', '');
