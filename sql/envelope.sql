-- The events' envelope (an id of their own, the aggregate's type, the
-- payload's schema version, the writer's metadata), one order's history,
-- and reading by type.

\i test/regress/helpers.sql

-- Every event gets a time-ordered id of its own, the aggregate's type and
-- the payload's schema version; no metadata unless the writer set some.
SELECT (orders_add('c0000000-0000-0000-0000-000000000070', 'EUR', ARRAY[line(1)],
                  ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address, id => 'a0000000-0000-0000-0000-000000000070')).id AS added;
SELECT move('a0000000-0000-0000-0000-000000000070', 'confirmed');
SELECT type, substr(id::text, 15, 1) AS id_version, aggregatetype, schema_version, metadata
FROM order_events WHERE order_id = 'a0000000-0000-0000-0000-000000000070' ORDER BY position;
SELECT count(DISTINCT id) = count(*) AS ids_distinct FROM order_events;

-- Metadata: set once per transaction, carried by each event it writes.
BEGIN;
SET LOCAL orders.event_metadata = '{"correlation_id": "corr-1", "causation_id": "cmd-7", "actor": "alice",
                                    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}';
SELECT (orders_add('c0000000-0000-0000-0000-000000000070', 'EUR', ARRAY[line(2)],
                  ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address, id => 'a0000000-0000-0000-0000-000000000071')).id AS added;
SELECT move('a0000000-0000-0000-0000-000000000071', 'confirmed', 'shipped');
COMMIT;
SELECT type, metadata->>'correlation_id' AS correlation, metadata->>'actor' AS actor,
       metadata ? 'traceparent' AS traced
FROM order_events WHERE order_id = 'a0000000-0000-0000-0000-000000000071' ORDER BY position;
-- SET LOCAL ends with the transaction
SELECT current_setting('orders.event_metadata') AS after_commit;
-- set_config, as a client sets it with a parameter; '' is none
BEGIN;
SELECT set_config('orders.event_metadata', '{"correlation_id": "corr-2"}', true) IS NOT NULL AS set;
SELECT move('a0000000-0000-0000-0000-000000000071', 'delivered');
SELECT set_config('orders.event_metadata', '', true) = '' AS cleared;
SELECT (orders_add('c0000000-0000-0000-0000-000000000070', 'EUR',
                  id => 'a0000000-0000-0000-0000-000000000072')).id AS added;
COMMIT;
SELECT order_id, type, metadata FROM order_events
WHERE order_id IN ('a0000000-0000-0000-0000-000000000071', 'a0000000-0000-0000-0000-000000000072')
  AND type IN ('order_delivered', 'order_added') ORDER BY position;

-- Bad metadata: a clear error when an event is written, and nothing stored.
SELECT * FROM stored \gset before_
BEGIN;
SET LOCAL orders.event_metadata = '{"correlation_id": ';
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-000000000070', 'EUR', id => 'a0000000-0000-0000-0000-000000000079')$$);
SET LOCAL orders.event_metadata = '["not", "an", "object"]';
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-000000000070', 'EUR', id => 'a0000000-0000-0000-0000-000000000079')$$);
SET LOCAL orders.event_metadata = '"just a string"';
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-000000000070', 'EUR', id => 'a0000000-0000-0000-0000-000000000079')$$);
SELECT set_config('orders.event_metadata', '{"blob": "' || repeat('x', 8200) || '"}', true) IS NOT NULL AS set;
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-000000000070', 'EUR', id => 'a0000000-0000-0000-0000-000000000079')$$);
-- at the limit, it is taken
SELECT set_config('orders.event_metadata', '{"blob": "' || repeat('x', 8192 - 12) || '"}', true) IS NOT NULL AS set;
SELECT (orders_add('c0000000-0000-0000-0000-000000000070', 'EUR')).version AS added_at_limit;
ROLLBACK;
SELECT orders = :before_orders AND events = :before_events AS nothing_stored FROM stored;
-- the context names the setting
\set VERBOSITY default
BEGIN;
SET LOCAL orders.event_metadata = 'nope';
SELECT orders_add('c0000000-0000-0000-0000-000000000070', 'EUR', id => 'a0000000-0000-0000-0000-000000000079');
ROLLBACK;
\set VERBOSITY terse
-- One order's history: in version order, after a version, through the
-- (order_id, version) index.
SELECT type, version FROM orders_events_of('a0000000-0000-0000-0000-000000000071');
SELECT type, version FROM orders_events_of('a0000000-0000-0000-0000-000000000071', after_version => 2);
SELECT count(*) AS unknown_order FROM orders_events_of('a0000000-0000-0000-0000-0000000000ff');
SELECT err($$SELECT * FROM orders_events_of(NULL)$$);
SELECT err($$SELECT * FROM orders_events_of('a0000000-0000-0000-0000-000000000071', NULL)$$);
SET enable_seqscan = off;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF)
SELECT * FROM order_events e
WHERE e.order_id = 'a0000000-0000-0000-0000-000000000071' AND e.version > 0 ORDER BY e.version;
RESET enable_seqscan;
RESET plan_cache_mode;

-- It needs what reading the order needs: SELECT on orders (and no
-- row-level security applying there) and SELECT on order_events.
CREATE ROLE regress_history;
SET ROLE regress_history;
SELECT err($$SELECT * FROM orders_events_of('a0000000-0000-0000-0000-000000000071')$$);
RESET ROLE;
GRANT SELECT ON orders TO regress_history;
SET ROLE regress_history;
SELECT err($$SELECT * FROM orders_events_of('a0000000-0000-0000-0000-000000000071')$$);
RESET ROLE;
GRANT SELECT ON order_events TO regress_history;
SET ROLE regress_history;
SELECT count(*) AS history FROM orders_events_of('a0000000-0000-0000-0000-000000000071');
RESET ROLE;
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
SET ROLE regress_history;
SELECT err($$SELECT * FROM orders_events_of('a0000000-0000-0000-0000-000000000071')$$);
RESET ROLE;
ALTER TABLE orders DISABLE ROW LEVEL SECURITY;
-- the outbox's own policies apply
ALTER TABLE order_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY regress_only_added ON order_events TO regress_history USING (type = 'order_added');
SET ROLE regress_history;
SELECT type FROM orders_events_of('a0000000-0000-0000-0000-000000000071');
RESET ROLE;
DROP POLICY regress_only_added ON order_events;
ALTER TABLE order_events DISABLE ROW LEVEL SECURITY;
REVOKE SELECT ON orders, order_events FROM regress_history;
DROP ROLE regress_history;

-- Reading by type: only the types asked for; the others are skipped and
-- count as acknowledged.
SELECT orders_event_types();
SELECT orders_events_register('regress_shipping', from_start => true);
SELECT orders_events_register('regress_all', from_start => true);
SELECT order_id, type, version
FROM orders_events_read('regress_shipping', 100, types => ARRAY['order_shipped', 'order_delivered']);
SELECT max(position) AS last FROM orders_events_read('regress_shipping', 100, ARRAY['order_shipped', 'order_delivered']) \gset
SELECT orders_events_ack('regress_shipping', :last);
-- nothing of those types since: an empty read, and the batch is done
SELECT count(*) AS more FROM orders_events_read('regress_shipping', 10, ARRAY['order_shipped']);
SELECT name, pending FROM orders_events_consumers() WHERE name LIKE 'regress_%' ORDER BY name;
-- a new order, then a shipped one: the typed reader sees only the shipment
SELECT (orders_add('c0000000-0000-0000-0000-000000000070', 'EUR', ARRAY[line(3)],
                  ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address, id => 'a0000000-0000-0000-0000-000000000074')).id AS added;
SELECT move('a0000000-0000-0000-0000-000000000074', 'confirmed', 'shipped');
SELECT order_id, type FROM orders_events_read('regress_shipping', 100, ARRAY['order_shipped']);
-- a reader of every type still gets them all, in position order
SELECT count(*) AS all_events, count(*) = (SELECT count(*) FROM order_events) AS every_event
FROM orders_events_read('regress_all', 1000);
-- bad type lists
SELECT err($$SELECT * FROM orders_events_read('regress_shipping', 100, ARRAY['order_shiped'])$$);
SELECT err($$SELECT * FROM orders_events_read('regress_shipping', 100, ARRAY[]::text[])$$);
SELECT err($$SELECT * FROM orders_events_read('regress_shipping', 100, ARRAY['order_shipped', NULL])$$);
SELECT err($$SELECT * FROM orders_events_read('regress_shipping', 0, ARRAY['order_shipped'])$$);
-- two parameters of unknown type, as node-postgres sends them: still the first function
PREPARE untyped_read AS SELECT count(*) FROM orders_events_read($1, $2);
EXECUTE untyped_read('regress_shipping', 10);
DEALLOCATE untyped_read;
-- the typed read is granted on its own, like the other
CREATE ROLE regress_typed;
GRANT SELECT ON orders, order_events TO regress_typed;
GRANT EXECUTE ON FUNCTION orders_events_register(text, boolean), orders_events_read(text, integer)
    TO regress_typed;
SET ROLE regress_typed;
SELECT orders_events_register('regress_typed_reader');
SELECT err($$SELECT * FROM orders_events_read('regress_typed_reader', 100, ARRAY['order_shipped'])$$);
RESET ROLE;
-- the helper both call checks what they check: another role's consumer is not read
CREATE ROLE regress_typed_owner;
GRANT SELECT ON orders, order_events TO regress_typed_owner;
GRANT EXECUTE ON FUNCTION orders_events_register(text, boolean) TO regress_typed_owner;
SET ROLE regress_typed_owner;
SELECT orders_events_register('regress_owned');
SET ROLE regress_typed;
SELECT err($$SELECT * FROM orders_internal.orders_events_next('regress_owned', 10, NULL)$$);
RESET ROLE;
SELECT orders_events_unregister('regress_owned');
REVOKE ALL ON orders, order_events FROM regress_typed_owner;
REVOKE ALL ON FUNCTION orders_events_register(text, boolean) FROM regress_typed_owner;
DROP ROLE regress_typed_owner;
GRANT EXECUTE ON FUNCTION orders_events_read(text, integer, text[]) TO regress_typed;
SET ROLE regress_typed;
SELECT count(*) AS typed_read FROM orders_events_read('regress_typed_reader', 100, ARRAY['order_shipped']);
RESET ROLE;
SELECT orders_events_unregister('regress_typed_reader');
REVOKE ALL ON orders, order_events FROM regress_typed;
REVOKE ALL ON FUNCTION orders_events_register(text, boolean), orders_events_read(text, integer),
    orders_events_read(text, integer, text[]) FROM regress_typed;
DROP ROLE regress_typed;
SELECT orders_events_unregister('regress_shipping'), orders_events_unregister('regress_all');

\i test/regress/cleanup.sql
