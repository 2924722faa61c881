/* orders--1.9--1.10.sql: nothing lost in operations.  The outbox and the
   checkpoints know the cluster they belong to; restored, upgraded or
   replicated into another, they are adopted: events settled, checkpoints
   re-expressed in positions.  The purge reads checkpoints and holds in each
   statement's own snapshot. */

\echo Use "ALTER EXTENSION orders UPDATE TO '1.10'" to load this file. \quit

SELECT @extschema@.orders_assert_trusted_schema();

-- See "From another cluster" in schema/consumers.sql.  No table is
-- rewritten: the new columns take their defaults from the catalog.
ALTER TABLE @extschema@.order_event_consumers
    ADD COLUMN settled_position bigint NOT NULL DEFAULT 0,
    ADD COLUMN carried_after bigint,
    ADD COLUMN carried bigint[];

-- No origin is recorded here: this script cannot tell whether the data
-- was written in this cluster (a dump of 1.9 may have been restored into
-- it), so the first use decides, adopting if it holds events or consumers.
-- The adoption is exact either way, and costs the few transactions running
-- at each checkpoint.
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

-- Settled events are read by position, and a two-dimensional list of types
-- is 22023.
CREATE OR REPLACE FUNCTION @extschema@.orders_events_batch(
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

CREATE OR REPLACE FUNCTION @extschema@.orders_events_check_read(max_events integer, types text[])
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

-- pending counts the carried events too
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
    IF @extschema@.orders_distributed() THEN
        RETURN QUERY
        SELECT c.name, p.pending, p.oldest, now() - p.oldest, c.registered_at, c.acked_at
        FROM @extschema@.order_event_consumers c
        CROSS JOIN LATERAL @extschema@.orders_events_cluster_pending(c) p
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

-- each statement reads checkpoints and holds in its own snapshot
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
      AND NOT EXISTS (SELECT FROM unnest(@extschema@.orders_events_held_positions()) k
                      WHERE k = e.position);
    GET DIAGNOSTICS n = ROW_COUNT;
    -- Below every checkpoint's xmin, every event is acknowledged by all: one
    -- range of the xid index, no test per row.  Between that and the
    -- smallest xmax, each checkpoint is asked.  Events still in flight are
    -- never seen, so kept.
    DELETE FROM @extschema@.order_events e
    WHERE e.xid < (SELECT min(pg_snapshot_xmin(c.acked_snapshot)) FROM @extschema@.order_event_consumers c)
      AND e.position > (SELECT coalesce(max(c.settled_position), 0) FROM @extschema@.order_event_consumers c)
      AND NOT EXISTS (SELECT FROM unnest(@extschema@.orders_events_held_positions()) k
                      WHERE k = e.position);
    GET DIAGNOSTICS m = ROW_COUNT;
    n := n + m;
    DELETE FROM @extschema@.order_events e
    WHERE e.xid >= (SELECT min(pg_snapshot_xmin(c.acked_snapshot)) FROM @extschema@.order_event_consumers c)
      AND e.xid < (SELECT min(pg_snapshot_xmax(c.acked_snapshot)) FROM @extschema@.order_event_consumers c)
      AND e.position > (SELECT coalesce(max(c.settled_position), 0) FROM @extschema@.order_event_consumers c)
      AND NOT EXISTS (SELECT FROM unnest(@extschema@.orders_events_held_positions()) k
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

-- a carried event can be rejected
CREATE OR REPLACE FUNCTION @extschema@.orders_events_reject(
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
             CASE WHEN max_attempts > 1 THEN @extschema@.orders_events_retry_at(retry_delay, 1) END,
             CASE WHEN max_attempts <= 1 THEN now() END,
             false)::@extschema@.order_event_holds;
    PERFORM @extschema@.orders_events_hold_store(consumer, h);
    -- the stream goes on past it: the hold has it now
    PERFORM @extschema@.orders_events_ack_through(consumer, event_position, part);
    RETURN h;
END
$$;

-- settled events are not distributed
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

REVOKE ALL ON @extschema@.order_events_origin FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.orders_adopt() FROM PUBLIC;
