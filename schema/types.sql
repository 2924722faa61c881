/* schema/types.sql: the aggregate's value types */

-- An order's lines and its shipping address are values inside the order's
-- row, not rows of their own, so that the aggregate is stored, locked and
-- versioned as one row (orders.sql).  A composite type cannot declare a
-- field NOT NULL or CHECK it: src/invariants.c refuses a NULL field and
-- checks every rule before anything is written.  The C code reads the
-- fields by number (src/orders.h: Anum_line_*, Anum_address_*), so their
-- order is fixed.

-- The status rules know these five labels, by name (src/catalog.c): a
-- label that anyone adds to the type is refused where it is met (22023).
CREATE TYPE @extschema@.order_status AS ENUM
    ('pending', 'confirmed', 'shipped', 'delivered', 'cancelled');

CREATE TYPE @extschema@.order_line AS (
    product_id   uuid,
    product_name text,
    quantity     integer,
    unit_price   bigint          -- minor units (cents): sums are exact
);

CREATE TYPE @extschema@.order_address AS (
    street      text,
    city        text,
    postal_code text,
    country     text
);
