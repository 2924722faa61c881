-- The failing field's path: every error about one field of an order, from
-- orders_add, orders_save, orders_remove and orders_add_many, has a detail
-- whose first sentence is "The field is <path>." -- one bad input per rule,
-- with the SQLSTATE, the constraint and column error fields, the path read
-- from the detail as clients read it, and the whole detail.  Errors about
-- the call rather than a field (a null or unknown id, an id used before)
-- have no such sentence.

\i test/regress/helpers.sql

-- path_err(sql): the error sql raises, with the path its detail gives
CREATE FUNCTION path_err(sql text, OUT state text, OUT constraint_name text,
                         OUT column_name text, OUT path text, OUT detail text,
                         OUT add_many_index int)
LANGUAGE plpgsql AS $$
DECLARE
    ctx text;
BEGIN
    EXECUTE sql;
    state := 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, constraint_name = CONSTRAINT_NAME,
        column_name = COLUMN_NAME, detail = PG_EXCEPTION_DETAIL, ctx = PG_EXCEPTION_CONTEXT;
    constraint_name := nullif(constraint_name, '');
    column_name := nullif(column_name, '');
    detail := nullif(detail, '');
    -- as the clients read it: the first sentence, a path has no space
    path := substring(detail from '^The field is (\S+)\.(?: |$)');
    add_many_index := substring(ctx from 'at index (\d+) of orders_add_many')::int;
END $$;

CREATE FUNCTION addr(street text, city text, postal_code text, country text)
RETURNS order_address LANGUAGE sql AS $$ SELECT ROW($1, $2, $3, $4)::order_address $$;

-- the orders the saves and removals start from: pending with lines and an
-- address; pending with a line and no address; confirmed; shipped
SELECT count(*) AS added FROM (
  SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR', ARRAY[line(1)],
                    addr('Main St 1', 'Berlin', '10115', 'DE'), id => i::uuid)
  FROM unnest(ARRAY['a0000000-0000-0000-0000-0000000000e1', 'a0000000-0000-0000-0000-0000000000e3',
                    'a0000000-0000-0000-0000-0000000000e4']) i
  UNION ALL
  SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR', ARRAY[line(1)],
                    id => 'a0000000-0000-0000-0000-0000000000e2')) a;
SELECT move('a0000000-0000-0000-0000-0000000000e3', 'confirmed') AS confirmed,
       move('a0000000-0000-0000-0000-0000000000e4', 'confirmed', 'shipped') AS shipped;

-- a status label the extension does not know (committed, so usable below)
ALTER TYPE order_status ADD VALUE 'on_hold';

CREATE TEMP TABLE cases (n serial, rule text, sql text);
INSERT INTO cases (rule, sql) VALUES
-- orders_add: the new order's fields
('not null: customer_id', $$SELECT orders_add(NULL, 'EUR')$$),
('not null: currency', $$SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', NULL)$$),
('not null: lines', $$SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR', NULL)$$),
('not null: a line', $$SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR', ARRAY[line(1), NULL])$$),
('not null: a line''s field', $$SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR',
    ARRAY[line(1), ROW('00000000-0000-0000-0000-0000000000aa', 'x', NULL, 1)::order_line])$$),
('not null: an address field', $$SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR', '{}',
    addr('Main St 1', 'Berlin', NULL, 'DE'))$$),
('array shape: dimensions', $$SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR',
    ARRAY[[line(1)], [line(2)]])$$),
('array shape: lower bound', $$SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR',
    '[0:0]={"(00000000-0000-0000-0000-000000000001,a,1,1)"}')$$),
('order_currency_format', $$SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'eur')$$),
('order_lines_max', $$SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR',
    (SELECT array_agg(line(n)) FROM generate_series(1, 1001) n))$$),
('order_line_product_name', $$SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR',
    ARRAY[line(1), ROW('00000000-0000-0000-0000-0000000000aa', '', 1, 1)::order_line])$$),
('order_line_quantity_range', $$SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR',
    ARRAY[line(1), line(2), line(3, 100, 0)])$$),
('order_line_unit_price_range', $$SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR',
    ARRAY[line(1, -1)])$$),
('order_line_product_unique', $$SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR',
    ARRAY[line(1), line(2), line(1)])$$),
('total out of range', $$SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR',
    (SELECT array_agg(line(n, 100000000000, 1000000)) FROM generate_series(1, 100) n))$$),
('order_address_fields: a text field', $$SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR', '{}',
    addr('Main St 1', repeat('c', 101), '10115', 'DE'))$$),
('order_address_fields: country', $$SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR', '{}',
    addr('Main St 1', 'Berlin', '10115', 'de'))$$),
-- orders_save: the new state, then against the stored order
('not null: version', $$SELECT orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-0000000000e1'),
    '{"version": null}'))$$),
('not null: status', $$SELECT orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-0000000000e1'),
    '{"status": null}'))$$),
('unknown status', $$SELECT orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-0000000000e1'),
    '{"status": "on_hold"}'))$$),
('version conflict', $$SELECT orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-0000000000e1'),
    '{"version": 7}'))$$),
('order_immutable_fields: customer_id', $$SELECT orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-0000000000e1'),
    '{"customer_id": "c0000000-0000-0000-0000-0000000000ff"}'))$$),
('order_immutable_fields: currency', $$SELECT orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-0000000000e1'),
    '{"currency": "USD"}'))$$),
('order_status_transition', $$SELECT orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-0000000000e1'),
    '{"status": "shipped"}'))$$),
('order_ready_to_confirm: lines', $$SELECT orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-0000000000e1'),
    '{"status": "confirmed", "lines": []}'))$$),
('order_ready_to_confirm: shipping_address', $$SELECT orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-0000000000e2'),
    '{"status": "confirmed"}'))$$),
('order_frozen_after_confirm: lines', $$SELECT orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-0000000000e3'),
    jsonb_build_object('lines', ARRAY[line(2)])))$$),
('order_frozen_after_confirm: shipping_address', $$SELECT orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-0000000000e4'),
    jsonb_build_object('shipping_address', addr('Elm St 2', 'Berlin', '10115', 'DE'))))$$),
('a line, on a save', $$SELECT orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-0000000000e1'),
    jsonb_build_object('lines', ARRAY[line(1), line(2, -5)])))$$),
-- orders_remove
('order_remove_in_flight', $$SELECT orders_remove('a0000000-0000-0000-0000-0000000000e3')$$),
('version conflict, on a removal', $$SELECT orders_remove('a0000000-0000-0000-0000-0000000000e1', 7)$$),
('highest version', $$UPDATE orders SET version = 2147483647 WHERE id = 'a0000000-0000-0000-0000-0000000000e2';
    SELECT orders_remove('a0000000-0000-0000-0000-0000000000e2')$$),
-- orders_add_many: the same rules, the same paths, the order's index in the context
('orders_add_many: order_currency_format', $$SELECT orders_add_many('[
    {"customer_id": "c0000000-0000-0000-0000-0000000000e0", "currency": "EUR"},
    {"customer_id": "c0000000-0000-0000-0000-0000000000e0", "currency": "eur"}]')$$),
('orders_add_many: order_line_quantity_range', $$SELECT orders_add_many('[
    {"customer_id": "c0000000-0000-0000-0000-0000000000e0", "currency": "EUR", "lines": [
      {"product_id": "00000000-0000-0000-0000-000000000001", "product_name": "Tea", "quantity": 1, "unit_price": 1},
      {"product_id": "00000000-0000-0000-0000-000000000002", "product_name": "Pot", "quantity": 0, "unit_price": 1}]}]')$$),
('orders_add_many: order_line_product_unique', $$SELECT orders_add_many('[
    {"customer_id": "c0000000-0000-0000-0000-0000000000e0", "currency": "EUR", "lines": [
      {"product_id": "00000000-0000-0000-0000-000000000001", "product_name": "Tea", "quantity": 1, "unit_price": 1},
      {"product_id": "00000000-0000-0000-0000-000000000001", "product_name": "Tea", "quantity": 1, "unit_price": 1}]}]')$$),
('orders_add_many: not null: an address field', $$SELECT orders_add_many('[
    {"customer_id": "c0000000-0000-0000-0000-0000000000e0", "currency": "EUR",
     "shipping_address": {"street": "Main St 1", "city": null, "postal_code": "10115", "country": "DE"}}]')$$),
-- about the call, not a field: no path
('null id', $$SELECT orders_remove(NULL)$$),
('no such order', $$SELECT orders_remove('a0000000-0000-0000-0000-0000000000ef')$$),
('id taken', $$SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR', id => 'a0000000-0000-0000-0000-0000000000e1')$$),
('id used before', $$SELECT orders_remove('a0000000-0000-0000-0000-0000000000e1');
    SELECT orders_add('c0000000-0000-0000-0000-0000000000e0', 'EUR', id => 'a0000000-0000-0000-0000-0000000000e1')$$);

-- each case runs in path_err's subtransaction, undone by its error
CREATE TEMP TABLE results AS
SELECT c.n, c.rule, r.* FROM cases c, LATERAL path_err(c.sql) r;

\pset format unaligned
SELECT rule, state, constraint_name, column_name, path, add_many_index FROM results ORDER BY n;
SELECT rule, detail FROM results ORDER BY n;
\pset format aligned

-- every error with a constraint or a column has a path, and the path's
-- first name is that column; but an id taken or used before (23505), which
-- is about the order's identity, not a value of its fields
SELECT rule FROM results
WHERE (constraint_name IS NOT NULL OR column_name IS NOT NULL) AND state <> '23505'
  AND (path IS NULL OR substring(path from '^[a-z_]+') IS DISTINCT FROM coalesce(column_name, substring(path from '^[a-z_]+')));
-- every detail with a path is complete sentences: it ends with a period
SELECT rule FROM results WHERE path IS NOT NULL AND detail !~ '\.$';
-- nothing of any of them was stored, and the highest version case's
-- UPDATE was undone with its failed call
SELECT count(*) AS orders, max(version) AS max_version FROM orders;

DROP FUNCTION path_err(text), addr(text, text, text, text);
DROP TABLE cases, results;

\i test/regress/cleanup.sql
