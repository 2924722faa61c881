-- orders_save: optimistic concurrency, every lifecycle rule (pass and fail),
-- the events each kind of change emits, and the save that changes nothing.

\i test/regress/helpers.sql

SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000040', 'EUR', ARRAY[line(1, 500)],
                          id => 'a0000000-0000-0000-0000-000000000050');

-- save_err(o): orders_save(o), as err() reports it
CREATE FUNCTION save_err(o orders) RETURNS text LANGUAGE sql AS $$
    SELECT err(format('SELECT orders_save(%L::orders)', o))
$$;

-- a save that changes nothing: the stored order back, same version, no event
SELECT max(position) AS p FROM order_events \gset
SELECT id, status, version, updated_at = created_at AS untouched
FROM orders_save(cur('a0000000-0000-0000-0000-000000000050'));
-- derived fields the caller passes are ignored: they change nothing either
SELECT id, version, total, created_at <> '2000-01-01' AS created_kept
FROM orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000050'),
     '{"total": 1, "created_at": "2000-01-01T00:00:00Z", "updated_at": "2000-01-01T00:00:00Z"}'));
SELECT count(*) AS new_events FROM order_events WHERE position > :p;

-- changing the lines: version 2, total recomputed, order_lines_changed
SELECT id, status, version, total, lines
FROM orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000050'),
     jsonb_build_object('lines', jsonb_build_array(to_jsonb(line(1, 500, 3)), to_jsonb(line(2, 25))),
                        'total', 7)));
SELECT position > :p AS new, type, version, payload FROM events_of
WHERE order_id = 'a0000000-0000-0000-0000-000000000050' ORDER BY position;

-- a stale version: 40001, nothing stored or emitted
SELECT * FROM stored \gset before_
SELECT save_err(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000050'),
                '{"version": 1, "status": "cancelled"}'));
SELECT s.orders - :before_orders AS orders_delta, s.events - :before_events AS events_delta,
       (SELECT status FROM orders WHERE id = 'a0000000-0000-0000-0000-000000000050')
FROM stored s;

-- order_ready_to_confirm: no address, or no lines
SELECT save_err(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000050'),
                '{"status": "confirmed"}'));
SELECT save_err(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000050'),
                '{"status": "confirmed", "lines": [],
                  "shipping_address": {"street": "Main St 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}}'));

-- one save that changes lines, address and status: three events, in the
-- contract's order, one new version
SELECT id, status, version, total
FROM orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000050'),
     jsonb_build_object('status', 'confirmed', 'lines', jsonb_build_array(to_jsonb(line(1, 500, 4))),
                        'shipping_address', to_jsonb(ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address))));
SELECT type, version, payload FROM events_of
WHERE order_id = 'a0000000-0000-0000-0000-000000000050' AND version = 3 ORDER BY position;

-- confirmed: the lines are frozen, the address is not
SELECT save_err(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000050'),
                jsonb_build_object('lines', jsonb_build_array(to_jsonb(line(1, 500, 5))))));
SELECT id, status, version, shipping_address
FROM orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000050'),
     '{"shipping_address": {"street": "Side St 2", "city": "Berlin", "postal_code": "10117", "country": "DE"}}'));
SELECT type, version, payload FROM events_of
WHERE order_id = 'a0000000-0000-0000-0000-000000000050' AND version = 4;
-- ... nor can it lose its address or lines while confirmed
SELECT save_err(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000050'),
                '{"shipping_address": null}'));

-- order_status_transition: no skipping, no going back
SELECT save_err(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000050'), jsonb_build_object('status', s)))
FROM unnest(ARRAY['pending', 'delivered']) s;
SELECT move('a0000000-0000-0000-0000-000000000050', 'shipped');
-- shipped: address frozen too, and no cancelling
SELECT save_err(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000050'),
                '{"shipping_address": {"street": "Elsewhere 3", "city": "Berlin", "postal_code": "10117", "country": "DE"}}'));
SELECT save_err(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000050'), jsonb_build_object('status', s)))
FROM unnest(ARRAY['pending', 'confirmed', 'cancelled']) s;
SELECT move('a0000000-0000-0000-0000-000000000050', 'delivered');
-- delivered is final; saving it unchanged is still fine
SELECT save_err(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000050'), jsonb_build_object('status', s)))
FROM unnest(ARRAY['pending', 'confirmed', 'shipped', 'cancelled']) s;
SELECT status, version FROM orders_save(cur('a0000000-0000-0000-0000-000000000050'));
SELECT type, version, payload FROM events_of
WHERE order_id = 'a0000000-0000-0000-0000-000000000050' ORDER BY position;

-- cancelling: from pending (even empty) and from confirmed; cancelled is final
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000040', 'EUR',
                          id => 'a0000000-0000-0000-0000-000000000051');
SELECT move('a0000000-0000-0000-0000-000000000051', 'cancelled');
SELECT save_err(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000051'), jsonb_build_object('status', s)))
FROM unnest(ARRAY['pending', 'confirmed']) s;
SELECT save_err(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000051'),
                jsonb_build_object('lines', jsonb_build_array(to_jsonb(line(1))))));
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000040', 'EUR', ARRAY[line(1)],
                          ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address,
                          id => 'a0000000-0000-0000-0000-000000000052');
SELECT move('a0000000-0000-0000-0000-000000000052', 'confirmed', 'cancelled');
SELECT type, version, payload FROM events_of
WHERE order_id = 'a0000000-0000-0000-0000-000000000052' ORDER BY position;

-- order_immutable_fields; id, version and status must be given
SELECT save_err(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000051'), p::jsonb))
FROM unnest(ARRAY['{"customer_id": "c0000000-0000-0000-0000-0000000000ff"}',
                  '{"currency": "USD"}',
                  '{"id": null}',
                  '{"version": null}',
                  '{"status": null}',
                  '{"customer_id": null}',
                  '{"currency": null}',
                  '{"lines": null}']) p;
SELECT err($$SELECT orders_save(NULL)$$);
SELECT err($$SELECT orders_save(NULL::orders)$$);
-- a missing order: P0002
SELECT save_err(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000051'),
                '{"id": "a0000000-0000-0000-0000-00000000dead"}'));

-- every add-time invariant holds for the lines and address a save brings
SELECT save_err(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000053'), p))
FROM (SELECT orders_add('c0000000-0000-0000-0000-000000000040', 'EUR',
                        id => 'a0000000-0000-0000-0000-000000000053')) add,
     unnest(ARRAY[jsonb_build_object('lines', jsonb_build_array(to_jsonb(line(1, 1, 0)))),
                  jsonb_build_object('lines', jsonb_build_array(to_jsonb(line(1, -1)))),
                  jsonb_build_object('lines', jsonb_build_array(to_jsonb(line(1)), to_jsonb(line(1)))),
                  jsonb_build_object('lines', jsonb_build_array(to_jsonb(ROW('00000000-0000-0000-0000-000000000001', '', 1, 1)::order_line))),
                  jsonb_build_object('lines', (SELECT jsonb_agg(to_jsonb(line(n))) FROM generate_series(1, 1001) n)),
                  jsonb_build_object('lines', jsonb_build_array(to_jsonb(line(1)), NULL)),
                  '{"currency": "EURO"}'::jsonb,
                  '{"shipping_address": {"street": "Main St 1", "city": "Berlin", "postal_code": "10115", "country": "de"}}',
                  '{"shipping_address": {"street": "Main St 1", "city": null, "postal_code": "10115", "country": "DE"}}']) p;
SELECT version FROM orders WHERE id = 'a0000000-0000-0000-0000-000000000053';

-- dropping the address while pending is a change of address
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000040', 'EUR', '{}',
                          ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address,
                          id => 'a0000000-0000-0000-0000-000000000054');
SELECT shipping_address IS NULL AS dropped, version
FROM orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000054'), '{"shipping_address": null}'));
SELECT type, version, payload FROM events_of
WHERE order_id = 'a0000000-0000-0000-0000-000000000054' ORDER BY position;
-- the same lines in another order are a change; the same values are not
SELECT version FROM orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000054'),
    jsonb_build_object('lines', jsonb_build_array(to_jsonb(line(1)), to_jsonb(line(2))))));
SELECT version FROM orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000054'),
    jsonb_build_object('lines', jsonb_build_array(to_jsonb(line(1)), to_jsonb(line(2))))));
SELECT version FROM orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000054'),
    jsonb_build_object('lines', jsonb_build_array(to_jsonb(line(2)), to_jsonb(line(1))))));

-- a rolled-back save leaves the order and the outbox as they were
SELECT max(position) AS p FROM order_events \gset
BEGIN;
SELECT status, version FROM orders_save(jsonb_populate_record(cur('a0000000-0000-0000-0000-000000000054'), '{"status": "cancelled"}'));
ROLLBACK;
SELECT status, version FROM orders_get('a0000000-0000-0000-0000-000000000054');
SELECT count(*) AS new_events FROM order_events WHERE position > :p;

-- removal after saves: its event's version is one past the last
SELECT version FROM orders_remove('a0000000-0000-0000-0000-000000000054', 4);
SELECT type, version FROM events_of
WHERE order_id = 'a0000000-0000-0000-0000-000000000054' ORDER BY position DESC LIMIT 1;

-- a big order: saving a status change keeps the 1000 lines as they are
SELECT id FROM orders_add('c0000000-0000-0000-0000-000000000040', 'EUR',
                          (SELECT array_agg(line(n, n * 10, n) ORDER BY n) FROM generate_series(1, 1000) n),
                          id => 'a0000000-0000-0000-0000-000000001000');
SELECT version, cardinality(lines) FROM orders_save(jsonb_populate_record(
    cur('a0000000-0000-0000-0000-000000001000'), '{"status": "cancelled"}'));
SELECT lines = (SELECT array_agg(line(n, n * 10, n) ORDER BY n) FROM generate_series(1, 1000) n) AS same_lines
FROM orders WHERE id = 'a0000000-0000-0000-0000-000000001000';

DROP FUNCTION save_err(orders);

\i test/regress/cleanup.sql
