-- Every invariant that applies to adding an order: one failing case at least
-- each, with the SQLSTATE, constraint, column, message and offending value;
-- and after all of them, nothing stored.

\i test/regress/helpers.sql

-- add_err(...): orders_add with these arguments, as err() reports it; the
-- order id is always bad00000-..., so messages are stable.
CREATE FUNCTION add_err(customer_id uuid, currency text, lines order_line[],
                        address order_address DEFAULT NULL) RETURNS text
LANGUAGE sql AS $$
    SELECT err(format('SELECT orders_add(%L, %L, %L, %L, %L)', customer_id, currency,
                      lines, address, 'bad00000-0000-0000-0000-000000000001'))
$$;
CREATE FUNCTION addr(street text, city text, postal_code text, country text)
RETURNS order_address LANGUAGE sql AS $$ SELECT ROW($1, $2, $3, $4)::order_address $$;

SELECT * FROM stored \gset before_

-- not null: 23502 with the column
SELECT add_err(NULL, 'EUR', '{}');
SELECT add_err('c0000000-0000-0000-0000-000000000001', NULL, '{}');
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'EUR', NULL);
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'EUR', ARRAY[line(1), NULL]);
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'EUR',
               ARRAY[ROW(NULL, 'x', 1, 1)::order_line]);
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'EUR',
               ARRAY[line(1), ROW('00000000-0000-0000-0000-0000000000aa', NULL, 1, 1)::order_line]);
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'EUR',
               ARRAY[ROW('00000000-0000-0000-0000-0000000000aa', 'x', NULL, 1)::order_line]);
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'EUR',
               ARRAY[ROW('00000000-0000-0000-0000-0000000000aa', 'x', 1, NULL)::order_line]);
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'EUR', '{}',
               addr('Main St 1', NULL, '10115', 'DE'));
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'EUR', '{}',
               ROW(NULL, NULL, NULL, NULL)::order_address);
-- a NULL id is not an error: it asks for a generated one
SELECT id IS NOT NULL AS generated FROM orders_add('c0000000-0000-0000-0000-000000000001', 'EUR', id => NULL);

-- the array itself
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'EUR',
               ARRAY[[line(1), line(2)], [line(3), line(4)]]);
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'EUR',
               '[0:1]={"(00000000-0000-0000-0000-000000000001,a,1,1)","(00000000-0000-0000-0000-000000000002,b,1,1)"}');

-- order_currency_format
SELECT add_err('c0000000-0000-0000-0000-000000000001', c, '{}')
FROM unnest(ARRAY['eur', 'EU', 'EURO', 'E1R', 'ÉUR', '', ' EUR']) c;

-- order_lines_max
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'EUR',
               (SELECT array_agg(line(n)) FROM generate_series(1, 1001) n));

-- order_line_quantity_range
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'EUR', ARRAY[line(1), line(2, 100, q)])
FROM unnest(ARRAY[0, -1, 1000001]) q;

-- order_line_unit_price_range
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'EUR', ARRAY[line(1, p)])
FROM unnest(ARRAY[-1, 100000000001, -9223372036854775808]) p;

-- order_line_product_name: empty, too long, control characters (C0, DEL, C1)
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'EUR',
               ARRAY[ROW('00000000-0000-0000-0000-000000000001', name, 1, 1)::order_line])
FROM unnest(ARRAY['', repeat('x', 201), repeat('ü', 201), E'tab\there', E'new\nline',
                  E'nul\x01', E'del\x7f', E'c1\u0085']) name;

-- order_line_product_unique
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'EUR',
               ARRAY[line(1), line(2), line(3), line(2, 500)]);

-- order_address_fields
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'EUR', '{}', a)
FROM unnest(ARRAY[addr('', 'Berlin', '10115', 'DE'),
                  addr(repeat('s', 201), 'Berlin', '10115', 'DE'),
                  addr('Main St 1', '', '10115', 'DE'),
                  addr('Main St 1', repeat('c', 101), '10115', 'DE'),
                  addr('Main St 1', 'Berlin', '', 'DE'),
                  addr('Main St 1', 'Berlin', repeat('9', 21), 'DE'),
                  addr('Main St 1', 'Berlin', '10115', 'de'),
                  addr('Main St 1', 'Berlin', '10115', 'DEU'),
                  addr('Main St 1', 'Berlin', '10115', '')]) a;

-- the total must fit in bigint: 93 lines of 10^6 × 10^11 exceed 2^63
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'EUR',
               (SELECT array_agg(line(n, 100000000000, 1000000)) FROM generate_series(1, 93) n));
-- 92 of them fit
SELECT total FROM orders_add('c0000000-0000-0000-0000-000000000001', 'EUR',
               (SELECT array_agg(line(n, 100000000000, 1000000)) FROM generate_series(1, 92) n));

-- the first broken rule is the one reported, checked in the contract's order
SELECT add_err(NULL, 'eur', ARRAY[line(1, -1, 0)]);
SELECT add_err('c0000000-0000-0000-0000-000000000001', 'eur', ARRAY[line(1, -1, 0)]);

-- nothing of any failed call was stored: only the two successful adds above
SELECT s.orders - :before_orders AS new_orders, s.events - :before_events AS new_events
FROM stored s;
SELECT count(*) FROM orders WHERE id = 'bad00000-0000-0000-0000-000000000001';

-- an error inside a transaction leaves the transaction's earlier work intact
-- only up to the caller: the failed call itself wrote nothing
BEGIN;
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000001', 'EUR', id => 'a0000000-0000-0000-0000-0000000000f1');
SAVEPOINT s;
SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'eur', id => 'a0000000-0000-0000-0000-0000000000f2');
ROLLBACK TO SAVEPOINT s;
SELECT order_id, type FROM order_events WHERE order_id IN ('a0000000-0000-0000-0000-0000000000f1',
                                                     'a0000000-0000-0000-0000-0000000000f2');
ROLLBACK;

DROP FUNCTION add_err(uuid, text, order_line[], order_address), addr(text, text, text, text);

\i test/regress/cleanup.sql
