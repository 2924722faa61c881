-- ALTER EXTENSION orders UPDATE from 1.0 to the latest version gives the same objects as a
-- fresh install of it, and keeps the orders and events it had.

SELECT name, version, installed FROM pg_available_extension_versions
WHERE name = 'orders' ORDER BY version;

CREATE EXTENSION orders VERSION '1.0';

-- Everything that defines the installed extension, as text lines: members,
-- their definitions, columns and composite fields (with defaults and
-- comments), indexes, constraints, sequences, privileges and the initial
-- ones (pg_init_privs), comments, config tables.
CREATE FUNCTION pg_temp.extension_state() RETURNS SETOF text LANGUAGE sql AS $$
    WITH members AS (
        SELECT classid, objid FROM pg_depend
        WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
          AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'orders'))
    SELECT 'member ' || pg_describe_object(classid, objid, 0)
        || coalesce(' comment ' || obj_description(objid, (SELECT relname FROM pg_class WHERE oid = classid)), '')
    FROM members
    UNION ALL
    SELECT 'function ' || pg_get_functiondef(p.oid) || ' acl ' || coalesce(p.proacl::text, 'default')
    FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
    UNION ALL
    -- the columns of tables and the fields of composite types, with their
    -- order, defaults and comments
    SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
        || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END || ' #' || a.attnum
        || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
        || coalesce(' comment ' || col_description(c.oid, a.attnum), '')
    FROM pg_class c
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
    WHERE c.oid IN (SELECT objid FROM members WHERE classid = 'pg_class'::regclass)
       OR c.reltype IN (SELECT objid FROM members WHERE classid = 'pg_type'::regclass)
    UNION ALL
    SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' acl ' || coalesce(c.relacl::text, 'default')
    FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
    FROM pg_index i WHERE i.indrelid IN (SELECT objid FROM members WHERE classid = 'pg_class'::regclass)
    UNION ALL
    SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE conrelid IN (SELECT objid FROM members WHERE classid = 'pg_class'::regclass)
    UNION ALL
    SELECT 'sequence ' || seqrelid::regclass || ' ' || format_type(seqtypid, NULL) || ' ' || seqstart
        || ' ' || seqincrement || ' ' || seqmin || ' ' || seqmax || ' ' || seqcache || ' ' || seqcycle
    FROM pg_sequence WHERE seqrelid IN (SELECT objid FROM members WHERE classid = 'pg_class'::regclass)
    UNION ALL
    SELECT 'type ' || t.typname || ' ' || coalesce((SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder)
                                                    FROM pg_enum WHERE enumtypid = t.oid), '')
    FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
    UNION ALL
    SELECT 'schema ' || n.nspname || ' owner ' || (n.nspowner = 10) || ' acl ' || coalesce(n.nspacl::text, 'default')
    FROM members m JOIN pg_namespace n ON m.classid = 'pg_namespace'::regclass AND n.oid = m.objid
    UNION ALL
    SELECT 'config ' || extconfig::regclass[]::text || ' ' || extcondition::text
    FROM pg_extension WHERE extname = 'orders'
    UNION ALL
    -- the privileges the extension's scripts gave, which pg_dump leaves
    -- out of a dump (it dumps the difference from them)
    SELECT 'initial privileges ' || pg_describe_object(i.classoid, i.objoid, i.objsubid)
        || ' ' || i.privtype::text || ' ' || i.initprivs::text
    FROM pg_init_privs i JOIN members m ON (m.classid, m.objid) = (i.classoid, i.objoid)
$$;

SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000001', 'EUR',
    ARRAY[ROW('00000000-0000-0000-0000-000000000001', 'Tea', 2, 350)::order_line],
    ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address,
    'a0000000-0000-0000-0000-000000000001');

-- At 1.7, the library serves the outbox without its envelope, and refuses
-- metadata it has no column for, storing nothing.
ALTER EXTENSION orders UPDATE TO '1.7';
BEGIN;
SET LOCAL orders.event_metadata = '{"correlation_id": "c-1"}';
SELECT orders_add('c0000000-0000-0000-0000-000000000001', 'EUR', id => 'a0000000-0000-0000-0000-000000000002');
ROLLBACK;
-- a grant on orders_events_read outlives the update that adds its sibling
CREATE ROLE regress_upgrade_reader;
GRANT EXECUTE ON FUNCTION orders_events_read(text, integer) TO regress_upgrade_reader;

ALTER EXTENSION orders UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'orders';
SELECT has_function_privilege('regress_upgrade_reader', 'orders_events_read(text, integer)', 'EXECUTE')
    AS grant_kept;
REVOKE EXECUTE ON FUNCTION orders_events_read(text, integer) FROM regress_upgrade_reader;
DROP ROLE regress_upgrade_reader;

-- the data is there, and the new version works on it
SELECT id, status, version, total FROM orders_get('a0000000-0000-0000-0000-000000000001');
SELECT id, status, version FROM orders_save(jsonb_populate_record(
    (SELECT o FROM orders_get('a0000000-0000-0000-0000-000000000001') o), '{"status": "confirmed"}'));
SELECT id FROM orders_find(customer_id => 'c0000000-0000-0000-0000-000000000001');
SELECT type, version FROM order_events ORDER BY position;
-- events from before the update have no id; new ones have their envelope
SELECT type, id IS NOT NULL AS has_id, aggregatetype, schema_version, metadata
FROM order_events ORDER BY position;

CREATE TEMP TABLE updated AS SELECT * FROM pg_temp.extension_state() s;
DROP EXTENSION orders;
CREATE EXTENSION orders;
CREATE TEMP TABLE fresh AS SELECT * FROM pg_temp.extension_state() s;

-- the same, line for line: nothing only in one of them
SELECT 'only after update' AS where_, s FROM (SELECT s FROM updated EXCEPT SELECT s FROM fresh) x
UNION ALL
SELECT 'only in fresh install', s FROM (SELECT s FROM fresh EXCEPT SELECT s FROM updated) x;
SELECT count(*) > 40 AS compared_enough,
       count(*) FILTER (WHERE s LIKE 'initial privileges %') > 20 AS initial_privileges_compared
FROM fresh;

-- What a user listing the install schema's functions (\df) meets: the API
-- alone.  Everything else is in orders_internal.
CREATE TEMP VIEW member_functions AS
SELECT n.nspname, p.proname
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'orders');
SELECT nspname, count(*) AS functions FROM member_functions GROUP BY 1 ORDER BY 1;
SELECT DISTINCT proname AS api FROM member_functions WHERE nspname = 'public' ORDER BY 1;

DROP EXTENSION orders;

-- The shop's own fields (1.12) on a database updated from 1.11: a column,
-- a CHECK constraint, an index and a line attribute added at 1.11, and an
-- EXECUTE grant on orders_add.  The update leaves the additions alone.
-- Its script drops orders_add and makes it again with its fields
-- argument: it grants the new one to whom the shop had granted the old
-- one, and keeps the initial privileges (pg_init_privs) the extension's own,
-- as in a fresh install, so that pg_dump goes on dumping the shop's grant.
CREATE EXTENSION orders VERSION '1.11';
ALTER TABLE orders ADD COLUMN channel text NOT NULL DEFAULT 'web';
ALTER TABLE orders ADD CONSTRAINT channel_known CHECK (channel IN ('web', 'phone'));
CREATE INDEX orders_channel_idx ON orders (channel);
ALTER TYPE order_line ADD ATTRIBUTE gift_wrap boolean CASCADE;
CREATE ROLE regress_upgrade_writer;
GRANT EXECUTE ON FUNCTION orders_add(uuid, text, order_line[], order_address, uuid) TO regress_upgrade_writer;
SELECT id, channel, lines FROM orders_add('c0000000-0000-0000-0000-000000000001', 'EUR',
    ARRAY[ROW('00000000-0000-0000-0000-000000000001', 'Tea', 2, 350, true)::order_line],
    id => 'a0000000-0000-0000-0000-000000000011');
CREATE TEMP TABLE orders_before AS SELECT o::text AS o FROM orders o;

ALTER EXTENSION orders UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'orders';
CREATE TEMP TABLE updated_with_fields AS SELECT * FROM pg_temp.extension_state() s;

-- what differs from a fresh install is the shop's: its column, attribute,
-- constraint and index, and the grant on orders_add; the initial
-- privileges are the same (from 18, a NOT NULL is a constraint too: the
-- column's line shows it)
SELECT 'only after update' AS where_, s FROM (SELECT s FROM updated_with_fields EXCEPT SELECT s FROM fresh) x
WHERE s NOT LIKE 'function %' AND s !~ '^constraint \S+ NOT NULL '
UNION ALL
SELECT 'only in fresh install', s FROM (SELECT s FROM fresh EXCEPT SELECT s FROM updated_with_fields) x
WHERE s NOT LIKE 'function %'
ORDER BY 1, 2;
SELECT substring(s FROM '^function CREATE OR REPLACE FUNCTION ([^(]*)') AS function_differs,
       regexp_replace(s, ' acl [^ ]*$', '') IN (SELECT regexp_replace(s, ' acl [^ ]*$', '') FROM fresh)
           AS only_its_acl
FROM (SELECT s FROM updated_with_fields EXCEPT SELECT s FROM fresh) x
WHERE s LIKE 'function %';
SELECT (SELECT s FROM updated_with_fields WHERE s LIKE 'initial privileges function orders_add(%')
     = (SELECT s FROM fresh WHERE s LIKE 'initial privileges function orders_add(%')
       AS orders_add_initial_privileges_as_installed;
SELECT a.privilege_type, a.grantee::regrole, a.is_grantable
FROM pg_proc p, aclexplode(p.proacl) a
WHERE p.oid = 'orders_add(uuid, text, order_line[], order_address, uuid, jsonb)'::regprocedure
  AND a.grantee <> p.proowner;

-- the order as it was, and the role may add orders, with fields
SELECT o = (SELECT o FROM orders_before) AS order_unchanged FROM (SELECT o::text AS o FROM orders o) x;
SET ROLE regress_upgrade_writer;
SELECT id, channel, (lines[1]).gift_wrap FROM orders_add('c0000000-0000-0000-0000-000000000001', 'EUR',
    ARRAY[ROW('00000000-0000-0000-0000-000000000002', 'Mug', 1, 900, false)::order_line],
    id => 'a0000000-0000-0000-0000-000000000012', fields => '{"channel": "phone"}');
RESET ROLE;
-- the CHECK constraint holds
DO $$
DECLARE state text; name text;
BEGIN
    PERFORM orders_add('c0000000-0000-0000-0000-000000000001', 'EUR', fields => '{"channel": "fax"}');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, name = CONSTRAINT_NAME;
    RAISE NOTICE 'orders_add failed: % %', state, name;
END $$;
SELECT id, channel FROM orders ORDER BY id;

DROP EXTENSION orders;
DROP ROLE regress_upgrade_writer;

\i test/regress/cleanup.sql
