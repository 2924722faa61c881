/* schema/orders.sql: the aggregate, one row per order */

-- The table's row type is the aggregate: orders_get returns it and
-- orders_save takes it back, changed.  The functions write the table
-- through the heap, not the executor (src/storage.c), after checking every
-- invariant in C (src/invariants.c); so the table carries only what the
-- storage itself relies on, NOT NULL and the primary key; a trigger or a
-- rule that anyone adds is refused rather than skipped.  The C code reads
-- these ten columns by number (src/orders.h: Anum_orders_*) and refuses a
-- table where one of them was altered behind its back; the columns and
-- CHECK constraints a shop adds after them are its own, filled and checked
-- as INSERT would (src/fields.c, docs/fields.md).  A later version of the
-- extension that adds a column of its own finds it after the shop's.

CREATE TABLE @extschema@.orders (
    id               uuid                       NOT NULL,
    customer_id      uuid                       NOT NULL,
    status           @extschema@.order_status   NOT NULL,
    currency         text                       NOT NULL,
    lines            @extschema@.order_line[]   NOT NULL,
    shipping_address @extschema@.order_address,
    total            bigint                     NOT NULL,
    version          integer                    NOT NULL,
    created_at       timestamptz                NOT NULL,
    updated_at       timestamptz                NOT NULL,
    CONSTRAINT orders_pkey PRIMARY KEY (id)
);

COMMENT ON TABLE @extschema@.orders IS
    'Order aggregates; written only through orders_add, orders_save and orders_remove';

-- Keyset pagination goes by id, which is time-ordered (UUIDv7): each index
-- ends in id, so a page of orders_find filtered by customer or by status is
-- one ordered index range scan (queries.sql).
CREATE INDEX orders_customer_idx ON @extschema@.orders (customer_id, id);
CREATE INDEX orders_status_idx ON @extschema@.orders (status, id);

-- pg_dump keeps a member table's definition only; this keeps its rows too.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.orders', '');
