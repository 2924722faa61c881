\set c random(1, 100000)
SELECT id FROM orders_add(bench.order_id(:c), 'EUR', '{"(0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b,Green tea,2,450)","(1c2f5a6b-7d8e-4f9a-8b1c-2d3e4f5a6b7c,Teapot,1,3900)","(2d3a6b7c-8e9f-4a0b-9c2d-3e4f5a6b7c8d,Mug,4,1250)"}'::order_line[], '("Main St 1",Berlin,10115,DE)'::order_address,
    fields => jsonb_build_object('coupon', 'SPRING' || :c % 10, 'channel', 'app'));
