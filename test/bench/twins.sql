-- What users would write instead, for the benchmark to compare against.
--
-- bench.orders_add_plpgsql / bench.orders_save_plpgsql: the same repository
-- in PL/pgSQL, written as a competent user would: the same checks, the same
-- rows, the outbox row with the same payload, pg_notify when asked, SQLSTATEs
-- and constraint names like ours.  Tables of the same shape, with the same
-- indexes.
--
-- The SQL floor needs no function: the benchmark script writes the order row
-- and the outbox row in one data-modifying statement, with no checks.

CREATE SCHEMA bench;

CREATE TABLE bench.orders_pl (LIKE public.orders INCLUDING ALL);
CREATE TABLE bench.order_events_pl (LIKE public.order_events INCLUDING ALL);
CREATE SEQUENCE bench.order_events_pl_position_seq;
CREATE TABLE bench.orders_sql (LIKE public.orders INCLUDING ALL);
CREATE TABLE bench.order_events_sql (LIKE public.order_events INCLUDING ALL);
CREATE SEQUENCE bench.order_events_sql_position_seq;

CREATE FUNCTION bench.check_fail(constraint_name text, msg text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', msg USING ERRCODE = 'check_violation', CONSTRAINT = constraint_name,
        TABLE = 'orders_pl', SCHEMA = 'bench';
END $$;

-- The lines' checks and total, shared by add and save.
CREATE FUNCTION bench.check_lines(order_id uuid, lines public.order_line[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    l public.order_line;
    i integer := 0;
    total bigint := 0;
BEGIN
    IF lines IS NULL THEN
        RAISE EXCEPTION 'order %: lines must not be null', order_id USING ERRCODE = 'not_null_violation';
    END IF;
    IF array_ndims(lines) > 1 THEN
        RAISE EXCEPTION 'order %: lines must be a one-dimensional array', order_id USING ERRCODE = 'array_subscript_error';
    END IF;
    IF cardinality(lines) > 1000 THEN
        PERFORM bench.check_fail('order_lines_max', format('order %s: too many lines', order_id));
    END IF;
    FOREACH l IN ARRAY lines LOOP
        i := i + 1;
        IF l IS NULL OR l.product_id IS NULL OR l.product_name IS NULL OR l.quantity IS NULL OR l.unit_price IS NULL THEN
            RAISE EXCEPTION 'order %: lines[%] must not be null', order_id, i USING ERRCODE = 'not_null_violation';
        END IF;
        IF l.quantity NOT BETWEEN 1 AND 1000000 THEN
            PERFORM bench.check_fail('order_line_quantity_range', format('order %s: lines[%s].quantity is out of range', order_id, i));
        END IF;
        IF l.unit_price NOT BETWEEN 0 AND 100000000000 THEN
            PERFORM bench.check_fail('order_line_unit_price_range', format('order %s: lines[%s].unit_price is out of range', order_id, i));
        END IF;
        IF char_length(l.product_name) NOT BETWEEN 1 AND 200 OR l.product_name ~ '[[:cntrl:]]' THEN
            PERFORM bench.check_fail('order_line_product_name', format('order %s: lines[%s].product_name is invalid', order_id, i));
        END IF;
        total := total + l.quantity::bigint * l.unit_price;   -- bigint overflow raises 22003
    END LOOP;
    IF (SELECT count(DISTINCT x.product_id) FROM unnest(lines) x) <> i THEN
        PERFORM bench.check_fail('order_line_product_unique', format('order %s: a product appears in more than one line', order_id));
    END IF;
    RETURN total;
END $$;

CREATE FUNCTION bench.check_address(order_id uuid, a public.order_address) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF a IS NULL THEN
        RETURN;
    END IF;
    IF a.street IS NULL OR a.city IS NULL OR a.postal_code IS NULL OR a.country IS NULL THEN
        RAISE EXCEPTION 'order %: shipping_address fields must not be null', order_id USING ERRCODE = 'not_null_violation';
    END IF;
    IF char_length(a.street) NOT BETWEEN 1 AND 200 OR char_length(a.city) NOT BETWEEN 1 AND 100
       OR char_length(a.postal_code) NOT BETWEEN 1 AND 20 OR a.country !~ '^[A-Z]{2}$' THEN
        PERFORM bench.check_fail('order_address_fields', format('order %s: shipping_address is invalid', order_id));
    END IF;
END $$;

CREATE FUNCTION bench.emit(o bench.orders_pl, event_type text, payload jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    pos bigint := nextval('bench.order_events_pl_position_seq');
BEGIN
    INSERT INTO bench.order_events_pl (position, xid, order_id, type, version, payload, occurred_at)
    VALUES (pos, pg_current_xact_id(), o.id, event_type, o.version, payload, now());
    IF current_setting('orders.notify', true) IS DISTINCT FROM 'off' THEN
        PERFORM pg_notify('orders_events_pl', json_build_object('position', pos, 'type', event_type,
                                                                'order_id', o.id, 'version', o.version)::text);
    END IF;
END $$;

CREATE FUNCTION bench.orders_add_plpgsql(
    customer_id uuid, currency text, lines public.order_line[] DEFAULT '{}',
    shipping_address public.order_address DEFAULT NULL, id uuid DEFAULT NULL)
RETURNS bench.orders_pl
LANGUAGE plpgsql AS $$
DECLARE
    o bench.orders_pl;
BEGIN
    o.id := coalesce(id, public.orders_next_id());
    IF customer_id IS NULL THEN
        RAISE EXCEPTION 'order %: customer_id must not be null', o.id USING ERRCODE = 'not_null_violation';
    END IF;
    IF currency IS NULL OR currency !~ '^[A-Z]{3}$' THEN
        PERFORM bench.check_fail('order_currency_format', format('order %s: currency must be three upper-case ASCII letters', o.id));
    END IF;
    o.total := bench.check_lines(o.id, lines);
    PERFORM bench.check_address(o.id, shipping_address);
    o.customer_id := customer_id;
    o.status := 'pending';
    o.currency := currency;
    o.lines := lines;
    o.shipping_address := shipping_address;
    o.version := 1;
    o.created_at := now();
    o.updated_at := o.created_at;
    INSERT INTO bench.orders_pl VALUES (o.*);
    PERFORM bench.emit(o, 'order_added', to_jsonb(o));
    RETURN o;
END $$;

CREATE FUNCTION bench.orders_save_plpgsql(n bench.orders_pl)
RETURNS bench.orders_pl
LANGUAGE plpgsql AS $$
DECLARE
    o bench.orders_pl;
    lines_changed boolean;
    address_changed boolean;
    old_status public.order_status;
    new_total bigint;
BEGIN
    SELECT * INTO o FROM bench.orders_pl WHERE orders_pl.id = n.id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'order % does not exist', n.id USING ERRCODE = 'no_data_found';
    END IF;
    IF o.version <> n.version THEN
        RAISE EXCEPTION 'order % was changed by someone else', n.id USING ERRCODE = 'serialization_failure';
    END IF;
    IF n.customer_id IS DISTINCT FROM o.customer_id OR n.currency IS DISTINCT FROM o.currency THEN
        PERFORM bench.check_fail('order_immutable_fields', format('order %s: customer_id and currency cannot change', n.id));
    END IF;
    new_total := bench.check_lines(n.id, n.lines);
    PERFORM bench.check_address(n.id, n.shipping_address);
    IF n.status IS DISTINCT FROM o.status AND NOT (
           (o.status = 'pending' AND n.status IN ('confirmed', 'cancelled'))
        OR (o.status = 'confirmed' AND n.status IN ('shipped', 'cancelled'))
        OR (o.status = 'shipped' AND n.status = 'delivered')) THEN
        PERFORM bench.check_fail('order_status_transition', format('order %s: status cannot move from %s to %s', n.id, o.status, n.status));
    END IF;
    IF n.status NOT IN ('pending', 'cancelled') AND (cardinality(n.lines) = 0 OR n.shipping_address IS NULL) THEN
        PERFORM bench.check_fail('order_ready_to_confirm', format('order %s is not ready', n.id));
    END IF;
    lines_changed := n.lines IS DISTINCT FROM o.lines;
    address_changed := n.shipping_address IS DISTINCT FROM o.shipping_address;
    IF (lines_changed AND o.status <> 'pending')
       OR (address_changed AND o.status NOT IN ('pending', 'confirmed')) THEN
        PERFORM bench.check_fail('order_frozen_after_confirm', format('order %s is frozen', n.id));
    END IF;
    IF NOT lines_changed AND NOT address_changed AND n.status = o.status THEN
        RETURN o;
    END IF;
    old_status := o.status;
    UPDATE bench.orders_pl
    SET status = n.status, lines = n.lines, shipping_address = n.shipping_address, total = new_total,
        version = o.version + 1, updated_at = now()
    WHERE orders_pl.id = n.id
    RETURNING * INTO o;
    IF lines_changed THEN
        PERFORM bench.emit(o, 'order_lines_changed', jsonb_build_object('lines', to_jsonb(o.lines), 'total', o.total));
    END IF;
    IF address_changed THEN
        PERFORM bench.emit(o, 'order_shipping_address_changed', jsonb_build_object('shipping_address', to_jsonb(o.shipping_address)));
    END IF;
    IF o.status <> old_status THEN
        PERFORM bench.emit(o, 'order_' || o.status, jsonb_build_object('status', o.status, 'previous_status', old_status));
    END IF;
    RETURN o;
END $$;

-- The benchmark's ids: order n is 00000000-0000-7000-8000-<n in hex>.
CREATE FUNCTION bench.order_id(n bigint) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(n), 12, '0'))::uuid $$;

CREATE SEQUENCE bench.save_seq_c;
CREATE SEQUENCE bench.save_seq_pl;
