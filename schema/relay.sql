/* schema/relay.sql: the relay worker's pass (orders.notify = relay) */

-- A writer with orders.notify = relay sends no NOTIFY: it marks its events
-- (order_events.relay), and the relay worker (src/relay.c) sends their
-- NOTIFY after the commit.  The worker reads them as a consumer of its own,
-- orders_relay, owned by the bootstrap superuser, through the partial index
-- of relay events (outbox.sql).  Each pass returns the next events to
-- notify and acknowledges them in the same transaction as the NOTIFYs the
-- worker then sends, so that they are sent at its commit or not at all.
CREATE FUNCTION orders_internal.orders_events_relay_batch(max_events integer)
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
