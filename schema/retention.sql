/* schema/retention.sql: removing the events every consumer is done with */

-- An event is kept until every registered consumer has acknowledged it, so
-- a consumer that stops reading holds the outbox back: unregister the ones
-- that are gone.  older_than removes older events whatever the consumers'
-- checkpoints and holds say.  Otherwise the events a consumer holds
-- (holds.sql) stay until their holds end.  Needs DELETE on order_events and SELECT on
-- order_event_consumers (the table owner has both): the function runs as
-- its caller.
CREATE FUNCTION @extschema@.orders_events_purge(older_than interval DEFAULT NULL)
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

COMMENT ON FUNCTION @extschema@.orders_events_purge(interval) IS
    'Removes the events every registered consumer has acknowledged, and those older than older_than';
