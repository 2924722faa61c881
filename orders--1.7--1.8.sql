/* orders--1.7--1.8.sql: the events' envelope (an id of their own, the
   aggregate's type, the payload's schema version, the writer's metadata),
   one order's history, reading by type, consumer groups, many orders added
   at once, and idempotent retries. */

\echo Use "ALTER EXTENSION orders UPDATE TO '1.8'" to load this file. \quit

SELECT @extschema@.orders_assert_trusted_schema();

-- The envelope: the columns Debezium's outbox event router reads by
-- default (id, aggregatetype, type, payload; its key is order_id), the
-- payload's shape version, and the writer's orders.event_metadata.  No
-- column here rewrites the table: the events written before have no id,
-- and the constant defaults are stored once, in the catalog.
--
-- On a Citus cluster, the coordinator sends ALTER EXTENSION UPDATE to the
-- workers first, where this script adds the columns to the table's shell,
-- and then the coordinator's ALTER TABLE adds them to the shards and to
-- those shells again: hence IF NOT EXISTS.  In a DO block, as a statement
-- of its own: Citus sends a distributed table's DDL to the nodes as the
-- text of the statement that ran it, here the whole script otherwise.
DO $$
BEGIN
    EXECUTE $ddl$
        ALTER TABLE @extschema@.order_events
            ADD COLUMN IF NOT EXISTS id             uuid,
            ADD COLUMN IF NOT EXISTS aggregatetype  text     NOT NULL DEFAULT 'order',
            ADD COLUMN IF NOT EXISTS schema_version smallint NOT NULL DEFAULT 1,
            ADD COLUMN IF NOT EXISTS metadata       jsonb
    $ddl$;
END
$$;

COMMENT ON COLUMN @extschema@.order_events.id IS
    'The event''s own id, a time-ordered UUID; NULL for events written before 1.8';
COMMENT ON COLUMN @extschema@.order_events.schema_version IS
    'The version of the payload''s shape for this event type';
COMMENT ON COLUMN @extschema@.order_events.metadata IS
    'The writer''s orders.event_metadata (correlation, causation, actor, trace context); NULL: none';

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

-- Many new orders in one call (src/bulk.c): a jsonb array of objects
-- with orders_add's arguments as keys, each checked as orders_add checks
-- it, written through the heap's multi-insert; returns each order added,
-- in the array's order.  An error names the order's index in the array,
-- and nothing of the call stays.
CREATE FUNCTION @extschema@.orders_add_many(orders jsonb)
RETURNS SETOF @extschema@.orders
AS 'MODULE_PATHNAME', 'orders_add_many'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.orders_add_many(jsonb) IS
    'Adds many pending orders (a jsonb array of orders_add''s arguments) after checking every invariant; emits order_added for each';

-- Reading by type, and by part of a group.  orders_events_batch is the
-- extension's own (anyone may call it), so it takes new arguments;
-- orders_events_read keeps its signature, and so the grants made on it,
-- and gains a sibling.
DROP FUNCTION @extschema@.orders_events_batch(@extschema@.order_event_consumers, integer, boolean);

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
CREATE FUNCTION @extschema@.orders_events_batch(
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
    IF @extschema@.orders_distributed() THEN
        RAISE EXCEPTION 'consumer %''s open batch has no cuts of the cluster''s nodes', c.name
            USING ERRCODE = '55000',
                  HINT = 'Run ALTER EXTENSION orders UPDATE, which gives a batch left open its cuts.';
    END IF;

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

-- The arguments of a read, checked before anything is taken.  A misspelt
-- type would skip, and so acknowledge, every event.
CREATE FUNCTION @extschema@.orders_events_check_read(max_events integer, types text[])
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
-- as acknowledged once an event after them is, or the batch ends.
CREATE FUNCTION @extschema@.orders_events_next(
    consumer text, max_events integer, types text[], part integer DEFAULT NULL)
RETURNS SETOF @extschema@.order_events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c @extschema@.order_event_consumers;
    n bigint;
BEGIN
    PERFORM @extschema@.orders_events_check_read(max_events, types);
    IF part IS NOT NULL AND (part NOT BETWEEN 0 AND 15
                             OR right(consumer, length(part::text) + 1) <> '/' || part) THEN
        RAISE EXCEPTION 'consumer "%" is not part % of a consumer group', consumer, part
            USING ERRCODE = '22023';
    END IF;
    c := @extschema@.orders_events_consumer(consumer);

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
END
$$;

-- Two functions, not one with a new argument: a grant of the first, made
-- before types came (1.8), stays as it was.  The second has no defaults,
-- so that a call with two parameters of unknown type, as node-postgres
-- sends them, still finds only the first.
CREATE OR REPLACE FUNCTION @extschema@.orders_events_read(consumer text, max_events integer DEFAULT 100)
RETURNS SETOF @extschema@.order_events
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM @extschema@.orders_events_next(consumer, max_events, NULL)
$$;

COMMENT ON FUNCTION @extschema@.orders_events_read(text, integer) IS
    'The consumer''s next events in position order, from its checkpoint; unacknowledged ones again';

CREATE FUNCTION @extschema@.orders_events_read(
    consumer text, max_events integer, types text[])
RETURNS SETOF @extschema@.order_events
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM @extschema@.orders_events_next(consumer, max_events, types)
$$;

COMMENT ON FUNCTION @extschema@.orders_events_read(text, integer, text[]) IS
    'As orders_events_read(consumer, max_events), with only events of types; the others skipped count as acknowledged';

-- The body of orders_events_ack, and of orders_events_ack_group for one
-- part: anyone may call it, as it does nothing its helpers do not check
-- themselves.  part: the consumer is that part of a group, whose batches
-- hold only its orders' events.
CREATE FUNCTION @extschema@.orders_events_ack_through(
    consumer text, last_position bigint, part integer DEFAULT NULL)
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
    IF part IS NOT NULL AND (part NOT BETWEEN 0 AND 15
                             OR right(consumer, length(part::text) + 1) <> '/' || part) THEN
        RAISE EXCEPTION 'consumer "%" is not part % of a consumer group', consumer, part
            USING ERRCODE = '22023';
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
        NOT EXISTS (SELECT FROM @extschema@.orders_events_batch(c, 1, false, NULL, part)));
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.orders_events_ack(consumer text, last_position bigint)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@.orders_events_ack_through(consumer, last_position)
$$;

-- One order's history: its events after after_version, in version order,
-- through the outbox's (order_id, version) index; on a cluster, from the
-- order's node alone.  Events carry whole orders, so this needs what
-- reading the order needs (SELECT on orders, with no row-level security
-- applying) and SELECT on order_events, whose own policies apply.  Events
-- purged by orders_events_purge are gone from it.
CREATE FUNCTION @extschema@.orders_events_of(order_id uuid, after_version integer DEFAULT 0)
RETURNS SETOF @extschema@.order_events
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF order_id IS NULL THEN
        RAISE EXCEPTION 'order id must not be null' USING ERRCODE = '22004';
    END IF;
    IF after_version IS NULL THEN
        RAISE EXCEPTION 'after_version must not be null' USING ERRCODE = '22004',
              HINT = 'Pass 0 for the whole history.';
    END IF;
    IF NOT has_table_privilege('@extschema@.orders', 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for table orders' USING ERRCODE = '42501';
    END IF;
    IF row_security_active('@extschema@.orders') THEN
        RAISE EXCEPTION 'extension "orders" does not apply row-level security'
            USING ERRCODE = '0A000',
                  DETAIL = 'Row-level security is enabled on table "@extschema@.orders".',
                  HINT = 'Read the table with SELECT, which applies its policies.';
    END IF;
    RETURN QUERY
    SELECT e.* FROM @extschema@.order_events e
    WHERE e.order_id = $1 AND e.version > $2
    ORDER BY e.version;
END
$$;

COMMENT ON FUNCTION @extschema@.orders_events_of(uuid, integer) IS
    'One order''s events after after_version, in version order; needs SELECT on orders and order_events';

-- Consumer groups ------------------------------------------------------------
-- A consumer group is 16 consumers, its parts, named name/0 to name/15:
-- part p reads the events of the orders whose orders_event_part is p, with
-- its own gap-free checkpoint.  So an order's events are one part's, and
-- come in order.  A reader takes parts, not events: each
-- orders_events_read_group takes its fair share of the parts (16 over the
-- readers present), gives back what is beyond it, and reads the parts it
-- holds.  A part is held by a session-level advisory lock, taken with
-- pg_try_advisory_lock: a read never waits for another reader, and a part
-- is one reader's until that reader gives it back or its session ends (a
-- reader that dies, as soon as the server sees its connection gone:
-- tcp_keepalives_* for a host that vanished).  So no two readers handle
-- one order's events at once, as long as a reader stops handling when it
-- loses its session: one whose session the server ended (terminated,
-- idle_session_timeout, keepalives through a network split) may still be
-- in its handler when another takes its parts.  A reader's presence is a
-- shared advisory lock of the group, which is how the others count the
-- readers; only readers of roles with the caller's privileges count.
-- The parts are ordinary consumers: each belongs to the role that
-- registered the group, and each read and acknowledgement goes through
-- orders_events_next and orders_events_ack, which check it.  More than 16
-- readers: the extra ones hold nothing, and stand by.

-- The advisory lock key of a group's part (0 to 15), or of its readers' presence (NULL).
CREATE FUNCTION @extschema@.orders_events_group_key(consumer text, part integer)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.hashtextextended('orders_events group ' OPERATOR(pg_catalog.||) consumer
                                   OPERATOR(pg_catalog.||) ' '
                                   OPERATOR(pg_catalog.||) coalesce(part::text, 'readers'), 0);

CREATE FUNCTION @extschema@.orders_events_register_group(consumer text, from_start boolean DEFAULT false)
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
        PERFORM @extschema@.orders_events_consumer(consumer || '/' || p);
    END LOOP;
    RETURN added;
END
$$;

COMMENT ON FUNCTION @extschema@.orders_events_register_group(text, boolean) IS
    'Registers consumer group consumer: its 16 parts, consumers consumer/0 to consumer/15';

CREATE FUNCTION @extschema@.orders_events_unregister_group(consumer text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed boolean := false;
    p integer;
BEGIN
    FOR p IN 0..15 LOOP
        removed := @extschema@.orders_events_unregister(consumer || '/' || p) OR removed;
    END LOOP;
    RETURN removed;
END
$$;

-- The parts this session holds of the group, in order.
CREATE FUNCTION @extschema@.orders_events_group_held(consumer text)
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
          AND ((l.classid::bigint << 32) | l.objid::bigint) = @extschema@.orders_events_group_key($1, p))
$$;

-- The next events of the parts this reader holds, in position order, after
-- it takes its fair share of the parts.  Returns at once: a part another
-- reader holds is not waited for.
CREATE FUNCTION @extschema@.orders_events_read_group(
    consumer text, max_events integer DEFAULT 100, types text[] DEFAULT NULL)
RETURNS SETOF @extschema@.order_events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    readers_key bigint := @extschema@.orders_events_group_key(consumer, NULL);
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
    PERFORM @extschema@.orders_events_check_read(max_events, types);

    -- present, once a session, without waiting for anyone
    held := @extschema@.orders_events_group_held(consumer);
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
        PERFORM pg_advisory_unlock(@extschema@.orders_events_group_key(consumer, held[cardinality(held)]));
        held := held[1:cardinality(held) - 1];
    END LOOP;
    before := held;
    FOR k IN 0..15 LOOP
        EXIT WHEN cardinality(held) >= share;
        p := (pg_backend_pid() + k) % 16;
        CONTINUE WHEN p = ANY (held);
        IF pg_try_advisory_lock(@extschema@.orders_events_group_key(consumer, p)) THEN
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
        CROSS JOIN LATERAL @extschema@.orders_events_next(consumer || '/' || h.part, max_events, types, h.part) e
        ORDER BY e.position
        LIMIT max_events;
    EXCEPTION WHEN OTHERS THEN
        FOREACH p IN ARRAY held LOOP
            CONTINUE WHEN p = ANY (before);
            PERFORM pg_advisory_unlock(@extschema@.orders_events_group_key(consumer, p));
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

COMMENT ON FUNCTION @extschema@.orders_events_read_group(text, integer, text[]) IS
    'A reader of consumer group consumer: takes its share of the 16 parts, and returns the next events of the parts it holds';

-- Acknowledges, in every part this reader's last read returned and it
-- still holds, the events up to and including last_position: all of them
-- were in that read, which returned the parts' events in position order.
CREATE FUNCTION @extschema@.orders_events_ack_group(consumer text, last_position bigint)
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
    FOREACH p IN ARRAY @extschema@.orders_events_group_held(consumer) LOOP
        CONTINUE WHEN read_parts IS NULL OR p <> ALL (read_parts);
        PERFORM @extschema@.orders_events_ack_through(consumer || '/' || p, last_position, p);
    END LOOP;
END
$$;

COMMENT ON FUNCTION @extschema@.orders_events_ack_group(text, bigint) IS
    'Acknowledges, in each part of the group that this reader''s last read returned, the events up to and including last_position';

-- Gives back every part this reader holds, and its presence: the others
-- take the parts at their next read.  Only the caller's own locks: anyone
-- may call it.  Not in a transaction with an id: it may hold the parts'
-- rows locked, and the reader taking them would wait.
CREATE FUNCTION @extschema@.orders_events_leave_group(consumer text)
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
    FOREACH p IN ARRAY @extschema@.orders_events_group_held(consumer) LOOP
        PERFORM pg_advisory_unlock(@extschema@.orders_events_group_key(consumer, p));
        n := n + 1;
    END LOOP;
    IF EXISTS (SELECT FROM pg_locks l
               WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.objsubid = 1
                 AND l.mode = 'ShareLock' AND l.granted
                 AND ((l.classid::bigint << 32) | l.objid::bigint)
                     = @extschema@.orders_events_group_key(consumer, NULL)) THEN
        PERFORM pg_advisory_unlock_shared(@extschema@.orders_events_group_key(consumer, NULL));
    END IF;
    PERFORM set_config('orders_group.read_' || md5(consumer), '', false);
    RETURN n;
END
$$;

-- Retried writes that were done already ----------------------------------
-- With orders.idempotency_key set, each write call of a transaction
-- (orders_add, orders_save, orders_remove) is recorded here under the
-- caller's role, the key and the call's place among the transaction's
-- keyed calls, in the caller's transaction (src/idempotency.c).  A retry of
-- the transaction makes the same calls in the same order and gets the
-- recorded rows back, writing nothing; a different call under a recorded
-- key is an error.  Only the C code writes the table, as its owner; no role
-- is granted anything on it.  The row is kept as jsonb, not as the orders
-- row type, which would forbid altering the orders table.
CREATE TABLE @extschema@.order_idempotency (
    owner       regrole     NOT NULL,   -- keys are each role's own
    key         text        NOT NULL,
    call        integer     NOT NULL,   -- the call's place among its transaction's keyed calls
    function    text        NOT NULL,
    request     bytea       NOT NULL,   -- SHA-256 of the function and its arguments
    result      jsonb,                  -- the row the call returned, as to_jsonb renders it
    recorded_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,   -- recorded_at + orders.idempotency_ttl
    CONSTRAINT order_idempotency_pkey PRIMARY KEY (owner, key, call)
);

CREATE INDEX order_idempotency_expires_idx ON @extschema@.order_idempotency (expires_at);

COMMENT ON TABLE @extschema@.order_idempotency IS
    'Write calls made under orders.idempotency_key, with what they returned; written only by the orders_* functions';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.order_idempotency', '');

-- Deletes the expired records; an expired record is ignored, and replaced,
-- already, so this only returns their space.  Needs DELETE on
-- order_idempotency: the extension owner's, or a DBA's grant.
CREATE FUNCTION @extschema@.orders_idempotency_purge()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM @extschema@.order_idempotency r WHERE r.expires_at <= now();
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

COMMENT ON FUNCTION @extschema@.orders_idempotency_purge() IS
    'Deletes expired idempotency records; returns how many';

REVOKE ALL ON @extschema@.order_idempotency FROM PUBLIC;
REVOKE ALL ON FUNCTION
    @extschema@.orders_idempotency_purge(),
    @extschema@.orders_add_many(jsonb),
    @extschema@.orders_events_read(text, integer, text[]),
    @extschema@.orders_events_register_group(text, boolean),
    @extschema@.orders_events_unregister_group(text),
    @extschema@.orders_events_read_group(text, integer, text[]),
    @extschema@.orders_events_ack_group(text, bigint),
    @extschema@.orders_events_batch(@extschema@.order_event_consumers, integer, boolean, text[], integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.orders_events_batch(@extschema@.order_event_consumers, integer, boolean, text[], integer),
    @extschema@.orders_events_next(text, integer, text[], integer),
    @extschema@.orders_events_ack_through(text, bigint, integer),
    @extschema@.orders_events_check_read(integer, text[]),
    @extschema@.orders_events_group_key(text, integer),
    @extschema@.orders_events_group_held(text),
    @extschema@.orders_events_leave_group(text),
    @extschema@.orders_event_part(uuid),
    @extschema@.orders_event_types(),
    @extschema@.orders_events_of(uuid, integer)
TO PUBLIC;
