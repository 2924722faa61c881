\set n random(1, 200)
SELECT version FROM orders_save((
    SELECT jsonb_populate_record(o, jsonb_build_object('lines',
        ARRAY[ROW('00000000-0000-0000-0000-000000000001', 'Tea', o.version + 1, 100)::order_line]))
    FROM orders_get(('00000000-0000-7000-8000-' || lpad(to_hex(:n), 12, '0'))::uuid) o));
