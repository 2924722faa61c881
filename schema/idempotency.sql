/* schema/idempotency.sql: retried writes that were done already */

-- With orders.idempotency_key set, each write call of a transaction
-- (orders_add, orders_save, orders_remove) is recorded here under the
-- caller's role, the key and the call's place among the transaction's
-- keyed calls, in the caller's transaction (src/idempotency.c).  A retry of
-- the transaction makes the same calls in the same order and gets the
-- recorded rows back, writing nothing; a different call under a recorded
-- key is an error.  Only the C code writes the table, as its owner; no role
-- is granted anything on it.  The row is kept as jsonb, not as the orders
-- row type, which would forbid altering the orders table.
CREATE TABLE @extschema@.order_idempotency (
    owner       regrole     NOT NULL,   -- keys are each role's own
    key         text        NOT NULL,
    call        integer     NOT NULL,   -- the call's place among its transaction's keyed calls
    function    text        NOT NULL,
    request     bytea       NOT NULL,   -- SHA-256 of the function and its arguments
    result      jsonb,                  -- the row the call returned, as to_jsonb renders it
    recorded_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,   -- recorded_at + orders.idempotency_ttl
    CONSTRAINT order_idempotency_pkey PRIMARY KEY (owner, key, call)
);

CREATE INDEX order_idempotency_expires_idx ON @extschema@.order_idempotency (expires_at);

COMMENT ON TABLE @extschema@.order_idempotency IS
    'Write calls made under orders.idempotency_key, with what they returned; written only by the orders_* functions';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.order_idempotency', '');

-- Deletes the expired records; an expired record is ignored, and replaced,
-- already, so this only returns their space.  Needs DELETE on
-- order_idempotency: the extension owner's, or a DBA's grant.
CREATE FUNCTION @extschema@.orders_idempotency_purge()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM @extschema@.order_idempotency r WHERE r.expires_at <= now();
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

COMMENT ON FUNCTION @extschema@.orders_idempotency_purge() IS
    'Deletes expired idempotency records; returns how many';
