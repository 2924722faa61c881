/* schema/consuming.sql: reading the outbox, acknowledging, watching the lag */

-- A consumer reads its next events with orders_events_read, in batches
-- (see "Gap-free reading" in consumers.sql), and acknowledges them with
-- orders_events_ack.  Each function runs as its caller: it reads
-- order_events with the caller's own privileges and row-level security (an
-- event carries a whole order, so consuming needs SELECT on orders and on
-- order_events), and moves a checkpoint only through the C functions of
-- consumers.sql, which check that the caller owns the consumer.

-- The next events of a consumer's open batch after its batch_position, in
-- position order: the late events of transactions that were running at the
-- checkpoint, each read through (xid, position), then the committed events
-- above the checkpoint's top position, read through the primary key, up to
-- the batch's own top position.  A read of max_events costs about
-- max_events index entries, however far behind the consumer is (with
-- types or part, the entries passed over count too: a rare type, or one
-- part of 16, costs what the range holds).  With
-- relay_only, just the events whose NOTIFY the relay worker sends
-- (relay.sql); with types, just the events of those types; with part,
-- just the events of the orders in that part of a consumer group
-- (groups.sql).  The others are passed over in the same index scans, and so
-- acknowledged with the ones after them.
CREATE FUNCTION orders_internal.orders_events_batch(
    c @extschema@.order_event_consumers, max_events integer, relay_only boolean DEFAULT false,
    types text[] DEFAULT NULL, part integer DEFAULT NULL)
RETURNS SETOF @extschema@.order_events
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off                           -- a few index probes: never worth compiling
AS $$
DECLARE
    relay_filter text := CASE WHEN relay_only THEN ' AND e.relay' ELSE '' END
        || CASE WHEN types IS NOT NULL THEN format(' AND e.type = ANY (%L::text[])', types) ELSE '' END
        || CASE WHEN part IS NOT NULL
                THEN format(' AND @extschema@.orders_event_part(e.order_id) = %s', part) ELSE '' END;
    b @extschema@.order_event_cut;
    a @extschema@.order_event_cut;
    parts text[] := '{}';
BEGIN
    -- On a cluster: the same two parts for each node's events, as
    -- position % 1024 tells them, between the checkpoint's cut of that node
    -- and the batch's, in one distributed statement (see "Across the nodes
    -- of a cluster" in consumers.sql).  A node the checkpoint has no cut of
    -- has nothing of it acknowledged.
    IF c.batch_cuts IS NOT NULL THEN
        FOREACH b IN ARRAY c.batch_cuts LOOP
            a := NULL;
            SELECT x.* INTO a
            FROM unnest(coalesce(c.acked_cuts,
                                 ARRAY[ROW(0, c.acked_snapshot, c.acked_top_position,
                                           c.acked_next_xid)]::@extschema@.order_event_cut[])) x
            WHERE x.node_group = b.node_group;
            parts := parts || format(
                '(SELECT * FROM @extschema@.order_events e
                  WHERE e.position > %s AND e.position <= %s AND e.position %% 1024 = %s
                    AND pg_visible_in_snapshot(e.xid, %L::pg_snapshot)%s%s
                  ORDER BY e.position LIMIT %s)',
                greatest(coalesce(a.top_position, 0), c.batch_position),
                coalesce(b.top_position, 9223372036854775807),
                b.node_group, b.snapshot,
                CASE WHEN a.snapshot IS NOT NULL
                     THEN format(' AND NOT pg_visible_in_snapshot(e.xid, %L::pg_snapshot)', a.snapshot)
                     ELSE '' END,
                relay_filter, max_events);
            -- the late events of the transactions running at the checkpoint's cut
            IF a.top_position > c.batch_position THEN
                parts := parts || format(
                    '(SELECT * FROM @extschema@.order_events e
                      WHERE (e.xid = ANY (%L::xid8[]) OR (e.xid >= %L::xid8 AND e.xid < %L::xid8))
                        AND e.position > %s AND e.position <= %s AND e.position %% 1024 = %s
                        AND pg_visible_in_snapshot(e.xid, %L::pg_snapshot)%s
                      ORDER BY e.position LIMIT %s)',
                    ARRAY(SELECT pg_snapshot_xip(a.snapshot)), pg_snapshot_xmax(a.snapshot),
                    a.next_xid, c.batch_position, a.top_position, b.node_group, b.snapshot,
                    relay_filter, max_events);
            END IF;
        END LOOP;
        IF cardinality(parts) = 0 THEN
            RETURN;
        END IF;
        RETURN QUERY EXECUTE
            'SELECT * FROM (' || array_to_string(parts, ' UNION ALL ') || ') e
             ORDER BY e.position LIMIT ' || max_events;
        RETURN;
    END IF;
    IF orders_internal.orders_distributed() THEN
        RAISE EXCEPTION 'consumer %''s open batch has no cuts of the cluster''s nodes', c.name
            USING ERRCODE = '55000',
                  HINT = 'Run ALTER EXTENSION orders UPDATE, which gives a batch left open its cuts.';
    END IF;

    -- EXECUTE: planned for these values, so that each part keeps its index.
    -- Settled events ($8 and below, from another cluster: see "From another
    -- cluster" in consumers.sql) are never judged by their transaction:
    -- the consumer's carried ones come first, by position alone.
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
              WHERE e.xid = late.xid AND e.position > greatest($5, $8) AND e.position <= $4' || relay_filter || '
              ORDER BY e.position LIMIT $7) e
          WHERE pg_visible_in_snapshot(late.xid, $2)
          UNION ALL
          SELECT e.* FROM (
              SELECT * FROM @extschema@.order_events e
              WHERE e.position > greatest($4, $5, $8) AND e.position <= $6' || relay_filter || '
                AND pg_visible_in_snapshot(e.xid, $2)
                AND NOT pg_visible_in_snapshot(e.xid, $1)
              ORDER BY e.position LIMIT $7) e'
        || CASE WHEN c.carried_after IS NULL THEN '' ELSE '
          UNION ALL
          SELECT e.* FROM (
              SELECT * FROM @extschema@.order_events e
              WHERE e.position > greatest($9, $5) AND e.position <= $8' || relay_filter || '
              ORDER BY e.position LIMIT $7) e
          UNION ALL
          SELECT e.* FROM (
              SELECT * FROM @extschema@.order_events e
              WHERE e.position = ANY ($10) AND e.position > $5' || relay_filter || '
              ORDER BY e.position LIMIT $7) e' END || ')
         ORDER BY position
         LIMIT $7'
        USING c.acked_snapshot, c.batch_snapshot, c.acked_next_xid,
              coalesce(c.acked_top_position, 0), c.batch_position,
              coalesce(c.batch_top_position, 9223372036854775807), max_events,
              c.settled_position, c.carried_after, c.carried;
END
$$;

-- The arguments of a read, checked before anything is taken.  A misspelt
-- type would skip, and so acknowledge, every event.
CREATE FUNCTION orders_internal.orders_events_check_read(max_events integer, types text[])
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    unknown text;
BEGIN
    IF max_events IS NULL OR max_events < 1 THEN
        RAISE EXCEPTION 'max_events must be at least 1' USING ERRCODE = '22023';
    END IF;
    IF types IS NOT NULL THEN
        IF array_ndims(types) > 1 THEN
            RAISE EXCEPTION 'types must be a one-dimensional array'
                USING ERRCODE = '22023';
        END IF;
        IF cardinality(types) = 0 OR array_position(types, NULL) IS NOT NULL THEN
            RAISE EXCEPTION 'types must list at least one event type, and no null'
                USING ERRCODE = '22023',
                      HINT = 'Pass NULL to read events of every type.';
        END IF;
        SELECT t INTO unknown FROM unnest(types) t
        WHERE t <> ALL (@extschema@.orders_event_types()) LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'unknown event type "%"', unknown
                USING ERRCODE = '22023',
                      HINT = 'The event types are: ' || array_to_string(@extschema@.orders_event_types(), ', ') || '.';
        END IF;
    END IF;
END
$$;

-- The body of both orders_events_read, and of orders_events_read_group for
-- one part: anyone may call it, as it does nothing its helpers do not check
-- themselves.  types: only events of these types; part: only the events of
-- the orders in that part (groups.sql).  The others are skipped, and count
-- as acknowledged once an event after them is, or the batch ends.  A
-- consumer with held orders (holds.sql) gets their events that are due as
-- well, in position order with the others, and no event of a held order
-- from the stream: each one met is added to its order's hold.
CREATE FUNCTION orders_internal.orders_events_next(
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
    PERFORM orders_internal.orders_events_check_read(max_events, types);
    IF part IS NOT NULL AND (part NOT BETWEEN 0 AND 15
                             OR right(consumer, length(part::text) + 1) <> '/' || part) THEN
        RAISE EXCEPTION 'consumer "%" is not part % of a consumer group', consumer, part
            USING ERRCODE = '22023';
    END IF;
    c := orders_internal.orders_events_consumer(consumer);
    holds := orders_internal.orders_events_holds_of(consumer);

    IF cardinality(holds) = 0 THEN
        IF c.batch_snapshot IS NOT NULL THEN
            -- what is left of the batch in progress: events not acknowledged
            -- before a crash come again
            RETURN QUERY SELECT * FROM orders_internal.orders_events_batch(c, max_events, false, types, part);
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n > 0 THEN
                RETURN;
            END IF;
            -- the batch is done: its cut is the new checkpoint
            PERFORM orders_internal.orders_events_advance(consumer, c.batch_position, true);
        END IF;

        -- a new batch, everything committed since the checkpoint: its cut is
        -- taken once the consumer is ours, so that a reader that waited for
        -- another never opens a batch older than the checkpoint that one left
        c := orders_internal.orders_events_open_batch(consumer);
        RETURN QUERY SELECT * FROM orders_internal.orders_events_batch(c, max_events, false, types, part);
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
            h := orders_internal.orders_events_hold_next(consumer, h);
            moved := true;
        END LOOP;
    END LOOP;
    due := ARRAY(SELECT d FROM unnest(due) d ORDER BY d.position LIMIT max_events);
    IF moved THEN
        holds := orders_internal.orders_events_holds_of(consumer);
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
            c := orders_internal.orders_events_open_batch(consumer);
            opened := true;
        END IF;
        chunk := ARRAY(SELECT b FROM orders_internal.orders_events_batch(c, max_events, false, types, part) b);
        IF cardinality(chunk) = 0 THEN
            bound := 9223372036854775807;
            EXIT WHEN opened OR cardinality(stream) > 0;
            PERFORM orders_internal.orders_events_advance(consumer, c.batch_position, true);
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
                PERFORM orders_internal.orders_events_hold_store(consumer, holds[i]);
                stored[i] := greatest(holds[i].position, holds[i].later[cardinality(holds[i].later)]);
            END LOOP;
            changed := '{}';
            PERFORM orders_internal.orders_events_advance(consumer, last, false);
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
        PERFORM orders_internal.orders_events_hold_store(consumer, h);
    END LOOP;
    RETURN QUERY SELECT * FROM unnest(result);
END
$$;

-- Two functions, not one with a new argument: a grant of the first, made
-- before types came (1.8), stays as it was.  The second has no defaults,
-- so that a call with two parameters of unknown type, as node-postgres
-- sends them, still finds only the first.
CREATE FUNCTION @extschema@.orders_events_read(consumer text, max_events integer DEFAULT 100)
RETURNS SETOF @extschema@.order_events
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM orders_internal.orders_events_next(consumer, max_events, NULL)
$$;

COMMENT ON FUNCTION @extschema@.orders_events_read(text, integer) IS
    'The consumer''s next events in position order, from its checkpoint; unacknowledged ones again';

CREATE FUNCTION @extschema@.orders_events_read(
    consumer text, max_events integer, types text[])
RETURNS SETOF @extschema@.order_events
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM orders_internal.orders_events_next(consumer, max_events, types)
$$;

COMMENT ON FUNCTION @extschema@.orders_events_read(text, integer, text[]) IS
    'As orders_events_read(consumer, max_events), with only events of types; the others skipped count as acknowledged';

-- The body of orders_events_ack, and of orders_events_ack_group for one
-- part: anyone may call it, as it does nothing its helpers do not check
-- themselves.  part: the consumer is that part of a group, whose batches
-- hold only its orders' events.
CREATE FUNCTION orders_internal.orders_events_ack_through(
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
    c := orders_internal.orders_events_consumer(consumer);
    -- the held events delivered up to it are handled (holds.sql)
    FOR h IN SELECT * FROM unnest(orders_internal.orders_events_holds_of(consumer)) x
             WHERE x.delivered AND x.position <= last_position LOOP
        PERFORM orders_internal.orders_events_hold_next(consumer, h);
    END LOOP;
    IF c.batch_snapshot IS NULL THEN
        RETURN;                         -- nothing read, nothing to acknowledge
    END IF;
    c.batch_position := greatest(c.batch_position, last_position);
    -- nothing left after it: the whole batch is acknowledged, and its cut
    -- becomes the checkpoint
    PERFORM orders_internal.orders_events_advance(
        consumer, c.batch_position,
        NOT EXISTS (SELECT FROM orders_internal.orders_events_batch(c, 1, false, NULL, part)));
END
$$;

CREATE FUNCTION @extschema@.orders_events_ack(consumer text, last_position bigint)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT orders_internal.orders_events_ack_through(consumer, last_position)
$$;

COMMENT ON FUNCTION @extschema@.orders_events_ack(text, bigint) IS
    'Acknowledges the events read, up to and including last_position';

-- On a cluster, what consumer c has not acknowledged, counted exactly, by
-- each node's cuts (see "Across the nodes of a cluster" in consumers.sql):
-- one distributed statement whose cost grows with the backlog.
CREATE FUNCTION orders_internal.orders_events_cluster_pending(
    c @extschema@.order_event_consumers, OUT pending bigint, OUT oldest timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    acked @extschema@.order_event_cut[] := coalesce(c.acked_cuts,
        ARRAY[ROW(0, c.acked_snapshot, c.acked_top_position, c.acked_next_xid)]::@extschema@.order_event_cut[]);
    groups integer[];
    g integer;
    a @extschema@.order_event_cut;
    b @extschema@.order_event_cut;
    parts text[] := '{}';
BEGIN
    groups := ARRAY(SELECT x.node_group FROM unnest(acked) x
                    UNION SELECT x.node_group FROM unnest(c.batch_cuts) x);
    FOREACH g IN ARRAY groups LOOP
        a := NULL;
        b := NULL;
        SELECT x.* INTO a FROM unnest(acked) x WHERE x.node_group = g;
        SELECT x.* INTO b FROM unnest(c.batch_cuts) x WHERE x.node_group = g;
        parts := parts || format('(e.position %% 1024 = %s%s%s)', g,
            CASE WHEN a.snapshot IS NOT NULL
                 THEN format(' AND e.xid >= %L::xid8 AND NOT pg_visible_in_snapshot(e.xid, %L::pg_snapshot)',
                             pg_snapshot_xmin(a.snapshot), a.snapshot)
                 ELSE '' END,
            CASE WHEN b.snapshot IS NOT NULL
                 THEN format(' AND NOT (e.position <= %s AND pg_visible_in_snapshot(e.xid, %L::pg_snapshot))',
                             c.batch_position, b.snapshot)
                 ELSE '' END);
    END LOOP;
    -- a node no cut knows of: nothing of it is acknowledged
    parts := parts || format('(e.position %% 1024 <> ALL (%L::integer[]))', groups);
    EXECUTE 'SELECT count(*), min(e.occurred_at) FROM @extschema@.order_events e WHERE '
            || array_to_string(parts, ' OR ')
    INTO pending, oldest;
END
$$;

-- Monitoring: needs SELECT on order_event_consumers and order_events.
-- pending and oldest_pending are estimates for a checkpoint with a cut:
-- positions handed out after it, counted from the index's end (transactions
-- that rolled back count too), and the first event after it.  So the answer
-- takes two index probes a consumer, at any backlog.  A checkpoint without
-- bounds is counted exactly, once.
CREATE FUNCTION @extschema@.orders_events_consumers()
RETURNS TABLE (name text, pending bigint, oldest_pending timestamptz, lag interval,
               registered_at timestamptz, acked_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
-- the count for old checkpoints makes the plan look costly: compiling it
-- would take longer than the two index probes it runs
SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    IF orders_internal.orders_distributed() THEN
        RETURN QUERY
        SELECT c.name, p.pending, p.oldest, now() - p.oldest, c.registered_at, c.acked_at
        FROM @extschema@.order_event_consumers c
        CROSS JOIN LATERAL orders_internal.orders_events_cluster_pending(c) p
        ORDER BY c.name;
        RETURN;
    END IF;
    RETURN QUERY
    WITH top AS (SELECT coalesce(max(position), 0) AS position FROM @extschema@.order_events)
    SELECT c.name, p.pending, p.oldest, now() - p.oldest, c.registered_at, c.acked_at
    FROM @extschema@.order_event_consumers c
    CROSS JOIN top
    CROSS JOIN LATERAL (
        SELECT greatest(c.acked_top_position,
                        CASE WHEN c.batch_snapshot IS NOT NULL THEN c.batch_position END) AS done,
               CASE WHEN c.batch_snapshot IS NOT NULL THEN c.batch_position ELSE 0 END AS batch_done) d
    CROSS JOIN LATERAL (
        -- and the settled events it carries (consumers.sql)
        SELECT greatest(top.position - d.done, 0)
                   + CASE WHEN c.carried_after IS NULL THEN 0
                          ELSE greatest(c.settled_position - greatest(c.carried_after, d.batch_done), 0)
                               + coalesce(cardinality(c.carried), 0) END AS pending,
               least((SELECT e.occurred_at FROM @extschema@.order_events e
                      WHERE e.position > d.done ORDER BY e.position LIMIT 1),
                     (SELECT e.occurred_at FROM @extschema@.order_events e
                      WHERE c.carried_after IS NOT NULL
                        AND (e.position = ANY (c.carried) OR e.position > c.carried_after)
                        AND e.position > d.batch_done AND e.position <= c.settled_position
                      ORDER BY e.position LIMIT 1)) AS oldest
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
    ORDER BY c.name;
END
$$;

COMMENT ON FUNCTION @extschema@.orders_events_consumers() IS
    'Each consumer, with an estimate of the events it has not acknowledged and how old the oldest is';
