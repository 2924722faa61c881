-- Safety in a shared database: who can write, who can read, and a hostile
-- search_path that must not change what the functions do.

\i test/regress/helpers.sql

CREATE ROLE regress_nobody;
CREATE ROLE regress_writer;
CREATE ROLE regress_reader;
GRANT EXECUTE ON FUNCTION
    orders_add(uuid, text, order_line[], order_address, uuid, jsonb),
    orders_save(orders),
    orders_remove(uuid, integer)
TO regress_writer;
GRANT SELECT ON orders, order_events TO regress_reader;
-- an order none of them added, for them to try to read and remove
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000030', 'EUR',
                          id => 'a0000000-0000-0000-0000-000000000001');

-- the write functions are not PUBLIC's; reading through orders_get needs SELECT
SELECT p.proname, has_function_privilege('regress_nobody', p.oid, 'EXECUTE') AS nobody,
       has_function_privilege('regress_writer', p.oid, 'EXECUTE') AS writer
FROM pg_proc p WHERE p.proname LIKE 'orders\_%' ORDER BY 1;

SET ROLE regress_nobody;
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-000000000030', 'EUR')$$);
SELECT err($$SELECT orders_remove('a0000000-0000-0000-0000-000000000001')$$);
SELECT err($$SELECT orders_save(NULL::orders)$$);
SELECT err($$SELECT * FROM orders_get('a0000000-0000-0000-0000-000000000001')$$);
SELECT err($$SELECT * FROM orders_find()$$);
SELECT err($$SELECT orders_count()$$);
SELECT err($$SELECT * FROM orders_total()$$);
SELECT err($$SELECT count(*) FROM orders$$);
SELECT orders_next_id() IS NOT NULL AS anyone_can_make_ids;
-- the functions a Citus cluster routes calls through are executable by
-- all, and ask for the privilege of the function each stands for
SELECT err($$SELECT orders_internal.orders_add_at('c0000000-0000-0000-0000-000000000030', 'EUR', '{}', NULL,
                                  'a0000000-0000-0000-0000-000000000049', 'off')$$);
SELECT err($$SELECT * FROM orders_internal.orders_get_at('a0000000-0000-0000-0000-000000000001')$$);
SELECT err($$SELECT orders_internal.orders_save_at(NULL::orders, 'a0000000-0000-0000-0000-000000000001', 'off')$$);
SELECT err($$SELECT orders_internal.orders_remove_at('a0000000-0000-0000-0000-000000000001', NULL, 'off')$$);
SELECT err($$SELECT orders_distribute()$$);
RESET ROLE;

-- where Citus does not distribute the tables, an _at function is its
-- public function, with the orders.notify it is given; a NULL id is refused
-- before any planner could place the call by it
SET orders.notify = on;
LISTEN orders_events;
SELECT id, version FROM orders_internal.orders_add_at('c0000000-0000-0000-0000-000000000030', 'EUR', '{}', NULL,
                                      'a0000000-0000-0000-0000-000000000048', 'off');
SELECT type FROM order_events WHERE order_id = 'a0000000-0000-0000-0000-000000000048';
SELECT err($$SELECT orders_internal.orders_add_at('c0000000-0000-0000-0000-000000000030', 'EUR', '{}', NULL, NULL, 'off')$$);
SELECT err($$SELECT * FROM orders_internal.orders_get_at(NULL)$$);
SELECT err($$SELECT orders_internal.orders_remove_at(NULL::uuid, 1, 'on')$$);
SELECT err($$SELECT orders_internal.orders_remove_at('a0000000-0000-0000-0000-000000000048', 1, 'loud')$$);
SELECT id, version FROM orders_internal.orders_remove_at('a0000000-0000-0000-0000-000000000048', 1, 'off');
SELECT orders_internal.orders_distributed() AS distributed;
UNLISTEN orders_events;

-- a writer needs no grant on the tables to use the API, and has none to
-- write them any other way
SET ROLE regress_writer;
SELECT id, version FROM orders_add('c0000000-0000-0000-0000-000000000030', 'EUR',
                                   id => 'a0000000-0000-0000-0000-000000000040');
SELECT err($$INSERT INTO orders VALUES ('a0000000-0000-0000-0000-000000000041',
             'c0000000-0000-0000-0000-000000000030', 'pending', 'eur', '{}', NULL, -5, 1, now(), now())$$);
SELECT err($$UPDATE orders SET total = 0$$);
SELECT err($$DELETE FROM orders$$);
SELECT err($$TRUNCATE orders$$);
SELECT err($$INSERT INTO order_events VALUES (1, '1', 'a0000000-0000-0000-0000-000000000041', 'order_added', 1, '{}', now())$$);
SELECT err($$DELETE FROM order_events$$);
SELECT err($$SELECT nextval('order_events_position_seq')$$);
SELECT err($$SELECT * FROM orders_get('a0000000-0000-0000-0000-000000000040')$$);
SELECT id, status, version FROM orders_save(ROW('a0000000-0000-0000-0000-000000000040',
    'c0000000-0000-0000-0000-000000000030', 'cancelled', 'EUR', '{}', NULL, 0, 1, NULL, NULL)::orders);
SELECT id, version FROM orders_remove('a0000000-0000-0000-0000-000000000040');
RESET ROLE;

-- a reader reads the tables and orders_get, and writes nothing
SET ROLE regress_reader;
SELECT id, version FROM orders_get('a0000000-0000-0000-0000-000000000001');
SELECT type FROM order_events WHERE order_id = 'a0000000-0000-0000-0000-000000000040' ORDER BY position;
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-000000000030', 'EUR')$$);
SELECT err($$UPDATE orders SET total = 0$$);
RESET ROLE;

-- consuming the outbox is granted by function, and the checkpoints are
-- written only through those functions
SET ROLE regress_reader;
SELECT err($$SELECT orders_events_register('regress')$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION orders_events_register(text, boolean), orders_events_read(text, integer),
                          orders_events_ack(text, bigint) TO regress_reader;
SET ROLE regress_reader;
SELECT orders_events_register('regress');
SELECT count(*) FROM orders_events_read('regress');
SELECT orders_events_ack('regress', 0);
SELECT err($$UPDATE order_event_consumers SET batch_position = 0$$);
SELECT err($$SELECT * FROM orders_internal.orders_events_batch(NULL::order_event_consumers, 1)$$);
SELECT err($$SELECT orders_events_purge()$$);
RESET ROLE;
SELECT orders_events_unregister('regress');

-- row-level security is not bypassed by orders_get: it refuses
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
SET ROLE regress_reader;
SELECT err($$SELECT * FROM orders_get('a0000000-0000-0000-0000-000000000001')$$);
RESET ROLE;
ALTER TABLE orders DISABLE ROW LEVEL SECURITY;

-- A hostile search_path: look-alike tables, types, functions and operators
-- first.  The functions resolve nothing through it.
CREATE SCHEMA evil;
CREATE TABLE evil.orders (LIKE orders);
CREATE TABLE evil.order_events (LIKE order_events);
CREATE SEQUENCE evil.order_events_position_seq START 1000000;
CREATE TYPE evil.order_status AS ENUM ('pending', 'confirmed', 'shipped', 'delivered', 'cancelled');
CREATE FUNCTION evil.uuid_eq(uuid, uuid) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = evil.uuid_eq);
CREATE FUNCTION evil.nextval(regclass) RETURNS bigint LANGUAGE sql AS 'SELECT 1000000::bigint';
CREATE FUNCTION evil.pg_notify(text, text) RETURNS void LANGUAGE sql AS 'SELECT';
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS $$SELECT '1999-01-01'::timestamptz$$;
CREATE FUNCTION evil.to_jsonb(anyelement) RETURNS jsonb LANGUAGE sql AS $$SELECT '"evil"'::jsonb$$;
CREATE FUNCTION evil.int8pl(bigint, bigint) RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint';
CREATE OPERATOR evil.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.int8pl);
CREATE OPERATOR evil.* (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.int8pl);
CREATE FUNCTION evil.int8ge(bigint, bigint) RETURNS boolean LANGUAGE sql AS 'SELECT false';
CREATE OPERATOR evil.>= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.int8ge);

SET search_path = evil, pg_catalog, public, pg_temp;
SELECT id, status, total, version, created_at = pg_catalog.now() AS real_now
FROM public.orders_add('c0000000-0000-0000-0000-000000000031', 'EUR',
                       ARRAY[public.line(1, 300, 2), public.line(2, 50, 1)],
                       id => 'a0000000-0000-0000-0000-000000000042');
SELECT id, total FROM public.orders_get('a0000000-0000-0000-0000-000000000042');
SELECT id, total FROM public.orders_get('a0000000-0000-0000-0000-00000000beef');
SELECT id, status, version FROM public.orders_save(pg_catalog.jsonb_populate_record(
    public.cur('a0000000-0000-0000-0000-000000000042'), '{"status": "cancelled"}'));
SELECT id, total FROM public.orders_find(customer_id => 'c0000000-0000-0000-0000-000000000031');
SELECT public.orders_count(customer_id => 'c0000000-0000-0000-0000-000000000031'),
       public.orders_count(customer_id => 'c0000000-0000-0000-0000-0000000000ff');
SELECT * FROM public.orders_total(customer_id => 'c0000000-0000-0000-0000-000000000031');
SELECT id FROM public.orders_remove('a0000000-0000-0000-0000-000000000042');
SELECT (SELECT count(*) FROM evil.orders) AS evil_orders,
       (SELECT count(*) FROM evil.order_events) AS evil_events,
       (SELECT last_value FROM evil.order_events_position_seq) AS evil_seq;
SELECT type, version, payload OPERATOR(pg_catalog.->>) 'total' AS total
FROM public.order_events
WHERE order_id OPERATOR(pg_catalog.=) 'a0000000-0000-0000-0000-000000000042'
ORDER BY position;
RESET search_path;
DROP SCHEMA evil CASCADE;

-- A column of the extension's altered behind its back is refused, not
-- misread; a column added is the shop's own (sql/fields.sql).  The
-- session's cached layout follows each change and its rollback.
SELECT (orders_add('c0000000-0000-0000-0000-000000000030', 'EUR')).currency;
BEGIN;
ALTER TABLE orders ALTER COLUMN currency TYPE varchar(3);
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-000000000030', 'EUR')$$);
ROLLBACK;
BEGIN;
ALTER TABLE orders ADD COLUMN note text DEFAULT 'n/a';
SELECT (orders_add('c0000000-0000-0000-0000-000000000030', 'EUR')).note;
ROLLBACK;
SELECT to_jsonb(o) ? 'note' AS has_note
FROM orders_add('c0000000-0000-0000-0000-000000000030', 'EUR') o;

-- Installed in another schema, and used with that schema nowhere on the path.
DROP EXTENSION orders CASCADE;
SELECT count(*) AS left_behind FROM pg_class WHERE relname IN ('orders', 'order_events', 'order_events_position_seq');
SELECT count(*) AS left_behind FROM pg_type WHERE typname IN ('order_status', 'order_line', 'order_address');
CREATE SCHEMA shop;
CREATE EXTENSION orders SCHEMA shop;
SET search_path = pg_catalog, pg_temp;
SELECT id, status, total
FROM shop.orders_add('c0000000-0000-0000-0000-000000000032', 'EUR',
                     ARRAY[ROW('00000000-0000-0000-0000-000000000001', 'Tea', 2, 350)::shop.order_line],
                     id => 'a0000000-0000-0000-0000-000000000043');
SELECT id, total FROM shop.orders_get('a0000000-0000-0000-0000-000000000043');
SELECT type FROM shop.order_events;
SELECT id FROM shop.orders_remove('a0000000-0000-0000-0000-000000000043');
RESET search_path;
DROP EXTENSION orders;
DROP SCHEMA shop;
DROP ROLE regress_nobody, regress_writer, regress_reader;

\i test/regress/cleanup.sql
