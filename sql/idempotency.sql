-- Idempotent retries: under orders.idempotency_key, a retried transaction
-- gets what its calls returned the first time and writes nothing; another
-- request under the same key is an error; records expire.

\i test/regress/helpers.sql

CREATE ROLE regress_idem_app;
GRANT EXECUTE ON FUNCTION orders_add(uuid, text, order_line[], order_address, uuid, jsonb),
    orders_save(orders), orders_remove(uuid, integer), orders_add_many(jsonb) TO regress_idem_app;
GRANT SELECT ON orders, order_events, stored TO regress_idem_app;
SET ROLE regress_idem_app;

-- A transaction of two calls under a key: an add (its id generated) and a save.
BEGIN;
SET LOCAL orders.idempotency_key = 'checkout-1';
SELECT id AS first_id, version FROM orders_add('c0000000-0000-0000-0000-000000000090', 'EUR',
    ARRAY[line(1)], ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address) \gset
SELECT status, version FROM orders_save(jsonb_populate_record(cur(:'first_id'), '{"status": "confirmed"}'));
COMMIT;
SELECT * FROM stored \gset before_
-- The retry (the client never saw the commit), on a new connection: the
-- same rows, nothing written.
\c
SET ROLE regress_idem_app;
BEGIN;
SET LOCAL orders.idempotency_key = 'checkout-1';
SELECT id = :'first_id' AS same_id, status, version FROM orders_add('c0000000-0000-0000-0000-000000000090', 'EUR',
    ARRAY[line(1)], ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address);
-- the save it repeats is the one it made: the order as read then, at version 1
SELECT status, version FROM orders_save(jsonb_populate_record(
    (SELECT o FROM orders_get(:'first_id') o), '{"status": "confirmed", "version": 1}'));
COMMIT;
SELECT orders = :before_orders AND events = :before_events AS nothing_written FROM stored;

-- Another request under a recorded key: an error, and nothing written.
\c
SET ROLE regress_idem_app;
BEGIN;
SET LOCAL orders.idempotency_key = 'checkout-1';
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-000000000090', 'USD')$$);
ROLLBACK;
\set VERBOSITY default
\c
SET ROLE regress_idem_app;
BEGIN;
SET LOCAL orders.idempotency_key = 'checkout-1';
SELECT id = :'first_id' AS same_id FROM orders_add('c0000000-0000-0000-0000-000000000090', 'EUR',
    ARRAY[line(1)], ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address);
SELECT orders_remove(:'first_id');
ROLLBACK;
\set VERBOSITY terse
SELECT orders = :before_orders AND events = :before_events AS nothing_written FROM stored;

-- A first attempt that rolled back left no record: the retry writes.
BEGIN;
SET LOCAL orders.idempotency_key = 'checkout-2';
SELECT (orders_add('c0000000-0000-0000-0000-000000000090', 'EUR', id => 'a0000000-0000-0000-0000-000000000091')).version;
ROLLBACK;
BEGIN;
SET LOCAL orders.idempotency_key = 'checkout-2';
SELECT (orders_add('c0000000-0000-0000-0000-000000000090', 'EUR', id => 'a0000000-0000-0000-0000-000000000091')).version;
COMMIT;
SELECT count(*) AS added_once FROM order_events WHERE order_id = 'a0000000-0000-0000-0000-000000000091';

-- A remove retried: the removed order again, not "does not exist".
BEGIN;
SET LOCAL orders.idempotency_key = 'remove-91';
SELECT id, version FROM orders_remove('a0000000-0000-0000-0000-000000000091');
COMMIT;
\c
SET ROLE regress_idem_app;
BEGIN;
SET LOCAL orders.idempotency_key = 'remove-91';
SELECT id, version FROM orders_remove('a0000000-0000-0000-0000-000000000091');
COMMIT;
SELECT count(*) AS removed_once FROM order_events
WHERE order_id = 'a0000000-0000-0000-0000-000000000091' AND type = 'order_removed';

-- Keys are each role's own: another role's checkout-1 is a new request.
\c
BEGIN;
SET LOCAL orders.idempotency_key = 'checkout-1';
SELECT id <> :'first_id' AS new_order FROM orders_add('c0000000-0000-0000-0000-000000000090', 'USD');
ROLLBACK;
SET ROLE regress_idem_app;

-- Without a key nothing is recorded; a key too long is refused.
BEGIN;
SELECT set_config('orders.idempotency_key', repeat('k', 256), true) IS NOT NULL AS set;
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-000000000090', 'EUR')$$);
ROLLBACK;
-- orders_add_many does not take one
BEGIN;
SET LOCAL orders.idempotency_key = 'bulk-1';
SELECT err($$SELECT orders_add_many('[]')$$);
ROLLBACK;

-- A key left set for the session (SET, not SET LOCAL) would make every
-- later transaction a replay: the second transaction under it is refused.
SET orders.idempotency_key = 'session-wide';
SELECT (orders_add('c0000000-0000-0000-0000-000000000090', 'EUR')).version AS first_transaction;
SELECT err($$SELECT orders_add('c0000000-0000-0000-0000-000000000090', 'EUR')$$);
RESET orders.idempotency_key;

-- A retry on the same connection (a pooler gave it back after a COMMIT
-- whose answer was lost) sets the key itself: it is a retry, and replays.
BEGIN;
SET LOCAL orders.idempotency_key = 'same-backend';
SELECT (orders_add('c0000000-0000-0000-0000-000000000090', 'EUR', id => 'a0000000-0000-0000-0000-000000000094')).version;
COMMIT;
BEGIN;
SET LOCAL orders.idempotency_key = 'same-backend';
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000090', 'EUR', id => 'a0000000-0000-0000-0000-000000000094');
COMMIT;

-- A call in a savepoint rolled back takes its place back: the place is the
-- call's among those that stayed.
BEGIN;
SAVEPOINT s;
SET LOCAL orders.idempotency_key = 'savepoints';
SAVEPOINT inner_s;
SELECT (orders_add('c0000000-0000-0000-0000-000000000090', 'EUR', id => 'a0000000-0000-0000-0000-000000000092')).version;
RELEASE SAVEPOINT inner_s;
ROLLBACK TO SAVEPOINT s;
SET LOCAL orders.idempotency_key = 'savepoints';
SELECT (orders_add('c0000000-0000-0000-0000-000000000090', 'EUR', id => 'a0000000-0000-0000-0000-000000000093')).version;
COMMIT;
\c
SET ROLE regress_idem_app;
BEGIN;
SET LOCAL orders.idempotency_key = 'savepoints';
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000090', 'EUR', id => 'a0000000-0000-0000-0000-000000000093');
COMMIT;

-- Records expire: after orders.idempotency_ttl the key is new again.
BEGIN;
SET LOCAL orders.idempotency_key = 'short-lived';
SET LOCAL orders.idempotency_ttl = '1s';
SELECT id AS short_id FROM orders_add('c0000000-0000-0000-0000-000000000090', 'EUR') \gset
COMMIT;
SELECT pg_sleep(1.2);
\c
SET ROLE regress_idem_app;
BEGIN;
SET LOCAL orders.idempotency_key = 'short-lived';
SELECT id <> :'short_id' AS written_again FROM orders_add('c0000000-0000-0000-0000-000000000090', 'EUR');
COMMIT;
RESET ROLE;

-- The records: the role's, by call, none readable by the role itself.
SELECT owner, key, call, function, length(request) AS hash_bytes, result ? 'id' AS has_result,
       expires_at > recorded_at AS expires_later
FROM order_idempotency ORDER BY key, call;
SET ROLE regress_idem_app;
SELECT err($$SELECT count(*) FROM order_idempotency$$);
SELECT err($$SELECT orders_idempotency_purge()$$);
RESET ROLE;
UPDATE order_idempotency SET expires_at = now() - interval '1 second' WHERE key = 'checkout-2';
SELECT orders_idempotency_purge() AS purged;
SELECT count(*) AS left_ FROM order_idempotency WHERE key = 'checkout-2';

DELETE FROM order_idempotency;
REVOKE ALL ON FUNCTION orders_add(uuid, text, order_line[], order_address, uuid, jsonb),
    orders_save(orders), orders_remove(uuid, integer), orders_add_many(jsonb) FROM regress_idem_app;
REVOKE SELECT ON orders, order_events, stored FROM regress_idem_app;
DROP ROLE regress_idem_app;

\i test/regress/cleanup.sql
