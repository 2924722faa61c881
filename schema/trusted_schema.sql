/* schema/trusted_schema.sql: the schema the extension trusts, checked first */

-- The SQL functions of the extension name their tables, types and helpers
-- by the schema's name (@extschema@), never through search_path.  That is
-- safe only in a schema that only superusers own and create in: whoever
-- could rename it, or add objects to it, could make those functions run
-- code of its own, with the privileges of whoever calls them.  So the
-- install refuses any other schema before it creates anything else, and
-- every update script asks again.

-- The name the SQL functions use for the schema: the relay worker refuses
-- to call them once the schema has another name (src/catalog.c).
CREATE FUNCTION @extschema@.orders_installed_schema()
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$SELECT '@extschema@'::pg_catalog.text$$;

-- Raises an error, saying why, for a schema that a role other than a
-- superuser owns or may create in (src/catalog.c).
CREATE FUNCTION @extschema@.orders_assert_trusted_schema()
RETURNS void
AS 'MODULE_PATHNAME', 'orders_assert_trusted_schema'
LANGUAGE C STABLE;
SELECT @extschema@.orders_assert_trusted_schema();
