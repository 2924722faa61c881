-- The 200 orders the save.sql load script changes: ids 00000000-0000-7000-8000-<n in hex>.
SELECT count(*) FROM (
	SELECT orders_add(gen_random_uuid(), 'EUR',
		ARRAY[ROW('00000000-0000-0000-0000-000000000001', 'Tea', 1, 100)::order_line],
		ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address,
		('00000000-0000-7000-8000-' || lpad(to_hex(n), 12, '0'))::uuid)
	FROM generate_series(1, 200) n) s;
