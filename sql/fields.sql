-- The shop's own fields and rules: columns added to orders, attributes
-- added to order_line and order_address, CHECK constraints on orders.  The
-- functions fill, check, store, compare and emit them as INSERT and UPDATE
-- would, with nothing to recompile.

\i test/regress/helpers.sql

-- rule_err(sql): the SQLSTATE, constraint, column and message of the
-- error sql raises, and its detail unless it names the failing row (a
-- CHECK's does, with its generated id and times).
CREATE FUNCTION rule_err(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    state text; cons text; col text; msg text; det text;
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, cons = CONSTRAINT_NAME,
        col = COLUMN_NAME, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RETURN state || ' ' || coalesce(nullif(cons, ''), '-') || ' '
        || coalesce(nullif(col, ''), '-') || ': ' || msg
        || CASE WHEN det LIKE 'Failing row contains%' THEN '' ELSE coalesce(' | ' || nullif(det, ''), '') END;
END $$;

-- an order from before the shop's columns
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000001', 'EUR', id => 'a0000000-0000-0000-0000-000000000000');

CREATE DOMAIN regress_channel AS text CHECK (VALUE IN ('web', 'shop', 'phone'));
CREATE SEQUENCE regress_tickets;

-- A shop's order: a coupon, a delivery date, a sales channel, a gift flag,
-- a ticket number, tags, extra data, a ledger number the server hands out,
-- and a derived flag.
ALTER TABLE orders
    ADD COLUMN coupon text,
    ADD COLUMN delivery_date date,
    ADD COLUMN channel regress_channel NOT NULL DEFAULT 'web',
    ADD COLUMN gift boolean NOT NULL DEFAULT false,
    ADD COLUMN ticket bigint DEFAULT nextval('regress_tickets'),
    ADD COLUMN tags text[],
    ADD COLUMN extra jsonb,
    ADD COLUMN ledger integer GENERATED ALWAYS AS IDENTITY,
    ADD COLUMN big boolean GENERATED ALWAYS AS (total >= 10000) STORED;
ALTER TABLE orders
    ADD CONSTRAINT coupon_only_in_eur CHECK (coupon IS NULL OR currency = 'EUR'),
    ADD CONSTRAINT delivery_in_future CHECK (delivery_date IS NULL OR delivery_date > created_at::date);

-- The order from before has the columns' values as the table gives them
-- to rows from before an ADD COLUMN: the constant defaults, else NULL.
SELECT channel, gift, ticket, coupon FROM orders_get('a0000000-0000-0000-0000-000000000000');
SELECT channel, gift, ticket, coupon FROM orders WHERE id = 'a0000000-0000-0000-0000-000000000000';
SELECT version FROM orders_save(cur('a0000000-0000-0000-0000-000000000000'));

-- Nothing given: the defaults, as INSERT takes them.
SELECT id, status, currency, total, version, coupon, delivery_date, channel, gift, ticket,
       tags, extra, ledger, big
FROM orders_add('c0000000-0000-0000-0000-000000000001', 'EUR', id => 'a0000000-0000-0000-0000-000000000001');

-- Given as JSON: strings, numbers and booleans through the types' input
-- functions (a domain's CHECK included), any JSON into jsonb, an array in
-- its text form.
SELECT coupon, delivery_date, channel, gift, ticket, tags, extra, ledger, big, total
FROM orders_add('c0000000-0000-0000-0000-000000000001', 'EUR', ARRAY[line(1, 5000, 2)],
                id => 'a0000000-0000-0000-0000-000000000002',
                fields => '{"coupon": "SPRING", "delivery_date": "2099-12-24", "channel": "phone",
                            "gift": true, "ticket": 77, "tags": "{red,blue}",
                            "extra": {"note": "ring twice", "floor": 3}}');

-- JSON null is SQL NULL, a jsonb column's too, as jsonb_populate_record reads it
SELECT extra IS NULL AS sql_null FROM orders_add('c0000000-0000-0000-0000-000000000001', 'EUR',
                                                 fields => '{"extra": null}');

-- The order_added event carries them, as to_jsonb(orders) does.
SELECT payload - 'created_at' - 'updated_at' - 'id' AS payload
FROM order_events WHERE order_id = 'a0000000-0000-0000-0000-000000000002';
SELECT (SELECT payload - 'created_at' - 'updated_at' FROM order_events
        WHERE order_id = 'a0000000-0000-0000-0000-000000000002')
     = (to_jsonb(o) - 'created_at' - 'updated_at') AS payload_is_the_row
FROM orders o WHERE id = 'a0000000-0000-0000-0000-000000000002';

-- The shop's rules: its CHECK constraints, with their names, 23514.
SELECT orders AS orders_before, events AS events_before FROM stored \gset
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'USD',
                                   fields => '{"coupon": "SPRING"}')$$);
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'EUR',
                                   fields => '{"delivery_date": "2001-01-01"}')$$);
-- the domain's own constraint, and NOT NULL
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'EUR',
                                   fields => '{"channel": "fax"}')$$);
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'EUR',
                                   fields => '{"gift": null}')$$);
-- a constraint added NOT VALID still holds for every new row
ALTER TABLE orders ADD CONSTRAINT gift_needs_address CHECK (NOT gift OR shipping_address IS NOT NULL) NOT VALID;
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'EUR',
                                   fields => '{"gift": true}')$$);
ALTER TABLE orders DROP CONSTRAINT gift_needs_address;

-- What the fields may not be, each with its SQLSTATE and the field's path.
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'EUR', fields => '{"nope": 1}')$$);
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'EUR', fields => '{"status": "shipped"}')$$);
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'EUR', fields => '{"big": true}')$$);
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'EUR', fields => '{"ledger": 5}')$$);
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'EUR', fields => '["coupon"]')$$);
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'EUR', fields => '{"coupon": {"a": 1}}')$$);
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'EUR', fields => '{"delivery_date": "soon"}')$$);
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'EUR', fields => '{"ticket": 1.5}')$$);
-- none of it stored anything
SELECT orders - :orders_before AS orders_added, events - :events_before AS events_added FROM stored;

-- A save stores the shop's columns from the row, and says which changed.
SELECT version, coupon, gift, channel
FROM orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000001'),
                                       '{"coupon": "WELCOME", "gift": true}'));
SELECT type, version, payload FROM events_of
WHERE order_id = 'a0000000-0000-0000-0000-000000000001' ORDER BY position;
-- the same values again: nothing written
SELECT version FROM orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000001'),
                                                      '{"coupon": "WELCOME"}'));
-- one save that changes lines, a field and the status: one event each, in
-- the contract's order; the derived column follows the new total
SELECT version, total, big, coupon, status
FROM orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000001'),
    jsonb_build_object('lines', jsonb_build_array(to_jsonb(line(3, 20000))),
                       'shipping_address', '{"street": "Main St 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}'::jsonb,
                       'coupon', NULL, 'status', 'confirmed')));
SELECT type, version, CASE WHEN type = 'order_fields_changed' THEN payload END AS fields
FROM events_of WHERE order_id = 'a0000000-0000-0000-0000-000000000001' ORDER BY position;
-- a shipped order's fields may still change: the shop's rules say what may
SELECT move('a0000000-0000-0000-0000-000000000001', 'shipped');
SELECT version, delivery_date FROM orders_save(jsonb_populate_record(
    cur('a0000000-0000-0000-0000-000000000001'), '{"delivery_date": "2099-01-02"}'));

-- A save is checked as an UPDATE is: the shop's CHECKs, and the columns
-- only the server fills, which must come back as read.
SELECT orders AS orders_before, events AS events_before FROM stored \gset
SELECT rule_err($$SELECT orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000002'),
                                                          '{"delivery_date": "2000-01-01"}'))$$);
SELECT err($$SELECT orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000002'),
                                                     '{"big": false}'))$$);
SELECT err($$SELECT orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000002'),
                                                     '{"ledger": 99}'))$$);
SELECT rule_err($$SELECT orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000002'),
                                                          '{"channel": "fax"}'))$$);
SELECT orders - :orders_before AS orders_added, events - :events_before AS events_added FROM stored;
SELECT version, delivery_date, big FROM orders WHERE id = 'a0000000-0000-0000-0000-000000000002';

-- Line attributes of the shop's own: stored lines from before read them as
-- NULL; new lines carry them, in the row and in the events.
ALTER TYPE order_line ADD ATTRIBUTE sku text CASCADE;
ALTER TYPE order_address ADD ATTRIBUTE floor integer CASCADE;
SELECT lines FROM orders_get('a0000000-0000-0000-0000-000000000002');
SELECT version FROM orders_save(cur('a0000000-0000-0000-0000-000000000002'));
SELECT id, lines, shipping_address, total
FROM orders_add('c0000000-0000-0000-0000-000000000001', 'EUR',
                ARRAY[ROW('00000000-0000-0000-0000-000000000009', 'Tea', 2, 450, 'TEA-9')::order_line],
                ROW('Main St 1', 'Berlin', '10115', 'DE', 3)::order_address,
                id => 'a0000000-0000-0000-0000-000000000003');
SELECT payload -> 'lines' AS lines, payload -> 'shipping_address' AS address
FROM order_events WHERE order_id = 'a0000000-0000-0000-0000-000000000003';
-- changing only a line's own attribute is a change of the lines
SELECT version FROM orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000003'),
    '{"lines": [{"product_id": "00000000-0000-0000-0000-000000000009", "product_name": "Tea",
                 "quantity": 2, "unit_price": 450, "sku": "TEA-10"}]}'));
SELECT type, payload FROM events_of
WHERE order_id = 'a0000000-0000-0000-0000-000000000003' AND version = 2;

-- Many orders at once: each with its own fields, the rules checked, the
-- offending order named.
SELECT coupon, channel, lines
FROM orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000001", "currency": "EUR",
                        "id": "a0000000-0000-0000-0000-000000000004",
                        "fields": {"coupon": "BULK", "channel": "shop"},
                        "lines": [{"product_id": "00000000-0000-0000-0000-000000000001",
                                   "product_name": "Mug", "quantity": 1, "unit_price": 900, "sku": "MUG-1"}]},
                       {"customer_id": "c0000000-0000-0000-0000-000000000001", "currency": "USD",
                        "id": "a0000000-0000-0000-0000-000000000005"}]');
SELECT rule_err($$SELECT orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000001", "currency": "EUR"},
                                          {"customer_id": "c0000000-0000-0000-0000-000000000001", "currency": "USD",
                                           "fields": {"coupon": "BULK"}}]')$$);
SELECT rule_err($$SELECT orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000001", "currency": "EUR",
                                     "fields": {"nope": 1}}]')$$);
SELECT rule_err($$SELECT orders_add_many('[{"customer_id": "c0000000-0000-0000-0000-000000000001", "currency": "EUR",
                                          "shipping_address": {"street": "Main St 1", "city": "Berlin",
                                                               "postal_code": "10115", "country": "DE", "floor": "top"}}]')$$);

-- A column dropped is gone from the calls and the events; the rest go on.
ALTER TABLE orders DROP COLUMN tags, DROP COLUMN extra;
SELECT coupon, channel FROM orders_add('c0000000-0000-0000-0000-000000000001', 'EUR',
                                       id => 'a0000000-0000-0000-0000-000000000006',
                                       fields => '{"coupon": "AFTER"}');
SELECT payload ? 'tags' AS has_tags, payload ->> 'coupon' AS coupon
FROM order_events WHERE order_id = 'a0000000-0000-0000-0000-000000000006';
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'EUR', fields => '{"tags": "{a}"}')$$);
SELECT version, coupon FROM orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000006'),
                                                              '{"coupon": "AFTER2"}'));

-- A removal's event carries the whole order, the shop's fields too.
SELECT id FROM orders_remove('a0000000-0000-0000-0000-000000000006');
SELECT payload ->> 'coupon' AS coupon, payload ->> 'channel' AS channel
FROM order_events WHERE order_id = 'a0000000-0000-0000-0000-000000000006' AND type = 'order_removed';

-- The extension's own columns keep their meaning: changing one is refused.
BEGIN;
ALTER TABLE orders ALTER COLUMN version TYPE bigint;
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'EUR')$$);
ROLLBACK;
-- A virtual generated column (PostgreSQL 18) is refused: the direct reads
-- would not compute it.  Earlier majors have none; the block does nothing.
DO $$
BEGIN
    IF current_setting('server_version_num')::integer >= 180000 THEN
        EXECUTE 'ALTER TABLE orders ADD COLUMN doubled integer GENERATED ALWAYS AS (version * 2) VIRTUAL';
        BEGIN
            PERFORM orders_add('c0000000-0000-0000-0000-000000000001', 'EUR');
            RAISE EXCEPTION 'a virtual generated column was not refused';
        EXCEPTION WHEN feature_not_supported THEN
            NULL;
        END;
        EXECUTE 'ALTER TABLE orders DROP COLUMN doubled';
    END IF;
END $$;
-- and a foreign key from the shop's column is refused by name: its
-- triggers are what enforce it, and the functions fire none
CREATE TABLE regress_coupons (code text PRIMARY KEY);
ALTER TABLE orders ADD CONSTRAINT orders_coupon_fk FOREIGN KEY (coupon) REFERENCES regress_coupons NOT VALID;
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'EUR')$$);
ALTER TABLE orders DROP CONSTRAINT orders_coupon_fk;
DROP TABLE regress_coupons;

-- The shop's CHECK may call the shop's functions, which may read orders
-- through the extension itself.
CREATE FUNCTION regress_one_coupon_each(customer uuid, coupon text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coupon IS NULL OR NOT EXISTS (SELECT FROM orders_find(customer_id => customer) o
                                         WHERE o.coupon = regress_one_coupon_each.coupon)
$$;
ALTER TABLE orders ADD CONSTRAINT one_coupon_each CHECK (regress_one_coupon_each(customer_id, coupon)) NOT VALID;
SELECT coupon FROM orders_add('c0000000-0000-0000-0000-000000000002', 'EUR', fields => '{"coupon": "ONCE"}');
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000002', 'EUR', fields => '{"coupon": "ONCE"}')$$);
ALTER TABLE orders DROP CONSTRAINT one_coupon_each;
DROP FUNCTION regress_one_coupon_each(uuid, text);

-- A domain's constraints hold for a column left out with no default, as
-- INSERT checks its NULL; a domain's default and constraints changed take
-- effect at the next call, as in a new statement.
CREATE DOMAIN regress_ref AS text NOT NULL;
ALTER TABLE orders ADD COLUMN ref regress_ref DEFAULT 'r';
ALTER TABLE orders ALTER COLUMN ref DROP DEFAULT;
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000002', 'EUR')$$);
ALTER TABLE orders DROP COLUMN ref;
DROP DOMAIN regress_ref;
CREATE DOMAIN regress_level AS integer DEFAULT 1;
ALTER TABLE orders ADD COLUMN level regress_level;
SELECT level FROM orders_add('c0000000-0000-0000-0000-000000000002', 'EUR');
ALTER DOMAIN regress_level SET DEFAULT 3;
SELECT level FROM orders_add('c0000000-0000-0000-0000-000000000002', 'EUR');
ALTER DOMAIN regress_level ADD CONSTRAINT level_small CHECK (VALUE < 3) NOT VALID;
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000002', 'EUR')$$);
ALTER TABLE orders DROP COLUMN level;
DROP DOMAIN regress_level;

-- A rule's function replaced takes effect at the next call, as in a new
-- statement (its body may have been inlined into the planned rule).
CREATE FUNCTION regress_code_ok(code text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT code <> 'BAD' $$;
ALTER TABLE orders ADD CONSTRAINT code_ok CHECK (regress_code_ok(coupon)) NOT VALID;
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000002', 'EUR', fields => '{"coupon": "BAD"}')$$);
CREATE OR REPLACE FUNCTION regress_code_ok(code text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT code <> 'WORSE' $$;
SELECT coupon FROM orders_add('c0000000-0000-0000-0000-000000000002', 'EUR', fields => '{"coupon": "BAD"}');
SELECT rule_err($$SELECT orders_add('c0000000-0000-0000-0000-000000000002', 'EUR', fields => '{"coupon": "WORSE"}')$$);
ALTER TABLE orders DROP CONSTRAINT code_ok;
DROP FUNCTION regress_code_ok(text);

DROP FUNCTION rule_err(text);
ALTER TABLE orders DROP COLUMN channel, DROP COLUMN ticket;
DROP DOMAIN regress_channel;
DROP SEQUENCE regress_tickets;
\i test/regress/cleanup.sql
