-- orders_add: the success paths, generated ids, a 1000-line order, duplicates.

\i test/regress/helpers.sql

-- everything given
SELECT id, customer_id, status, currency, lines, shipping_address, total, version,
       created_at = now() AS created_now, updated_at = created_at AS updated_eq
FROM orders_add('c0000000-0000-0000-0000-000000000001', 'EUR',
                ARRAY[line(1, 350, 2), line(2, 1200)],
                ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address,
                'a0000000-0000-0000-0000-000000000001');

-- the defaults: no lines, no address, a generated UUIDv7
SELECT substr(id::text, 15, 1) AS uuid_version,
       substr(id::text, 20, 1) IN ('8', '9', 'a', 'b') AS rfc_variant,
       status, lines, shipping_address, total, version
FROM orders_add('c0000000-0000-0000-0000-000000000002', 'USD');

-- named arguments, as clients in other languages call it
SELECT id, total FROM orders_add(customer_id => 'c0000000-0000-0000-0000-000000000001',
                                 currency => 'JPY', lines => ARRAY[line(7, 0)],
                                 id => 'a0000000-0000-0000-0000-000000000002');

-- orders_next_id: version 7, time-ordered, strictly increasing within a backend
SELECT count(*) AS ids,
       count(DISTINCT id) AS distinct_ids,
       bool_and(substr(id::text, 15, 1) = '7') AS all_v7,
       array_agg(id ORDER BY n) = array_agg(id ORDER BY id) AS increasing
FROM (SELECT n, orders_next_id() AS id FROM generate_series(1, 10000) n) s;

-- the time in a v7 id is the clock's (milliseconds since 1970)
SELECT abs(('x' || substr(replace(orders_next_id()::text, '-', ''), 1, 12))::bit(48)::bigint
           - (extract(epoch FROM clock_timestamp()) * 1000)::bigint) < 60000 AS clock_ms;

-- a 1000-line order round-trips exactly
SELECT total, version, cardinality(lines) AS n_lines
FROM orders_add('c0000000-0000-0000-0000-000000000003', 'EUR',
                (SELECT array_agg(line(n, n * 10, n) ORDER BY n) FROM generate_series(1, 1000) n),
                id => 'a0000000-0000-0000-0000-000000001000');
SELECT o.lines = (SELECT array_agg(line(n, n * 10, n) ORDER BY n) FROM generate_series(1, 1000) n) AS same_lines,
       o.total = (SELECT sum(n::bigint * n * 10) FROM generate_series(1, 1000) n) AS same_total,
       pg_column_size(o.lines) > 2000 AS big_enough_to_toast
FROM orders_get('a0000000-0000-0000-0000-000000001000') o;

-- the boundaries that are allowed
SELECT total FROM orders_add('c0000000-0000-0000-0000-000000000004', 'EUR',
    ARRAY[line(1, 0, 1), line(2, 100000000000, 1000000)],
    ROW(repeat('s', 200), repeat('c', 100), repeat('9', 20), 'ZZ')::order_address,
    'a0000000-0000-0000-0000-000000000003');
SELECT total FROM orders_add('c0000000-0000-0000-0000-000000000004', 'EUR',
    ARRAY[ROW('00000000-0000-0000-0000-000000000001', repeat('ü', 200), 1, 1)::order_line],
    ROW('Straße 1', 'Zürich', '8001', 'CH')::order_address,
    'a0000000-0000-0000-0000-000000000004');

-- adding an id that exists: 23505, and nothing more stored
SELECT * FROM stored;
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-000000000009', 'EUR',
                               id => 'a0000000-0000-0000-0000-000000000001')$$);
SELECT * FROM stored;
SELECT customer_id, currency FROM orders WHERE id = 'a0000000-0000-0000-0000-000000000001';

-- orders_add in a multi-row statement: each row is its own order
SELECT count(*) FROM (SELECT orders_add('c0000000-0000-0000-0000-000000000005', 'EUR')
                      FROM generate_series(1, 5)) s;
SELECT count(*) FROM orders WHERE customer_id = 'c0000000-0000-0000-0000-000000000005';

\i test/regress/cleanup.sql
