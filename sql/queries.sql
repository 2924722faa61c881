-- orders_find, orders_count, orders_total: filters, keyset pagination, and
-- the plans on 100,000 orders.

\i test/regress/helpers.sql

-- 100,000 orders of 100 customers; every tenth in USD
SELECT count(*) FROM (
    SELECT orders_add(('c1000000-0000-0000-0000-' || lpad(to_hex(n % 100), 12, '0'))::uuid,
                      CASE WHEN n % 10 = 0 THEN 'USD' ELSE 'EUR' END,
                      ARRAY[line(1, n, 1 + n % 3)],
                      ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address)
    FROM generate_series(1, 100000) n) s;
-- a few of one customer's orders move on
SELECT count(move(id, 'confirmed')) AS confirmed FROM (
    SELECT id FROM orders WHERE customer_id = 'c1000000-0000-0000-0000-000000000007'
    ORDER BY id LIMIT 30) s;
SELECT count(move(id, 'confirmed', 'shipped')) AS shipped FROM (
    SELECT id FROM orders WHERE customer_id = 'c1000000-0000-0000-0000-000000000008'
    ORDER BY id LIMIT 20) s;
-- ... and two of another's, one confirmed and one shipped, so that a status
-- alone counts more than one customer's orders
SELECT move(o.id, VARIADIC m.statuses)
FROM (VALUES (1, '{confirmed}'::order_status[]), (2, '{confirmed,shipped}')) m(n, statuses)
JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM orders
      WHERE customer_id = 'c1000000-0000-0000-0000-000000000009') o USING (n)
ORDER BY m.n;
ANALYZE orders;

-- the plans: each filter uses its index, in id order, and stops at the limit
EXPLAIN (COSTS OFF) SELECT * FROM orders_find(customer_id => 'c1000000-0000-0000-0000-000000000007');
EXPLAIN (COSTS OFF) SELECT * FROM orders_find(status => 'confirmed');
EXPLAIN (COSTS OFF) SELECT * FROM orders_find(customer_id => 'c1000000-0000-0000-0000-000000000007',
                                              after_id => '01900000-0000-7000-8000-000000000000',
                                              max_rows => 10);
EXPLAIN (COSTS OFF) SELECT * FROM orders_find(status => 'shipped', min_total => 100);
EXPLAIN (COSTS OFF) SELECT * FROM orders_find(after_id => '01900000-0000-7000-8000-000000000000');

-- results follow the filters
SELECT count(*) AS all_of_customer_7,
       count(*) FILTER (WHERE status = 'confirmed') AS confirmed
FROM orders_find(customer_id => 'c1000000-0000-0000-0000-000000000007', max_rows => NULL);
SELECT count(*) AS default_page FROM orders_find();
SELECT count(*) AS no_rows FROM orders_find(max_rows => 0);
SELECT err($$SELECT * FROM orders_find(max_rows => -1)$$);
SELECT bool_and(status = 'shipped') AS all_shipped, count(*) FROM orders_find(status => 'shipped', max_rows => NULL);
SELECT min(total) >= 500 AND max(total) <= 510 AS in_range, count(*)
FROM orders_find(min_total => 500, max_total => 510, max_rows => NULL);
SELECT count(*) AS none_before FROM orders_find(created_before => '2000-01-01', max_rows => NULL);
SELECT count(*) >= 100000 AS all_since FROM orders_find(created_from => '2000-01-01', max_rows => NULL);

-- keyset pagination: pages of 7 by id cover the customer's orders exactly, in order
WITH RECURSIVE pages(n, last_id, ids) AS (
    SELECT 1, (array_agg(id ORDER BY id DESC))[1], array_agg(id ORDER BY id)
    FROM orders_find(customer_id => 'c1000000-0000-0000-0000-000000000007', max_rows => 7)
  UNION ALL
    SELECT p.n + 1, page.last_id, page.ids
    FROM pages p,
         LATERAL (SELECT (array_agg(id ORDER BY id DESC))[1] AS last_id, array_agg(id ORDER BY id) AS ids
                  FROM orders_find(customer_id => 'c1000000-0000-0000-0000-000000000007',
                                   after_id => p.last_id, max_rows => 7)) page
    WHERE page.last_id IS NOT NULL
)
SELECT count(*) AS pages,
       (SELECT array_agg(i ORDER BY n, ord) FROM pages, unnest(ids) WITH ORDINALITY u(i, ord))
       = (SELECT array_agg(id ORDER BY id) FROM orders
          WHERE customer_id = 'c1000000-0000-0000-0000-000000000007') AS same_as_all
FROM pages;

-- counts and totals with the same filters, without fetching orders
SELECT orders_count() = (SELECT count(*) FROM orders) AS count_all,
       orders_count(customer_id => 'c1000000-0000-0000-0000-000000000007') AS customer_7,
       orders_count(status => 'confirmed') AS confirmed,
       orders_count(status => 'shipped', customer_id => 'c1000000-0000-0000-0000-000000000008') AS shipped_8,
       orders_count(min_total => 500, max_total => 510) AS in_range,
       orders_count(created_before => '2000-01-01') AS none;
SELECT * FROM orders_total(customer_id => 'c1000000-0000-0000-0000-000000000007');
SELECT t.currency, t.orders, t.total = s.total AS same_sum
FROM orders_total() t
JOIN (SELECT currency, sum(total) AS total FROM orders GROUP BY currency) s USING (currency)
ORDER BY 1;
SELECT count(*) AS no_currencies FROM orders_total(status => 'delivered', customer_id => 'c1000000-0000-0000-0000-000000000007');

\i test/regress/cleanup.sql
