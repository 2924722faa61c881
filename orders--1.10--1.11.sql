/* orders--1.10--1.11.sql: one public face.  The functions that are not
   the API move to the extension's own schema, orders_internal, so that
   listing the install schema's functions shows the API alone; the SQL
   functions that call them are redefined to name them there.  orders_json
   renders an order with its money as strings.  Nothing is rewritten: the
   update takes only catalog locks and runs in milliseconds on any data. */

\echo Use "ALTER EXTENSION orders UPDATE TO '1.11'" to load this file. \quit

SELECT @extschema@.orders_assert_trusted_schema();

-- Fails if a schema of that name exists: nobody can have prepared it.
CREATE SCHEMA orders_internal;
COMMENT ON SCHEMA orders_internal IS
    'orders: the extension''s internal functions; not an API, they change between versions';
GRANT USAGE ON SCHEMA orders_internal TO PUBLIC;

-- Moving keeps each function's OID, privileges and comment (and, on a
-- Citus cluster, its distribution).
ALTER FUNCTION @extschema@.orders_add_at(customer_id uuid, currency text, lines @extschema@.order_line[], shipping_address @extschema@.order_address, id uuid, notify text) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_assert_trusted_schema() SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_distributed() SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_ack_through(consumer text, last_position bigint, part integer) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_advance(consumer text, batch_position bigint, batch_done boolean) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_batch(c @extschema@.order_event_consumers, max_events integer, relay_only boolean, types text[], part integer) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_check_read(max_events integer, types text[]) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_cluster_cut(c @extschema@.order_event_consumers) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_cluster_pending(c @extschema@.order_event_consumers, OUT pending bigint, OUT oldest timestamp with time zone) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_consumer(consumer text) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_group_held(consumer text) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_group_key(consumer text, part integer) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_held_positions() SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_hold_at(consumer text, event_position bigint) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_hold_next(consumer text, h @extschema@.order_event_holds) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_hold_store(consumer text, hold @extschema@.order_event_holds) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_holds_of(consumer text) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_holds_peek(consumer text) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_next(consumer text, max_events integer, types text[], part integer) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_node_cut() SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_open_batch(consumer text) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_reject(consumer text, event_position bigint, reason text, max_attempts integer, retry_delay interval, part integer) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_relay_batch(max_events integer) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_events_retry_at(retry_delay interval, attempts integer) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_filter_sql(customer_id uuid, status @extschema@.order_status, min_total bigint, max_total bigint, created_from timestamp with time zone, created_before timestamp with time zone) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_get_at(id uuid) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_installed_schema() SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_remove_at(id uuid, expected_version integer, notify text) SET SCHEMA orders_internal;
ALTER FUNCTION @extschema@.orders_save_at(o @extschema@.orders, id uuid, notify text) SET SCHEMA orders_internal;

-- The callers, redefined to name the helpers in their new schema (their
-- privileges and owners are kept).

CREATE OR REPLACE FUNCTION @extschema@.orders_count(
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
            || orders_internal.orders_filter_sql($1, $2, $3, $4, $5, $6)
        INTO n USING $1, $2, $3, $4, $5, $6;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.orders_total(
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
        || orders_internal.orders_filter_sql($1, $2, $3, $4, $5, $6)
        || ' GROUP BY o.currency ORDER BY o.currency'
        USING $1, $2, $3, $4, $5, $6;
END
$$;

CREATE OR REPLACE FUNCTION orders_internal.orders_events_batch(
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

CREATE OR REPLACE FUNCTION orders_internal.orders_events_next(
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

CREATE OR REPLACE FUNCTION @extschema@.orders_events_read(consumer text, max_events integer DEFAULT 100)
RETURNS SETOF @extschema@.order_events
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM orders_internal.orders_events_next(consumer, max_events, NULL)
$$;

CREATE OR REPLACE FUNCTION @extschema@.orders_events_read(
    consumer text, max_events integer, types text[])
RETURNS SETOF @extschema@.order_events
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM orders_internal.orders_events_next(consumer, max_events, types)
$$;

CREATE OR REPLACE FUNCTION orders_internal.orders_events_ack_through(
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

CREATE OR REPLACE FUNCTION @extschema@.orders_events_ack(consumer text, last_position bigint)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT orders_internal.orders_events_ack_through(consumer, last_position)
$$;

CREATE OR REPLACE FUNCTION @extschema@.orders_events_consumers()
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

CREATE OR REPLACE FUNCTION @extschema@.orders_events_register_group(consumer text, from_start boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    added boolean := false;
    p integer;
BEGIN
    IF consumer IS NULL OR consumer = '' OR strpos(consumer, '/') > 0 THEN
        RAISE EXCEPTION 'consumer group name must be a non-empty name without "/"'
            USING ERRCODE = '22023';
    END IF;
    FOR p IN 0..15 LOOP
        BEGIN
            added := @extschema@.orders_events_register(consumer || '/' || p, from_start) OR added;
        EXCEPTION WHEN unique_violation THEN
            NULL;                       -- another reader registered it at the same moment
        END;
        -- a part that is another role's consumer already: refused here (42501)
        PERFORM orders_internal.orders_events_consumer(consumer || '/' || p);
    END LOOP;
    RETURN added;
END
$$;

CREATE OR REPLACE FUNCTION orders_internal.orders_events_group_held(consumer text)
RETURNS integer[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(p ORDER BY p), '{}')
    FROM generate_series(0, 15) p
    WHERE EXISTS (
        SELECT FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.objsubid = 1
          AND l.mode = 'ExclusiveLock' AND l.granted
          AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
          AND ((l.classid::bigint << 32) | l.objid::bigint) = orders_internal.orders_events_group_key($1, p))
$$;

CREATE OR REPLACE FUNCTION @extschema@.orders_events_read_group(
    consumer text, max_events integer DEFAULT 100, types text[] DEFAULT NULL)
RETURNS SETOF @extschema@.order_events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    readers_key bigint := orders_internal.orders_events_group_key(consumer, NULL);
    readers bigint;
    held integer[];
    before integer[];
    share integer;
    p integer;
    k integer;
BEGIN
    IF consumer IS NULL THEN
        RAISE EXCEPTION 'consumer group name must not be null' USING ERRCODE = '22004';
    END IF;
    PERFORM orders_internal.orders_events_check_read(max_events, types);

    -- present, once a session, without waiting for anyone
    held := orders_internal.orders_events_group_held(consumer);
    IF NOT EXISTS (SELECT FROM pg_locks l
                   WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.objsubid = 1
                     AND l.mode = 'ShareLock' AND l.granted
                     AND ((l.classid::bigint << 32) | l.objid::bigint) = readers_key) THEN
        PERFORM pg_try_advisory_lock_shared(readers_key);
    END IF;
    -- the readers present: sessions of roles with this one's privileges,
    -- as they are now, not as this transaction first saw them
    PERFORM pg_stat_clear_snapshot();
    SELECT count(DISTINCT l.pid) INTO readers
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.mode = 'ShareLock' AND l.granted
      AND ((l.classid::bigint << 32) | l.objid::bigint) = readers_key
      AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
      AND (l.pid = pg_backend_pid() OR pg_has_role(a.usesysid, current_user, 'USAGE'));
    share := ceil(16.0 / greatest(readers, 1));

    -- give back what is beyond the share, then take free parts up to it,
    -- starting at a place of this session's own.  Not in a transaction that
    -- has an id already: it may have read those parts, and so hold their
    -- consumers' rows locked, which would make the reader taking them
    -- wait (the share is given back at a later read).
    WHILE cardinality(held) > share AND pg_current_xact_id_if_assigned() IS NULL LOOP
        PERFORM pg_advisory_unlock(orders_internal.orders_events_group_key(consumer, held[cardinality(held)]));
        held := held[1:cardinality(held) - 1];
    END LOOP;
    before := held;
    FOR k IN 0..15 LOOP
        EXIT WHEN cardinality(held) >= share;
        p := (pg_backend_pid() + k) % 16;
        CONTINUE WHEN p = ANY (held);
        IF pg_try_advisory_lock(orders_internal.orders_events_group_key(consumer, p)) THEN
            held := held || p;
        END IF;
    END LOOP;
    held := ARRAY(SELECT h FROM unnest(held) h ORDER BY h);

    -- each part's read checks that the group is the caller's; a caller
    -- refused there keeps none of the parts it just took (their rows were
    -- locked, if at all, in the statement that failed: nobody waits for them)
    BEGIN
        RETURN QUERY
        SELECT e.* FROM unnest(held) h(part)
        CROSS JOIN LATERAL orders_internal.orders_events_next(consumer || '/' || h.part, max_events, types, h.part) e
        ORDER BY e.position
        LIMIT max_events;
    EXCEPTION WHEN OTHERS THEN
        FOREACH p IN ARRAY held LOOP
            CONTINUE WHEN p = ANY (before);
            PERFORM pg_advisory_unlock(orders_internal.orders_events_group_key(consumer, p));
        END LOOP;
        IF SQLSTATE = '42704' THEN
            RAISE EXCEPTION 'consumer group "%" is not registered', consumer
                USING ERRCODE = '42704',
                      HINT = 'Register it with orders_events_register_group().';
        ELSIF SQLSTATE = '42501' AND SQLERRM LIKE '%belongs to another role' THEN
            RAISE EXCEPTION 'consumer group "%" belongs to another role', consumer
                USING ERRCODE = '42501',
                      HINT = 'Only the role that registered it, its members and superusers may read it.';
        END IF;
        RAISE;
    END;
    -- what orders_events_ack_group may acknowledge: the parts this read returned
    PERFORM set_config('orders_group.read_' || md5(consumer), array_to_string(held, ','), false);
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.orders_events_ack_group(consumer text, last_position bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p integer;
    read_parts integer[] := string_to_array(
        nullif(current_setting('orders_group.read_' || md5(consumer), true), ''), ',')::integer[];
BEGIN
    IF last_position IS NULL THEN
        RAISE EXCEPTION 'last_position must not be null' USING ERRCODE = '22004';
    END IF;
    -- the parts the last read returned that are still this reader's: a part
    -- taken since, by a read that failed, has events nobody handled
    FOREACH p IN ARRAY orders_internal.orders_events_group_held(consumer) LOOP
        CONTINUE WHEN read_parts IS NULL OR p <> ALL (read_parts);
        PERFORM orders_internal.orders_events_ack_through(consumer || '/' || p, last_position, p);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.orders_events_leave_group(consumer text)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p integer;
    n integer := 0;
BEGIN
    IF consumer IS NULL THEN
        RAISE EXCEPTION 'consumer group name must not be null' USING ERRCODE = '22004';
    END IF;
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'cannot leave consumer group "%" in a transaction that has written', consumer
            USING ERRCODE = '25001',
                  HINT = 'Leave it after COMMIT, or end the session.';
    END IF;
    FOREACH p IN ARRAY orders_internal.orders_events_group_held(consumer) LOOP
        PERFORM pg_advisory_unlock(orders_internal.orders_events_group_key(consumer, p));
        n := n + 1;
    END LOOP;
    IF EXISTS (SELECT FROM pg_locks l
               WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.objsubid = 1
                 AND l.mode = 'ShareLock' AND l.granted
                 AND ((l.classid::bigint << 32) | l.objid::bigint)
                     = orders_internal.orders_events_group_key(consumer, NULL)) THEN
        PERFORM pg_advisory_unlock_shared(orders_internal.orders_events_group_key(consumer, NULL));
    END IF;
    PERFORM set_config('orders_group.read_' || md5(consumer), '', false);
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.orders_events_purge(older_than interval DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
    m bigint;
    node record;
BEGIN
    -- On a cluster each node's events are judged by the consumers' cuts of
    -- that node (position % 1024 tells it): below the smallest xmin, when
    -- every consumer has a cut of it.  A checkpoint without cuts is from
    -- before the outbox was distributed, the coordinator's (group 0).
    IF orders_internal.orders_distributed() THEN
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
    -- Each statement reads the checkpoints and the holds itself, after its
    -- snapshot was taken: a reader that acknowledges an event and holds it
    -- (orders_events_nack) commits either before that snapshot, and its
    -- hold is read, or after it, and its old checkpoint is.  The holds are
    -- read with the latest snapshot (holds.c), which a checkpoint seen here
    -- is never newer than.
    --
    -- Settled events (from another cluster, consumers.sql) by position:
    -- kept while a consumer carries one.  Checkpoints not adopted yet
    -- (origin.sql) are judged with the events they came with, in the ids of
    -- the cluster that wrote both: no event is written here before they
    -- are adopted.
    DELETE FROM @extschema@.order_events e
    WHERE e.position <= (SELECT max(c.settled_position) FROM @extschema@.order_event_consumers c)
      AND NOT EXISTS (SELECT FROM @extschema@.order_event_consumers c
                      WHERE c.carried_after IS NOT NULL
                        AND (e.position > c.carried_after OR e.position = ANY (c.carried)))
      AND NOT EXISTS (SELECT FROM unnest(orders_internal.orders_events_held_positions()) k
                      WHERE k = e.position);
    GET DIAGNOSTICS n = ROW_COUNT;
    -- Below every checkpoint's xmin, every event is acknowledged by all: one
    -- range of the xid index, no test per row.  Between that and the
    -- smallest xmax, each checkpoint is asked.  Events still in flight are
    -- never seen, so kept.
    DELETE FROM @extschema@.order_events e
    WHERE e.xid < (SELECT min(pg_snapshot_xmin(c.acked_snapshot)) FROM @extschema@.order_event_consumers c)
      AND e.position > (SELECT coalesce(max(c.settled_position), 0) FROM @extschema@.order_event_consumers c)
      AND NOT EXISTS (SELECT FROM unnest(orders_internal.orders_events_held_positions()) k
                      WHERE k = e.position);
    GET DIAGNOSTICS m = ROW_COUNT;
    n := n + m;
    DELETE FROM @extschema@.order_events e
    WHERE e.xid >= (SELECT min(pg_snapshot_xmin(c.acked_snapshot)) FROM @extschema@.order_event_consumers c)
      AND e.xid < (SELECT min(pg_snapshot_xmax(c.acked_snapshot)) FROM @extschema@.order_event_consumers c)
      AND e.position > (SELECT coalesce(max(c.settled_position), 0) FROM @extschema@.order_event_consumers c)
      AND NOT EXISTS (SELECT FROM unnest(orders_internal.orders_events_held_positions()) k
                      WHERE k = e.position)
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

CREATE OR REPLACE FUNCTION orders_internal.orders_events_relay_batch(max_events integer)
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
    c := orders_internal.orders_events_consumer('orders_relay'::text);
    IF c.batch_snapshot IS NULL THEN
        c := orders_internal.orders_events_open_batch('orders_relay'::text);
    END IF;
    FOR e IN SELECT * FROM orders_internal.orders_events_batch(c, max_events, true)
    LOOP
        RETURN NEXT e;
        n := n + 1;
        c.batch_position := e.position;
    END LOOP;
    -- fewer than asked: all of this batch's relay events are out
    PERFORM orders_internal.orders_events_advance('orders_relay'::text, c.batch_position,
                                              n < max_events);
END
$$;

CREATE OR REPLACE FUNCTION orders_internal.orders_events_hold_next(consumer text, h @extschema@.order_event_holds)
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

CREATE OR REPLACE FUNCTION orders_internal.orders_events_reject(
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

CREATE OR REPLACE FUNCTION @extschema@.orders_events_nack(
    consumer text, event_position bigint, reason text,
    max_attempts integer DEFAULT 5, retry_delay interval DEFAULT '10 seconds')
RETURNS @extschema@.order_event_holds
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM orders_internal.orders_events_reject(consumer, event_position, reason,
                                                   max_attempts, retry_delay, NULL)
$$;

CREATE OR REPLACE FUNCTION @extschema@.orders_events_holds(consumer text)
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

CREATE OR REPLACE FUNCTION orders_internal.orders_events_hold_at(consumer text, event_position bigint)
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

CREATE OR REPLACE FUNCTION @extschema@.orders_events_replay(consumer text, event_position bigint)
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

CREATE OR REPLACE FUNCTION @extschema@.orders_events_discard(consumer text, event_position bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM orders_internal.orders_events_hold_next(
        consumer, orders_internal.orders_events_hold_at(consumer, event_position));
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.orders_events_nack_group(
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

CREATE OR REPLACE FUNCTION orders_internal.orders_events_cluster_cut(c @extschema@.order_event_consumers)
RETURNS @extschema@.order_event_cut[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    after @extschema@.order_event_cut[] := coalesce(c.acked_cuts,
        ARRAY[ROW(0, c.acked_snapshot, c.acked_top_position, c.acked_next_xid)]::@extschema@.order_event_cut[]);
    everything constant @extschema@.order_event_cut :=
        ROW(NULL, '4611686018427388903:4611686018427388903:', 9223372036854775807,
            '4611686018427388903');
    own @extschema@.order_event_cut;
    placements text;
    cuts @extschema@.order_event_cut[];
    node record;
    cut @extschema@.order_event_cut;
    written integer[] := '{}';
BEGIN
    FOR attempt IN 1 .. 5 LOOP
        placements := (SELECT string_agg(p.placementid || ':' || p.groupid, ',' ORDER BY p.placementid)
                       FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid)
                       WHERE s.logicalrelid = '@extschema@.order_events'::regclass);
        own := orders_internal.orders_events_node_cut();
        cuts := ARRAY[own];
        FOR node IN
            WITH others AS (SELECT n.nodename, n.nodeport FROM pg_dist_node n
                            WHERE n.noderole = 'primary' AND n.isactive AND n.groupid <> own.node_group)
            SELECT d.groupid, d.nodename, d.nodeport, r.success, r.result
            FROM master_run_on_worker(
                     ARRAY(SELECT nodename FROM others ORDER BY nodename, nodeport),
                     ARRAY(SELECT nodeport FROM others ORDER BY nodename, nodeport),
                     ARRAY(SELECT 'SELECT orders_internal.orders_events_node_cut()' FROM others),
                     true) r
            JOIN pg_dist_node d ON d.nodename = r.node_name AND d.nodeport = r.node_port
                               AND d.noderole = 'primary'
            WHERE EXISTS (SELECT FROM others)
        LOOP
            IF NOT node.success THEN
                RAISE EXCEPTION 'could not take the cut of consumer % on Citus node %:%',
                    c.name, node.nodename, node.nodeport
                    USING ERRCODE = '08006', DETAIL = node.result;
            END IF;
            cut := node.result::@extschema@.order_event_cut;
            IF cut.node_group IS DISTINCT FROM node.groupid THEN
                RAISE EXCEPTION 'Citus node %:% answered as group %, not as its group %',
                    node.nodename, node.nodeport, cut.node_group, node.groupid
                    USING ERRCODE = '55000';
            END IF;
            cuts := cuts || cut;
        END LOOP;
        IF placements IS NOT DISTINCT FROM
           (SELECT string_agg(p.placementid || ':' || p.groupid, ',' ORDER BY p.placementid)
            FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid)
            WHERE s.logicalrelid = '@extschema@.order_events'::regclass) THEN
            -- a checkpoint newer than the cut would move back
            IF EXISTS (SELECT FROM unnest(cuts) n JOIN unnest(after) a USING (node_group)
                       WHERE pg_snapshot_xmax(n.snapshot) < pg_snapshot_xmax(a.snapshot)) THEN
                RAISE EXCEPTION 'could not cut the outbox for consumer %: its checkpoint is newer', c.name
                    USING ERRCODE = '40001', HINT = 'Retry the transaction.';
            END IF;
            -- A node that did not answer: inactive, or removed.  A first
            -- cut (a consumer registered now, or from the start and not read
            -- yet) learns of removed nodes from their events: once.
            IF cardinality(after) = 0 THEN
                SELECT array_agg(s.node_group) INTO written
                FROM (SELECT DISTINCT (e.position % 1024)::integer AS node_group
                      FROM @extschema@.order_events e) s;
            END IF;
            FOR node IN
                SELECT g.node_group, a IS NOT NULL AS known, n.nodename, n.nodeport
                FROM (SELECT x.node_group FROM unnest(after) x
                      UNION SELECT d.groupid FROM pg_dist_node d WHERE d.noderole = 'primary'
                      UNION SELECT w FROM unnest(written) w) g
                LEFT JOIN LATERAL (SELECT x FROM unnest(after) x WHERE x.node_group = g.node_group) a ON true
                LEFT JOIN LATERAL (SELECT d.nodename, d.nodeport FROM pg_dist_node d
                                   WHERE d.groupid = g.node_group AND d.noderole = 'primary' LIMIT 1) n ON true
                WHERE g.node_group NOT IN (SELECT x.node_group FROM unnest(cuts) x)
            LOOP
                IF node.nodename IS NULL THEN
                    cut := everything;
                    cut.node_group := node.node_group;
                    cuts := cuts || cut;
                ELSIF node.known THEN
                    cuts := cuts || (SELECT x FROM unnest(after) x WHERE x.node_group = node.node_group);
                ELSE
                    RAISE EXCEPTION 'Citus node %:% is not active: consumer % cannot take its cut',
                        node.nodename, node.nodeport, c.name
                        USING ERRCODE = '55000',
                              HINT = 'Activate the node, or remove it from the cluster.';
                END IF;
            END LOOP;
            RETURN ARRAY(SELECT x FROM unnest(cuts) x ORDER BY x.node_group);
        END IF;
    END LOOP;
    RAISE EXCEPTION 'could not cut the outbox for consumer %: shards kept moving', c.name
        USING ERRCODE = '40001', HINT = 'Retry the transaction.';
END
$$;

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
            || orders_internal.orders_filter_sql($1, $2, $3, $4, $5, $6)
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
    -- events settled by an adoption (origin.sql) are judged by position on
    -- one node only: read and purge them first
    IF EXISTS (SELECT FROM @extschema@.order_event_consumers c WHERE c.carried_after IS NOT NULL)
       OR EXISTS (SELECT FROM @extschema@.order_events e
                  WHERE e.position <= (SELECT o.settled_position
                                       FROM @extschema@.order_events_origin o)) THEN
        RAISE EXCEPTION 'the outbox holds events settled when it was adopted from another cluster'
            USING ERRCODE = '55000',
                  HINT = 'Let every consumer read them, run orders_events_purge(), then distribute.';
    END IF;
    -- the relay worker's consumer: relay is refused on a cluster, and a
    -- checkpoint nobody moves would keep every event from retention
    DELETE FROM @extschema@.order_event_consumers WHERE name = 'orders_relay';
    ALTER TABLE @extschema@.order_events DROP CONSTRAINT order_events_pkey;
    UPDATE @extschema@.order_events SET position = position * 1024;
    UPDATE @extschema@.order_event_consumers
    SET acked_top_position = acked_top_position * 1024,
        batch_top_position = batch_top_position * 1024,
        batch_position = batch_position * 1024,
        settled_position = settled_position * 1024;
    UPDATE @extschema@.order_events_origin SET settled_position = settled_position * 1024;
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
        'orders_internal.orders_add_at(uuid, text, @extschema@.order_line[], @extschema@.order_address, uuid, text)',
        'id', colocate_with => '@extschema@.orders', force_delegation => true);
    PERFORM create_distributed_function('orders_internal.orders_get_at(uuid)',
        'id', colocate_with => '@extschema@.orders', force_delegation => true);
    PERFORM create_distributed_function('orders_internal.orders_save_at(@extschema@.orders, uuid, text)',
        'id', colocate_with => '@extschema@.orders', force_delegation => true);
    PERFORM create_distributed_function('orders_internal.orders_remove_at(uuid, integer, text)',
        'id', colocate_with => '@extschema@.orders', force_delegation => true);
END
$$;

-- On a Citus cluster, orders_distribute() replaced orders_find with a
-- plpgsql body that names orders_filter_sql; this one names it where it
-- now is.  Elsewhere orders_find is the SQL function, which names none.
DO $do$
BEGIN
    IF (SELECT l.lanname FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
        WHERE p.oid = '@extschema@.orders_find(uuid, @extschema@.order_status, bigint, bigint, timestamptz, timestamptz, uuid, integer)'::pg_catalog.regprocedure)
       = 'plpgsql' THEN
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
                || orders_internal.orders_filter_sql($1, $2, $3, $4, $5, $6)
                || CASE WHEN $7 IS NULL THEN '' ELSE ' AND o.id OPERATOR(pg_catalog.>) $7' END
                || ' ORDER BY o.id LIMIT $8'
                USING $1, $2, $3, $4, $5, $6, $7, $8;
        END
        $find$;
    END IF;
END
$do$;

-- An order as JSON for a reader whose numbers are doubles (JavaScript's
-- JSON.parse, and every JSON library that follows it): to_jsonb's form, but
-- the money (total, and each line's unit_price) as strings, which carry a
-- bigint whole.  jsonb_populate_record(NULL::orders, orders_json(o)) reads
-- it back, so an order can make the round trip to orders_save.  Any field
-- a line has is kept.  Every name is qualified, operators too: a SQL
-- function's body is inlined, and parsed under the caller's search_path.
CREATE FUNCTION @extschema@.orders_json(o @extschema@.orders)
RETURNS jsonb
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT pg_catalog.to_jsonb($1) OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(
        'total', ($1).total::pg_catalog.text,
        'lines', coalesce(
            (SELECT pg_catalog.jsonb_agg(
                        pg_catalog.to_jsonb(($1).lines[i]) OPERATOR(pg_catalog.||)
                        pg_catalog.jsonb_build_object('unit_price', (($1).lines[i]).unit_price::pg_catalog.text)
                        ORDER BY i)
             FROM pg_catalog.generate_subscripts(($1).lines, 1) AS i),
            pg_catalog.to_jsonb(($1).lines)))
$$;

COMMENT ON FUNCTION @extschema@.orders_json(@extschema@.orders) IS
    'The order as to_jsonb renders it, but its money (total, lines[].unit_price) as strings';

-- The internal schema is judged as the install schema is.
SELECT orders_internal.orders_assert_trusted_schema();
