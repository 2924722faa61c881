\set n random(1, :orders)
SELECT * FROM orders WHERE id = bench.order_id(:n);
