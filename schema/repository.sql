/* schema/repository.sql: the repository's functions: add, get, save, remove */

-- C functions (src/api.c).  Each checks every invariant before anything is
-- written, and writes the order's row and its events in the caller's
-- transaction.  None resolves a name through the caller's search_path: they
-- find their tables and types in the schema of the called function, by
-- OID.  None is SECURITY DEFINER; who may write is in privileges.sql.

CREATE FUNCTION @extschema@.orders_next_id()
RETURNS uuid
AS 'MODULE_PATHNAME', 'orders_next_id'
LANGUAGE C VOLATILE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.orders_next_id() IS
    'A new time-ordered UUID (version 7)';

-- fields: the shop's own columns of orders (ALTER TABLE orders ADD
-- COLUMN), as a JSON object; each value goes through its column type's
-- input function, and the columns not given take their defaults.  The
-- table's CHECK constraints are evaluated on the new row (src/fields.c).
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

-- Many new orders in one call (src/bulk.c): a jsonb array of objects
-- with orders_add's arguments as keys, each checked as orders_add checks
-- it, written through the heap's multi-insert; returns each order added,
-- in the array's order.  An error names the order's index in the array,
-- and nothing of the call stays.
CREATE FUNCTION @extschema@.orders_add_many(orders jsonb)
RETURNS SETOF @extschema@.orders
AS 'MODULE_PATHNAME', 'orders_add_many'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.orders_add_many(jsonb) IS
    'Adds many pending orders (a jsonb array of orders_add''s arguments) after checking every invariant; emits order_added for each';

-- Reads the table directly, so it checks the caller's SELECT privilege
-- itself, and refuses where row-level security applies to the caller.
CREATE FUNCTION @extschema@.orders_get(id uuid)
RETURNS SETOF @extschema@.orders
AS 'MODULE_PATHNAME', 'orders_get'
LANGUAGE C STABLE STRICT PARALLEL SAFE ROWS 1;

COMMENT ON FUNCTION @extschema@.orders_get(uuid) IS
    'The whole order, or no row; needs SELECT on orders';

-- o.version is the version the caller read: another is a conflict (40001),
-- the code clients retry on.
CREATE FUNCTION @extschema@.orders_save(o @extschema@.orders)
RETURNS @extschema@.orders
AS 'MODULE_PATHNAME', 'orders_save'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.orders_save(@extschema@.orders) IS
    'Stores a changed order read at o.version; emits the events the change means';

CREATE FUNCTION @extschema@.orders_remove(id uuid, expected_version integer DEFAULT NULL)
RETURNS @extschema@.orders
AS 'MODULE_PATHNAME', 'orders_remove'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.orders_remove(uuid, integer) IS
    'Removes an order that is not in flight; emits order_removed';

-- An order as JSON for a reader whose numbers are doubles (JavaScript's
-- JSON.parse, and every JSON library that follows it): to_jsonb's form, but
-- the money (total, and each line's unit_price) as strings, which carry a
-- bigint whole.  jsonb_populate_record(NULL::orders, orders_json(o)) reads
-- it back, so an order can make the round trip to orders_save.  Any field
-- a line has is kept.  Every name is qualified, operators too: a SQL
-- function's body is inlined, and parsed under the caller's search_path.
CREATE FUNCTION @extschema@.orders_json(o @extschema@.orders)
RETURNS jsonb
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT pg_catalog.to_jsonb($1) OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(
        'total', ($1).total::pg_catalog.text,
        'lines', coalesce(
            (SELECT pg_catalog.jsonb_agg(
                        pg_catalog.to_jsonb(($1).lines[i]) OPERATOR(pg_catalog.||)
                        pg_catalog.jsonb_build_object('unit_price', (($1).lines[i]).unit_price::pg_catalog.text)
                        ORDER BY i)
             FROM pg_catalog.generate_subscripts(($1).lines, 1) AS i),
            pg_catalog.to_jsonb(($1).lines)))
$$;

COMMENT ON FUNCTION @extschema@.orders_json(@extschema@.orders) IS
    'The order as to_jsonb renders it, but its money (total, lines[].unit_price) as strings';
