-- Poison events: a consumer rejects an event (orders_events_nack); it comes
-- again after a delay, and is parked after max_attempts failures, while its
-- order's later events wait behind it and the other orders' flow on.  A
-- parked event is replayed or discarded.  Several sessions are in
-- test/isolation/specs/poison_events.spec.

\i test/regress/helpers.sql

-- positions as letters: p(n) is the n-th event written here
CREATE FUNCTION p(n integer) RETURNS bigint LANGUAGE sql AS $$
    SELECT position FROM order_events ORDER BY position OFFSET n - 1 LIMIT 1
$$;
CREATE FUNCTION o(n integer) RETURNS uuid LANGUAGE sql AS $$
    SELECT ('a0000000-0000-0000-0000-' || lpad(to_hex(n), 12, '0'))::uuid
$$;
-- what a read returns, as "order:type" in position order
CREATE FUNCTION got(consumer text, n integer DEFAULT 100) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(right(e.order_id::text, 1) || ':' || e.type, ' ' ORDER BY e.position), '')
    FROM orders_events_read(consumer, n) e
$$;
CREATE FUNCTION held(consumer text) RETURNS TABLE (ord text, event text, attempts integer, reason text,
                                                   state text, held_back text) LANGUAGE sql AS $$
    SELECT right(h.order_id::text, 1), h.type || '@v' || h.version, h.attempts, h.reason,
           CASE WHEN h.parked_at IS NOT NULL THEN 'parked'
                WHEN h.retry_at <= now() THEN 'due' ELSE 'waiting' END,
           (SELECT string_agg(e.type, ' ' ORDER BY e.position) FROM order_events e
            WHERE e.position = ANY (h.held_back))
    FROM orders_events_holds(consumer) h
$$;

SELECT orders_events_register('regress_mail', from_start => true);
SELECT count(*) AS added FROM (
    SELECT orders_add('c0000000-0000-0000-0000-0000000000a0', 'EUR', ARRAY[line(1)],
                      ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address, o(n))
    FROM generate_series(1, 3) n) s;
SELECT move(o(1), 'confirmed'), move(o(2), 'confirmed');

-- 1:added 2:added 3:added 1:confirmed 2:confirmed
SELECT got('regress_mail');
-- order 1's first event fails: it is held, and its later event in the read
-- waits behind it
SELECT h.attempts, h.reason, h.parked_at IS NULL AS retried,
       h.retry_at > now() AS later_on, cardinality(h.later) AS waiting
FROM orders_events_nack('regress_mail', p(1), 'mail server down', retry_delay => '1 hour') h;
SELECT * FROM held('regress_mail');
-- listing them only reads: it works in a read-only transaction
BEGIN READ ONLY;
SELECT count(*) AS listed_read_only FROM orders_events_holds('regress_mail');
COMMIT;
-- the rest of the read is handled: acknowledged through its last event
SELECT orders_events_ack('regress_mail', p(5));
-- nothing due yet, nothing new
SELECT got('regress_mail') AS nothing;
-- new events: order 1's wait behind its held one, order 3's flow
SELECT move(o(1), 'shipped'), move(o(3), 'confirmed');
SELECT got('regress_mail') AS order_3_only;
SELECT * FROM held('regress_mail');
SELECT orders_events_ack('regress_mail', p(7));

-- due now: it comes again, with the stream's events, in position order
UPDATE order_event_holds SET retry_at = now() - interval '1 second';  -- as the table owner: tests only
SELECT move(o(2), 'shipped');
SELECT got('regress_mail') AS retried_and_new;
-- it fails again, with max_attempts 2: parked
SELECT h.attempts, h.parked_at IS NOT NULL AS parked, h.retry_at AS no_retry
FROM orders_events_nack('regress_mail', p(1), 'template missing', max_attempts => 2) h;
SELECT orders_events_ack('regress_mail', p(8));
SELECT right(order_id::text, 1) AS ord, type, attempts, reason, held_back = ARRAY[p(4), p(6)] AS held_back
FROM orders_events_parked('regress_mail');
SELECT got('regress_mail') AS parked_stays;

-- replayed: at the next read, its failures counted from zero
SELECT orders_events_replay('regress_mail', p(1));
SELECT * FROM held('regress_mail');
SELECT got('regress_mail') AS replayed;
-- handled: the next event of its order comes, then the one after
SELECT orders_events_ack('regress_mail', p(1));
SELECT * FROM held('regress_mail');
SELECT got('regress_mail') AS next_one;
SELECT orders_events_ack('regress_mail', p(4));
SELECT got('regress_mail') AS last_one;
SELECT orders_events_ack('regress_mail', p(6));
SELECT count(*) AS holds_left FROM held('regress_mail');
-- the order flows again
SELECT move(o(1), 'delivered');
SELECT got('regress_mail') AS flows;
SELECT orders_events_ack('regress_mail', p(9));

-- max_attempts 1: parked at once; discarded, the order flows on
SELECT move(o(2), 'delivered'), move(o(3), 'cancelled');
SELECT got('regress_mail');
SELECT h.attempts, h.parked_at IS NOT NULL AS parked
FROM orders_events_nack('regress_mail', p(10), 'bad address', max_attempts => 1) h;
SELECT orders_events_ack('regress_mail', p(11));
SELECT move(o(2), 'cancelled') AS refused_later;  -- a delivered order cannot be cancelled
SELECT * FROM held('regress_mail');
SELECT orders_events_discard('regress_mail', p(10));
SELECT count(*) AS holds_left FROM held('regress_mail');

-- Rejecting acknowledges the events the read returned before the rejected one.
SELECT count(*) FROM (SELECT orders_add('c0000000-0000-0000-0000-0000000000a0', 'EUR', ARRAY[line(1)],
                                        ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address, o(n))
                      FROM generate_series(4, 6) n) s;
SELECT got('regress_mail');
SELECT (orders_events_nack('regress_mail', p(13), 'no')).attempts;
SELECT got('regress_mail') AS after_the_rejected;
SELECT orders_events_ack('regress_mail', p(14));
SELECT orders_events_discard('regress_mail', p(13));

-- A read of other types passes over a held event: it counts as handled.
SELECT move(o(4), 'confirmed', 'shipped');
SELECT got('regress_mail', 1) AS first;
SELECT (orders_events_nack('regress_mail', p(15), 'later', retry_delay => '0')).attempts;
SELECT string_agg(right(order_id::text, 1) || ':' || type, ' ')
FROM orders_events_read('regress_mail', 10, ARRAY['order_shipped']) AS shipped_only;
SELECT count(*) AS holds_left FROM held('regress_mail');
SELECT orders_events_ack('regress_mail', p(16));

-- Bad calls: each a clear SQLSTATE, and nothing changed.
SELECT move(o(5), 'confirmed');
SELECT got('regress_mail');
SELECT err($$SELECT orders_events_nack('regress_mail', p(17), NULL)$$);
SELECT err($$SELECT orders_events_nack('regress_mail', NULL, 'x')$$);
SELECT err($$SELECT orders_events_nack('regress_mail', p(17), 'x', max_attempts => 0)$$);
SELECT err($$SELECT orders_events_nack('regress_mail', p(17), 'x', retry_delay => '-1 second')$$);
SELECT err($$SELECT orders_events_nack('regress_mail', p(14), 'acknowledged already')$$);
SELECT err($$SELECT orders_events_nack('regress_mail', 999999, 'no such event')$$);
SELECT err($$SELECT orders_events_nack('regress_nobody', p(17), 'x')$$);
SELECT err($$SELECT orders_events_nack(NULL, p(17), 'x')$$);
SELECT err($$SELECT orders_events_replay('regress_mail', p(17))$$);
SELECT err($$SELECT orders_events_discard('regress_mail', NULL)$$);
SELECT * FROM held('regress_mail') AS unchanged;
-- a long reason is kept in part
SELECT (orders_events_nack('regress_mail', p(17), repeat('x', 5000))).attempts;
SELECT length(reason) AS reason_kept FROM orders_events_holds('regress_mail');
-- a held event is rejected once each time it is delivered
SELECT err($$SELECT orders_events_nack('regress_mail', p(17), 'again')$$);
-- the hold is the consumer's: its name must be in it
SELECT err($$SELECT orders_internal.orders_events_hold_store('regress_mail',
               ROW('regress_other', o(1), 1, '{}', 0, NULL, NULL, now(), NULL, false)::order_event_holds)$$);

-- Hostile roles.  A consumer's holds are its owner's: another role can
-- neither see nor change them, and nobody writes the table directly.
CREATE ROLE regress_poison_app;
CREATE ROLE regress_poison_other;
GRANT SELECT ON orders, order_events TO regress_poison_app, regress_poison_other;
GRANT EXECUTE ON FUNCTION orders_events_register(text, boolean), orders_events_read(text, integer),
    orders_events_ack(text, bigint), orders_events_nack(text, bigint, text, integer, interval),
    orders_events_holds(text), orders_events_parked(text), orders_events_replay(text, bigint),
    orders_events_discard(text, bigint)
    TO regress_poison_app, regress_poison_other;
SET ROLE regress_poison_app;
SELECT orders_events_register('regress_app_mail', from_start => true);
SELECT position AS app_pos FROM orders_events_read('regress_app_mail', 1) \gset
SELECT (orders_events_nack('regress_app_mail', :app_pos, 'app says no')).attempts;
SELECT count(*) AS own_holds FROM orders_events_holds('regress_app_mail');
SELECT err($$SELECT * FROM order_event_holds$$);
SELECT err($$DELETE FROM order_event_holds$$);
SET ROLE regress_poison_other;
SELECT err($$SELECT * FROM orders_events_holds('regress_app_mail')$$);
SELECT err($$SELECT orders_events_discard('regress_app_mail', $$ || :app_pos || $$)$$);
SELECT err($$SELECT orders_events_replay('regress_app_mail', $$ || :app_pos || $$)$$);
SELECT err($$SELECT orders_internal.orders_events_hold_store('regress_app_mail',
               ROW('regress_app_mail', o(1), 1, '{}', 0, NULL, NULL, now(), NULL, false)::order_event_holds)$$);
SELECT err($$SELECT orders_events_nack('regress_app_mail', $$ || :app_pos || $$, 'x')$$);
RESET ROLE;
SELECT count(*) AS still_held FROM orders_events_holds('regress_app_mail');
-- the table as the extension made it, or nothing is written to it as its owner
CREATE FUNCTION regress_steal() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER regress_steal BEFORE INSERT ON order_event_holds FOR EACH ROW EXECUTE FUNCTION regress_steal();
SELECT err($$SELECT * FROM orders_events_holds('regress_mail')$$);
SELECT err($$SELECT * FROM orders_events_read('regress_mail', 1)$$);
DROP TRIGGER regress_steal ON order_event_holds;
DROP FUNCTION regress_steal();
SELECT count(*) AS holds FROM orders_events_holds('regress_mail');

-- The purge keeps held events, and everything waiting behind them.
SELECT orders_events_unregister('regress_app_mail');
SELECT move(o(5), 'shipped');
SELECT got('regress_mail') AS waits;
SELECT orders_events_ack('regress_mail', p(18));
SELECT orders_events_purge() AS purged;
SELECT array(SELECT right(order_id::text, 1) || ':' || type FROM order_events ORDER BY position) AS kept;
-- older_than removes old events whatever the holds say; a held event that
-- is gone is passed over, as the stream passes over what it cannot read
SELECT min(position) AS held_pos FROM order_events \gset
SELECT orders_events_purge(older_than => '0') AS purged_old;
SELECT array(SELECT right(order_id::text, 1) || ':' || type FROM order_events ORDER BY position) AS kept;
SELECT orders_events_replay('regress_mail', :held_pos);
SELECT got('regress_mail') AS passed_over;
SELECT count(*) AS holds_left FROM orders_events_holds('regress_mail');

-- unregistering ends the consumer's holds: registered again, it has none
SELECT orders_events_unregister('regress_mail');
SELECT orders_events_register('regress_mail');
SELECT count(*) AS holds FROM orders_events_holds('regress_mail');
SELECT count(*) AS rows_left FROM order_event_holds WHERE consumer = 'regress_mail';

-- A consumer group's reader rejects in the event's part; the part holds it.
SELECT orders_events_register_group('regress_fulfil');
SELECT move(o(6), 'confirmed'), move(o(4), 'delivered');
CREATE TEMP TABLE gr AS SELECT * FROM orders_events_read_group('regress_fulfil', 10);
SELECT string_agg(right(order_id::text, 1) || ':' || type, ' ' ORDER BY position) AS group_read FROM gr;
SELECT min(position) AS g1, max(position) AS g2 FROM gr \gset
SELECT h.attempts, h.order_id = o(6) AS order_6
FROM orders_events_nack_group('regress_fulfil', :g1, 'warehouse offline', retry_delay => '0') h;
SELECT count(*) AS held_in_its_part
FROM orders_events_holds('regress_fulfil/' || orders_event_part(o(6)));
SELECT orders_events_ack_group('regress_fulfil', :g2);
SELECT string_agg(right(order_id::text, 1) || ':' || type, ' ' ORDER BY position) AS retried
FROM orders_events_read_group('regress_fulfil', 10);
SELECT orders_events_ack_group('regress_fulfil', :g1);
SELECT count(*) AS holds_left FROM orders_events_holds('regress_fulfil/' || orders_event_part(o(6)));
SELECT err($$SELECT orders_events_nack_group('regress_fulfil', $$ || :g1 || $$, 'acknowledged')$$);
SELECT err($$SELECT orders_events_nack_group('regress_nogroup', $$ || :g1 || $$, 'x')$$);
SELECT orders_events_leave_group('regress_fulfil');
SELECT orders_events_unregister_group('regress_fulfil');
DROP TABLE gr;

-- A read returns max_events when the batch has them, reading on past the
-- events its holds take: a read that returns fewer has read its batch to
-- the end (a group's acknowledgement through another part's position
-- relies on it).
SELECT orders_events_register('regress_chunks');
SELECT (orders_add('c0000000-0000-0000-0000-0000000000a0', 'EUR', ARRAY[line(1)],
                   ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address, o(7))).version;
SELECT position AS x_added FROM orders_events_read('regress_chunks', 1) \gset
SELECT (orders_events_nack('regress_chunks', :x_added, 'x is poison', retry_delay => '1 hour')).attempts;
SELECT move(o(7), 'confirmed');
SELECT (orders_add('c0000000-0000-0000-0000-0000000000a0', 'EUR', ARRAY[line(1)],
                   ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address, o(8))).version;
SELECT move(o(8), 'confirmed');
SELECT got('regress_chunks', 2) AS two_of_y;
SELECT cardinality(held_back) AS x_waiting FROM orders_events_holds('regress_chunks');
-- a hold's waiting events follow its held one, in order, none null
SELECT err($$SELECT orders_internal.orders_events_hold_store('regress_chunks',
               ROW('regress_chunks', o(7), $$ || :x_added || $$, '{NULL}', 1, NULL, NULL, now(), NULL, false)::order_event_holds)$$);
SELECT err($$SELECT orders_internal.orders_events_hold_store('regress_chunks',
               ROW('regress_chunks', o(7), $$ || :x_added || $$, ARRAY[$$ || :x_added + 5 || $$, $$ || :x_added + 3 || $$]::bigint[], 1, NULL, NULL, now(), NULL, false)::order_event_holds)$$);
SELECT err($$SELECT orders_internal.orders_events_hold_store('regress_chunks',
               ROW('regress_chunks', o(7), $$ || :x_added || $$, NULL, 1, NULL, NULL, now(), NULL, false)::order_event_holds)$$);
SELECT err($$SELECT orders_internal.orders_events_hold_store('regress_chunks',
               ROW('regress_chunks', o(7), $$ || :x_added || $$, '{{1000},{1001}}', 1, NULL, NULL, now(), NULL, false)::order_event_holds)$$);
SELECT err($$SELECT orders_internal.orders_events_hold_store('regress_chunks',
               ROW('regress_chunks', o(7), $$ || :x_added || $$, '[0:1]={1000,1001}', 1, NULL, NULL, now(), NULL, false)::order_event_holds)$$);
-- the wait after a failure is at most a year, whatever the delay asked
SELECT h.retry_at BETWEEN now() + interval '364 days' AND now() + interval '366 days' AS a_year
FROM orders_events_nack('regress_chunks', (SELECT min(position) FROM order_events WHERE order_id = o(8)),
                        'y too', retry_delay => '1000000 years') h;
SELECT orders_events_unregister('regress_chunks');

-- Acknowledging handles only the held events the last read returned: one
-- that an earlier read returned, before the reader restarted, is not
-- handled by an acknowledgement past it.
SELECT orders_events_register('regress_stale');
SELECT count(*) FROM (SELECT orders_add('c0000000-0000-0000-0000-0000000000a0', 'EUR', id => o(n))
                      FROM generate_series(9, 10) n) s;
CREATE TEMP TABLE st AS SELECT * FROM orders_events_read('regress_stale', 10);
SELECT min(position) AS s1, max(position) AS s2 FROM st \gset
SELECT (orders_events_nack('regress_stale', :s1, 'no', retry_delay => '0')).attempts,
       (orders_events_nack('regress_stale', :s2, 'no', retry_delay => '0')).attempts;
SELECT count(*) AS both_come_again FROM orders_events_read('regress_stale', 10);
SELECT count(*) AS after_a_restart FROM orders_events_read('regress_stale', 1);
SELECT orders_events_ack('regress_stale', :s2);
SELECT right(order_id::text, 1) AS still_held FROM orders_events_holds('regress_stale');
SELECT orders_events_unregister('regress_stale');
DROP TABLE st;

DROP OWNED BY regress_poison_app, regress_poison_other;
DROP ROLE regress_poison_app, regress_poison_other;
DROP FUNCTION p(integer), o(integer), got(text, integer), held(text);
\i test/regress/cleanup.sql
