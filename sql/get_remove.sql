-- orders_get and orders_remove.

\i test/regress/helpers.sql

SELECT (orders_add('c0000000-0000-0000-0000-000000000010', 'EUR', ARRAY[line(1, 250, 4)],
                  ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address,
                  id => 'a0000000-0000-0000-0000-000000000010')).id AS added;

-- get: the whole aggregate
SELECT id, customer_id, status, currency, lines, shipping_address, total, version
FROM orders_get('a0000000-0000-0000-0000-000000000010');
-- get: no row when there is none, or for NULL
SELECT count(*) FROM orders_get('a0000000-0000-0000-0000-00000000dead');
SELECT count(*) FROM orders_get(NULL);
-- get as a composite value, and as JSON
SELECT (orders_get('a0000000-0000-0000-0000-000000000010')).total;
SELECT jsonb_pretty(to_jsonb(orders_get('a0000000-0000-0000-0000-000000000010'))
                    - 'created_at' - 'updated_at');
-- orders_json: to_jsonb's form but the money as strings, which a reader
-- whose numbers are doubles (JavaScript) gets whole; it reads back into the
-- row type, so it makes the round trip to orders_save
SELECT jsonb_pretty(orders_json(o) - 'created_at' - 'updated_at')
FROM orders_get('a0000000-0000-0000-0000-000000000010') o;
SELECT jsonb_populate_record(NULL::orders, orders_json(o)) = o AS round_trip
FROM orders_get('a0000000-0000-0000-0000-000000000010') o;
SELECT orders_json(NULL::orders) IS NULL AS null_in_null_out;
-- beyond 2^53 a double loses cents; the strings keep them
SELECT j->>'total' AS total, j->'lines'->0->>'unit_price' AS unit_price,
       jsonb_typeof(j->'total') AS total_type, jsonb_typeof(j->'lines') AS lines_type
FROM (SELECT orders_json(ROW('a0000000-0000-0000-0000-0000000000ff', 'c0000000-0000-0000-0000-000000000010',
                             'pending', 'EUR', ARRAY[line(1, 9007199254740993, 1)], NULL,
                             9007199254740993, 1, now(), now())::orders) AS j) x;
-- no lines: an empty array stays one, and NULL stays NULL
SELECT orders_json(ROW('a0000000-0000-0000-0000-0000000000ff', NULL, 'pending', 'EUR', '{}', NULL, 0, 1,
                       NULL, NULL)::orders)->'lines' AS empty,
       orders_json(ROW('a0000000-0000-0000-0000-0000000000ff', NULL, 'pending', 'EUR', NULL, NULL, 0, 1,
                       NULL, NULL)::orders)->'lines' AS missing;
-- the get of a lateral join, one per row
SELECT g.id, g.total
FROM (VALUES ('a0000000-0000-0000-0000-000000000010'::uuid),
             ('a0000000-0000-0000-0000-00000000dead')) v(id),
     LATERAL orders_get(v.id) g;

-- remove: NULL id, unknown id
SELECT err($$SELECT orders_remove(NULL)$$);
SELECT err($$SELECT orders_remove('a0000000-0000-0000-0000-00000000dead')$$);
-- remove with a stale expected version: 40001, nothing removed
SELECT err($$SELECT orders_remove('a0000000-0000-0000-0000-000000000010', 7)$$);
SELECT count(*) FROM orders WHERE id = 'a0000000-0000-0000-0000-000000000010';
-- remove with the right version: returns what was removed
SELECT id, status, total, version
FROM orders_remove('a0000000-0000-0000-0000-000000000010', expected_version => 1);
SELECT count(*) FROM orders_get('a0000000-0000-0000-0000-000000000010');
SELECT type, version, payload->>'total' AS total
FROM order_events WHERE order_id = 'a0000000-0000-0000-0000-000000000010' ORDER BY position;
-- removed twice
SELECT err($$SELECT orders_remove('a0000000-0000-0000-0000-000000000010')$$);
-- remove without an expected version
SELECT (orders_add('c0000000-0000-0000-0000-000000000010', 'EUR',
                  id => 'a0000000-0000-0000-0000-000000000011')).id AS added;
SELECT id, version FROM orders_remove('a0000000-0000-0000-0000-000000000011');

-- order_remove_in_flight: an order that is confirmed or shipped stays
SELECT count(*) FROM (
    SELECT orders_add('c0000000-0000-0000-0000-000000000011', 'EUR', ARRAY[line(1)],
                      ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address,
                      ('a0000000-0000-0000-0000-00000000002' || n)::uuid)
    FROM generate_series(0, 4) n) s;
SELECT move('a0000000-0000-0000-0000-000000000021', 'confirmed'),
       move('a0000000-0000-0000-0000-000000000022', 'confirmed', 'shipped'),
       move('a0000000-0000-0000-0000-000000000023', 'confirmed', 'shipped', 'delivered'),
       move('a0000000-0000-0000-0000-000000000024', 'cancelled');
SELECT * FROM stored \gset before_
SELECT o.status, err(format('SELECT orders_remove(%L)', o.id))
FROM orders o WHERE customer_id = 'c0000000-0000-0000-0000-000000000011' ORDER BY o.id;
SELECT s.orders - :before_orders AS orders_delta, s.events - :before_events AS events_delta
FROM stored s;
SELECT status FROM orders WHERE customer_id = 'c0000000-0000-0000-0000-000000000011' ORDER BY id;

-- remove inside a transaction that rolls back: the order stays
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000011', 'EUR',
                          id => 'a0000000-0000-0000-0000-000000000025');
BEGIN;
SELECT id FROM orders_remove('a0000000-0000-0000-0000-000000000025');
SELECT count(*) FROM orders_get('a0000000-0000-0000-0000-000000000025');
ROLLBACK;
SELECT count(*) FROM orders_get('a0000000-0000-0000-0000-000000000025');

-- the same order removed twice in one statement: the second finds it gone,
-- and the statement fails whole
SELECT err($$SELECT orders_remove(id) FROM (VALUES ('a0000000-0000-0000-0000-000000000025'::uuid),
                                                   ('a0000000-0000-0000-0000-000000000025'::uuid)) v(id)$$);
SELECT count(*) FROM orders_get('a0000000-0000-0000-0000-000000000025');

-- writes are refused in a read-only transaction (and so on a standby)
BEGIN READ ONLY;
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-000000000011', 'EUR')$$);
SELECT err($$SELECT orders_remove('a0000000-0000-0000-0000-000000000025')$$);
SELECT count(*) FROM orders_get('a0000000-0000-0000-0000-000000000025');
COMMIT;

\i test/regress/cleanup.sql
