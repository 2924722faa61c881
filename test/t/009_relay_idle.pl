# The relay worker at rest and across the extension's life: an idle worker
# takes no transaction id and writes no WAL; what it writes shows in the
# statistics; an event of a prepared transaction, which wakes nobody when it
# commits, is relayed all the same; and after DROP EXTENSION and CREATE
# EXTENSION in another schema the same worker relays the new outbox, with
# no restart.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('idle');
$node->init;
# Nothing but the worker may write while it idles: no autovacuum, and no
# checkpoint (after one, the first hint bit set on a page would write a
# full-page image, data checksums being on from 18); wal_level minimal, so
# no running-transactions records either.
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'orders'
orders.relay_database = 'postgres'
max_prepared_transactions = 2
autovacuum = off
checkpoint_timeout = '1d'
wal_level = minimal
max_wal_senders = 0
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION orders');

my $worker_pid = $node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'orders relay'})
  && $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'orders relay'});
ok($worker_pid, "the relay worker runs (pid $worker_pid)");

sub relayed
{
	my ($schema, $what) = @_;
	ok($node->poll_query_until('postgres',
			qq{SELECT pending = 0 FROM $schema.orders_events_consumers() WHERE name = 'orders_relay'}),
		$what);
}

$node->safe_psql('postgres', q{SET orders.notify = relay;
	SELECT count(orders_add(gen_random_uuid(), 'EUR')) FROM generate_series(1, 50)});
relayed('public', 'the relay events are relayed');

# The worker writes its checkpoint in each pass that relays; those writes
# reach the statistics, where autovacuum reads them.
ok($node->poll_query_until('postgres', q{SELECT n_tup_upd > 0 AND n_dead_tup > 0
		FROM pg_stat_user_tables WHERE relname = 'order_event_consumers'}),
	'the worker reports its updates to the statistics');

# Events written without relay move the worker's checkpoint too (or it would
# hold back orders_events_purge), once, then it rests.
$node->safe_psql('postgres', q{SET orders.notify = off;
	SELECT count(orders_add(gen_random_uuid(), 'EUR')) FROM generate_series(1, 10)});
relayed('public', 'events written with orders.notify = off are acknowledged by the worker');

# Let the last pass's hint bits settle, then watch: the next transaction id
# to be assigned, and the WAL insert position, stay where they are.
sleep 2;
my $before = $node->safe_psql('postgres',
	'SELECT pg_snapshot_xmax(pg_current_snapshot()), pg_current_wal_insert_lsn()');
sleep 10;
my $after = $node->safe_psql('postgres',
	'SELECT pg_snapshot_xmax(pg_current_snapshot()), pg_current_wal_insert_lsn()');
my ($xid0, $lsn0) = split /\|/, $before;
my ($xid1, $lsn1) = split /\|/, $after;
is($xid1, $xid0, 'over 10 idle seconds the worker assigns no transaction id');
is($lsn1, $lsn0, 'over 10 idle seconds the worker writes no WAL');

# COMMIT PREPARED runs no code of ours, so it wakes nobody: the worker's
# read-only look at its checkpoint finds the event.
$node->safe_psql('postgres', q{BEGIN; SET LOCAL orders.notify = relay;
	SELECT orders_add(gen_random_uuid(), 'EUR'); PREPARE TRANSACTION 'p1'});
$node->safe_psql('postgres', q{COMMIT PREPARED 'p1'});
relayed('public', 'an event of a prepared transaction is relayed after COMMIT PREPARED');

# A late event: its transaction took its position before a pass of the
# worker and commits after it, by COMMIT PREPARED, which wakes nobody.  Its
# position is below the checkpoint's top: the worker's look finds it by its
# transaction id, among those the checkpoint saw running.
$node->safe_psql('postgres', q{BEGIN; SET LOCAL orders.notify = relay;
	SELECT orders_add('c0000000-0000-4000-8000-000000000001', 'EUR',
	                  id => 'a0000000-0000-4000-8000-0000000000d2');
	PREPARE TRANSACTION 'p2'});
$node->safe_psql('postgres', q{SET orders.notify = relay; SELECT orders_add(gen_random_uuid(), 'EUR')});
ok($node->poll_query_until('postgres', q{
		SELECT EXISTS (SELECT FROM order_event_consumers c, pg_snapshot_xip(c.acked_snapshot) x,
		                          pg_prepared_xacts p
		               WHERE c.name = 'orders_relay' AND p.gid = 'p2' AND x::xid = p.transaction)}),
	'the worker passed while the prepared transaction held its position');
sleep 2;
$node->safe_psql('postgres', q{COMMIT PREPARED 'p2'});
ok($node->poll_query_until('postgres', q{
		SELECT pg_visible_in_snapshot(e.xid, c.acked_snapshot)
		FROM order_events e, order_event_consumers c
		WHERE c.name = 'orders_relay' AND e.order_id = 'a0000000-0000-4000-8000-0000000000d2'}),
	'the late event is relayed after COMMIT PREPARED');

# The extension dropped and created again, in another schema: the worker's
# remembered tables are gone, it finds the new ones.
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{DROP EXTENSION orders; CREATE SCHEMA shop;
	CREATE EXTENSION orders SCHEMA shop});
$node->safe_psql('postgres', q{SET orders.notify = relay;
	SELECT count(shop.orders_add(gen_random_uuid(), 'EUR')) FROM generate_series(1, 5)});
relayed('shop', 'after DROP and CREATE EXTENSION the new outbox is relayed');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM shop.order_event_consumers WHERE name = 'orders_relay'
		  AND acked_top_position >= (SELECT max(position) FROM shop.order_events)}),
	'1', 'the new checkpoint covers every new event');
is($node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'orders relay'}),
	$worker_pid, 'by the same worker process, with no restart');
my $log = slurp_file($node->logfile, $log_offset);
unlike($log, qr/ERROR/, 'and with no error in the server log');

$node->stop;
unlike(slurp_file($node->logfile), qr/terminated by signal|TRAP:/, 'the server log shows no crash');
done_testing();
