-- The outbox: one row per add and remove, in the caller's transaction.

\i test/regress/helpers.sql

SELECT coalesce(max(position), 0) AS p0 FROM order_events \gset

BEGIN;
SELECT (orders_add('c0000000-0000-0000-0000-000000000020', 'EUR', ARRAY[line(1, 999, 3)],
                  id => 'a0000000-0000-0000-0000-000000000030')).id AS added;
SELECT (orders_remove('a0000000-0000-0000-0000-000000000030')).id AS removed;
-- positions increase; xid is the writer's transaction; occurred_at is its time
SELECT position > :p0 AS new, type, order_id, version,
       xid = pg_current_xact_id() AS own_xid, occurred_at = now() AS at_now
FROM order_events WHERE position > :p0 ORDER BY position;
COMMIT;

-- the payload is the whole order, as to_jsonb(orders) shows it
SELECT (orders_add('c0000000-0000-0000-0000-000000000020', 'EUR',
                  ARRAY[line(1, 999, 3), line(2, 1)],
                  ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address,
                  id => 'a0000000-0000-0000-0000-000000000031')).id AS added;
SELECT e.payload = to_jsonb(o) AS payload_is_the_order
FROM order_events e, orders o
WHERE e.order_id = o.id AND o.id = 'a0000000-0000-0000-0000-000000000031';
SELECT jsonb_pretty(payload - 'created_at' - 'updated_at')
FROM order_events WHERE order_id = 'a0000000-0000-0000-0000-000000000031';
-- removal carries the removed order, with the version one past it
SELECT (orders_remove('a0000000-0000-0000-0000-000000000031')).id AS removed;
SELECT type, version, payload->>'version' AS order_version, payload->'lines'->1->>'product_name' AS line2
FROM order_events WHERE order_id = 'a0000000-0000-0000-0000-000000000031' ORDER BY position;

-- rollback: neither the order nor its event
SELECT max(position) AS p1 FROM order_events \gset
BEGIN;
SELECT (orders_add('c0000000-0000-0000-0000-000000000020', 'EUR',
                  id => 'a0000000-0000-0000-0000-000000000032')).id AS added;
ROLLBACK;
SELECT count(*) AS events_after_rollback FROM order_events WHERE position > :p1;
SELECT count(*) AS orders_after_rollback FROM orders_get('a0000000-0000-0000-0000-000000000032');

-- a rolled-back savepoint: the rest of the transaction stays
BEGIN;
SELECT (orders_add('c0000000-0000-0000-0000-000000000020', 'EUR',
                  id => 'a0000000-0000-0000-0000-000000000033')).id AS added;
SAVEPOINT s1;
SELECT (orders_add('c0000000-0000-0000-0000-000000000020', 'EUR',
                  id => 'a0000000-0000-0000-0000-000000000034')).id AS added;
ROLLBACK TO SAVEPOINT s1;
COMMIT;
SELECT order_id, type FROM order_events WHERE position > :p1 ORDER BY position;

-- every order ever added and still present has exactly one order_added event
SELECT count(*) AS orders_without_added_event
FROM orders o
WHERE (SELECT count(*) FROM order_events e
       WHERE e.order_id = o.id AND e.type = 'order_added') <> 1;

\i test/regress/cleanup.sql
