/* orders--1.6--1.7.sql: consumers on a Citus cluster.  A checkpoint holds
   one cut a node; retention and monitoring judge each node's events by
   them. */

\echo Use "ALTER EXTENSION orders UPDATE TO '1.7'" to load this file. \quit

SELECT @extschema@.orders_assert_trusted_schema();

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
CREATE TYPE @extschema@.order_event_cut AS (
    node_group   integer,       -- the node's Citus group
    snapshot     pg_snapshot,
    top_position bigint,
    next_xid     xid8
);

ALTER TABLE @extschema@.order_event_consumers
    ADD COLUMN acked_cuts @extschema@.order_event_cut[],  -- a cluster's: one a node
    ADD COLUMN batch_cuts @extschema@.order_event_cut[];

-- Consumers on a cluster (see "Across the nodes of a cluster" in
-- consumers.sql).  This node's cut of the events it wrote; anyone who may
-- consume may take it.
CREATE FUNCTION @extschema@.orders_events_node_cut()
RETURNS @extschema@.order_event_cut
AS 'MODULE_PATHNAME', 'orders_events_node_cut'
LANGUAGE C VOLATILE;

-- The cuts of every node, taken now, for consumer c's new checkpoint or
-- batch (src/consumers.c calls it with the row it is about to store).
-- This node's is taken here, in the caller's transaction (so that it counts
-- the caller's own transaction as running); every other active primary's
-- over a connection of its own, as the caller, and it must answer with its
-- own group.  The shards' placements are read before and after: if a shard
-- moved in between, an order's earlier event on the node it left could be
-- outside the batch and its later one on the node it reached inside, so
-- the cuts are taken again.  A node that is inactive keeps the
-- checkpoint's cut, and one it has no cut of is an error: its events would
-- come all at once when it returns.  A node removed from the cluster wrote
-- nothing since its shards moved away: its last batch takes everything it
-- wrote (a cut that sees every transaction and every position), and its
-- batches are empty from then on.
CREATE FUNCTION @extschema@.orders_events_cluster_cut(c @extschema@.order_event_consumers)
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
        own := @extschema@.orders_events_node_cut();
        cuts := ARRAY[own];
        FOR node IN
            WITH others AS (SELECT n.nodename, n.nodeport FROM pg_dist_node n
                            WHERE n.noderole = 'primary' AND n.isactive AND n.groupid <> own.node_group)
            SELECT d.groupid, d.nodename, d.nodeport, r.success, r.result
            FROM master_run_on_worker(
                     ARRAY(SELECT nodename FROM others ORDER BY nodename, nodeport),
                     ARRAY(SELECT nodeport FROM others ORDER BY nodename, nodeport),
                     ARRAY(SELECT 'SELECT @extschema@.orders_events_node_cut()' FROM others),
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

-- The next events of a consumer's open batch after its batch_position, in
-- position order: the late events of transactions that were running at the
-- checkpoint, each read through (xid, position), then the committed events
-- above the checkpoint's top position, read through the primary key, up to
-- the batch's own top position.  A read of max_events costs about
-- max_events index entries, however far behind the consumer is.  With
-- relay_only, just the events whose NOTIFY the relay worker sends
-- (relay.sql).
CREATE OR REPLACE FUNCTION @extschema@.orders_events_batch(
    c @extschema@.order_event_consumers, max_events integer, relay_only boolean DEFAULT false)
RETURNS SETOF @extschema@.order_events
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off                           -- a few index probes: never worth compiling
AS $$
DECLARE
    relay_filter text := CASE WHEN relay_only THEN ' AND e.relay' ELSE '' END;
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

-- On a cluster, what consumer c has not acknowledged, counted exactly, by
-- each node's cuts (see "Across the nodes of a cluster" in consumers.sql):
-- one distributed statement whose cost grows with the backlog.
CREATE FUNCTION @extschema@.orders_events_cluster_pending(
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
    ORDER BY c.name;
END
$$;

-- An event is kept until every registered consumer has acknowledged it, so
-- a consumer that stops reading holds the outbox back: unregister the ones
-- that are gone.  older_than removes older events whatever the consumers'
-- checkpoints say.  Needs DELETE on order_events and SELECT on
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
BEGIN
    -- On a cluster each node's events are judged by the consumers' cuts of
    -- that node (position % 1024 tells it): below the smallest xmin, when
    -- every consumer has a cut of it.  A checkpoint without cuts is from
    -- before the outbox was distributed, the coordinator's (group 0).
    IF @extschema@.orders_distributed() THEN
        n := 0;
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

-- Run once, by a superuser, on the coordinator of a Citus cluster whose
-- every node preloads orders after citus.  In one transaction: the outbox's
-- key becomes (order_id, position), as Citus needs a distributed table's
-- unique keys to hold its distribution column (a shard move also copies by
-- it); the positions already taken become those of the coordinator's group,
-- 0 (times 1024, plus the group: src/events.c), and every node's sequence
-- goes on from the coordinator's; orders is distributed by id, order_events
-- by order_id on the same nodes, and each _at function is delegated to the
-- node of its id, in a transaction block too (force_delegation).
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
    LOCK TABLE @extschema@.orders, @extschema@.order_events, @extschema@.order_event_consumers
        IN EXCLUSIVE MODE;
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

-- Cutting opens a connection to every node; src/consumers.c calls it for a
-- consumer's owner, through fmgr, which checks no privilege.
REVOKE ALL ON FUNCTION @extschema@.orders_events_cluster_cut(@extschema@.order_event_consumers) FROM PUBLIC;

-- A cluster distributed under 1.6: the relay worker's checkpoint goes (relay
-- is refused on a cluster, and a checkpoint nobody moves would keep every
-- event from retention), a batch left open goes on as the coordinator's
-- cut, and consumers need the index by position on every shard.
DO $$
BEGIN
    IF @extschema@.orders_distributed() THEN
        DELETE FROM @extschema@.order_event_consumers WHERE name = 'orders_relay';
        UPDATE @extschema@.order_event_consumers
        SET batch_cuts = ARRAY[ROW(0, batch_snapshot, batch_top_position, batch_next_xid)]
                             ::@extschema@.order_event_cut[]
        WHERE batch_snapshot IS NOT NULL;
        RAISE WARNING 'consumers on this cluster read each node''s events by position'
            USING HINT = 'Run CREATE INDEX order_events_position_idx ON @extschema@.order_events (position) on the coordinator.';
    END IF;
END
$$;
