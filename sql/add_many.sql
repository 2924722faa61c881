-- orders_add_many: many orders in one call, each checked as orders_add
-- checks it, written through the heap's multi-insert; an error names the
-- order's index in the array, and nothing of the call stays.

\i test/regress/helpers.sql

-- two orders: one with lines and an address, one bare with its own id
SELECT id = 'a0000000-0000-0000-0000-000000000081' AS given_id, customer_id, status, currency,
       total, version, shipping_address, created_at = now() AS at_now
FROM orders_add_many($$[
  {"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": "EUR",
   "lines": [{"product_id": "00000000-0000-0000-0000-000000000001", "product_name": "Tea",
              "quantity": 2, "unit_price": 350},
             {"product_id": "00000000-0000-0000-0000-000000000002", "product_name": "Pot",
              "quantity": "1", "unit_price": 3900}],
   "shipping_address": {"street": "Main St 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}},
  {"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": "USD",
   "id": "a0000000-0000-0000-0000-000000000081", "lines": [], "shipping_address": null}
]$$);
-- stored as orders_add stores them, one order_added event each, with the whole order
SELECT o.currency, o.total, array_length(o.lines, 1) AS lines, e.type, e.version,
       e.payload = to_jsonb(o) AS payload_is_the_order, e.id IS NOT NULL AS has_id
FROM orders o JOIN order_events e ON e.order_id = o.id
WHERE o.customer_id = 'c0000000-0000-0000-0000-000000000080' ORDER BY e.position;
SELECT count(*) AS empty FROM orders_add_many('[]');

-- Each bad order: the error, with the order's index (and field) in its context.
SELECT * FROM stored \gset before_
\set VERBOSITY default
SELECT orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": "EUR"},
                         {"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": "eur",
                          "id": "a0000000-0000-0000-0000-000000000082"}]');
SELECT orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": "EUR",
                          "lines": [{"product_id": "00000000-0000-0000-0000-000000000001",
                                     "product_name": "Tea", "quantity": 1, "unit_price": 1},
                                    {"product_id": "nope"}]}]');
SELECT orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": "EUR",
                          "lines": [{"product_id": "00000000-0000-0000-0000-000000000001",
                                     "product_name": "Tea", "quantity": 2.5, "unit_price": 1}]}]');
SELECT orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": "EUR",
                          "status": "confirmed"}]');
SELECT orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": "EUR",
                          "shipping_address": {"street": "x", "town": "y"}}]');
SELECT orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": "EUR",
                          "lines": {"product_id": "00000000-0000-0000-0000-000000000001"}}]');
SELECT orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": "EUR",
                          "lines": [null]}]');
SELECT orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": true}]');
SELECT orders_add_many('[{"currency": "EUR"}]');
\set VERBOSITY terse
SELECT err($$SELECT orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": "EUR", "lines": null}]')$$);
SELECT err($$SELECT orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": "EUR", "lines": [{"product_id": "00000000-0000-0000-0000-000000000001", "product_name": "Tea", "quantity": 0, "unit_price": 1}]}]')$$);
-- the same id twice in one call, and an id in use or used before
SELECT err($$SELECT orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": "EUR", "id": "a0000000-0000-0000-0000-000000000083"},
                                      {"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": "EUR", "id": "a0000000-0000-0000-0000-000000000083"}]')$$);
SELECT err($$SELECT orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": "EUR", "id": "a0000000-0000-0000-0000-000000000081"}]')$$);
SELECT (orders_remove('a0000000-0000-0000-0000-000000000081')).id AS removed;
SELECT * FROM stored \gset before_
SELECT err($$SELECT orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": "EUR"},
                                      {"customer_id": "c0000000-0000-0000-0000-000000000080", "currency": "EUR", "id": "a0000000-0000-0000-0000-000000000081"}]')$$);
-- not an array of objects
SELECT err($$SELECT orders_add_many(NULL)$$);
SELECT err($$SELECT orders_add_many('{"customer_id": "c0000000-0000-0000-0000-000000000080"}')$$);
SELECT err($$SELECT orders_add_many('"x"')$$);
SELECT err($$SELECT orders_add_many('[1]')$$);
SELECT orders = :before_orders AND events = :before_events AS nothing_stored FROM stored;

-- An error in the second chunk (past 1,000 orders) takes back the first.
\set VERBOSITY default
SELECT count(*) FROM orders_add_many((
    SELECT jsonb_agg(jsonb_build_object('customer_id', 'c0000000-0000-0000-0000-000000000080',
                                        'currency', CASE WHEN n = 1500 THEN 'xx' ELSE 'EUR' END)
                     ORDER BY n)
    FROM generate_series(0, 1999) n));
\set VERBOSITY terse
SELECT orders = :before_orders AND events = :before_events AS nothing_stored FROM stored;
-- 2,500 orders: three chunks, every one stored with its event, returned in the array's order
SELECT count(*) AS added, bool_and(o.customer_id = ('d0000000-0000-0000-0000-' || lpad(to_hex(g.n), 12, '0'))::uuid) AS in_order
FROM (SELECT row_number() OVER () - 1 AS i, o.* FROM orders_add_many((
          SELECT jsonb_agg(jsonb_build_object('customer_id', 'd0000000-0000-0000-0000-' || lpad(to_hex(n), 12, '0'),
                                              'currency', 'EUR') ORDER BY n)
          FROM generate_series(0, 2499) n)) o) o
JOIN generate_series(0, 2499) g(n) ON g.n = o.i;
SELECT count(*) AS events FROM order_events WHERE version = 1 AND type = 'order_added'
  AND order_id IN (SELECT id FROM orders WHERE customer_id::text LIKE 'd0000000-%');

-- It is a write: granted like orders_add, refused read-only, and under metadata
CREATE ROLE regress_bulk;
SET ROLE regress_bulk;
SELECT err($$SELECT orders_add_many('[]')$$);
RESET ROLE;
DROP ROLE regress_bulk;
BEGIN READ ONLY;
SELECT err($$SELECT orders_add_many('[]')$$);
ROLLBACK;
BEGIN;
SET LOCAL orders.event_metadata = '{"correlation_id": "import-7"}';
SELECT count(*) FROM orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000081", "currency": "EUR"},
                                       {"customer_id": "c0000000-0000-0000-0000-000000000081", "currency": "EUR"}]');
COMMIT;
SELECT count(*) AS with_metadata FROM order_events e JOIN orders o ON o.id = e.order_id
WHERE o.customer_id = 'c0000000-0000-0000-0000-000000000081' AND e.metadata->>'correlation_id' = 'import-7';

\i test/regress/cleanup.sql
