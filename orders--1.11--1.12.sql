/* orders--1.11--1.12.sql: the shop's own fields and rules.  A shop adds
   columns to orders, attributes to order_line and order_address, and CHECK
   constraints to orders, with ordinary DDL; the C functions fill, check,
   store and emit them (the library does that, whatever the version).  This
   script gives orders_add its fields argument.  Nothing is rewritten: the
   update takes only catalog locks and runs in milliseconds on any data.
   orders_fields_ddl() returns the shop's additions as a script, for a
   restore (pg_dump leaves them out). */

\echo Use "ALTER EXTENSION orders UPDATE TO '1.12'" to load this file. \quit

SELECT orders_internal.orders_assert_trusted_schema();

-- orders_add gains a parameter, so it is a new function: the old one is
-- dropped (an object of the shop's that depends on it stops the update,
-- with the server's message naming it).  The EXECUTE grants the shop made
-- on the old one are made again on the new one, and stay the shop's:
-- pg_init_privs keeps what the extension itself grants, so that pg_dump
-- goes on dumping the shop's grants.
DO $do$
DECLARE
    regrant text;
    initial pg_catalog.aclitem[];
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format(
               'GRANT EXECUTE ON FUNCTION @extschema@.orders_add(uuid, text, @extschema@.order_line[], @extschema@.order_address, uuid, jsonb) TO %s%s',
               CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                    ELSE pg_catalog.quote_ident(r.rolname) END,
               CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END), '; ')
      INTO regrant
      FROM pg_catalog.pg_proc p
     CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
      LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
     WHERE p.oid OPERATOR(pg_catalog.=) '@extschema@.orders_add(uuid, text, @extschema@.order_line[], @extschema@.order_address, uuid)'::pg_catalog.regprocedure
       AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
       AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE';

    DROP FUNCTION @extschema@.orders_add(uuid, text, @extschema@.order_line[], @extschema@.order_address, uuid);
    CREATE FUNCTION @extschema@.orders_add(
        customer_id      uuid,
        currency         text,
        lines            @extschema@.order_line[] DEFAULT '{}',
        shipping_address @extschema@.order_address DEFAULT NULL,
        id               uuid DEFAULT NULL,
        fields           jsonb DEFAULT NULL)
    RETURNS @extschema@.orders
    AS 'MODULE_PATHNAME', 'orders_add'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
    COMMENT ON FUNCTION @extschema@.orders_add(uuid, text, @extschema@.order_line[], @extschema@.order_address, uuid, jsonb) IS
        'Adds a pending order after checking every invariant and the table''s CHECK constraints; emits order_added';
    REVOKE ALL ON FUNCTION @extschema@.orders_add(uuid, text, @extschema@.order_line[], @extschema@.order_address, uuid, jsonb)
        FROM PUBLIC;

    IF regrant IS NOT NULL THEN
        SELECT p.proacl INTO initial FROM pg_catalog.pg_proc p
         WHERE p.oid OPERATOR(pg_catalog.=) '@extschema@.orders_add(uuid, text, @extschema@.order_line[], @extschema@.order_address, uuid, jsonb)'::pg_catalog.regprocedure;
        EXECUTE regrant;
        -- a grant in an extension's script counts as the extension's own
        UPDATE pg_catalog.pg_init_privs SET initprivs = initial
         WHERE objoid OPERATOR(pg_catalog.=) '@extschema@.orders_add(uuid, text, @extschema@.order_line[], @extschema@.order_address, uuid, jsonb)'::pg_catalog.regprocedure
           AND classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND objsubid OPERATOR(pg_catalog.=) 0;
    END IF;
END
$do$;


-- The shop's additions to orders, order_line and order_address as a script
-- for a restore: pg_dump leaves them out, as it leaves out every change to
-- an extension's members (schema/fields.sql says what it carries).
CREATE FUNCTION @extschema@.orders_fields_ddl(post_data boolean DEFAULT false)
RETURNS text
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    WITH tbl AS (
        SELECT c.oid AS relid, pg_catalog.format('%I.%I', n.nspname, c.relname) AS name
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
         WHERE c.oid OPERATOR(pg_catalog.=) '@extschema@.orders'::pg_catalog.regclass),
    -- the composites and the number of fields the C code reads of each (src/orders.h)
    composite AS (
        SELECT k, t.typrelid AS relid, pg_catalog.format('%I.%I', n.nspname, t.typname) AS name, 4 AS ours
          FROM (VALUES (1, '@extschema@.order_line'::pg_catalog.regtype),
                       (2, '@extschema@.order_address'::pg_catalog.regtype)) v(k, typ)
          JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) v.typ
          JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.typnamespace),
    -- the collation of an attribute, where it is not its type's
    collation_of AS (
        SELECT a.attrelid, a.attnum,
               pg_catalog.format(' COLLATE %I.%I', cn.nspname, co.collname) AS clause
          FROM pg_catalog.pg_attribute a
          JOIN pg_catalog.pg_type ty ON ty.oid OPERATOR(pg_catalog.=) a.atttypid
          JOIN pg_catalog.pg_collation co ON co.oid OPERATOR(pg_catalog.=) a.attcollation
          JOIN pg_catalog.pg_namespace cn ON cn.oid OPERATOR(pg_catalog.=) co.collnamespace
         WHERE (a.attrelid OPERATOR(pg_catalog.=) (SELECT relid FROM tbl)
                OR a.attrelid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT relid FROM composite)))
           AND a.attcollation OPERATOR(pg_catalog.<>) ty.typcollation),
    attribute AS (
        SELECT co.k, a.attnum, co.name AS typname, co.relid, a.attname,
               pg_catalog.format_type(a.atttypid, a.atttypmod) AS typ,
               coalesce(cl.clause, '') AS coll
          FROM composite co
          JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) co.relid
          LEFT JOIN collation_of cl ON cl.attrelid OPERATOR(pg_catalog.=) a.attrelid
                                   AND cl.attnum OPERATOR(pg_catalog.=) a.attnum
         WHERE a.attnum OPERATOR(pg_catalog.>) co.ours AND NOT a.attisdropped),
    -- orders' columns after the extension's ten
    col AS (
        SELECT a.attnum, a.attname, a.attidentity, a.attgenerated, a.attnotnull, a.attacl,
               pg_catalog.format_type(a.atttypid, a.atttypmod) AS typ,
               coalesce(cl.clause, '') AS coll,
               pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS expr,
               nn.conname AS notnull_name, nn.convalidated AS notnull_valid,
               nn.connoinherit AS notnull_noinherit
          FROM tbl
          JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) tbl.relid
          LEFT JOIN collation_of cl ON cl.attrelid OPERATOR(pg_catalog.=) a.attrelid
                                   AND cl.attnum OPERATOR(pg_catalog.=) a.attnum
          LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid OPERATOR(pg_catalog.=) a.attrelid
                                           AND d.adnum OPERATOR(pg_catalog.=) a.attnum
          -- from PostgreSQL 18, a NOT NULL is a constraint with a name
          LEFT JOIN pg_catalog.pg_constraint nn
                 ON nn.conrelid OPERATOR(pg_catalog.=) a.attrelid
                AND nn.contype OPERATOR(pg_catalog.=) 'n'
                AND nn.conkey OPERATOR(pg_catalog.=) ARRAY[a.attnum]
         WHERE a.attnum OPERATOR(pg_catalog.>) 10 AND NOT a.attisdropped),
    -- the sequences orders' columns own: an identity's ('i'), a serial's ('a')
    owned AS (
        SELECT dep.refobjsubid AS attnum, dep.deptype, s.seqrelid,
               pg_catalog.format('%I.%I', sn.nspname, sc.relname) AS name,
               s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle
          FROM tbl
          JOIN pg_catalog.pg_depend dep
            ON dep.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND dep.refobjid OPERATOR(pg_catalog.=) tbl.relid
           AND dep.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND dep.deptype OPERATOR(pg_catalog.=) ANY (ARRAY['i', 'a']::pg_catalog."char"[])
          JOIN pg_catalog.pg_sequence s ON s.seqrelid OPERATOR(pg_catalog.=) dep.objid
          JOIN pg_catalog.pg_class sc ON sc.oid OPERATOR(pg_catalog.=) s.seqrelid
          JOIN pg_catalog.pg_namespace sn ON sn.oid OPERATOR(pg_catalog.=) sc.relnamespace
         WHERE dep.refobjsubid OPERATOR(pg_catalog.>) 10),
    -- orders' constraints and indexes that are not the extension's: its
    -- primary key, its two indexes (schema/orders.sql) and the NOT NULLs
    -- of its columns
    con AS (
        SELECT c.oid, c.conname, c.conindid,
               c.contype OPERATOR(pg_catalog.=) 'c' AND c.convalidated AS before_data,
               pg_catalog.pg_get_constraintdef(c.oid) AS def,
               pg_catalog.obj_description(c.oid, 'pg_constraint') AS description,
               (pg_catalog.row_number() OVER (ORDER BY c.conname))::integer AS k
          FROM tbl
          JOIN pg_catalog.pg_constraint c ON c.conrelid OPERATOR(pg_catalog.=) tbl.relid
         WHERE c.contype OPERATOR(pg_catalog.=) ANY (ARRAY['c', 'u', 'x', 'n']::pg_catalog."char"[])
           AND NOT (c.contype OPERATOR(pg_catalog.=) 'n'
                    AND (c.conkey[1] OPERATOR(pg_catalog.<=) 10 OR c.convalidated))),
    idx AS (
        SELECT pg_catalog.format('%I.%I', n.nspname, ic.relname) AS name,
               pg_catalog.pg_get_indexdef(i.indexrelid) AS def,
               pg_catalog.obj_description(i.indexrelid, 'pg_class') AS description,
               (pg_catalog.row_number() OVER (ORDER BY ic.relname))::integer AS k
          FROM tbl
          JOIN pg_catalog.pg_index i ON i.indrelid OPERATOR(pg_catalog.=) tbl.relid
          JOIN pg_catalog.pg_class ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid
          JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) ic.relnamespace
         WHERE i.indisvalid AND i.indisready AND NOT i.indisprimary
           AND ic.relname OPERATOR(pg_catalog.<>) ALL (ARRAY['orders_customer_idx', 'orders_status_idx']::pg_catalog.name[])
           AND NOT EXISTS (SELECT FROM con WHERE con.conindid OPERATOR(pg_catalog.=) i.indexrelid)),
    statement(post, part, k, sub, sql) AS (
        SELECT false, 0, 0, 0,
               '-- orders_fields_ddl(): the shop''s additions to extension orders, before the data'
               OPERATOR(pg_catalog.||) E'\nSET search_path = '''';'
        UNION ALL
        SELECT true, 0, 0, 0,
               '-- orders_fields_ddl(post_data => true): the shop''s additions to extension orders, after the data'
               OPERATOR(pg_catalog.||) E'\nSET search_path = '''';'
        UNION ALL
        SELECT false, 1, a.k OPERATOR(pg_catalog.*) 10000 OPERATOR(pg_catalog.+) a.attnum, 0,
               pg_catalog.format('ALTER TYPE %s ADD ATTRIBUTE %I %s%s CASCADE;',
                                 a.typname, a.attname, a.typ, a.coll)
          FROM attribute a
        UNION ALL
        SELECT false, 1, a.k OPERATOR(pg_catalog.*) 10000 OPERATOR(pg_catalog.+) a.attnum, 1,
               pg_catalog.format('COMMENT ON COLUMN %s.%I IS %L;', a.typname, a.attname, d.description)
          FROM attribute a
          JOIN pg_catalog.pg_description d
            ON d.objoid OPERATOR(pg_catalog.=) a.relid
           AND d.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND d.objsubid OPERATOR(pg_catalog.=) a.attnum
        UNION ALL
        SELECT false, 2, c.attnum, 0,
               pg_catalog.format('ALTER TABLE %s ADD COLUMN %I %s%s%s%s;',
                   (SELECT name FROM tbl), c.attname, c.typ, c.coll,
                   CASE
                       WHEN c.attgenerated OPERATOR(pg_catalog.=) 's'
                           THEN pg_catalog.format(' GENERATED ALWAYS AS (%s) STORED', c.expr)
                       WHEN c.attgenerated OPERATOR(pg_catalog.=) 'v'
                           THEN pg_catalog.format(' GENERATED ALWAYS AS (%s) VIRTUAL', c.expr)
                       WHEN c.attidentity OPERATOR(pg_catalog.<>) ''
                           THEN pg_catalog.format(
                               ' GENERATED %s AS IDENTITY (SEQUENCE NAME %s START WITH %s INCREMENT BY %s MINVALUE %s MAXVALUE %s CACHE %s%s)',
                               CASE c.attidentity WHEN 'a' THEN 'ALWAYS' ELSE 'BY DEFAULT' END,
                               s.name, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache,
                               CASE WHEN s.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END)
                       WHEN c.expr IS NOT NULL THEN ' DEFAULT ' OPERATOR(pg_catalog.||) c.expr
                       ELSE ''
                   END,
                   CASE
                       WHEN c.notnull_name IS NOT NULL AND c.notnull_valid
                           THEN pg_catalog.format(' CONSTRAINT %I NOT NULL%s', c.notnull_name,
                                                  CASE WHEN c.notnull_noinherit THEN ' NO INHERIT' ELSE '' END)
                       WHEN c.notnull_name IS NULL AND c.attnotnull THEN ' NOT NULL'
                       ELSE ''
                   END)
          FROM col c
          LEFT JOIN owned s ON s.attnum OPERATOR(pg_catalog.=) c.attnum
                           AND s.deptype OPERATOR(pg_catalog.=) 'i'
        UNION ALL
        -- the identity sequence's value now: call this after pg_dump, so
        -- that it is at least what the dumped rows took
        SELECT false, 2, s.attnum, 1,
               pg_catalog.format('SELECT pg_catalog.setval(%L, %s, true);', s.name, v.last)
          FROM owned s
         -- before 18 reading it without the privilege is an error, not NULL
         CROSS JOIN LATERAL (SELECT CASE WHEN pg_catalog.has_sequence_privilege(s.seqrelid, 'SELECT, USAGE')
                                         THEN pg_catalog.pg_sequence_last_value(s.seqrelid) END AS last) v
         WHERE s.deptype OPERATOR(pg_catalog.=) 'i' AND v.last IS NOT NULL
        UNION ALL
        SELECT false, 2, s.attnum, 2,
               pg_catalog.format('ALTER SEQUENCE %s OWNED BY %s.%I;', s.name, (SELECT name FROM tbl), c.attname)
          FROM owned s
          JOIN col c ON c.attnum OPERATOR(pg_catalog.=) s.attnum
         WHERE s.deptype OPERATOR(pg_catalog.=) 'a'
        UNION ALL
        SELECT false, 2, c.attnum, 3,
               pg_catalog.format('COMMENT ON COLUMN %s.%I IS %L;', (SELECT name FROM tbl), c.attname, d.description)
          FROM col c
          JOIN pg_catalog.pg_description d
            ON d.objoid OPERATOR(pg_catalog.=) (SELECT relid FROM tbl)
           AND d.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND d.objsubid OPERATOR(pg_catalog.=) c.attnum
        UNION ALL
        -- grants on the column: pg_dump dumps them, but among the
        -- extension's objects, where the column does not exist yet
        SELECT false, 2, c.attnum, 4,
               pg_catalog.format('GRANT %s (%I) ON %s TO %s%s;', g.privilege_type, c.attname, (SELECT name FROM tbl),
                   CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                        ELSE pg_catalog.quote_ident(r.rolname) END,
                   CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
          FROM col c
         CROSS JOIN LATERAL pg_catalog.aclexplode(c.attacl) g
          LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) g.grantee
        UNION ALL
        -- constraints: CHECKs that every row meets before the data; unique
        -- and exclusion constraints (an index each), those NOT VALID or
        -- NOT ENFORCED after it
        SELECT NOT c.before_data, 3, c.k, 0,
               pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s;', (SELECT name FROM tbl), c.conname, c.def)
          FROM con c
        UNION ALL
        SELECT NOT c.before_data, 3, c.k, 1,
               pg_catalog.format('COMMENT ON CONSTRAINT %I ON %s IS %L;', c.conname, (SELECT name FROM tbl),
                                 c.description)
          FROM con c
         WHERE c.description IS NOT NULL
        UNION ALL
        SELECT true, 4, i.k, 0, i.def OPERATOR(pg_catalog.||) ';'
          FROM idx i
        UNION ALL
        SELECT true, 4, i.k, 1, pg_catalog.format('COMMENT ON INDEX %s IS %L;', i.name, i.description)
          FROM idx i
         WHERE i.description IS NOT NULL)
    SELECT pg_catalog.string_agg(sql, E'\n' ORDER BY part, k, sub) OPERATOR(pg_catalog.||) E'\n'
      FROM statement
     WHERE post OPERATOR(pg_catalog.=) $1
$$;

COMMENT ON FUNCTION @extschema@.orders_fields_ddl(boolean) IS
    'The shop''s columns, attributes, constraints and indexes of orders as a script for a restore: run it after pg_restore --section=pre-data (post_data => true: after the data)';

SELECT orders_internal.orders_assert_trusted_schema();
