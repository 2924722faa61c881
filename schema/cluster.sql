/* schema/cluster.sql: orders on a Citus cluster */

-- Citus keeps a distributed table's rows in shards, on the nodes that hold
-- them; the table under the extension's name is an empty shell there.  The
-- C functions write the shard of their order on this node (src/citus.c),
-- and a call made where the order is not, the coordinator or another
-- worker, is sent to the node that holds it (src/routing.c) as a call of
-- one of the functions below, which Citus delegates to that node by the
-- order's id.  Each checks that the caller may call the public function it
-- stands for, so they are executable by every role.  orders_distribute()
-- sets it all up.

CREATE FUNCTION orders_internal.orders_add_at(
    customer_id uuid, currency text, lines @extschema@.order_line[],
    shipping_address @extschema@.order_address, id uuid, notify text)
RETURNS @extschema@.orders
AS 'MODULE_PATHNAME', 'orders_add_at'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION orders_internal.orders_get_at(id uuid)
RETURNS SETOF @extschema@.orders
AS 'MODULE_PATHNAME', 'orders_get_at'
LANGUAGE C STABLE STRICT PARALLEL SAFE ROWS 1;

CREATE FUNCTION orders_internal.orders_save_at(o @extschema@.orders, id uuid, notify text)
RETURNS @extschema@.orders
AS 'MODULE_PATHNAME', 'orders_save_at'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION orders_internal.orders_remove_at(id uuid, expected_version integer, notify text)
RETURNS @extschema@.orders
AS 'MODULE_PATHNAME', 'orders_remove_at'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION orders_internal.orders_add_at(uuid, text, @extschema@.order_line[], @extschema@.order_address, uuid, text) IS
    'orders_add, run on the node of the order (Citus); called by orders_add';
COMMENT ON FUNCTION orders_internal.orders_get_at(uuid) IS
    'orders_get, run on the node of the order (Citus); called by orders_get';
COMMENT ON FUNCTION orders_internal.orders_save_at(@extschema@.orders, uuid, text) IS
    'orders_save, run on the node of the order (Citus); called by orders_save';
COMMENT ON FUNCTION orders_internal.orders_remove_at(uuid, integer, text) IS
    'orders_remove, run on the node of the order (Citus); called by orders_remove';

-- Whether Citus distributes the outbox: then a position tells its node
-- (src/events.c), and a consumer's checkpoint holds a cut a node.
CREATE FUNCTION orders_internal.orders_distributed()
RETURNS boolean
AS 'MODULE_PATHNAME', 'orders_distributed'
LANGUAGE C STABLE PARALLEL SAFE;

-- Consumers on a cluster (see "Across the nodes of a cluster" in
-- consumers.sql).  This node's cut of the events it wrote; anyone who may
-- consume may take it.
CREATE FUNCTION orders_internal.orders_events_node_cut()
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
CREATE FUNCTION orders_internal.orders_events_cluster_cut(c @extschema@.order_event_consumers)
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

-- Run once, by a superuser, on the coordinator of a Citus cluster whose
-- every node preloads orders after citus.  In one transaction: the outbox's
-- key becomes (order_id, position), as Citus needs a distributed table's
-- unique keys to hold its distribution column (a shard move also copies by
-- it); the positions already taken become those of the coordinator's group,
-- 0 (times 1024, plus the group: src/events.c), and every node's sequence
-- goes on from the coordinator's; orders is distributed by id, order_events
-- by order_id on the same nodes, and each _at function is delegated to the
-- node of its id, in a transaction block too (force_delegation).
CREATE FUNCTION @extschema@.orders_distribute(shard_count integer DEFAULT NULL)
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

COMMENT ON FUNCTION @extschema@.orders_distribute(integer) IS
    'Distributes orders and order_events with Citus, and sends each call to the node of its order';
