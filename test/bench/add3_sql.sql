\set c random(1, 100000)
WITH o AS (
    INSERT INTO bench.orders_sql
    VALUES (orders_next_id(), bench.order_id(:c), 'pending', 'EUR', '{"(0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b,Green tea,2,450)","(1c2f5a6b-7d8e-4f9a-8b1c-2d3e4f5a6b7c,Teapot,1,3900)","(2d3a6b7c-8e9f-4a0b-9c2d-3e4f5a6b7c8d,Mug,4,1250)"}'::order_line[], '("Main St 1",Berlin,10115,DE)'::order_address,
            9800, 1, now(), now())
    RETURNING *)
INSERT INTO bench.order_events_sql
SELECT nextval('bench.order_events_sql_position_seq'), pg_current_xact_id(), o.id, 'order_added', 1, to_jsonb(o), now()
FROM o;
