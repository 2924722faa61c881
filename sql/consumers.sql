-- Named consumers of the outbox: register, read, acknowledge, lag, retention;
-- orders.notify; two-phase commit.

\i test/regress/helpers.sql

-- events from before any consumer: one registered from the start reads them
SELECT count(*) FROM (SELECT orders_add('c0000000-0000-0000-0000-000000000060', 'EUR')
                      FROM generate_series(1, 3)) s;

SELECT orders_events_register('billing'), orders_events_register('billing') AS again,
       orders_events_register('audit', from_start => true);
SELECT err($$SELECT orders_events_register('')$$);
SELECT err($$SELECT orders_events_register(NULL)$$);
SELECT err($$SELECT * FROM orders_events_read('nobody')$$);
SELECT err($$SELECT orders_events_ack('nobody', 1)$$);
SELECT err($$SELECT * FROM orders_events_read('billing', 0)$$);
SELECT err($$SELECT orders_events_ack('billing', NULL)$$);

-- 'billing' starts from now: it has nothing yet; 'audit' has every event kept
SELECT count(*) AS billing_first FROM orders_events_read('billing');
SELECT count(*) = (SELECT count(*) FROM order_events) AS audit_has_all
FROM orders_events_read('audit', 100000);

SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000060', 'EUR', ARRAY[line(1)],
                          id => 'a0000000-0000-0000-0000-000000000060');
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000060', 'EUR', ARRAY[line(1)],
                          id => 'a0000000-0000-0000-0000-000000000061');
SELECT status FROM orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000060'),
                                                     '{"status": "cancelled"}'));
SELECT min(position) - 1 AS p FROM order_events WHERE order_id = 'a0000000-0000-0000-0000-000000000060' \gset

-- reading in position order, a batch at a time; what is not acknowledged comes again
SELECT position - :p AS pos, type, order_id, version FROM orders_events_read('billing', 2);
SELECT position - :p AS pos, type FROM orders_events_read('billing', 2);
SELECT name, pending FROM orders_events_consumers() WHERE name = 'billing';
SELECT orders_events_ack('billing', :p + 1);
SELECT position - :p AS pos, type FROM orders_events_read('billing', 2);
SELECT name, pending FROM orders_events_consumers() WHERE name = 'billing';
SELECT orders_events_ack('billing', :p + 3);
SELECT name, pending, lag IS NULL AS no_lag FROM orders_events_consumers() WHERE name = 'billing';
SELECT count(*) AS nothing_more FROM orders_events_read('billing');
-- acknowledging again, or with nothing read, is harmless
SELECT orders_events_ack('billing', :p + 3);
SELECT count(*) AS still_nothing FROM orders_events_read('billing');

-- retention: only what every consumer has acknowledged goes
SELECT count(*) AS audit_pending FROM orders_events_read('audit', 100000);
SELECT orders_events_purge() AS purged_while_audit_behind;
SELECT orders_events_ack('audit', (SELECT max(position) FROM order_events));
SELECT orders_events_purge() > 0 AS purged_once_all_acknowledged;
SELECT count(*) AS events_left FROM order_events;
-- older_than: events older than the given age go whoever has not read them
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000060', 'EUR',
                          id => 'a0000000-0000-0000-0000-000000000062');
SELECT orders_events_purge(older_than => '1 hour') AS purged_young;
SELECT orders_events_purge(older_than => '-1 hour') AS purged_all;
SELECT count(*) AS events_left FROM order_events;
SELECT count(*) AS billing_finds_nothing FROM orders_events_read('billing');

-- a batch is opened by reading; opening another over it, or acknowledging
-- one never opened, is refused rather than moving the checkpoint
SELECT err($$SELECT orders_internal.orders_events_open_batch('billing')$$);
SELECT err($$SELECT orders_internal.orders_events_advance('audit', 0, true)$$);

SELECT orders_events_unregister('audit'), orders_events_unregister('audit') AS again;
SELECT name FROM orders_events_consumers();

-- orders.notify: a setting of ours, on by default
SHOW orders.notify;
SET orders.notify = off;
SHOW orders.notify;
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000060', 'EUR',
                          id => 'a0000000-0000-0000-0000-000000000063');
SELECT type FROM order_events WHERE order_id = 'a0000000-0000-0000-0000-000000000063';
RESET orders.notify;
SELECT err($$SET orders.notify = maybe$$);
SELECT err($$SET orders.notfy = off$$);

-- relay needs the library in shared_preload_libraries, which this server
-- does not have: refused, and the mode stays
SELECT err($$SET orders.notify = relay$$);
SHOW orders.notify;
-- modes switch within a session; only relay marks events for the relay worker
SET orders.notify = off;
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000060', 'EUR',
                          id => 'a0000000-0000-0000-0000-000000000068');
SET orders.notify = on;
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000060', 'EUR',
                          id => 'a0000000-0000-0000-0000-000000000069');
RESET orders.notify;
SELECT order_id, type, relay FROM order_events
WHERE order_id IN ('a0000000-0000-0000-0000-000000000068', 'a0000000-0000-0000-0000-000000000069')
ORDER BY position;

-- two-phase commit: with orders.notify = off, the event becomes readable at
-- COMMIT PREPARED, not before
SELECT order_id, type FROM orders_events_read('billing');
SELECT orders_events_ack('billing', (SELECT max(position) FROM order_events));
BEGIN;
SET LOCAL orders.notify = off;
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000060', 'EUR',
                          id => 'a0000000-0000-0000-0000-000000000064');
PREPARE TRANSACTION 'orders_2pc';
SELECT order_id, type FROM orders_events_read('billing');
COMMIT PREPARED 'orders_2pc';
SELECT order_id, type FROM orders_events_read('billing');
SELECT orders_events_ack('billing', (SELECT max(position) FROM order_events));
SELECT id FROM orders_get('a0000000-0000-0000-0000-000000000064');
-- with orders.notify = on, PREPARE says what to do, and nothing is kept
BEGIN;
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000060', 'EUR',
                          id => 'a0000000-0000-0000-0000-000000000065');
PREPARE TRANSACTION 'orders_2pc_on';
SELECT count(*) FROM orders_get('a0000000-0000-0000-0000-000000000065');
-- a notification taken back by a savepoint does not stand in the way
BEGIN;
SAVEPOINT s;
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000060', 'EUR',
                          id => 'a0000000-0000-0000-0000-000000000066');
ROLLBACK TO SAVEPOINT s;
PREPARE TRANSACTION 'orders_2pc_savepoint';
ROLLBACK PREPARED 'orders_2pc_savepoint';
-- ... but one kept by a released savepoint does
BEGIN;
SAVEPOINT s;
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000060', 'EUR',
                          id => 'a0000000-0000-0000-0000-000000000067');
RELEASE SAVEPOINT s;
PREPARE TRANSACTION 'orders_2pc_released';
SELECT count(*) FROM pg_prepared_xacts;

\i test/regress/cleanup.sql
