-- Adoption: an outbox and checkpoints from another cluster (a restore, a
-- pg_upgrade, a logical replica promoted) are made this cluster's, every
-- checkpoint re-expressed in positions, exactly.  Here "another cluster" is
-- a system identifier written over the origin's, as the superuser may:
-- the conversion does not depend on where the ids came from.  The real
-- operations, with transaction counters pushed apart, are in test/t/
-- (021 restore, 022 logical switchover, 023 failover, 024 pg_upgrade).

\i test/regress/helpers.sql

CREATE FUNCTION o(n integer) RETURNS uuid LANGUAGE sql AS $$
    SELECT ('a0000000-0000-0000-0000-' || lpad(to_hex(n), 12, '0'))::uuid
$$;
CREATE FUNCTION add(n integer) RETURNS bigint LANGUAGE sql AS $$
    SELECT (orders_add('c0000000-0000-0000-0000-0000000000a0', 'EUR', ARRAY[line(1)],
                       ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address, o(n))).version::bigint
$$;
-- what a read returns, as positions in order
CREATE FUNCTION got(consumer text, n integer DEFAULT 100, types text[] DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(e.position::text, ' ' ORDER BY e.position), '')
    FROM orders_events_read(consumer, n, coalesce(types, orders_event_types())) e
$$;
CREATE VIEW carried AS
SELECT name, settled_position, carried_after, carried, batch_snapshot IS NOT NULL AS batch_open,
       acked_top_position
FROM order_event_consumers ORDER BY name;

-- A database used since 1.10 records the cluster at its first use, and
-- nothing was ever settled.
SELECT count(*) AS origin_rows FROM order_events_origin;
SELECT orders_events_register('plain');
SELECT system_identifier = (SELECT system_identifier FROM pg_control_system()) AS this_cluster,
       settled_position, adopted_at IS NULL AS never_adopted
FROM order_events_origin;
SELECT * FROM orders_adopt();

SELECT orders_events_register('from_start', from_start => true);
SELECT orders_events_register('open_batch');
SELECT orders_events_register('typed');
SELECT orders_events_register('idle');

-- positions 1 to 3, then 4 in a transaction that stays open (prepared)
-- while the checkpoints below are taken, then 5 to 6
SELECT add(n) FROM generate_series(1, 3) n;
BEGIN;
SET LOCAL orders.notify = off;
SELECT add(4);
PREPARE TRANSACTION 'regress_late';
SELECT add(n) FROM generate_series(5, 6) n;

-- plain: everything committed, acknowledged: 4 is not in its checkpoint
SELECT got('plain');
SELECT orders_events_ack('plain', 6);
SELECT got('plain');
-- open_batch: reads 1 to 5 (4 is not committed), acknowledges through 2
SELECT got('open_batch', 3);
SELECT orders_events_ack('open_batch', 2);
-- typed: only confirmations, of which there is none yet: its batch ends
SELECT got('typed', 10, ARRAY['order_confirmed']);
COMMIT PREPARED 'regress_late';
SELECT move(o(1), 'confirmed');                           -- position 7

-- The data now belongs to another cluster, as after a restore there.
UPDATE order_events_origin SET system_identifier = 42;
-- a purge before the adoption judges the checkpoints with the events they
-- came with, and keeps what a consumer has not acknowledged
SELECT orders_events_purge() AS purged;
-- the first write or consumer call adopts; a DBA can choose the moment
SELECT adopted, previous_system_identifier, settled_position, consumers FROM orders_adopt();
SELECT * FROM order_events_origin \gset origin_
SELECT :'origin_system_identifier' = (SELECT system_identifier::text FROM pg_control_system()) AS this_cluster,
       :origin_settled_position AS settled, :'origin_adopted_from' AS adopted_from;
-- plain carries 4 and 7 (after 6, and 4); open_batch 3 to 7; typed, whose
-- batch was still open (a batch that returns nothing ends at the next
-- read), from_start and idle everything
SELECT * FROM carried;
SELECT position FROM order_events ORDER BY position;
-- done already
SELECT * FROM orders_adopt();

-- positions 8 and 9, written here
SELECT add(n) FROM generate_series(8, 9) n;
-- each reads what it had not acknowledged, then what was written since
SELECT got('plain');
SELECT got('plain');
SELECT orders_events_ack('plain', 9);
SELECT got('plain');
SELECT got('open_batch', 2);
SELECT orders_events_ack('open_batch', 4);
SELECT got('open_batch');
SELECT orders_events_ack('open_batch', 9);
SELECT got('typed', 10, ARRAY['order_confirmed']);
SELECT got('from_start');
-- a consumer registered now starts after everything; from the start, it
-- gets the settled events too
SELECT orders_events_register('late_from_now');
SELECT orders_events_register('late_from_start', from_start => true);
SELECT add(10);
SELECT got('late_from_now');
SELECT got('late_from_start');
SELECT * FROM carried;
-- monitoring counts what idle carries
SELECT name, pending FROM orders_events_consumers() WHERE name IN ('idle', 'plain') ORDER BY name;

-- The purge keeps what a consumer carries: idle's, until it reads them.
SELECT orders_events_purge() > 0 AS purged_some;
SELECT string_agg(position::text, ' ' ORDER BY position) AS kept FROM order_events;
SELECT got('idle');
SELECT orders_events_ack('idle', 10);
SELECT orders_events_unregister(name) FROM order_event_consumers
WHERE name NOT IN ('idle', 'plain') ORDER BY name;
SELECT got('plain');
SELECT orders_events_ack('plain', 10);
SELECT orders_events_purge() AS purged;
SELECT count(*) AS left_over FROM order_events;

-- A second adoption, after more writes: the first one's settled events are
-- judged by position again, never by their transaction.
SELECT add(11);
SELECT got('idle');
UPDATE order_events_origin SET system_identifier = 43;
SELECT adopted, previous_system_identifier, settled_position, consumers FROM orders_adopt();
SELECT * FROM carried;
SELECT got('idle');
SELECT orders_events_ack('idle', 11);
SELECT got('idle');

-- A consumer that has read nothing since an adoption keeps what it carries
-- as a range through the next one (not a list of every position), and one
-- halfway through its carried events goes on from where it acknowledged.
SELECT orders_events_register('regress_slow', from_start => true);
SELECT orders_events_register('regress_half', from_start => true);
SELECT got('regress_half', 1);
SELECT orders_events_ack('regress_half', 11);
SELECT add(n) FROM generate_series(13, 14) n;
UPDATE order_events_origin SET system_identifier = 44;
SELECT adopted, settled_position FROM orders_adopt();
SELECT * FROM carried WHERE name LIKE 'regress_%';
SELECT got('regress_slow');
SELECT got('regress_half');
SELECT orders_events_unregister('regress_slow'), orders_events_unregister('regress_half');

-- A database with events and checkpoints but no origin (a dump of 1.9
-- restored, a replica whose origin table was not published) is adopted.
DELETE FROM order_events_origin;
SELECT add(12);
SELECT adopted, previous_system_identifier IS NULL AS unknown_origin FROM orders_adopt();
SELECT got('idle');

-- Bad reads: a list of types of more than one dimension is 22023, as the
-- other bad arguments are.
SELECT err($$SELECT * FROM orders_events_read('idle', 10, '{{order_added}}')$$);
SELECT orders_events_register_group('regress_group');
SELECT err($$SELECT * FROM orders_events_read_group('regress_group', 10, '{{order_added}}')$$);
SELECT orders_events_leave_group('regress_group');
SELECT orders_events_unregister_group('regress_group');

-- Nobody but the extension writes the origin.
CREATE ROLE regress_adopt_app;
SET ROLE regress_adopt_app;
SELECT err($$UPDATE order_events_origin SET system_identifier = 1$$);
SELECT err($$SELECT * FROM order_events_origin$$);
SELECT err($$SELECT * FROM orders_adopt()$$);
RESET ROLE;
DROP ROLE regress_adopt_app;

SELECT orders_events_unregister(name) FROM order_event_consumers ORDER BY name;
DROP VIEW carried;
DROP FUNCTION add(integer), got(text, integer, text[]), o(integer);
\i test/regress/cleanup.sql
