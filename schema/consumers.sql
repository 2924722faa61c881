/* schema/consumers.sql: named consumers of the outbox and their checkpoints */

-- A consumer is the name under which an application reads the outbox; its
-- row in order_event_consumers is its checkpoint, how far it has read.  It
-- belongs to the role that registered it (owner): only that role, its
-- members and superusers may read, acknowledge or unregister it, since
-- moving another application's checkpoint would make it skip events
-- silently.  Only the C functions below (src/consumers.c) write the table,
-- and they check the owner; like every function here they run as their
-- caller, none is SECURITY DEFINER.  owner is a role's OID with no
-- dependency recorded, so a role that is dropped leaves its consumers to
-- superusers.

-- Gap-free reading ---------------------------------------------------------------
--
-- Positions are taken when a transaction writes and become visible when it
-- commits, in another order: a reader that moved past position 11 while 10
-- was still in flight would lose 10.  So a consumer's checkpoint is not a
-- position but a transaction snapshot, as in PgQ: the events it has
-- acknowledged are exactly those whose writing transaction is visible in
-- its acked_snapshot.  Its next batch is the events visible in a newer
-- snapshot (batch_snapshot) and not in the acknowledged one, read in
-- position order; batch_position is how far into that batch it has
-- acknowledged.  Every committed event falls into exactly one batch,
-- whatever the commit order, and reading takes no lock a writer waits for.
--
-- Each snapshot is kept with two bounds read just after it was taken (its
-- cut: src/consumers.c, read_cut): top_position, the last position handed
-- out, and next_xid, the next transaction id.  Every event above
-- top_position is newer than the snapshot.  An event at or below it that
-- the snapshot does not see was written by a transaction whose id is in the
-- snapshot's xip list or in [xmax, next_xid): the few transactions running
-- when it was taken (the reading transaction among them: a snapshot never
-- lists its own, so the cut adds it).  So a batch is read through the
-- indexes at the cost of the batch, never by sorting the backlog
-- (orders_events_batch, in consuming.sql).  A checkpoint taken before its
-- bounds were kept (in a database updated from 1.4) has them NULL: its
-- batch is read from the start of the primary key range, correct and
-- slower, once.
--
-- Across the nodes of a cluster ----------------------------------------------
--
-- When Citus distributes the outbox, each node writes the events of the
-- orders it holds, in transactions it numbers itself, and a position tells
-- the node (its Citus group: position % 1024).  No one snapshot can say
-- which of them are committed, so a checkpoint there holds one cut a node
-- (acked_cuts, and batch_cuts for the open batch): that node's snapshot and
-- bounds, as above, with its group.  An event belongs to its writer's
-- node's cuts only, and each node's cuts move forward, so every committed
-- event is in exactly one batch whatever the commit order across nodes; a
-- transaction still running on one node holds back its own events, no
-- other's.  A batch's cuts are taken on every node at once, from the
-- coordinator, and taken again if a shard moved meanwhile: an order whose
-- shard moved has events of two nodes, and a batch never holds a later one
-- without the earlier.  A checkpoint with no cuts on a cluster is from
-- before the outbox was distributed: the coordinator's, group 0.
--
-- From another cluster ---------------------------------------------------------
--
-- Snapshots and the events' transaction ids number one cluster's
-- transactions.  A database restored into another cluster, upgraded with
-- pg_upgrade or promoted from a logical replica is adopted before its first
-- use (origin.sql): its events are settled, judged by position from then
-- on, and each checkpoint is re-expressed in positions.  settled_position
-- is the last settled event; the settled events a consumer has not
-- acknowledged are carried: those after carried_after, and those listed in
-- carried (NULL: none).  They are the first of its next batch, and
-- acknowledged with it.  Its cuts' top positions are at or above
-- settled_position, so no settled event is ever judged by its transaction.
CREATE TYPE @extschema@.order_event_cut AS (
    node_group   integer,       -- the node's Citus group
    snapshot     pg_snapshot,
    top_position bigint,
    next_xid     xid8
);

-- The columns are in the order src/orders.h numbers them (Anum_consumers_*):
-- owner, the bounds and the cuts last, as in a database updated from a
-- version without them.
CREATE TABLE @extschema@.order_event_consumers (
    name               text        NOT NULL,
    acked_snapshot     pg_snapshot NOT NULL,
    batch_snapshot     pg_snapshot,             -- NULL: no batch open
    batch_position     bigint      NOT NULL DEFAULT 0,
    registered_at      timestamptz NOT NULL DEFAULT now(),
    acked_at           timestamptz,
    owner              regrole     NOT NULL,
    acked_top_position bigint,                  -- the cut of acked_snapshot
    acked_next_xid     xid8,
    batch_top_position bigint,                  -- the cut of batch_snapshot
    batch_next_xid     xid8,
    acked_cuts         @extschema@.order_event_cut[],  -- a cluster's: one a node
    batch_cuts         @extschema@.order_event_cut[],
    settled_position   bigint      NOT NULL DEFAULT 0,  -- events up to it: settled
    carried_after      bigint,                  -- settled, not acknowledged: after it,
    carried            bigint[],                -- and these
    CONSTRAINT order_event_consumers_pkey PRIMARY KEY (name)
);

COMMENT ON TABLE @extschema@.order_event_consumers IS
    'Named consumers of the outbox and their checkpoints; written only by the orders_events_* functions';

-- pg_dump keeps a member table's definition only; this keeps the
-- checkpoints too, so that a restored consumer resumes where it was.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.order_event_consumers', '');

-- From now: what is committed now counts as acknowledged.  From the start:
-- nothing does, so the consumer reads every event the outbox keeps.
CREATE FUNCTION @extschema@.orders_events_register(consumer text, from_start boolean DEFAULT false)
RETURNS boolean
AS 'MODULE_PATHNAME', 'orders_events_register'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION @extschema@.orders_events_register(text, boolean) IS
    'Registers a named consumer owned by the current role, from now on or from the first event kept; false if it exists';

CREATE FUNCTION @extschema@.orders_events_unregister(consumer text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'orders_events_unregister'
LANGUAGE C VOLATILE;

-- The consumer's row, locked: one reader or acknowledger of a name at a time.
CREATE FUNCTION orders_internal.orders_events_consumer(consumer text)
RETURNS @extschema@.order_event_consumers
AS 'MODULE_PATHNAME', 'orders_events_consumer'
LANGUAGE C VOLATILE;

-- Opens the consumer's next batch: everything committed after its
-- checkpoint, up to now.  Returns its row.
CREATE FUNCTION orders_internal.orders_events_open_batch(consumer text)
RETURNS @extschema@.order_event_consumers
AS 'MODULE_PATHNAME', 'orders_events_open_batch'
LANGUAGE C VOLATILE;

-- Acknowledges the open batch up to batch_position, or all of it: then its
-- cut becomes the checkpoint.
CREATE FUNCTION orders_internal.orders_events_advance(consumer text, batch_position bigint,
                                                   batch_done boolean)
RETURNS void
AS 'MODULE_PATHNAME', 'orders_events_advance'
LANGUAGE C VOLATILE;
