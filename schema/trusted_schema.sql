/* schema/trusted_schema.sql: the schema the extension trusts, checked first */

-- The SQL functions of the extension name their tables, types and helpers
-- by the schema's name (@extschema@), never through search_path.  That is
-- safe only in a schema that only superusers own and create in: whoever
-- could rename it, or add objects to it, could make those functions run
-- code of its own, with the privileges of whoever calls them.  So the
-- install refuses any other schema before it creates anything else, and
-- every update script asks again.
--
-- The functions that are not the API (the helpers the API's SQL functions,
-- the relay worker and Citus call) live in a schema of the extension's own,
-- orders_internal, so that a user listing the schema's functions meets the
-- API alone.  Its name is fixed; the same check judges it: it must be the
-- extension's member, under that name, owned by a superuser, and no other
-- role may create in it.  Creating it fails if a schema of that name
-- exists already, so nobody can have prepared it for us.
CREATE SCHEMA orders_internal;
COMMENT ON SCHEMA orders_internal IS
    'orders: the extension''s internal functions; not an API, they change between versions';

-- The name the SQL functions use for the schema: the relay worker refuses
-- to call them once the schema has another name (src/trust.c).
CREATE FUNCTION orders_internal.orders_installed_schema()
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$SELECT '@extschema@'::pg_catalog.text$$;

-- Raises an error, saying why, for an install schema, or an internal one,
-- that a role other than a superuser owns or may create in (src/trust.c).
CREATE FUNCTION orders_internal.orders_assert_trusted_schema()
RETURNS void
AS 'MODULE_PATHNAME', 'orders_assert_trusted_schema'
LANGUAGE C STABLE;
SELECT orders_internal.orders_assert_trusted_schema();
