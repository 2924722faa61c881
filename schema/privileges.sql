/* schema/privileges.sql: who may do what */

-- Every role is hostile, the database's owner included.  No function of the
-- extension is SECURITY DEFINER: each runs as its caller, so a role may do
-- what it is granted here and read what it may SELECT, nothing more.  All
-- the grants are in this one file, so that they can be reviewed together.

-- Nobody writes these tables directly; the functions write them through the
-- table access method and so need no grant on them.  Reading them is
-- granted to each application's role (SELECT), and reading orders or
-- events through the functions needs it too.
REVOKE ALL ON @extschema@.orders, @extschema@.order_events,
              @extschema@.order_events_position_seq, @extschema@.order_event_consumers,
              @extschema@.order_idempotency, @extschema@.order_event_holds,
              @extschema@.order_events_origin
FROM PUBLIC;

-- The internal schema holds no data; every role may reach the helpers in
-- it, as it could when they lived beside the API, so that the API's SQL
-- functions, which run as their callers, can call them.  Each helper's own
-- grant below still decides who may run it.
GRANT USAGE ON SCHEMA orders_internal TO PUBLIC;

-- Writing is a privilege: granted explicitly, never to PUBLIC by default.
-- orders_get, the queries and orders_next_id stay callable by anyone: they
-- read with the caller's own privileges, so calling them shows nothing a
-- SELECT would not.
REVOKE ALL ON FUNCTION
    @extschema@.orders_add(uuid, text, @extschema@.order_line[], @extschema@.order_address, uuid, jsonb),
    @extschema@.orders_add_many(jsonb),
    @extschema@.orders_save(@extschema@.orders),
    @extschema@.orders_remove(uuid, integer)
FROM PUBLIC;

-- Consuming is granted by function (with SELECT on orders and
-- order_events); purging needs DELETE on order_events as well.  The relay
-- worker's pass is the worker's alone.
REVOKE ALL ON FUNCTION
    @extschema@.orders_events_register(text, boolean),
    @extschema@.orders_events_unregister(text),
    @extschema@.orders_events_read(text, integer),
    @extschema@.orders_events_read(text, integer, text[]),
    @extschema@.orders_events_register_group(text, boolean),
    @extschema@.orders_events_unregister_group(text),
    @extschema@.orders_events_read_group(text, integer, text[]),
    @extschema@.orders_events_ack_group(text, bigint),
    @extschema@.orders_events_ack(text, bigint),
    @extschema@.orders_events_nack(text, bigint, text, integer, interval),
    @extschema@.orders_events_nack_group(text, bigint, text, integer, interval),
    @extschema@.orders_events_holds(text),
    @extschema@.orders_events_parked(text),
    @extschema@.orders_events_replay(text, bigint),
    @extschema@.orders_events_discard(text, bigint),
    @extschema@.orders_events_consumers(),
    @extschema@.orders_events_purge(interval),
    @extschema@.orders_idempotency_purge(),
    orders_internal.orders_events_relay_batch(integer),
    orders_internal.orders_events_batch(@extschema@.order_event_consumers, integer, boolean, text[], integer),
    orders_internal.orders_events_consumer(text),
    orders_internal.orders_events_open_batch(text),
    orders_internal.orders_events_advance(text, bigint, boolean)
FROM PUBLIC;
-- But the helpers those call check the caller's privileges themselves (and
-- orders_events_batch reads as its caller), so anyone may call them.
GRANT EXECUTE ON FUNCTION
    orders_internal.orders_events_batch(@extschema@.order_event_consumers, integer, boolean, text[], integer),
    orders_internal.orders_events_next(text, integer, text[], integer),
    orders_internal.orders_events_ack_through(text, bigint, integer),
    orders_internal.orders_events_check_read(integer, text[]),
    orders_internal.orders_events_group_key(text, integer),
    orders_internal.orders_events_group_held(text),
    @extschema@.orders_events_leave_group(text),
    @extschema@.orders_event_part(uuid),
    @extschema@.orders_event_types(),
    @extschema@.orders_events_of(uuid, integer),
    orders_internal.orders_events_consumer(text),
    orders_internal.orders_events_open_batch(text),
    orders_internal.orders_events_advance(text, bigint, boolean),
    orders_internal.orders_events_holds_of(text),
    orders_internal.orders_events_holds_peek(text),
    orders_internal.orders_events_hold_store(text, @extschema@.order_event_holds),
    orders_internal.orders_events_held_positions(),
    orders_internal.orders_events_hold_next(text, @extschema@.order_event_holds),
    orders_internal.orders_events_hold_at(text, bigint),
    orders_internal.orders_events_retry_at(interval, integer),
    orders_internal.orders_events_reject(text, bigint, text, integer, interval, integer)
TO PUBLIC;

-- Adopting is the DBA's, after a restore or a switchover; the first write
-- or consumer call does it too, as the tables' owner.
REVOKE ALL ON FUNCTION @extschema@.orders_adopt() FROM PUBLIC;

-- Registering a group registers its 16 parts with orders_events_register,
-- and unregistering it unregisters them: those need their own grants too.

-- Distributing changes every table and node: the extension's owner's call.
REVOKE ALL ON FUNCTION @extschema@.orders_distribute(integer) FROM PUBLIC;
-- Cutting opens a connection to every node; src/consumers.c calls it for a
-- consumer's owner, through fmgr, which checks no privilege.
REVOKE ALL ON FUNCTION orders_internal.orders_events_cluster_cut(@extschema@.order_event_consumers) FROM PUBLIC;
