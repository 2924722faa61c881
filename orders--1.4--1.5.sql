/* orders--1.4--1.5.sql: a consumer's batch costs the batch, not the backlog.
   Each checkpoint snapshot keeps the bounds that make it cheap to read
   from; the outbox is read through (xid, position) and position, never by
   sorting everything after the checkpoint. */

\echo Use "ALTER EXTENSION orders UPDATE TO '1.5'" to load this file. \quit

SELECT @extschema@.orders_assert_trusted_schema();

-- Gap-free reading, at any backlog ------------------------------------------------
--
-- A checkpoint is a snapshot (see "Gap-free reading" in orders--1.4.sql),
-- now kept with two bounds read just after it was taken (src/consumers.c,
-- read_cut): top_position, the last position handed out, and next_xid, the
-- next transaction id.  Every event above top_position is newer than the
-- snapshot.  An event at or below it that the snapshot does not see was
-- written by a transaction whose id is in the snapshot's xip list or in
-- [xmax, next_xid): the few transactions running when it was taken (the
-- reading transaction among them: a snapshot never lists its own, so the
-- cut adds it).  So
-- the batch after a checkpoint is
--   the events of those few transactions, if they have committed since,
--     each read through (xid, position), and
--   the committed events above top_position, read through the primary key
--     in position order, up to the batch snapshot's own top_position,
-- and a read of max_events costs about max_events index entries, however
-- far behind the consumer is.  Checkpoints written before 1.5 have no bounds
-- (NULL): their batch is read from the start of the primary key range,
-- correct and slower, once.

ALTER TABLE @extschema@.order_event_consumers
    ADD COLUMN acked_top_position bigint,
    ADD COLUMN acked_next_xid     xid8,
    ADD COLUMN batch_top_position bigint,
    ADD COLUMN batch_next_xid     xid8;

DROP INDEX @extschema@.order_events_xid_idx;
CREATE INDEX order_events_xid_idx ON @extschema@.order_events (xid, position);

-- The relay worker reads only relay events, in position order.
DROP INDEX @extschema@.order_events_relay_idx;
CREATE INDEX order_events_relay_idx ON @extschema@.order_events (position) WHERE relay;

DROP FUNCTION @extschema@.orders_events_batch(pg_snapshot, pg_snapshot, bigint, integer, boolean);
DROP FUNCTION @extschema@.orders_events_checkpoint(text, pg_snapshot, pg_snapshot, bigint, boolean);

-- Opens the consumer's next batch: everything committed after its
-- checkpoint, up to now.  Returns its row.
CREATE FUNCTION @extschema@.orders_events_open_batch(consumer text)
RETURNS @extschema@.order_event_consumers
AS 'MODULE_PATHNAME', 'orders_events_open_batch'
LANGUAGE C VOLATILE;

-- Acknowledges the open batch up to batch_position, or all of it.
CREATE FUNCTION @extschema@.orders_events_advance(consumer text, batch_position bigint,
                                                   batch_done boolean)
RETURNS void
AS 'MODULE_PATHNAME', 'orders_events_advance'
LANGUAGE C VOLATILE;

-- The next events of a consumer's open batch after its batch_position, in
-- position order: the late events of transactions that were running at the
-- checkpoint, then the events above its top position.
CREATE FUNCTION @extschema@.orders_events_batch(
    c @extschema@.order_event_consumers, max_events integer, relay_only boolean DEFAULT false)
RETURNS SETOF @extschema@.order_events
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off                           -- a few index probes: never worth compiling
AS $$
DECLARE
    relay_filter text := CASE WHEN relay_only THEN ' AND e.relay' ELSE '' END;
BEGIN
    -- EXECUTE: planned for these values, so that each part keeps its index
    RETURN QUERY EXECUTE
        'WITH late(xid) AS (
             SELECT x FROM pg_snapshot_xip($1) x
             UNION ALL
             SELECT g::text::xid8
             FROM generate_series(pg_snapshot_xmax($1)::text::bigint,
                                  $3::text::bigint - 1) g)
         (SELECT e.* FROM late
          CROSS JOIN LATERAL (
              SELECT * FROM @extschema@.order_events e
              WHERE e.xid = late.xid AND e.position > $5 AND e.position <= $4' || relay_filter || '
              ORDER BY e.position LIMIT $7) e
          WHERE pg_visible_in_snapshot(late.xid, $2)
          UNION ALL
          SELECT e.* FROM (
              SELECT * FROM @extschema@.order_events e
              WHERE e.position > greatest($4, $5) AND e.position <= $6' || relay_filter || '
                AND pg_visible_in_snapshot(e.xid, $2)
                AND NOT pg_visible_in_snapshot(e.xid, $1)
              ORDER BY e.position LIMIT $7) e)
         ORDER BY position
         LIMIT $7'
        USING c.acked_snapshot, c.batch_snapshot, c.acked_next_xid,
              coalesce(c.acked_top_position, 0), c.batch_position,
              coalesce(c.batch_top_position, 9223372036854775807), max_events;
END
$$;

-- The relay worker's pass (src/relay.c): the next events it must notify,
-- acknowledged in the same transaction as the NOTIFYs it then sends, so
-- that they are sent at its commit or not at all.  Its consumer belongs to
-- the bootstrap superuser.
CREATE OR REPLACE FUNCTION @extschema@.orders_events_relay_batch(max_events integer)
RETURNS SETOF @extschema@.order_events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c @extschema@.order_event_consumers;
    e @extschema@.order_events;
    n integer := 0;
BEGIN
    -- from the start: every relay event since the install is the worker's
    PERFORM @extschema@.orders_events_register('orders_relay'::text, true);
    c := @extschema@.orders_events_consumer('orders_relay'::text);
    IF c.batch_snapshot IS NULL THEN
        c := @extschema@.orders_events_open_batch('orders_relay'::text);
    END IF;
    FOR e IN SELECT * FROM @extschema@.orders_events_batch(c, max_events, true)
    LOOP
        RETURN NEXT e;
        n := n + 1;
        c.batch_position := e.position;
    END LOOP;
    -- fewer than asked: all of this batch's relay events are out
    PERFORM @extschema@.orders_events_advance('orders_relay'::text, c.batch_position,
                                              n < max_events);
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.orders_events_read(consumer text, max_events integer DEFAULT 100)
RETURNS SETOF @extschema@.order_events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c @extschema@.order_event_consumers;
    n bigint;
BEGIN
    IF max_events IS NULL OR max_events < 1 THEN
        RAISE EXCEPTION 'max_events must be at least 1' USING ERRCODE = '22023';
    END IF;
    c := @extschema@.orders_events_consumer(consumer);

    IF c.batch_snapshot IS NOT NULL THEN
        -- what is left of the batch in progress: events not acknowledged
        -- before a crash come again
        RETURN QUERY SELECT * FROM @extschema@.orders_events_batch(c, max_events);
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n > 0 THEN
            RETURN;
        END IF;
        -- the batch is done: its cut is the new checkpoint
        PERFORM @extschema@.orders_events_advance(consumer, c.batch_position, true);
    END IF;

    -- a new batch, everything committed since the checkpoint: its cut is
    -- taken once the consumer is ours, so that a reader that waited for
    -- another never opens a batch older than the checkpoint that one left
    c := @extschema@.orders_events_open_batch(consumer);
    RETURN QUERY SELECT * FROM @extschema@.orders_events_batch(c, max_events);
END
$$;

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
    c.batch_position := greatest(c.batch_position, last_position);
    -- nothing left after it: the whole batch is acknowledged, and its cut
    -- becomes the checkpoint
    PERFORM @extschema@.orders_events_advance(
        consumer, c.batch_position,
        NOT EXISTS (SELECT FROM @extschema@.orders_events_batch(c, 1)));
END
$$;

-- Monitoring: needs SELECT on order_event_consumers and order_events.
-- pending and oldest_pending are estimates when the checkpoint has bounds
-- (from 1.5): positions handed out after it, counted from the index's end
-- (transactions that rolled back count too), and the first event after it.
-- So the answer takes two index probes a consumer, at any backlog.
CREATE OR REPLACE FUNCTION @extschema@.orders_events_consumers()
RETURNS TABLE (name text, pending bigint, oldest_pending timestamptz, lag interval,
               registered_at timestamptz, acked_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
-- the count for old checkpoints makes the plan look costly: compiling it
-- would take longer than the two index probes it runs
SET jit = off
AS $$
    WITH top AS (SELECT coalesce(max(position), 0) AS position FROM @extschema@.order_events)
    SELECT c.name, p.pending, p.oldest, now() - p.oldest, c.registered_at, c.acked_at
    FROM @extschema@.order_event_consumers c
    CROSS JOIN top
    CROSS JOIN LATERAL (
        SELECT greatest(c.acked_top_position,
                        CASE WHEN c.batch_snapshot IS NOT NULL THEN c.batch_position END) AS done) d
    CROSS JOIN LATERAL (
        SELECT greatest(top.position - d.done, 0) AS pending,
               (SELECT e.occurred_at FROM @extschema@.order_events e
                WHERE e.position > d.done ORDER BY e.position LIMIT 1) AS oldest
        WHERE c.acked_top_position IS NOT NULL
        UNION ALL
        -- a checkpoint from before 1.5: counted exactly, once
        SELECT count(*), min(e.occurred_at)
        FROM @extschema@.order_events e
        WHERE c.acked_top_position IS NULL
          AND e.xid >= pg_snapshot_xmin(c.acked_snapshot)
          AND NOT pg_visible_in_snapshot(e.xid, c.acked_snapshot)
          AND NOT (c.batch_snapshot IS NOT NULL
                   AND pg_visible_in_snapshot(e.xid, c.batch_snapshot)
                   AND e.position <= c.batch_position)
        HAVING c.acked_top_position IS NULL) p
    ORDER BY c.name
$$;

COMMENT ON FUNCTION @extschema@.orders_events_consumers() IS
    'Each consumer, with an estimate of the events it has not acknowledged and how old the oldest is';

-- Retention: needs DELETE on order_events and SELECT on order_event_consumers
-- (the table owner has both).
CREATE OR REPLACE FUNCTION @extschema@.orders_events_purge(older_than interval DEFAULT NULL)
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

REVOKE ALL ON FUNCTION
    @extschema@.orders_events_batch(@extschema@.order_event_consumers, integer, boolean),
    @extschema@.orders_events_open_batch(text),
    @extschema@.orders_events_advance(text, bigint, boolean)
FROM PUBLIC;
-- Anyone may call them: they check the caller's privileges themselves (and
-- orders_events_batch reads as its caller).
GRANT EXECUTE ON FUNCTION
    @extschema@.orders_events_batch(@extschema@.order_event_consumers, integer, boolean),
    @extschema@.orders_events_open_batch(text),
    @extschema@.orders_events_advance(text, bigint, boolean)
TO PUBLIC;
