SELECT id FROM orders_add(gen_random_uuid(), 'EUR',
    ARRAY[ROW(gen_random_uuid(), 'Tea', 1, 100)::order_line],
    ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address);
