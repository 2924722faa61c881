/* orders--1.2--1.3.sql: orders.notify = relay */

\echo Use "ALTER EXTENSION orders UPDATE TO '1.3'" to load this file. \quit

-- Events written with orders.notify = relay: the relay worker sends their
-- NOTIFY after the writer commits (src/relay.c).  A new column with a
-- constant default: no rewrite of the outbox.
ALTER TABLE @extschema@.order_events ADD COLUMN relay boolean NOT NULL DEFAULT false;

COMMENT ON COLUMN @extschema@.order_events.relay IS
    'true: the relay worker sends this event''s NOTIFY (orders.notify = relay)';
