-- Consumer groups: 16 parts, each an ordinary consumer reading the events
-- of its share of the orders; a reader holds parts by advisory lock, takes
-- its fair share, and reads the parts it holds.  Several sessions are in
-- test/isolation/specs/consumer_groups.spec and test/t/019_consumer_groups.pl.

\i test/regress/helpers.sql

SELECT orders_events_register_group('regress_fulfil', from_start => true) AS registered,
       orders_events_register_group('regress_fulfil') AS again;
SELECT name FROM order_event_consumers WHERE name LIKE 'regress_fulfil/%' ORDER BY name COLLATE "C" LIMIT 3;
SELECT count(*) AS parts FROM order_event_consumers WHERE name LIKE 'regress_fulfil/%';
-- an order's events are one part's, from its id alone
SELECT orders_event_part('a0000000-0000-0000-0000-000000000001') BETWEEN 0 AND 15 AS in_range,
       count(DISTINCT orders_event_part(('a0000000-0000-0000-0000-' || lpad(to_hex(n), 12, '0'))::uuid)) AS parts_used
FROM generate_series(1, 200) n GROUP BY 1;

-- 40 orders, 20 of them confirmed
SELECT count(*) AS added FROM (
    SELECT orders_add('c0000000-0000-0000-0000-0000000000a0', 'EUR', ARRAY[line(1)],
                      ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address,
                      ('a0000000-0000-0000-0000-' || lpad(to_hex(n), 12, '0'))::uuid)
    FROM generate_series(1, 40) n) s;
SELECT count(*) AS confirmed FROM (
    SELECT move(('a0000000-0000-0000-0000-' || lpad(to_hex(n), 12, '0'))::uuid, 'confirmed')
    FROM generate_series(1, 20) n) s;

-- One reader alone takes all 16 parts, and reads everything, in position order.
CREATE TEMP TABLE got AS SELECT * FROM orders_events_read_group('regress_fulfil', 1000);
SELECT count(*) AS read, count(*) = (SELECT count(*) FROM order_events) AS every_event,
       bool_and(position > coalesce(prev, 0)) AS in_position_order
FROM (SELECT position, lag(position) OVER (ORDER BY position) AS prev FROM got) x;
SELECT cardinality(orders_internal.orders_events_group_held('regress_fulfil')) AS held;
SELECT orders_events_ack_group('regress_fulfil', (SELECT max(position) FROM got));
SELECT count(*) AS more FROM orders_events_read_group('regress_fulfil', 1000);
SELECT count(*) FILTER (WHERE pending > 0) AS parts_pending
FROM orders_events_consumers() WHERE name LIKE 'regress_fulfil/%';

-- by type, in a group
SELECT move(('a0000000-0000-0000-0000-' || lpad(to_hex(n), 12, '0'))::uuid, 'shipped')
FROM generate_series(1, 3) n;
SELECT (orders_add('c0000000-0000-0000-0000-0000000000a0', 'EUR')).version AS another;
SELECT type, order_id FROM orders_events_read_group('regress_fulfil', 100, ARRAY['order_shipped'])
ORDER BY position;
SELECT orders_events_ack_group('regress_fulfil', (SELECT max(position) FROM order_events));
SELECT count(*) FILTER (WHERE pending > 0) AS parts_pending
FROM orders_events_consumers() WHERE name LIKE 'regress_fulfil/%';

-- Leaving gives every part back.
SELECT orders_events_leave_group('regress_fulfil') AS given_back,
       cardinality(orders_internal.orders_events_group_held('regress_fulfil')) AS held;

-- Refusals: a bad name, a group that is not registered or is another
-- role's; a refused reader keeps no part.
SELECT err($$SELECT orders_events_register_group('a/b')$$);
SELECT err($$SELECT orders_events_register_group('')$$);
SELECT err($$SELECT * FROM orders_events_read_group('regress_nobody')$$);
SELECT cardinality(orders_internal.orders_events_group_held('regress_nobody')) AS kept;
SELECT err($$SELECT * FROM orders_events_read_group('regress_fulfil', 0)$$);
SELECT err($$SELECT * FROM orders_events_read_group('regress_fulfil', 10, ARRAY['order_shiped'])$$);
SELECT cardinality(orders_internal.orders_events_group_held('regress_fulfil')) AS kept;
SELECT err($$SELECT * FROM orders_internal.orders_events_next('regress_fulfil/3', 10, NULL, 16)$$);
SELECT err($$SELECT * FROM orders_internal.orders_events_next('regress_fulfil/3', 10, NULL, 4)$$);
CREATE ROLE regress_group_other;
GRANT SELECT ON orders, order_events TO regress_group_other;
GRANT EXECUTE ON FUNCTION orders_events_read_group(text, integer, text[]) TO regress_group_other;
SET ROLE regress_group_other;
SELECT err($$SELECT * FROM orders_events_read_group('regress_fulfil')$$);
SELECT cardinality(orders_internal.orders_events_group_held('regress_fulfil')) AS kept;
RESET ROLE;
REVOKE ALL ON orders, order_events FROM regress_group_other;
REVOKE ALL ON FUNCTION orders_events_read_group(text, integer, text[]) FROM regress_group_other;
DROP ROLE regress_group_other;

SELECT orders_events_unregister_group('regress_fulfil') AS unregistered;
SELECT count(*) AS parts_left FROM order_event_consumers WHERE name LIKE 'regress_fulfil/%';
SELECT pg_advisory_unlock_all();

\i test/regress/cleanup.sql
