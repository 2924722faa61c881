/* schema/queries.sql: finding, counting and summing orders */

-- These run as their caller and read the table with the caller's own
-- privileges (SELECT on orders) and row-level security.  Their indexes are
-- in orders.sql.

-- A single SQL statement, so the planner inlines it into the caller's query
-- and plans it with the caller's values: a filter that is NULL folds away,
-- and the one that is given picks its index.  Every name in it is qualified,
-- operators too, because an inlined body is parsed under the caller's
-- search_path.
CREATE FUNCTION @extschema@.orders_find(
    customer_id    uuid DEFAULT NULL,
    status         @extschema@.order_status DEFAULT NULL,
    min_total      bigint DEFAULT NULL,
    max_total      bigint DEFAULT NULL,
    created_from   timestamptz DEFAULT NULL,
    created_before timestamptz DEFAULT NULL,
    after_id       uuid DEFAULT NULL,
    max_rows       integer DEFAULT 100)
RETURNS SETOF @extschema@.orders
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT o.*
    FROM @extschema@.orders o
    WHERE ($1 IS NULL OR o.customer_id OPERATOR(pg_catalog.=) $1)
      AND ($2 IS NULL OR o.status OPERATOR(pg_catalog.=) $2)
      AND ($3 IS NULL OR o.total OPERATOR(pg_catalog.>=) $3)
      AND ($4 IS NULL OR o.total OPERATOR(pg_catalog.<=) $4)
      AND ($5 IS NULL OR o.created_at OPERATOR(pg_catalog.>=) $5)
      AND ($6 IS NULL OR o.created_at OPERATOR(pg_catalog.<) $6)
      AND ($7 IS NULL OR o.id OPERATOR(pg_catalog.>) $7)
    ORDER BY o.id
    LIMIT $8
$$;

COMMENT ON FUNCTION @extschema@.orders_find(uuid, @extschema@.order_status, bigint, bigint, timestamptz, timestamptz, uuid, integer) IS
    'Orders matching every filter given, by id (creation order), after after_id, at most max_rows (NULL: all)';

-- The WHERE clause of orders_count and orders_total: only the filters given,
-- so each call is planned for the filters it has.  Parameters, not values,
-- go into the text.
CREATE FUNCTION orders_internal.orders_filter_sql(
    customer_id uuid, status @extschema@.order_status, min_total bigint, max_total bigint,
    created_from timestamptz, created_before timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'true'
        || CASE WHEN $1 IS NULL THEN '' ELSE ' AND o.customer_id OPERATOR(pg_catalog.=) $1' END
        || CASE WHEN $2 IS NULL THEN '' ELSE ' AND o.status OPERATOR(pg_catalog.=) $2' END
        || CASE WHEN $3 IS NULL THEN '' ELSE ' AND o.total OPERATOR(pg_catalog.>=) $3' END
        || CASE WHEN $4 IS NULL THEN '' ELSE ' AND o.total OPERATOR(pg_catalog.<=) $4' END
        || CASE WHEN $5 IS NULL THEN '' ELSE ' AND o.created_at OPERATOR(pg_catalog.>=) $5' END
        || CASE WHEN $6 IS NULL THEN '' ELSE ' AND o.created_at OPERATOR(pg_catalog.<) $6' END
$$;

CREATE FUNCTION @extschema@.orders_count(
    customer_id    uuid DEFAULT NULL,
    status         @extschema@.order_status DEFAULT NULL,
    min_total      bigint DEFAULT NULL,
    max_total      bigint DEFAULT NULL,
    created_from   timestamptz DEFAULT NULL,
    created_before timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE 'SELECT count(*) FROM @extschema@.orders o WHERE '
            || orders_internal.orders_filter_sql($1, $2, $3, $4, $5, $6)
        INTO n USING $1, $2, $3, $4, $5, $6;
    RETURN n;
END
$$;

COMMENT ON FUNCTION @extschema@.orders_count(uuid, @extschema@.order_status, bigint, bigint, timestamptz, timestamptz) IS
    'How many orders match every filter given';

-- Totals are only added up within a currency: one row per currency.
CREATE FUNCTION @extschema@.orders_total(
    customer_id    uuid DEFAULT NULL,
    status         @extschema@.order_status DEFAULT NULL,
    min_total      bigint DEFAULT NULL,
    max_total      bigint DEFAULT NULL,
    created_from   timestamptz DEFAULT NULL,
    created_before timestamptz DEFAULT NULL)
RETURNS TABLE (currency text, orders bigint, total numeric)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY EXECUTE
        'SELECT o.currency, count(*), sum(o.total) FROM @extschema@.orders o WHERE '
        || orders_internal.orders_filter_sql($1, $2, $3, $4, $5, $6)
        || ' GROUP BY o.currency ORDER BY o.currency'
        USING $1, $2, $3, $4, $5, $6;
END
$$;

COMMENT ON FUNCTION @extschema@.orders_total(uuid, @extschema@.order_status, bigint, bigint, timestamptz, timestamptz) IS
    'Per currency: how many orders match every filter given, and the sum of their totals';

-- One order's history: its events after after_version, in version order,
-- through the outbox's (order_id, version) index; on a cluster, from the
-- order's node alone.  Events carry whole orders, so this needs what
-- reading the order needs (SELECT on orders, with no row-level security
-- applying) and SELECT on order_events, whose own policies apply.  Events
-- purged by orders_events_purge are gone from it.
CREATE FUNCTION @extschema@.orders_events_of(order_id uuid, after_version integer DEFAULT 0)
RETURNS SETOF @extschema@.order_events
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF order_id IS NULL THEN
        RAISE EXCEPTION 'order id must not be null' USING ERRCODE = '22004';
    END IF;
    IF after_version IS NULL THEN
        RAISE EXCEPTION 'after_version must not be null' USING ERRCODE = '22004',
              HINT = 'Pass 0 for the whole history.';
    END IF;
    IF NOT has_table_privilege('@extschema@.orders', 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for table orders' USING ERRCODE = '42501';
    END IF;
    IF row_security_active('@extschema@.orders') THEN
        RAISE EXCEPTION 'extension "orders" does not apply row-level security'
            USING ERRCODE = '0A000',
                  DETAIL = 'Row-level security is enabled on table "@extschema@.orders".',
                  HINT = 'Read the table with SELECT, which applies its policies.';
    END IF;
    RETURN QUERY
    SELECT e.* FROM @extschema@.order_events e
    WHERE e.order_id = $1 AND e.version > $2
    ORDER BY e.version;
END
$$;

COMMENT ON FUNCTION @extschema@.orders_events_of(uuid, integer) IS
    'One order''s events after after_version, in version order; needs SELECT on orders and order_events';
