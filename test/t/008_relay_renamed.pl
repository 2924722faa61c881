# The extension's schema renamed after install: its SQL functions still name
# the old name, which the database's owner (an application role, as the
# README recommends: database owned by the application, the extension in a
# superuser-owned schema) may now create, with look-alike helpers that would
# make it a superuser.  The relay worker, a superuser, must not call them.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('renamed');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'orders'\norders.relay_database = 'shop'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN; CREATE DATABASE shop OWNER app;');
$node->safe_psql('shop', 'CREATE SCHEMA orders; CREATE EXTENSION orders SCHEMA orders;');
$node->safe_psql('shop', 'SET orders.notify = relay; SELECT orders.orders_add(gen_random_uuid(), \'EUR\')');
$node->poll_query_until('shop', q{SELECT pending = 0 FROM orders.orders_events_consumers() WHERE name = 'orders_relay'});
is($node->safe_psql('shop', q{SELECT pending FROM orders.orders_events_consumers() WHERE name = 'orders_relay'}), '0', 'relayed');
# The database's owner sets options for every session in it, the relay
# worker's too: a search_path with an operator trap first, and read-only
# transactions, and a role to run as.  The worker pins its own, and relays
# as before.
$node->safe_psql('shop', q{
CREATE FUNCTION public.evil_eq(oid, oid) RETURNS bool LANGUAGE plpgsql AS $$BEGIN
    IF current_setting('is_superuser') = 'on' THEN EXECUTE 'ALTER ROLE app SUPERUSER'; END IF;
    RETURN $1 OPERATOR(pg_catalog.=) $2;
END$$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = public.evil_eq);
ALTER DATABASE shop SET search_path = public, pg_catalog;
ALTER DATABASE shop SET default_transaction_read_only = on;
ALTER DATABASE shop SET role = app;
}, connstr => $node->connstr('shop') . ' user=app');
$node->restart;
$node->safe_psql('shop', q{SET ROLE NONE; BEGIN READ WRITE; SET LOCAL orders.notify = relay;
    SELECT orders.orders_add(gen_random_uuid(), 'EUR'); COMMIT;});
# (this session takes the database's role too: it sets its own back)
my $relayed = 0;
for (my $deadline = time + 30; !$relayed && time < $deadline; sleep 1)
{
	$relayed = $node->safe_psql('shop', q{SET ROLE NONE;
		SELECT pending OPERATOR(pg_catalog.=) 0 FROM orders.orders_events_consumers()
		WHERE name = 'orders_relay'}) eq 't';
}
ok($relayed, 'the worker relays under the database owner\'s settings');
is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'app'}), 'f',
	'the database owner\'s operator did not run as the worker');
$node->safe_psql('shop', 'SET ROLE NONE; SET default_transaction_read_only = off; ALTER DATABASE shop RESET ALL; DROP OPERATOR public.= (oid, oid);',
	connstr => $node->connstr('shop') . ' user=app');

# a superuser renames the extension's schema; it stays superuser-owned, no CREATE grants
$node->safe_psql('shop', 'ALTER SCHEMA orders RENAME TO orders_v1');
# app, the database owner, may create schemas: it takes the old name
$node->safe_psql('shop', q{
CREATE SCHEMA orders;
CREATE SEQUENCE orders.trap_sprung;
GRANT ALL ON SEQUENCE orders.trap_sprung TO PUBLIC;
CREATE FUNCTION orders.escalate() RETURNS void LANGUAGE plpgsql
    AS $$BEGIN PERFORM nextval('orders.trap_sprung'); ALTER ROLE app SUPERUSER; END$$;
CREATE TABLE orders.order_events (position bigint, xid xid8, order_id uuid, type text,
    version integer, payload jsonb, occurred_at timestamptz, relay boolean);
CREATE TABLE orders.order_event_consumers (name text PRIMARY KEY, acked_snapshot pg_snapshot,
    batch_snapshot pg_snapshot, batch_position bigint, registered_at timestamptz,
    acked_at timestamptz, owner regrole, acked_top_position bigint, acked_next_xid xid8,
    batch_top_position bigint, batch_next_xid xid8);
GRANT ALL ON orders.order_events, orders.order_event_consumers TO PUBLIC;
CREATE FUNCTION orders.orders_events_register(text, boolean) RETURNS boolean
    LANGUAGE plpgsql AS $$BEGIN PERFORM orders.escalate(); RETURN false; END$$;
CREATE FUNCTION orders.orders_events_consumer(text) RETURNS orders.order_event_consumers
    LANGUAGE plpgsql AS $$BEGIN PERFORM orders.escalate(); RETURN NULL; END$$;
CREATE FUNCTION orders.orders_events_open_batch(text) RETURNS orders.order_event_consumers
    LANGUAGE plpgsql AS $$BEGIN PERFORM orders.escalate(); RETURN NULL; END$$;
CREATE FUNCTION orders.orders_events_batch(orders.order_event_consumers, integer, boolean)
    RETURNS SETOF orders.order_events LANGUAGE plpgsql AS $$BEGIN PERFORM orders.escalate(); END$$;
CREATE FUNCTION orders.orders_events_advance(text, bigint, boolean)
    RETURNS void LANGUAGE plpgsql AS $$BEGIN PERFORM orders.escalate(); END$$;
}, connstr => $node->connstr('shop') . ' user=app');
# the trap is armed: the relay function, run by a superuser, runs app's
# code (a sequence shows it, though the call then fails and rolls back: a
# superuser's code could have done what needs no commit)
$node->psql('shop', q{
BEGIN;
SELECT count(*) FROM orders_internal.orders_events_relay_batch(1000);
ROLLBACK;
});
$node->safe_psql('shop', q{SELECT is_called FROM orders.trap_sprung}) eq 't'
  or die 'the trap does not work: the test would prove nothing';
$node->safe_psql('shop', q{SELECT setval('orders.trap_sprung', 1, false)});

# the worker restarts (as after a server restart), so nothing is cached
$node->safe_psql('shop', 'SET orders.notify = relay; SELECT orders_v1.orders_add(gen_random_uuid(), \'EUR\')');
$node->restart;
my $deadline = time + 20;
sleep 1 until slurp_file($node->logfile) =~ /not relaying: schema "orders_v1" cannot be trusted/ || time > $deadline;
like(slurp_file($node->logfile), qr/not relaying: schema "orders_v1" cannot be trusted\n.*DETAIL:  It was renamed after the extension was installed/i,
	'the worker refuses a renamed schema, and says why');
sleep 2;
is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'app'}), 'f',
	'app is not a superuser');
is($node->safe_psql('shop', q{SELECT is_called FROM orders.trap_sprung}), 'f',
	'the worker ran none of its code');

# renamed back, it relays again
$node->safe_psql('shop', 'DROP SCHEMA orders CASCADE; ALTER SCHEMA orders_v1 RENAME TO orders;');
ok($node->poll_query_until('shop',
	q{SELECT pending = 0 FROM orders.orders_events_consumers() WHERE name = 'orders_relay'}),
	'renamed back, the event is relayed');
is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'app'}), 'f',
	'app is still not a superuser');

$node->stop;
unlike(slurp_file($node->logfile), qr/terminated by signal|TRAP:/, 'the server log shows no crash');
done_testing();
