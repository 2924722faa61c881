/* schema/holds.sql: events a consumer rejected: retried, parked, and what they hold back */

-- A consumer that cannot handle an event rejects it with orders_events_nack
-- and a reason.  The event is then held for that consumer: it comes again
-- after retry_delay, twice that after the second failure, and so on, until
-- max_attempts failures park it, in the consumer's dead-letter list
-- (orders_events_parked), where it stays until the consumer replays or
-- discards it.  The order it belongs to is held meanwhile, for that
-- consumer only: the order's later events wait behind the held one, in
-- order, and come after it once it is handled (acknowledged) or
-- discarded; orders_events_holds shows each held order, the event it is
-- held at, and the events that wait (held_back).  The other orders' events
-- flow on.
--
-- A hold is one row of order_event_holds.  Reading delivers the held
-- events that are due with the others, all in position order; an event of
-- a held order met in the stream is added to its hold (later) instead of
-- being returned.  Acknowledging through a position acknowledges the held
-- events delivered up to it as well, and rejecting an event acknowledges
-- every event returned before it, as each read's events are handled in
-- order.  The purge keeps every held event.
--
-- Only src/holds.c writes the table, as its owner, for a caller that owns
-- the consumer; every function here runs as its caller.  On a Citus
-- cluster events cannot be rejected (0A000).
CREATE TABLE @extschema@.order_event_holds (
    consumer  text        NOT NULL,
    order_id  uuid        NOT NULL,
    position  bigint      NOT NULL,             -- the event held: the order's next to handle
    later     bigint[]    NOT NULL DEFAULT '{}', -- the order's events waiting behind it, in order
    attempts  integer     NOT NULL DEFAULT 0,   -- failures of the held event so far
    reason    text,                             -- the last failure's reason
    failed_at timestamptz,                      -- when it last failed
    retry_at  timestamptz,                      -- when it comes again; NULL once parked
    parked_at timestamptz,                      -- when it was parked; NULL while retried
    delivered boolean     NOT NULL DEFAULT false, -- returned by a read, not yet acknowledged
    CONSTRAINT order_event_holds_pkey PRIMARY KEY (consumer, order_id)
);

COMMENT ON TABLE @extschema@.order_event_holds IS
    'Each consumer''s held orders: the rejected event retried or parked, and the order''s events waiting behind it';

-- pg_dump keeps a member table's definition only; this keeps the holds
-- too, with the checkpoints they belong to.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.order_event_holds', '');

-- The consumer's holds, its row locked: src/holds.c.
CREATE FUNCTION orders_internal.orders_events_holds_of(consumer text)
RETURNS @extschema@.order_event_holds[]
AS 'MODULE_PATHNAME', 'orders_events_holds_of'
LANGUAGE C VOLATILE;

-- The same, the consumer not locked: for showing them.
CREATE FUNCTION orders_internal.orders_events_holds_peek(consumer text)
RETURNS @extschema@.order_event_holds[]
AS 'MODULE_PATHNAME', 'orders_events_holds_peek'
LANGUAGE C STABLE;

-- Writes one hold of the consumer, or ends it (position NULL).
CREATE FUNCTION orders_internal.orders_events_hold_store(consumer text, hold @extschema@.order_event_holds)
RETURNS void
AS 'MODULE_PATHNAME', 'orders_events_hold_store'
LANGUAGE C VOLATILE;

-- Every event a hold keeps, for the purge.
CREATE FUNCTION orders_internal.orders_events_held_positions()
RETURNS bigint[]
AS 'MODULE_PATHNAME', 'orders_events_held_positions'
LANGUAGE C STABLE;

-- When a held event that failed attempts times comes again: retry_delay
-- after its first failure, doubled after each one since, and never more
-- than a year on (a longer wait would overflow the types, not help).
CREATE FUNCTION orders_internal.orders_events_retry_at(retry_delay interval, attempts integer)
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN now() + make_interval(secs => least(extract(epoch FROM retry_delay)::float8
                                           * power(2, least(greatest(attempts, 1) - 1, 40)),
                                           31536000));

-- The held event is done with (handled, discarded, or skipped by a read of
-- other types): the next event waiting behind it is held in its place, due
-- at once, or, none waiting, the order is held no more.  Returns the hold
-- as it is now: position NULL once it ended.
CREATE FUNCTION orders_internal.orders_events_hold_next(consumer text, h @extschema@.order_event_holds)
RETURNS @extschema@.order_event_holds
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF cardinality(h.later) > 0 THEN
        h.position := h.later[1];
        h.later := h.later[2:];
        h.attempts := 0;
        h.reason := NULL;
        h.failed_at := NULL;
        h.retry_at := now();
        h.parked_at := NULL;
        h.delivered := false;
    ELSE
        h.position := NULL;
    END IF;
    PERFORM orders_internal.orders_events_hold_store(consumer, h);
    RETURN h;
END
$$;

-- The body of orders_events_nack, and of orders_events_nack_group for one
-- part: anyone may call it, as it does nothing its helpers do not check
-- themselves.
CREATE FUNCTION orders_internal.orders_events_reject(
    consumer text, event_position bigint, reason text, max_attempts integer,
    retry_delay interval, part integer)
RETURNS @extschema@.order_event_holds
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c @extschema@.order_event_consumers;
    e @extschema@.order_events;
    h @extschema@.order_event_holds;
BEGIN
    IF event_position IS NULL OR reason IS NULL OR max_attempts IS NULL OR retry_delay IS NULL THEN
        RAISE EXCEPTION 'event_position, reason, max_attempts and retry_delay must not be null'
            USING ERRCODE = '22004';
    END IF;
    IF max_attempts < 1 THEN
        RAISE EXCEPTION 'max_attempts must be at least 1' USING ERRCODE = '22023';
    END IF;
    IF retry_delay < interval '0' THEN
        RAISE EXCEPTION 'retry_delay must not be negative' USING ERRCODE = '22023';
    END IF;
    IF orders_internal.orders_distributed() THEN
        RAISE EXCEPTION 'orders_events_nack() is not supported while Citus distributes the outbox'
            USING ERRCODE = '0A000',
                  DETAIL = 'Rejected events are held on a single node only.';
    END IF;
    c := orders_internal.orders_events_consumer(consumer);
    SELECT * INTO e FROM @extschema@.order_events x WHERE x.position = event_position;
    IF FOUND THEN
        SELECT * INTO h FROM unnest(orders_internal.orders_events_holds_of(consumer)) x
        WHERE x.order_id = e.order_id;
    END IF;

    IF h.position = event_position THEN
        -- a held event, failed again
        IF NOT h.delivered THEN
            RAISE EXCEPTION 'event % of consumer "%" was not delivered since it last failed',
                            event_position, consumer
                USING ERRCODE = '55000',
                      HINT = 'A held event can be rejected once each time a read returns it.';
        END IF;
        PERFORM orders_internal.orders_events_ack_through(consumer, event_position - 1, part);
        h.attempts := h.attempts + 1;
        h.reason := left(reason, 2000);
        h.failed_at := now();
        h.delivered := false;
        IF h.attempts >= max_attempts THEN
            h.retry_at := NULL;
            h.parked_at := now();
        ELSE
            h.retry_at := orders_internal.orders_events_retry_at(retry_delay, h.attempts);
        END IF;
        PERFORM orders_internal.orders_events_hold_store(consumer, h);
        RETURN h;
    END IF;

    IF h.position IS NOT NULL AND event_position = ANY (h.later) THEN
        -- the order is held at an earlier event already: this one waits
        -- behind it whatever its own outcome
        PERFORM orders_internal.orders_events_ack_through(consumer, event_position, part);
        RETURN h;
    END IF;

    IF h.position IS NOT NULL THEN
        RAISE EXCEPTION 'consumer "%" holds order % at event %, not at event %',
                        consumer, e.order_id, h.position, event_position
            USING ERRCODE = '22023',
                  HINT = 'Reject an event that the consumer''s last read returned.';
    END IF;
    -- an event of the stream: not acknowledged yet, in the batch open
    -- (a settled event, from another cluster, by whether it is carried:
    -- its transaction id means nothing here; consumers.sql)
    IF e.position IS NULL OR c.batch_snapshot IS NULL OR event_position <= c.batch_position
       OR (CASE WHEN e.position <= c.settled_position
                THEN NOT coalesce(e.position > c.carried_after OR e.position = ANY (c.carried), false)
                ELSE NOT pg_visible_in_snapshot(e.xid, c.batch_snapshot)
                     OR pg_visible_in_snapshot(e.xid, c.acked_snapshot) END)
       OR (part IS NOT NULL AND @extschema@.orders_event_part(e.order_id) <> part) THEN
        RAISE EXCEPTION 'consumer "%" has no event at position % to reject', consumer, event_position
            USING ERRCODE = '22023',
                  HINT = 'Reject an event that the consumer''s last read returned and that is not acknowledged.';
    END IF;
    h := ROW(consumer, e.order_id, event_position,
             -- the order's later events in the batch, which the read may
             -- have returned too: they wait behind it
             ARRAY(SELECT x.position FROM @extschema@.order_events x
                   WHERE x.order_id = e.order_id AND x.position > event_position
                     AND CASE WHEN x.position <= c.settled_position
                              THEN coalesce(x.position > c.carried_after OR x.position = ANY (c.carried), false)
                              ELSE pg_visible_in_snapshot(x.xid, c.batch_snapshot)
                                   AND NOT pg_visible_in_snapshot(x.xid, c.acked_snapshot) END
                   ORDER BY x.position),
             1, left(reason, 2000), now(),
             CASE WHEN max_attempts > 1 THEN orders_internal.orders_events_retry_at(retry_delay, 1) END,
             CASE WHEN max_attempts <= 1 THEN now() END,
             false)::@extschema@.order_event_holds;
    PERFORM orders_internal.orders_events_hold_store(consumer, h);
    -- the stream goes on past it: the hold has it now
    PERFORM orders_internal.orders_events_ack_through(consumer, event_position, part);
    RETURN h;
END
$$;

-- Rejects the event at event_position, which the consumer's last read
-- returned, and acknowledges the events that read returned before it.
CREATE FUNCTION @extschema@.orders_events_nack(
    consumer text, event_position bigint, reason text,
    max_attempts integer DEFAULT 5, retry_delay interval DEFAULT '10 seconds')
RETURNS @extschema@.order_event_holds
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM orders_internal.orders_events_reject(consumer, event_position, reason,
                                                   max_attempts, retry_delay, NULL)
$$;

COMMENT ON FUNCTION @extschema@.orders_events_nack(text, bigint, text, integer, interval) IS
    'Rejects an event read: it comes again after retry_delay, doubling, and is parked after max_attempts failures; its order''s later events wait behind it';

-- The consumer's held orders: the event each is held at, its failures,
-- when it comes again (retry_at) or since when it is parked, and the
-- events waiting behind it.
CREATE FUNCTION @extschema@.orders_events_holds(consumer text)
RETURNS TABLE (order_id uuid, event_position bigint, type text, version integer,
               attempts integer, reason text, failed_at timestamptz,
               retry_at timestamptz, parked_at timestamptz, held_back bigint[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- not waiting for a reader, and on a standby too
    holds @extschema@.order_event_holds[] := orders_internal.orders_events_holds_peek(consumer);
BEGIN
    -- none on a cluster, whose outbox Citus would not join here
    IF cardinality(holds) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT h.order_id, h.position, e.type, e.version, h.attempts, h.reason, h.failed_at,
           h.retry_at, h.parked_at, h.later
    FROM unnest(holds) h
    LEFT JOIN @extschema@.order_events e ON e.position = h.position
    ORDER BY h.position;
END
$$;

COMMENT ON FUNCTION @extschema@.orders_events_holds(text) IS
    'The consumer''s held orders: each one''s rejected event, retried or parked, and the events waiting behind it';

-- The dead-letter list: the held events that failed max_attempts times.
CREATE FUNCTION @extschema@.orders_events_parked(consumer text)
RETURNS TABLE (order_id uuid, event_position bigint, type text, version integer,
               attempts integer, reason text, failed_at timestamptz,
               retry_at timestamptz, parked_at timestamptz, held_back bigint[])
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM @extschema@.orders_events_holds(consumer) h WHERE h.parked_at IS NOT NULL
$$;

COMMENT ON FUNCTION @extschema@.orders_events_parked(text) IS
    'The consumer''s parked events: rejected max_attempts times; replay or discard them';

-- The consumer's hold at event_position, which must be the event its
-- order is held at.
CREATE FUNCTION orders_internal.orders_events_hold_at(consumer text, event_position bigint)
RETURNS @extschema@.order_event_holds
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h @extschema@.order_event_holds;
BEGIN
    IF event_position IS NULL THEN
        RAISE EXCEPTION 'event_position must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO h FROM unnest(orders_internal.orders_events_holds_of(consumer)) x
    WHERE x.position = event_position;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'consumer "%" holds no event at position %', consumer, event_position
            USING ERRCODE = '22023',
                  HINT = 'orders_events_holds() lists the events held; an event waiting behind another is replayed or discarded after it.';
    END IF;
    RETURN h;
END
$$;

-- Tries a held event again at the consumer's next read, with its count of
-- failures back at zero: after the cause was mended.
CREATE FUNCTION @extschema@.orders_events_replay(consumer text, event_position bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h @extschema@.order_event_holds := orders_internal.orders_events_hold_at(consumer, event_position);
BEGIN
    h.attempts := 0;
    h.retry_at := now();
    h.parked_at := NULL;
    h.delivered := false;
    PERFORM orders_internal.orders_events_hold_store(consumer, h);
END
$$;

COMMENT ON FUNCTION @extschema@.orders_events_replay(text, bigint) IS
    'Delivers a held event again at the consumer''s next read, its failures counted from zero';

-- Gives up on a held event, as if handled: the order's next waiting event
-- comes at the consumer's next read.
CREATE FUNCTION @extschema@.orders_events_discard(consumer text, event_position bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM orders_internal.orders_events_hold_next(
        consumer, orders_internal.orders_events_hold_at(consumer, event_position));
END
$$;

COMMENT ON FUNCTION @extschema@.orders_events_discard(text, bigint) IS
    'Drops a held event, as if handled; the events of its order waiting behind it follow';

-- Rejects the event at event_position, which this reader's last read
-- returned, in its part (holds.sql), and acknowledges the events that read
-- returned before it.  A group's holds are its parts': see them with
-- orders_events_holds(consumer || '/' || part), the part being
-- orders_event_part(order_id).
CREATE FUNCTION @extschema@.orders_events_nack_group(
    consumer text, event_position bigint, reason text,
    max_attempts integer DEFAULT 5, retry_delay interval DEFAULT '10 seconds')
RETURNS @extschema@.order_event_holds
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p integer;
    read_parts integer[] := string_to_array(
        nullif(current_setting('orders_group.read_' || md5(consumer), true), ''), ',')::integer[];
BEGIN
    IF event_position IS NULL THEN
        RAISE EXCEPTION 'event_position must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT @extschema@.orders_event_part(e.order_id) INTO p
    FROM @extschema@.order_events e WHERE e.position = event_position;
    IF p IS NULL OR read_parts IS NULL OR p <> ALL (read_parts)
       OR p <> ALL (orders_internal.orders_events_group_held(consumer)) THEN
        RAISE EXCEPTION 'consumer group "%" has no event at position % that this reader read', consumer, event_position
            USING ERRCODE = '22023',
                  HINT = 'Reject an event that this reader''s last orders_events_read_group() returned.';
    END IF;
    IF event_position > 1 THEN
        PERFORM @extschema@.orders_events_ack_group(consumer, event_position - 1);
    END IF;
    RETURN orders_internal.orders_events_reject(consumer || '/' || p, event_position, reason,
                                            max_attempts, retry_delay, p);
END
$$;

COMMENT ON FUNCTION @extschema@.orders_events_nack_group(text, bigint, text, integer, interval) IS
    'As orders_events_nack, for a reader of consumer group consumer: the event is held in its part';
