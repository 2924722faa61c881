-- Hostile owners and tampered tables: nothing the server would enforce is
-- skipped silently, a re-keyed table is refused, a removed id is not used
-- again, write-only roles learn nothing stored, consumers belong to roles,
-- and every error has a clean SQLSTATE.

\i test/regress/helpers.sql

CREATE ROLE regress_app;
CREATE ROLE regress_other;
CREATE ROLE regress_writeonly;
GRANT SELECT ON orders, order_events TO regress_app, regress_other;
GRANT EXECUTE ON FUNCTION orders_events_register(text, boolean), orders_events_read(text, integer),
    orders_events_ack(text, bigint), orders_events_unregister(text) TO regress_app, regress_other;
GRANT EXECUTE ON FUNCTION orders_add(uuid, text, order_line[], order_address, uuid, jsonb),
    orders_save(orders), orders_remove(uuid, integer) TO regress_writeonly;

SELECT id FROM orders_add('c0000000-0000-0000-0000-0000000000a0', 'EUR', ARRAY[line(1)],
    ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address,
    id => 'a0000000-0000-0000-0000-0000000000a0');

-- A primary key on something else than id alone: refused, never misread.
ALTER TABLE orders DROP CONSTRAINT orders_pkey, ADD PRIMARY KEY (total, id);
SELECT err($$SELECT * FROM orders_get('a0000000-0000-0000-0000-0000000000a0')$$);
ALTER TABLE orders DROP CONSTRAINT orders_pkey, ADD PRIMARY KEY (customer_id, id);
SELECT err($$SELECT * FROM orders_get('c0000000-0000-0000-0000-0000000000a0')$$);
SELECT err($$SELECT orders_remove('c0000000-0000-0000-0000-0000000000a0')$$);
ALTER TABLE orders DROP CONSTRAINT orders_pkey;
CREATE UNIQUE INDEX orders_id_hash ON orders (id) WHERE total > 0;
SELECT err($$SELECT * FROM orders_get('a0000000-0000-0000-0000-0000000000a0')$$);
DROP INDEX orders_id_hash;
ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id) DEFERRABLE;
SELECT err($$SELECT * FROM orders_get('a0000000-0000-0000-0000-0000000000a0')$$);
ALTER TABLE orders DROP CONSTRAINT orders_pkey, ADD CONSTRAINT orders_pkey PRIMARY KEY (id);
SELECT id FROM orders_get('a0000000-0000-0000-0000-0000000000a0');

-- What the owner adds that the direct path would skip is refused, by name.
-- (orders' own CHECK constraints are evaluated: sql/fields.sql; the
-- outbox's are not.)
SELECT orders AS orders_before, events AS events_before FROM stored \gset
ALTER TABLE order_events ADD CONSTRAINT known_type CHECK (type <> '') NOT VALID;
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-0000000000a0', 'EUR')$$);
ALTER TABLE order_events DROP CONSTRAINT known_type;
CREATE TABLE regress_customers (id uuid PRIMARY KEY);
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id)
    REFERENCES regress_customers NOT VALID;
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-0000000000a1', 'EUR')$$);
ALTER TABLE orders DROP CONSTRAINT orders_customer_fk;
CREATE TABLE regress_invoices (order_id uuid REFERENCES orders ON DELETE RESTRICT);
INSERT INTO regress_invoices VALUES ('a0000000-0000-0000-0000-0000000000a0');
SELECT err($$SELECT orders_remove('a0000000-0000-0000-0000-0000000000a0')$$);
DROP TABLE regress_invoices;
ALTER TABLE orders ADD CONSTRAINT orders_id_currency UNIQUE (id, currency)
    DEFERRABLE INITIALLY DEFERRED;
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-0000000000a0', 'EUR')$$);
ALTER TABLE orders DROP CONSTRAINT orders_id_currency;
CREATE FUNCTION regress_trg() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER audit BEFORE INSERT ON order_events FOR EACH ROW EXECUTE FUNCTION regress_trg();
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-0000000000a2', 'EUR')$$);
DROP TRIGGER audit ON order_events;
CREATE RULE no_delete AS ON DELETE TO orders DO INSTEAD NOTHING;
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-0000000000a2', 'EUR')$$);
DROP RULE no_delete ON orders;
CREATE TABLE regress_orders_child () INHERITS (orders);
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-0000000000a2', 'EUR')$$);
DROP TABLE regress_orders_child;
-- the refused calls wrote nothing
SELECT orders - :orders_before AS orders_written, events - :events_before AS events_written
FROM stored;
-- a table the call does not write does not stand in its way
CREATE TRIGGER audit BEFORE UPDATE ON order_event_consumers FOR EACH ROW EXECUTE FUNCTION regress_trg();
SELECT (orders_add('c0000000-0000-0000-0000-0000000000a2', 'EUR')).currency;
SELECT err($$SELECT orders_events_register('regress_blocked')$$);
DROP TRIGGER audit ON order_event_consumers;

-- User code that runs inside a call (an index expression's function) and
-- makes the cached layout stale, then calls the extension itself: the outer
-- call keeps the catalog it started with.
CREATE FUNCTION regress_inner() RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('regress.nested', true) IS DISTINCT FROM 'on' THEN
        RETURN 1;
    END IF;
    BEGIN
        -- the rebuild this forces fails (a cached sequence is refused)
        ALTER SEQUENCE order_events_position_seq CACHE 5;
        PERFORM * FROM orders_get('a0000000-0000-0000-0000-0000000000a0');
    EXCEPTION WHEN object_not_in_prerequisite_state THEN
        RAISE NOTICE 'inner call refused: %', SQLERRM;
    END;
    RETURN 1;
END $$;
-- (An index build runs with a search_path of pg_catalog from 17 on.)
CREATE FUNCTION regress_index_fn(order_line[]) RETURNS integer LANGUAGE sql IMMUTABLE
SET search_path = public AS 'SELECT regress_inner()';
CREATE INDEX regress_lines_idx ON orders (regress_index_fn(lines));
SET regress.nested = on;
SELECT version, total FROM orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-0000000000a0'),
    jsonb_build_object('lines', ARRAY[line(1), line(2, 250)])));
RESET regress.nested;
DROP INDEX regress_lines_idx;
DROP FUNCTION regress_index_fn(order_line[]), regress_inner();

-- NOT NULL set by the owner on a column the extension leaves nullable is enforced.
BEGIN;
UPDATE orders SET shipping_address = ROW('Main St 1', 'Berlin', '10115', 'DE')
WHERE shipping_address IS NULL;
ALTER TABLE orders ALTER COLUMN shipping_address SET NOT NULL;
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-0000000000a3', 'EUR',
    id => 'a0000000-0000-0000-0000-0000000000a9')$$);
SELECT id FROM orders_add('c0000000-0000-0000-0000-0000000000a3', 'EUR', '{}',
    ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address,
    id => 'a0000000-0000-0000-0000-0000000000a9');
ROLLBACK;
SELECT id FROM orders_add('c0000000-0000-0000-0000-0000000000a3', 'EUR',
    id => 'a0000000-0000-0000-0000-0000000000a3');

-- Row-level security: a role it applies to may not write past the policies;
-- the owner, whom it does not bind, may.
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
SET ROLE regress_writeonly;
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-0000000000a4', 'EUR')$$);
RESET ROLE;
SELECT (orders_add('c0000000-0000-0000-0000-0000000000a4', 'EUR')).currency;
ALTER TABLE orders DISABLE ROW LEVEL SECURITY;

-- A publication that publishes deletes needs a replica identity, as DELETE does.
ALTER TABLE orders REPLICA IDENTITY NOTHING;
SET client_min_messages = error;  -- the wal_level warning is worded per major
CREATE PUBLICATION regress_pub FOR TABLE orders;
RESET client_min_messages;
SELECT err($$SELECT orders_remove('a0000000-0000-0000-0000-0000000000a3')$$);
DROP PUBLICATION regress_pub;
ALTER TABLE orders REPLICA IDENTITY DEFAULT;

-- A removed id is never used again: versions only go up.
SELECT id, version FROM orders_remove('a0000000-0000-0000-0000-0000000000a3');
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-0000000000ff', 'USD',
                               id => 'a0000000-0000-0000-0000-0000000000a3')$$);
BEGIN;
SELECT id FROM orders_add('c0000000-0000-0000-0000-0000000000a5', 'EUR',
                          id => 'a0000000-0000-0000-0000-0000000000a5');
SELECT id FROM orders_remove('a0000000-0000-0000-0000-0000000000a5');
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-0000000000a5', 'EUR',
                               id => 'a0000000-0000-0000-0000-0000000000a5')$$);
ROLLBACK;

-- A status label the extension does not know: a clean error, not XX000.
ALTER TYPE order_status ADD VALUE 'on_hold';
SELECT err($$SELECT orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-0000000000a0'),
                                                      '{"status": "on_hold"}'))$$);
UPDATE orders SET status = 'on_hold' WHERE id = 'a0000000-0000-0000-0000-0000000000a0';
SELECT err($$SELECT orders_remove('a0000000-0000-0000-0000-0000000000a0')$$);
UPDATE orders SET status = 'pending' WHERE id = 'a0000000-0000-0000-0000-0000000000a0';

-- The highest version: removal would wrap it, so it is refused.
UPDATE orders SET version = 2147483647 WHERE id = 'a0000000-0000-0000-0000-0000000000a0';
SELECT err($$SELECT orders_remove('a0000000-0000-0000-0000-0000000000a0')$$);
UPDATE orders SET version = 1 WHERE id = 'a0000000-0000-0000-0000-0000000000a0';

-- A parallel-safe wrapper run in a parallel worker: refused as INSERT is (25000).
CREATE FUNCTION regress_parallel_add() RETURNS uuid LANGUAGE sql PARALLEL SAFE AS
$$SELECT (orders_add('c0000000-0000-0000-0000-0000000000a6', 'EUR')).id$$;
SELECT set_config(CASE WHEN current_setting('server_version_num')::int >= 160000
                       THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END, 'on', false) AS parallel;
SELECT err($$SELECT regress_parallel_add()$$);
SELECT set_config(CASE WHEN current_setting('server_version_num')::int >= 160000
                       THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END, 'off', false) AS parallel;

-- Control characters are escaped in details, never raw; addresses refuse them.
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-0000000000a7', 'EUR',
    ARRAY[ROW('00000000-0000-0000-0000-000000000001', E'del\x7f and \u009b', 1, 1)::order_line],
    id => 'a0000000-0000-0000-0000-0000000000a7')$$);
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-0000000000a7', E'E\u0085R',
    id => 'a0000000-0000-0000-0000-0000000000a7')$$);
SELECT err(format('SELECT orders_add(%L, %L, %L, ROW(%L, %L, %L, %L)::order_address, %L)',
    'c0000000-0000-0000-0000-0000000000a7', 'EUR', '{}', s, 'Berlin', '10115', 'DE',
    'a0000000-0000-0000-0000-0000000000a7'))
FROM unnest(ARRAY[E'Main\nSt', E'Main\tSt', E'Main\x01St', E'Main\u0085St']) s;

-- A write-only role: it writes, and learns nothing that only the stored
-- order held (as PostgreSQL leaves row values out of a role's errors when
-- it may not select them).
SELECT id FROM orders_add('c0000000-0000-0000-0000-0000000000a8', 'EUR', ARRAY[line(1)],
    ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address,
    id => 'a0000000-0000-0000-0000-0000000000a8');
SELECT move('a0000000-0000-0000-0000-0000000000a8', 'confirmed');
SET ROLE regress_writeonly;
SELECT err($$SELECT orders_save(ROW('a0000000-0000-0000-0000-0000000000a8',
    'c0000000-0000-0000-0000-0000000000ff', 'confirmed', 'EUR', '{}', NULL, 0, 2, NULL, NULL)::orders)$$);
SELECT err($$SELECT orders_save(ROW('a0000000-0000-0000-0000-0000000000a8',
    'c0000000-0000-0000-0000-0000000000a8', 'confirmed', 'EUR', '{}', NULL, 0, 1, NULL, NULL)::orders)$$);
SELECT err($$SELECT orders_save(ROW('a0000000-0000-0000-0000-0000000000a8',
    'c0000000-0000-0000-0000-0000000000a8', 'pending', 'EUR', '{}', NULL, 0, 2, NULL, NULL)::orders)$$);
SELECT err($$SELECT orders_remove('a0000000-0000-0000-0000-0000000000a8')$$);
SELECT id, status, version, created_at IS NULL AS created_hidden, updated_at IS NULL AS updated_hidden
FROM orders_save(ROW('a0000000-0000-0000-0000-0000000000a8', 'c0000000-0000-0000-0000-0000000000a8',
    'cancelled', 'EUR', ARRAY[line(1)], ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address,
    0, 2, NULL, NULL)::orders);
SELECT id, customer_id, status, version FROM orders_remove('a0000000-0000-0000-0000-0000000000a8');
RESET ROLE;

-- Consumers belong to the role that registered them.
SET ROLE regress_app;
SELECT orders_events_register('regress_billing');
SELECT count(*) > 0 AS read_some FROM orders_events_read('regress_billing');
RESET ROLE;
SET ROLE regress_other;
SELECT err($$SELECT * FROM orders_events_read('regress_billing')$$);
SELECT err($$SELECT orders_events_ack('regress_billing', 9223372036854775807)$$);
SELECT err($$SELECT orders_events_unregister('regress_billing')$$);
SELECT err($$SELECT orders_internal.orders_events_advance('regress_billing', 0, true)$$);
SELECT err($$SELECT orders_internal.orders_events_open_batch('regress_billing')$$);
SELECT err($$SELECT orders_events_register('orders_relay')$$);
SELECT err($$SELECT orders_events_register(NULL)$$);
SELECT err($$SELECT orders_events_register(E'x\nLOG:  forged')$$);
SELECT err($$SELECT * FROM orders_events_read(E'nope\nFATAL:  forged', 1)$$);
SELECT err($$SELECT * FROM orders_events_read(NULL)$$);
RESET ROLE;
-- the relay worker's consumer is the bootstrap superuser's
SELECT count(*) FROM orders_internal.orders_events_relay_batch(1);
SELECT name, owner FROM order_event_consumers ORDER BY name;
SET ROLE regress_other;
SELECT err($$SELECT orders_internal.orders_events_advance('orders_relay', 0, true)$$);
SELECT err($$SELECT orders_internal.orders_events_open_batch('orders_relay')$$);
RESET ROLE;
-- a member of the owning role may use it
GRANT regress_app TO regress_other;
SET ROLE regress_other;
SELECT orders_events_ack('regress_billing', 9223372036854775807);
RESET ROLE;
REVOKE regress_app FROM regress_other;

-- Reading events needs what reading orders needs.
REVOKE SELECT ON orders FROM regress_app;
SET ROLE regress_app;
SELECT err($$SELECT * FROM orders_events_read('regress_billing')$$);
SELECT err($$SELECT orders_events_register('regress_billing2')$$);
RESET ROLE;
GRANT SELECT ON orders TO regress_app;
REVOKE SELECT ON order_events FROM regress_app;
SET ROLE regress_app;
SELECT err($$SELECT * FROM orders_events_read('regress_billing')$$);
RESET ROLE;
GRANT SELECT ON order_events TO regress_app;
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY regress_none ON orders USING (false);
SET ROLE regress_app;
SELECT err($$SELECT * FROM orders_events_read('regress_billing')$$);
RESET ROLE;
DROP POLICY regress_none ON orders;
ALTER TABLE orders DISABLE ROW LEVEL SECURITY;
SET ROLE regress_app;
SELECT orders_events_unregister('regress_billing');
RESET ROLE;

-- Installed only where no untrusted role could rename the schema or add to
-- it: in a database of its own, the public schema of a database that a
-- non-superuser owns, a schema such a role owns, one where PUBLIC may create.
\set regress_db :DBNAME
CREATE DATABASE regress_hardening OWNER regress_app;
\c regress_hardening
-- From 18 on, an error in an extension script names its line.
\set SHOW_CONTEXT never
CREATE EXTENSION orders;
CREATE SCHEMA regress_owned AUTHORIZATION regress_app;
CREATE EXTENSION orders SCHEMA regress_owned;
CREATE SCHEMA regress_open;
GRANT CREATE ON SCHEMA regress_open TO PUBLIC;
CREATE EXTENSION orders SCHEMA regress_open;
CREATE SCHEMA regress_safe;
CREATE EXTENSION orders SCHEMA regress_safe;
SELECT extname, extnamespace::regnamespace FROM pg_extension WHERE extname = 'orders';
-- Updated from 1.3 in a schema renamed since: every SQL body names it anew.
DROP EXTENSION orders;
CREATE SCHEMA regress_before;
CREATE EXTENSION orders SCHEMA regress_before VERSION '1.3';
ALTER SCHEMA regress_before RENAME TO regress_after;
ALTER EXTENSION orders UPDATE;
SELECT p.proname FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  AND p.prosrc LIKE '%regress_before%';
SELECT orders_internal.orders_assert_trusted_schema();
-- A member a non-superuser owns, or a table others may put triggers on, is
-- not trusted either: its code would run inside a superuser's call.
ALTER TABLE regress_after.order_event_consumers OWNER TO regress_app;
SELECT orders_internal.orders_assert_trusted_schema();
ALTER TABLE regress_after.order_event_consumers OWNER TO CURRENT_USER;
GRANT TRIGGER ON regress_after.orders TO regress_app;
SELECT orders_internal.orders_assert_trusted_schema();
REVOKE TRIGGER ON regress_after.orders FROM regress_app;
SELECT orders_internal.orders_assert_trusted_schema();
-- The internal schema is judged as the install schema is: owned by a
-- superuser, created in by none other, and still under the name the SQL
-- functions use.
GRANT CREATE ON SCHEMA orders_internal TO regress_app;
SELECT orders_internal.orders_assert_trusted_schema();
REVOKE CREATE ON SCHEMA orders_internal FROM regress_app;
ALTER SCHEMA orders_internal OWNER TO regress_app;
SELECT orders_internal.orders_assert_trusted_schema();
ALTER SCHEMA orders_internal OWNER TO CURRENT_USER;
ALTER SCHEMA orders_internal RENAME TO regress_moved;
CREATE SCHEMA orders_internal AUTHORIZATION regress_app;
SELECT regress_moved.orders_assert_trusted_schema();
DROP SCHEMA orders_internal;
SELECT regress_moved.orders_assert_trusted_schema();
ALTER SCHEMA regress_moved RENAME TO orders_internal;
SELECT orders_internal.orders_assert_trusted_schema();
-- A schema of that name made beforehand, by anyone, fails the install.
DROP EXTENSION orders;
CREATE SCHEMA orders_internal AUTHORIZATION regress_app;
CREATE EXTENSION orders SCHEMA regress_after;
-- and the update that would move the helpers into it
CREATE EXTENSION orders SCHEMA regress_after VERSION '1.10';
ALTER EXTENSION orders UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'orders';
DROP SCHEMA orders_internal;
ALTER EXTENSION orders UPDATE;
SELECT extversion, (SELECT nspowner = 'regress_app'::regrole FROM pg_namespace WHERE nspname = 'orders_internal') AS owned_by_app
FROM pg_extension WHERE extname = 'orders';
DROP EXTENSION orders;
\c :regress_db
DROP DATABASE regress_hardening;

-- In a LATIN1 database, bytes 0x80 to 0x9F are C1 control characters.
CREATE DATABASE regress_latin1 ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C';
\c regress_latin1
CREATE EXTENSION orders;
SELECT (orders_add('c0000000-0000-0000-0000-0000000000b0', 'EUR',
    ARRAY[ROW('00000000-0000-0000-0000-000000000001', 'Café', 1, 1)::order_line])).currency;
SELECT orders_add('c0000000-0000-0000-0000-0000000000b0', 'EUR',
    ARRAY[ROW('00000000-0000-0000-0000-000000000001', E'a\u0085b', 1, 1)::order_line],
    id => 'a0000000-0000-0000-0000-0000000000b0');
\c :regress_db
DROP DATABASE regress_latin1;

DROP FUNCTION regress_trg(), regress_parallel_add();
DROP TABLE regress_customers;
REVOKE ALL ON orders, order_events FROM regress_app, regress_other;
REVOKE ALL ON FUNCTION orders_events_register(text, boolean), orders_events_read(text, integer),
    orders_events_ack(text, bigint), orders_events_unregister(text) FROM regress_app, regress_other;
REVOKE ALL ON FUNCTION orders_add(uuid, text, order_line[], order_address, uuid, jsonb),
    orders_save(orders), orders_remove(uuid, integer) FROM regress_writeonly;
DROP ROLE regress_app, regress_other, regress_writeonly;

\i test/regress/cleanup.sql
