\set ECHO none
-- Included last by every file in sql/: drops what test/regress/helpers.sql
-- made, then names anything else the file left in the cluster, so that the
-- next file, whichever it is, starts from nothing.  A file drops its own
-- functions, roles and schemas; one it forgot that uses the extension's
-- types stops the DROP EXTENSION below with an error.  A file may have
-- dropped the extension, and with it the helpers, itself.
SET client_min_messages = warning;
DROP VIEW IF EXISTS stored, events_of;
DROP FUNCTION IF EXISTS move(uuid, order_status[]), cur(uuid), line(integer, bigint, integer), err(text);
DROP EXTENSION IF EXISTS orders;
RESET client_min_messages;

SELECT string_agg(what, ', ' ORDER BY what) AS leftovers
FROM (SELECT pg_describe_object(classid, objid, 0)
      FROM (SELECT 'pg_authid'::regclass, oid FROM pg_roles
            WHERE rolname !~ '^pg_' AND oid <> 10  -- 10: the bootstrap superuser
            UNION ALL
            SELECT 'pg_database'::regclass, oid FROM pg_database
            WHERE datname NOT IN (current_database(), 'postgres', 'template0', 'template1')
            UNION ALL
            SELECT 'pg_namespace'::regclass, oid FROM pg_namespace
            WHERE nspname !~ '^pg_' AND nspname NOT IN ('public', 'information_schema')
            UNION ALL
            SELECT 'pg_extension'::regclass, oid FROM pg_extension WHERE extname <> 'plpgsql'
            UNION ALL
            SELECT 'pg_publication'::regclass, oid FROM pg_publication
            UNION ALL
            -- what is in public, less what comes with something else: a
            -- table's indexes, row type and array type; a composite type's
            -- relation (the type is named)
            SELECT 'pg_class'::regclass, oid FROM pg_class
            WHERE relnamespace = 'public'::regnamespace AND relkind NOT IN ('i', 'c')
            UNION ALL
            SELECT 'pg_proc'::regclass, oid FROM pg_proc WHERE pronamespace = 'public'::regnamespace
            UNION ALL
            SELECT 'pg_type'::regclass, t.oid FROM pg_type t
            WHERE typnamespace = 'public'::regnamespace AND typcategory <> 'A'
              AND NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = typrelid AND c.relkind <> 'c')
           ) o(classid, objid)
      -- an extension left behind is named once, not with each of its members
      WHERE NOT EXISTS (SELECT FROM pg_depend d
                        WHERE (d.classid, d.objid, d.deptype) = (o.classid, o.objid, 'e'))
      UNION ALL
      SELECT 'prepared transaction ' || gid FROM pg_prepared_xacts) left_(what) \gset
\if :{?leftovers}
\echo left behind: :leftovers
\endif
\set ECHO all
