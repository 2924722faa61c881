\pset footer off
\set VERBOSITY default

\echo '-- add an order: checked in C, stored as one row, event in the same transaction'
SELECT id, status, total, version
FROM orders_add(customer_id => '7c6d3c2e-1f1a-4e55-9d0a-3b8f1e2a9c01', currency => 'EUR',
                lines => ARRAY[ROW('0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b', 'Green tea', 2, 450)::order_line,
                               ROW('1c2f5a6b-7d8e-4f9a-8b1c-2d3e4f5a6b7c', 'Teapot', 1, 3900)::order_line],
                shipping_address => ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address,
                id => '01930000-0000-7000-8000-000000000001');

\echo '-- get it back, whole'
\x on
SELECT * FROM orders_get('01930000-0000-7000-8000-000000000001');
\x off

\echo '-- a second order, with a generated time-ordered id (UUIDv7)'
SELECT id, status, total FROM orders_add('7c6d3c2e-1f1a-4e55-9d0a-3b8f1e2a9c01', 'USD',
    ARRAY[ROW('2d3a6b7c-8e9f-4a0b-9c2d-3e4f5a6b7c8d', 'Mug', 4, 1250)::order_line]);

\echo '-- a broken invariant: nothing stored, nothing heard'
SELECT * FROM orders_add('7c6d3c2e-1f1a-4e55-9d0a-3b8f1e2a9c01', 'eur');
SELECT * FROM orders_add('7c6d3c2e-1f1a-4e55-9d0a-3b8f1e2a9c01', 'EUR',
    ARRAY[ROW('0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b', 'Green tea', 0, 450)::order_line]);

\echo '-- a rolled-back add: nothing stored, nothing heard'
BEGIN;
SELECT id FROM orders_add('7c6d3c2e-1f1a-4e55-9d0a-3b8f1e2a9c01', 'EUR');
ROLLBACK;

\echo '-- remove the first order, expecting version 1'
SELECT id, status, version FROM orders_remove('01930000-0000-7000-8000-000000000001', expected_version => 1);

\echo '-- the outbox: one row per committed event (position 3 went to the rolled-back add)'
SELECT position, type, order_id, version, payload->>'total' AS total FROM order_events ORDER BY position;
