/* schema/origin.sql: the cluster this database's outbox and checkpoints belong to */

-- A checkpoint is a snapshot and an event carries its writer's transaction
-- id: both number one cluster's transactions.  This row names that cluster
-- (pg_control_system()'s system_identifier).  After a restore into another
-- cluster, a pg_upgrade or the promotion of a logical replica it names
-- another one, and the first write or consumer call adopts the data
-- (src/origin.c; "From another cluster" in consumers.sql): the events
-- present are settled up to settled_position and every checkpoint is
-- re-expressed in positions.  No row yet: nothing was used since 1.10, and
-- the first use writes it (a row made by CREATE EXTENSION would collide with
-- the publisher's on a logical replica).  Only src/origin.c writes it, as
-- its owner; no role is granted anything on it.
CREATE TABLE @extschema@.order_events_origin (
    one               boolean     NOT NULL DEFAULT true,
    system_identifier bigint      NOT NULL,  -- the cluster whose transactions the ids number
    settled_position  bigint      NOT NULL,  -- events up to it were written before an adoption
    adopted_at        timestamptz,           -- the last adoption; NULL: none
    adopted_from      bigint,                -- the system identifier before it
    CONSTRAINT order_events_origin_pkey PRIMARY KEY (one),
    CONSTRAINT order_events_origin_one CHECK (one)
);

COMMENT ON TABLE @extschema@.order_events_origin IS
    'The cluster whose transaction ids the outbox and the checkpoints hold; written only by the orders_* functions';

-- pg_dump keeps the row, so that a restore into another cluster is known.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.order_events_origin', '');

CREATE FUNCTION @extschema@.orders_adopt(
    OUT adopted boolean, OUT previous_system_identifier bigint,
    OUT settled_position bigint, OUT consumers bigint)
AS 'MODULE_PATHNAME', 'orders_adopt'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION @extschema@.orders_adopt() IS
    'Makes an outbox and checkpoints restored, upgraded or replicated from another cluster this cluster''s own; the first write or consumer call does it too';
