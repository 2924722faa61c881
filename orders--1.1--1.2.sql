/* orders--1.1--1.2.sql: gap-free outbox reading, named consumers, retention */

\echo Use "ALTER EXTENSION orders UPDATE TO '1.2'" to load this file. \quit

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

CREATE TABLE @extschema@.order_event_consumers (
    name           text        NOT NULL,
    acked_snapshot pg_snapshot NOT NULL,
    batch_snapshot pg_snapshot,
    batch_position bigint      NOT NULL DEFAULT 0,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    acked_at       timestamptz,
    CONSTRAINT order_event_consumers_pkey PRIMARY KEY (name),
    CONSTRAINT order_event_consumers_name CHECK (name <> '')
);

COMMENT ON TABLE @extschema@.order_event_consumers IS
    'Named consumers of the outbox and their checkpoints; written only by the orders_events_* functions';

REVOKE ALL ON @extschema@.order_event_consumers FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.order_event_consumers', '');

-- The events of a batch: visible in batch, not in acked, after position.
-- Planned at each call with the snapshots' values, so the xid range picks
-- the index however large the outbox has grown.
CREATE FUNCTION @extschema@.orders_events_batch(
    acked pg_snapshot, batch pg_snapshot, after_position bigint, max_events integer)
RETURNS SETOF @extschema@.order_events
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY EXECUTE
        'SELECT e.* FROM @extschema@.order_events e
         WHERE e.xid >= pg_snapshot_xmin($1)
           AND e.xid < pg_snapshot_xmax($2)
           AND pg_visible_in_snapshot(e.xid, $2)
           AND NOT pg_visible_in_snapshot(e.xid, $1)
           AND e.position > $3
         ORDER BY e.position
         LIMIT $4'
        USING acked, batch, after_position, max_events;
END
$$;

REVOKE ALL ON FUNCTION @extschema@.orders_events_batch(pg_snapshot, pg_snapshot, bigint, integer) FROM PUBLIC;

CREATE FUNCTION @extschema@.orders_events_register(consumer text, from_start boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF consumer IS NULL OR consumer = '' THEN
        RAISE EXCEPTION 'consumer name must not be empty' USING ERRCODE = '22023';
    END IF;
    -- from now: what is committed now counts as acknowledged; from the start:
    -- nothing does ('1:1:' sees no transaction)
    INSERT INTO @extschema@.order_event_consumers (name, acked_snapshot)
    VALUES (consumer, CASE WHEN from_start THEN '1:1:'::pg_snapshot ELSE pg_current_snapshot() END)
    ON CONFLICT (name) DO NOTHING;
    RETURN FOUND;
END
$$;

COMMENT ON FUNCTION @extschema@.orders_events_register(text, boolean) IS
    'Registers a named consumer, from now on or from the first event kept; false if it exists';

CREATE FUNCTION @extschema@.orders_events_unregister(consumer text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM @extschema@.order_event_consumers WHERE name = consumer;
    RETURN FOUND;
END
$$;

-- The consumer's row, locked: one reader or acknowledger of a name at a time.
CREATE FUNCTION @extschema@.orders_events_consumer(consumer text)
RETURNS @extschema@.order_event_consumers
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c @extschema@.order_event_consumers;
BEGIN
    SELECT * INTO c FROM @extschema@.order_event_consumers WHERE name = consumer FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'consumer "%" is not registered', consumer
            USING ERRCODE = '42704', HINT = 'Register it with orders_events_register().';
    END IF;
    RETURN c;
END
$$;

REVOKE ALL ON FUNCTION @extschema@.orders_events_consumer(text) FROM PUBLIC;

CREATE FUNCTION @extschema@.orders_events_read(consumer text, max_events integer DEFAULT 100)
RETURNS SETOF @extschema@.order_events
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
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
    UPDATE @extschema@.order_event_consumers
    SET acked_snapshot = c.acked_snapshot, batch_snapshot = now_snapshot, batch_position = 0
    WHERE name = consumer;
    RETURN QUERY SELECT * FROM @extschema@.orders_events_batch(
        c.acked_snapshot, now_snapshot, 0, max_events);
END
$$;

COMMENT ON FUNCTION @extschema@.orders_events_read(text, integer) IS
    'The consumer''s next events in position order, from its checkpoint; unacknowledged ones again';

CREATE FUNCTION @extschema@.orders_events_ack(consumer text, last_position bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
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
        UPDATE @extschema@.order_event_consumers
        SET batch_position = greatest(batch_position, last_position), acked_at = now()
        WHERE name = consumer;
    ELSE
        -- the whole batch is acknowledged: it becomes the checkpoint
        UPDATE @extschema@.order_event_consumers
        SET acked_snapshot = batch_snapshot, batch_snapshot = NULL, batch_position = 0,
            acked_at = now()
        WHERE name = consumer;
    END IF;
END
$$;

COMMENT ON FUNCTION @extschema@.orders_events_ack(text, bigint) IS
    'Acknowledges the events read, up to and including last_position';

CREATE FUNCTION @extschema@.orders_events_consumers()
RETURNS TABLE (name text, pending bigint, oldest_pending timestamptz, lag interval,
               registered_at timestamptz, acked_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
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

-- Retention ---------------------------------------------------------------------

CREATE FUNCTION @extschema@.orders_events_purge(older_than interval DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
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

REVOKE ALL ON FUNCTION
    @extschema@.orders_events_register(text, boolean),
    @extschema@.orders_events_unregister(text),
    @extschema@.orders_events_read(text, integer),
    @extschema@.orders_events_ack(text, bigint),
    @extschema@.orders_events_consumers(),
    @extschema@.orders_events_purge(interval)
FROM PUBLIC;
