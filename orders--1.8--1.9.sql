/* orders--1.8--1.9.sql: poison events: a consumer rejects an event, which
   is retried, then parked, while its order's later events wait behind it. */

\echo Use "ALTER EXTENSION orders UPDATE TO '1.9'" to load this file. \quit

SELECT @extschema@.orders_assert_trusted_schema();

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
CREATE FUNCTION @extschema@.orders_events_holds_of(consumer text)
RETURNS @extschema@.order_event_holds[]
AS 'MODULE_PATHNAME', 'orders_events_holds_of'
LANGUAGE C VOLATILE;

-- The same, the consumer not locked: for showing them.
CREATE FUNCTION @extschema@.orders_events_holds_peek(consumer text)
RETURNS @extschema@.order_event_holds[]
AS 'MODULE_PATHNAME', 'orders_events_holds_peek'
LANGUAGE C STABLE;

-- Writes one hold of the consumer, or ends it (position NULL).
CREATE FUNCTION @extschema@.orders_events_hold_store(consumer text, hold @extschema@.order_event_holds)
RETURNS void
AS 'MODULE_PATHNAME', 'orders_events_hold_store'
LANGUAGE C VOLATILE;

-- Every event a hold keeps, for the purge.
CREATE FUNCTION @extschema@.orders_events_held_positions()
RETURNS bigint[]
AS 'MODULE_PATHNAME', 'orders_events_held_positions'
LANGUAGE C STABLE;

-- When a held event that failed attempts times comes again: retry_delay
-- after its first failure, doubled after each one since, and never more
-- than a year on (a longer wait would overflow the types, not help).
CREATE FUNCTION @extschema@.orders_events_retry_at(retry_delay interval, attempts integer)
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
CREATE FUNCTION @extschema@.orders_events_hold_next(consumer text, h @extschema@.order_event_holds)
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
    PERFORM @extschema@.orders_events_hold_store(consumer, h);
    RETURN h;
END
$$;

-- The body of orders_events_nack, and of orders_events_nack_group for one
-- part: anyone may call it, as it does nothing its helpers do not check
-- themselves.
CREATE FUNCTION @extschema@.orders_events_reject(
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
    IF @extschema@.orders_distributed() THEN
        RAISE EXCEPTION 'orders_events_nack() is not supported while Citus distributes the outbox'
            USING ERRCODE = '0A000',
                  DETAIL = 'Rejected events are held on a single node only.';
    END IF;
    c := @extschema@.orders_events_consumer(consumer);
    SELECT * INTO e FROM @extschema@.order_events x WHERE x.position = event_position;
    IF FOUND THEN
        SELECT * INTO h FROM unnest(@extschema@.orders_events_holds_of(consumer)) x
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
        PERFORM @extschema@.orders_events_ack_through(consumer, event_position - 1, part);
        h.attempts := h.attempts + 1;
        h.reason := left(reason, 2000);
        h.failed_at := now();
        h.delivered := false;
        IF h.attempts >= max_attempts THEN
            h.retry_at := NULL;
            h.parked_at := now();
        ELSE
            h.retry_at := @extschema@.orders_events_retry_at(retry_delay, h.attempts);
        END IF;
        PERFORM @extschema@.orders_events_hold_store(consumer, h);
        RETURN h;
    END IF;

    IF h.position IS NOT NULL AND event_position = ANY (h.later) THEN
        -- the order is held at an earlier event already: this one waits
        -- behind it whatever its own outcome
        PERFORM @extschema@.orders_events_ack_through(consumer, event_position, part);
        RETURN h;
    END IF;

    IF h.position IS NOT NULL THEN
        RAISE EXCEPTION 'consumer "%" holds order % at event %, not at event %',
                        consumer, e.order_id, h.position, event_position
            USING ERRCODE = '22023',
                  HINT = 'Reject an event that the consumer''s last read returned.';
    END IF;
    -- an event of the stream: not acknowledged yet, in the batch open
    IF e.position IS NULL OR c.batch_snapshot IS NULL OR event_position <= c.batch_position
       OR NOT pg_visible_in_snapshot(e.xid, c.batch_snapshot)
       OR pg_visible_in_snapshot(e.xid, c.acked_snapshot)
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
                     AND pg_visible_in_snapshot(x.xid, c.batch_snapshot)
                     AND NOT pg_visible_in_snapshot(x.xid, c.acked_snapshot)
                   ORDER BY x.position),
             1, left(reason, 2000), now(),
             CASE WHEN max_attempts > 1 THEN @extschema@.orders_events_retry_at(retry_delay, 1) END,
             CASE WHEN max_attempts <= 1 THEN now() END,
             false)::@extschema@.order_event_holds;
    PERFORM @extschema@.orders_events_hold_store(consumer, h);
    -- the stream goes on past it: the hold has it now
    PERFORM @extschema@.orders_events_ack_through(consumer, event_position, part);
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
    SELECT * FROM @extschema@.orders_events_reject(consumer, event_position, reason,
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
    holds @extschema@.order_event_holds[] := @extschema@.orders_events_holds_peek(consumer);
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
CREATE FUNCTION @extschema@.orders_events_hold_at(consumer text, event_position bigint)
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
    SELECT * INTO h FROM unnest(@extschema@.orders_events_holds_of(consumer)) x
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
    h @extschema@.order_event_holds := @extschema@.orders_events_hold_at(consumer, event_position);
BEGIN
    h.attempts := 0;
    h.retry_at := now();
    h.parked_at := NULL;
    h.delivered := false;
    PERFORM @extschema@.orders_events_hold_store(consumer, h);
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
    PERFORM @extschema@.orders_events_hold_next(
        consumer, @extschema@.orders_events_hold_at(consumer, event_position));
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
       OR p <> ALL (@extschema@.orders_events_group_held(consumer)) THEN
        RAISE EXCEPTION 'consumer group "%" has no event at position % that this reader read', consumer, event_position
            USING ERRCODE = '22023',
                  HINT = 'Reject an event that this reader''s last orders_events_read_group() returned.';
    END IF;
    IF event_position > 1 THEN
        PERFORM @extschema@.orders_events_ack_group(consumer, event_position - 1);
    END IF;
    RETURN @extschema@.orders_events_reject(consumer || '/' || p, event_position, reason,
                                            max_attempts, retry_delay, p);
END
$$;

COMMENT ON FUNCTION @extschema@.orders_events_nack_group(text, bigint, text, integer, interval) IS
    'As orders_events_nack, for a reader of consumer group consumer: the event is held in its part';

-- Reading delivers the held events that are due, and holds back the
-- events of held orders; acknowledging handles the held events delivered.
-- The body of both orders_events_read, and of orders_events_read_group for
-- one part: anyone may call it, as it does nothing its helpers do not check
-- themselves.  types: only events of these types; part: only the events of
-- the orders in that part (groups.sql).  The others are skipped, and count
-- as acknowledged once an event after them is, or the batch ends.  A
-- consumer with held orders (holds.sql) gets their events that are due as
-- well, in position order with the others, and no event of a held order
-- from the stream: each one met is added to its order's hold.
CREATE OR REPLACE FUNCTION @extschema@.orders_events_next(
    consumer text, max_events integer, types text[], part integer DEFAULT NULL)
RETURNS SETOF @extschema@.order_events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c @extschema@.order_event_consumers;
    n bigint;
    holds @extschema@.order_event_holds[];
    h @extschema@.order_event_holds;
    e @extschema@.order_events;
    due @extschema@.order_events[] := '{}';
    chunk @extschema@.order_events[];
    stream @extschema@.order_events[] := '{}';
    result @extschema@.order_events[];
    held uuid[];
    newer bigint[];
    stored bigint[];
    changed integer[] := '{}';
    returned bigint[];
    last bigint;
    opened boolean := false;
    moved boolean := false;
    bound bigint := 9223372036854775807;
    i integer;
BEGIN
    PERFORM @extschema@.orders_events_check_read(max_events, types);
    IF part IS NOT NULL AND (part NOT BETWEEN 0 AND 15
                             OR right(consumer, length(part::text) + 1) <> '/' || part) THEN
        RAISE EXCEPTION 'consumer "%" is not part % of a consumer group', consumer, part
            USING ERRCODE = '22023';
    END IF;
    c := @extschema@.orders_events_consumer(consumer);
    holds := @extschema@.orders_events_holds_of(consumer);

    IF cardinality(holds) = 0 THEN
        IF c.batch_snapshot IS NOT NULL THEN
            -- what is left of the batch in progress: events not acknowledged
            -- before a crash come again
            RETURN QUERY SELECT * FROM @extschema@.orders_events_batch(c, max_events, false, types, part);
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
        RETURN QUERY SELECT * FROM @extschema@.orders_events_batch(c, max_events, false, types, part);
        RETURN;
    END IF;

    -- the held events that are due, the first max_events of them by
    -- position.  One the read passes over (of another type, not for this
    -- role's eyes, or purged with older_than) counts as handled, as in the
    -- stream, and the next one of its order is due in its place.
    FOR h IN SELECT * FROM unnest(holds) x WHERE x.parked_at IS NULL AND x.retry_at <= now() LOOP
        WHILE h.position IS NOT NULL LOOP
            SELECT * INTO e FROM @extschema@.order_events x WHERE x.position = h.position;
            IF FOUND AND (types IS NULL OR e.type = ANY (types)) THEN
                due := due || e;
                EXIT;
            END IF;
            h := @extschema@.orders_events_hold_next(consumer, h);
            moved := true;
        END LOOP;
    END LOOP;
    due := ARRAY(SELECT d FROM unnest(due) d ORDER BY d.position LIMIT max_events);
    IF moved THEN
        holds := @extschema@.orders_events_holds_of(consumer);
    END IF;
    held := ARRAY(SELECT x.order_id FROM unnest(holds) x);
    stored := ARRAY(SELECT greatest(x.position, x.later[cardinality(x.later)]) FROM unnest(holds) x);

    -- the stream, as above, but a held order's events join its hold.  Read
    -- on until max_events are to be returned or the batch ends: a read that
    -- returns fewer has read its batch to the end, which a group's
    -- acknowledgement through another part's position relies on.  A part
    -- of the batch that is all of held orders is acknowledged here, its
    -- events stored in their holds; the others' are stored below, up to
    -- what the reader will acknowledge.
    LOOP
        IF c.batch_snapshot IS NULL THEN
            EXIT WHEN opened;
            c := @extschema@.orders_events_open_batch(consumer);
            opened := true;
        END IF;
        chunk := ARRAY(SELECT b FROM @extschema@.orders_events_batch(c, max_events, false, types, part) b);
        IF cardinality(chunk) = 0 THEN
            bound := 9223372036854775807;
            EXIT WHEN opened OR cardinality(stream) > 0;
            PERFORM @extschema@.orders_events_advance(consumer, c.batch_position, true);
            c.batch_snapshot := NULL;
            CONTINUE;
        END IF;
        stream := stream || ARRAY(SELECT x FROM unnest(chunk) x WHERE x.order_id <> ALL (held));
        FOR i, newer IN
            SELECT array_position(held, x.order_id), array_agg(x.position ORDER BY x.position)
            FROM unnest(chunk) x WHERE x.order_id = ANY (held) GROUP BY x.order_id
        LOOP
            -- an order's events come in position order: those beyond the
            -- last its hold has are new to it
            h := holds[i];
            newer := ARRAY(SELECT p FROM unnest(newer) p
                           WHERE p > greatest(h.position, h.later[cardinality(h.later)]));
            IF cardinality(newer) > 0 THEN
                h.later := h.later || newer;
                holds[i] := h;
                changed := changed || i;
            END IF;
        END LOOP;
        last := chunk[cardinality(chunk)].position;
        IF cardinality(chunk) < max_events THEN
            bound := 9223372036854775807;   -- nothing of the batch after it
            EXIT WHEN cardinality(stream) > 0;
        ELSE
            -- more of the batch may follow: no held event beyond it is
            -- returned, so that acknowledging through the last position
            -- returned passes over no event unread
            bound := last;
            EXIT WHEN cardinality(stream) >= max_events;
        END IF;
        IF cardinality(stream) = 0 THEN
            FOREACH i IN ARRAY ARRAY(SELECT DISTINCT x FROM unnest(changed) x) LOOP
                PERFORM @extschema@.orders_events_hold_store(consumer, holds[i]);
                stored[i] := greatest(holds[i].position, holds[i].later[cardinality(holds[i].later)]);
            END LOOP;
            changed := '{}';
            PERFORM @extschema@.orders_events_advance(consumer, last, false);
        END IF;
        c.batch_position := last;           -- read on after it
    END LOOP;

    -- rows of the outbox's own type throughout: a record would be
    -- converted back through its text form
    due := ARRAY(SELECT d FROM unnest(due) d WHERE d.position <= bound);
    result := ARRAY(SELECT x FROM unnest(due || stream) x ORDER BY x.position LIMIT max_events);
    returned := ARRAY(SELECT r.position FROM unnest(result) r);

    -- A held order's events met in the stream are stored in its hold up to
    -- the last position returned, which the reader acknowledges through:
    -- those after it come again at the next read, so that a hold
    -- discarded meanwhile does not take events the stream has not passed.
    -- The held events returned are delivered, and only they: acknowledging
    -- them, or rejecting them again, is now the reader's.
    FOR i IN SELECT x.k
             FROM unnest(holds) WITH ORDINALITY
                  x(consumer, order_id, position, later, attempts, reason, failed_at, retry_at,
                    parked_at, delivered, k)
             WHERE x.k = ANY (changed) OR x.delivered <> (x.position = ANY (returned)) LOOP
        h := holds[i];
        h.later := ARRAY(SELECT p FROM unnest(h.later) p
                         WHERE p <= greatest(stored[i], (SELECT max(r) FROM unnest(returned) r)));
        h.delivered := h.position = ANY (returned);
        PERFORM @extschema@.orders_events_hold_store(consumer, h);
    END LOOP;
    RETURN QUERY SELECT * FROM unnest(result);
END
$$;

-- The body of orders_events_ack, and of orders_events_ack_group for one
-- part: anyone may call it, as it does nothing its helpers do not check
-- themselves.  part: the consumer is that part of a group, whose batches
-- hold only its orders' events.
CREATE OR REPLACE FUNCTION @extschema@.orders_events_ack_through(
    consumer text, last_position bigint, part integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c @extschema@.order_event_consumers;
    h @extschema@.order_event_holds;
BEGIN
    IF last_position IS NULL THEN
        RAISE EXCEPTION 'last_position must not be null' USING ERRCODE = '22004';
    END IF;
    IF part IS NOT NULL AND (part NOT BETWEEN 0 AND 15
                             OR right(consumer, length(part::text) + 1) <> '/' || part) THEN
        RAISE EXCEPTION 'consumer "%" is not part % of a consumer group', consumer, part
            USING ERRCODE = '22023';
    END IF;
    c := @extschema@.orders_events_consumer(consumer);
    -- the held events delivered up to it are handled (holds.sql)
    FOR h IN SELECT * FROM unnest(@extschema@.orders_events_holds_of(consumer)) x
             WHERE x.delivered AND x.position <= last_position LOOP
        PERFORM @extschema@.orders_events_hold_next(consumer, h);
    END LOOP;
    IF c.batch_snapshot IS NULL THEN
        RETURN;                         -- nothing read, nothing to acknowledge
    END IF;
    c.batch_position := greatest(c.batch_position, last_position);
    -- nothing left after it: the whole batch is acknowledged, and its cut
    -- becomes the checkpoint
    PERFORM @extschema@.orders_events_advance(
        consumer, c.batch_position,
        NOT EXISTS (SELECT FROM @extschema@.orders_events_batch(c, 1, false, NULL, part)));
END
$$;

-- The purge keeps the held events.
-- An event is kept until every registered consumer has acknowledged it, so
-- a consumer that stops reading holds the outbox back: unregister the ones
-- that are gone.  older_than removes older events whatever the consumers'
-- checkpoints and holds say.  Otherwise the events a consumer holds
-- (holds.sql) stay until their holds end.  Needs DELETE on order_events and SELECT on
-- order_event_consumers (the table owner has both): the function runs as
-- its caller.
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
    node record;
    held bigint[];
BEGIN
    -- On a cluster each node's events are judged by the consumers' cuts of
    -- that node (position % 1024 tells it): below the smallest xmin, when
    -- every consumer has a cut of it.  A checkpoint without cuts is from
    -- before the outbox was distributed, the coordinator's (group 0).
    IF @extschema@.orders_distributed() THEN
        n := 0;
        -- no event is held on a cluster (holds.sql): nothing to keep for holds
        FOR node IN
            SELECT k.node_group, min(pg_snapshot_xmin(k.snapshot)) AS below
            FROM @extschema@.order_event_consumers c
            CROSS JOIN LATERAL unnest(coalesce(c.acked_cuts,
                ARRAY[ROW(0, c.acked_snapshot, c.acked_top_position, c.acked_next_xid)]
                    ::@extschema@.order_event_cut[])) k
            GROUP BY k.node_group
            HAVING count(*) = (SELECT count(*) FROM @extschema@.order_event_consumers)
        LOOP
            DELETE FROM @extschema@.order_events e
            WHERE e.xid < node.below AND e.position % 1024 = node.node_group;
            GET DIAGNOSTICS m = ROW_COUNT;
            n := n + m;
        END LOOP;
        IF older_than IS NOT NULL THEN
            DELETE FROM @extschema@.order_events e WHERE e.occurred_at < now() - older_than;
            GET DIAGNOSTICS m = ROW_COUNT;
            n := n + m;
        END IF;
        RETURN n;
    END IF;
    -- Below every checkpoint's xmin, every event is acknowledged by all: one
    -- range of the xid index, no test per row.  Between that and the
    -- smallest xmax, each checkpoint is asked.  Events still in flight are
    -- never seen, so kept.
    SELECT min(pg_snapshot_xmin(acked_snapshot)), min(pg_snapshot_xmax(acked_snapshot))
    INTO below, horizon
    FROM @extschema@.order_event_consumers;
    -- read after the checkpoints: an event a reader holds and acknowledges
    -- meanwhile is either not below these checkpoints yet, or held here
    held := @extschema@.orders_events_held_positions();

    DELETE FROM @extschema@.order_events e
    WHERE e.xid < below AND NOT EXISTS (SELECT FROM unnest(held) k WHERE k = e.position);
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM @extschema@.order_events e
    WHERE e.xid >= below AND e.xid < horizon
      AND NOT EXISTS (SELECT FROM unnest(held) k WHERE k = e.position)
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

-- Distributing the outbox is refused while events are held.
CREATE OR REPLACE FUNCTION @extschema@.orders_distribute(shard_count integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    node record;
    taken bigint;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'orders_distribute() needs extension "citus" in this database'
            USING ERRCODE = '55000';
    END IF;
    IF EXISTS (SELECT FROM pg_dist_partition
               WHERE logicalrelid IN ('@extschema@.orders'::regclass,
                                      '@extschema@.order_events'::regclass)) THEN
        RAISE EXCEPTION 'tables "orders" and "order_events" are distributed already'
            USING ERRCODE = '55000',
                  HINT = 'orders_distribute() sets up a cluster once, from tables that are not distributed.';
    END IF;

    -- Citus crashes the backend that plans a delegated call with a NULL
    -- distribution argument; the library's planner hook refuses such a
    -- call first (src/routing.c), in every session where it is preloaded.
    FOR node IN
        SELECT * FROM run_command_on_all_nodes(
            $q$SELECT 'orders' = ANY (pg_catalog.string_to_array(pg_catalog.replace(
                   pg_catalog.current_setting('shared_preload_libraries'), ' ', ''), ','))$q$)
    LOOP
        IF NOT node.success OR node.result IS DISTINCT FROM 't' THEN
            RAISE EXCEPTION 'Citus node % does not preload library "orders"', node.nodeid
                USING ERRCODE = '55000',
                      DETAIL = CASE WHEN node.success THEN 'Its shared_preload_libraries does not name orders.'
                                    ELSE 'It could not be asked: ' || node.result END,
                      HINT = 'Set shared_preload_libraries = ''citus,orders'' on every node, and restart them.';
        END IF;
    END LOOP;

    -- Citus runs a function's DDL over one connection a node, and
    -- distributing a table uses many unless told otherwise.
    SET LOCAL citus.multi_shard_modify_mode TO 'sequential';
    -- Citus plans neither a query into which a SQL function that reads a
    -- distributed table was inlined, nor that function's own statement
    -- (its arguments are parameters): on a cluster orders_find plans each
    -- call for the filters given, as orders_count does.
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
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    AS $find$
    BEGIN
        RETURN QUERY EXECUTE
            'SELECT o.* FROM @extschema@.orders o WHERE '
            || @extschema@.orders_filter_sql($1, $2, $3, $4, $5, $6)
            || CASE WHEN $7 IS NULL THEN '' ELSE ' AND o.id OPERATOR(pg_catalog.>) $7' END
            || ' ORDER BY o.id LIMIT $8'
            USING $1, $2, $3, $4, $5, $6, $7, $8;
    END
    $find$;
    LOCK TABLE @extschema@.orders, @extschema@.order_events, @extschema@.order_event_consumers,
               @extschema@.order_event_holds
        IN EXCLUSIVE MODE;
    -- rejected events are held on one node only (holds.sql): their
    -- positions would not follow the outbox onto the cluster
    IF EXISTS (SELECT FROM @extschema@.order_event_holds) THEN
        RAISE EXCEPTION 'consumers hold rejected events'
            USING ERRCODE = '55000',
                  HINT = 'Replay or discard them (orders_events_holds() lists a consumer''s), then distribute.';
    END IF;
    -- the relay worker's consumer: relay is refused on a cluster, and a
    -- checkpoint nobody moves would keep every event from retention
    DELETE FROM @extschema@.order_event_consumers WHERE name = 'orders_relay';
    ALTER TABLE @extschema@.order_events DROP CONSTRAINT order_events_pkey;
    UPDATE @extschema@.order_events SET position = position * 1024;
    UPDATE @extschema@.order_event_consumers
    SET acked_top_position = acked_top_position * 1024,
        batch_top_position = batch_top_position * 1024,
        batch_position = batch_position * 1024;
    -- a batch open now goes on as the coordinator's (group 0) cut
    UPDATE @extschema@.order_event_consumers
    SET batch_cuts = ARRAY[ROW(0, batch_snapshot, batch_top_position, batch_next_xid)]
                         ::@extschema@.order_event_cut[]
    WHERE batch_snapshot IS NOT NULL;
    ALTER TABLE @extschema@.order_events
        ADD CONSTRAINT order_events_pkey PRIMARY KEY (order_id, position);
    -- consumers read each node's events in position order (orders_events_batch)
    CREATE INDEX order_events_position_idx ON @extschema@.order_events (position);
    SELECT last_value INTO taken FROM @extschema@.order_events_position_seq;
    FOR node IN
        SELECT * FROM run_command_on_workers(
            format('SELECT pg_catalog.setval(%L, %s)',
                   '@extschema@.order_events_position_seq', taken))
    LOOP
        IF NOT node.success THEN
            RAISE EXCEPTION 'could not set the event position sequence on Citus node %:%',
                node.nodename, node.nodeport
                USING ERRCODE = '55000', DETAIL = node.result;
        END IF;
    END LOOP;

    PERFORM create_distributed_table('@extschema@.orders', 'id', shard_count => shard_count);
    PERFORM create_distributed_table('@extschema@.order_events', 'order_id',
                                     colocate_with => '@extschema@.orders');
    -- the rows copied into the shards stay in the shells' files otherwise
    PERFORM truncate_local_data_after_distributing_table('@extschema@.orders');
    PERFORM truncate_local_data_after_distributing_table('@extschema@.order_events');
    PERFORM create_distributed_function(
        '@extschema@.orders_add_at(uuid, text, @extschema@.order_line[], @extschema@.order_address, uuid, text)',
        'id', colocate_with => '@extschema@.orders', force_delegation => true);
    PERFORM create_distributed_function('@extschema@.orders_get_at(uuid)',
        'id', colocate_with => '@extschema@.orders', force_delegation => true);
    PERFORM create_distributed_function('@extschema@.orders_save_at(@extschema@.orders, uuid, text)',
        'id', colocate_with => '@extschema@.orders', force_delegation => true);
    PERFORM create_distributed_function('@extschema@.orders_remove_at(uuid, integer, text)',
        'id', colocate_with => '@extschema@.orders', force_delegation => true);
END
$$;

REVOKE ALL ON @extschema@.order_event_holds FROM PUBLIC;
REVOKE ALL ON FUNCTION
    @extschema@.orders_events_nack(text, bigint, text, integer, interval),
    @extschema@.orders_events_nack_group(text, bigint, text, integer, interval),
    @extschema@.orders_events_holds(text),
    @extschema@.orders_events_parked(text),
    @extschema@.orders_events_replay(text, bigint),
    @extschema@.orders_events_discard(text, bigint)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.orders_events_holds_of(text),
    @extschema@.orders_events_holds_peek(text),
    @extschema@.orders_events_hold_store(text, @extschema@.order_event_holds),
    @extschema@.orders_events_held_positions(),
    @extschema@.orders_events_hold_next(text, @extschema@.order_event_holds),
    @extschema@.orders_events_hold_at(text, bigint),
    @extschema@.orders_events_retry_at(interval, integer),
    @extschema@.orders_events_reject(text, bigint, text, integer, interval, integer)
TO PUBLIC;
