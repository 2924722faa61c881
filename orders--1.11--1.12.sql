/* orders--1.11--1.12.sql: the shop's own fields and rules.  A shop adds
   columns to orders, attributes to order_line and order_address, and CHECK
   constraints to orders, with ordinary DDL; the C functions fill, check,
   store and emit them (the library does that, whatever the version).  This
   script gives orders_add its fields argument.  Nothing is rewritten: the
   update takes only catalog locks and runs in milliseconds on any data. */

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

SELECT orders_internal.orders_assert_trusted_schema();
