/* schema/groups.sql: consumer groups, several readers sharing one name */

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
CREATE FUNCTION orders_internal.orders_events_group_key(consumer text, part integer)
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
        PERFORM orders_internal.orders_events_consumer(consumer || '/' || p);
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
CREATE FUNCTION orders_internal.orders_events_group_held(consumer text)
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
    FOREACH p IN ARRAY orders_internal.orders_events_group_held(consumer) LOOP
        CONTINUE WHEN read_parts IS NULL OR p <> ALL (read_parts);
        PERFORM orders_internal.orders_events_ack_through(consumer || '/' || p, last_position, p);
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
