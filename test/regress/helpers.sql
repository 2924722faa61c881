\set ECHO none
-- Included first by every file in sql/ that uses them: a fresh extension and
-- the helpers the files share.  test/regress/cleanup.sql undoes it.  Echo is
-- off while it runs: the definitions are not what a file tests.  A file
-- runs alone as well as in any order, so it makes whatever else it reads.

CREATE EXTENSION orders;

-- err(sql): runs sql and shows, on one line, the error it raised:
-- SQLSTATE, constraint, column, message and detail, and the order that the
-- innermost line of its context names, if any (the function that raised it
-- names the order it works on there).
CREATE FUNCTION err(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    state text; cons text; col text; msg text; det text; ctx text;
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, cons = CONSTRAINT_NAME,
        col = COLUMN_NAME, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
        ctx = PG_EXCEPTION_CONTEXT;
    RETURN state || ' ' || coalesce(nullif(cons, ''), '-') || ' '
        || coalesce(nullif(col, ''), '-') || ': ' || msg
        || coalesce(' | ' || nullif(det, ''), '')
        || coalesce(' | CONTEXT: ' || substring(ctx from '^order [^\n]*'), '');
END $$;

-- line(n, price): a valid order line with a product id derived from n.
CREATE FUNCTION line(n integer, price bigint DEFAULT 100, qty integer DEFAULT 1)
RETURNS order_line LANGUAGE sql AS $$
    SELECT ROW(('00000000-0000-0000-0000-' || lpad(to_hex(n), 12, '0'))::uuid,
               'product ' || n, qty, price)::order_line
$$;

-- what the tables hold, to show that a failed call stored nothing
CREATE VIEW stored AS
SELECT (SELECT count(*) FROM orders) AS orders,
       (SELECT count(*) FROM order_events) AS events;

-- cur(id): the stored order as one composite value, to change and save
CREATE FUNCTION cur(id uuid) RETURNS orders LANGUAGE sql AS $$
    SELECT o FROM orders_get(id) o
$$;

-- move(id, statuses...): saves the order through each status in turn
CREATE FUNCTION move(order_id uuid, VARIADIC statuses order_status[])
RETURNS order_status LANGUAGE plpgsql AS $$
DECLARE
    s order_status;
    o orders;
BEGIN
    FOREACH s IN ARRAY statuses LOOP
        o := cur(order_id);
        o.status := s;
        o := orders_save(o);
    END LOOP;
    RETURN o.status;
END $$;

-- the events of one order, without their times
CREATE VIEW events_of AS
SELECT order_id, position, type, version, payload - 'created_at' - 'updated_at' AS payload
FROM order_events;

\set ECHO all
