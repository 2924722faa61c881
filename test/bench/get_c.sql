\set n random(1, :orders)
SELECT * FROM orders_get(bench.order_id(:n));
