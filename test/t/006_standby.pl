# A streaming hot standby of a primary with the extension: reading orders
# works there; every write, and every consumer function (they write a
# checkpoint), fails with 25006, the consumer functions with a message that
# names the hot standby and a hint to connect consumers to the primary.
# Neither server crashes.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->start;

$primary->safe_psql('postgres', 'CREATE EXTENSION orders');
# three orders (one confirmed: two events), a consumer that has read and
# acknowledged the first event
$primary->safe_psql('postgres', q{
SELECT orders_add('7c6d3c2e-1f1a-4e55-9d0a-3b8f1e2a9c01', 'EUR',
    ARRAY[ROW('0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b', 'Green tea', 2, 450)::order_line],
    ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address,
    '01930000-0000-7000-8000-000000000001');
SELECT orders_add('7c6d3c2e-1f1a-4e55-9d0a-3b8f1e2a9c01', 'EUR',
    ARRAY[ROW('1c2f5a6b-7d8e-4f9a-8b1c-2d3e4f5a6b7c', 'Teapot', 1, 3900)::order_line],
    ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address,
    '01930000-0000-7000-8000-000000000002');
SELECT orders_events_register('app', true);
SELECT orders_events_ack('app', (SELECT min(position) FROM orders_events_read('app', 1)));
SELECT orders_save(jsonb_populate_record(o, '{"status": "confirmed"}'))
FROM orders_get('01930000-0000-7000-8000-000000000001') o;
SELECT orders_add('8d7e4d3f-2a2b-4f66-8e1b-4c9f2f3b0d12', 'USD',
    ARRAY[ROW('2d3a6b7c-8e9f-4a0b-9c2d-3e4f5a6b7c8d', 'Cup', 4, 1200)::order_line],
    NULL, '01930000-0000-7000-8000-000000000003');
});
my $pending_on_primary = $primary->safe_psql('postgres',
	q{SELECT pending FROM orders_events_consumers() WHERE name = 'app'});
is($pending_on_primary, '3', 'on the primary, consumer app has 3 events pending');

$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;

# one more order after the backup: it reaches the standby by streaming
$primary->safe_psql('postgres', q{
SELECT orders_add('8d7e4d3f-2a2b-4f66-8e1b-4c9f2f3b0d12', 'USD',
    ARRAY[ROW('2d3a6b7c-8e9f-4a0b-9c2d-3e4f5a6b7c8d', 'Saucer', 4, 800)::order_line],
    NULL, '01930000-0000-7000-8000-000000000004');
});
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');

# reads work on the standby
is( $standby->safe_psql('postgres', q{
		SELECT status || ' ' || version || ' ' || total
		FROM orders_get('01930000-0000-7000-8000-000000000001')}),
	'confirmed 2 900',
	'orders_get on the standby returns the order as last saved on the primary');
is( $standby->safe_psql('postgres', q{
		SELECT count(*) FROM orders_get('01930000-0000-7000-8000-000000000004')}),
	'1', 'an order added after the backup streamed to the standby');
is( $standby->safe_psql('postgres', q{
		SELECT string_agg(right(id::text, 1), ',' ORDER BY id)
		FROM orders_find(customer_id => '8d7e4d3f-2a2b-4f66-8e1b-4c9f2f3b0d12')}),
	'3,4', 'orders_find works on the standby');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM orders'), '4',
	'SELECT FROM orders works on the standby');
is( $standby->safe_psql('postgres', q{SELECT orders_count(status => 'confirmed')}),
	'1', 'orders_count works on the standby');
is( $standby->safe_psql('postgres',
		q{SELECT pending FROM orders_events_consumers() WHERE name = 'app'}),
	'4', 'orders_events_consumers() works on the standby and sees the same checkpoint');

# runs SQL on the standby with verbose errors; returns (exit code, stderr)
sub on_standby
{
	my ($sql) = @_;
	my ($ret, $stdout, $stderr) =
	  $standby->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	return ($ret, $stderr);
}

# writes fail with 25006, and change nothing
my %writes = (
	'orders_add' => q{SELECT orders_add('7c6d3c2e-1f1a-4e55-9d0a-3b8f1e2a9c01', 'EUR',
		ARRAY[ROW('0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b', 'Green tea', 1, 450)::order_line])},
	'orders_save' => q{SELECT orders_save(jsonb_populate_record(o, '{"status": "confirmed"}'))
		FROM orders_get('01930000-0000-7000-8000-000000000002') o},
	'orders_remove' => q{SELECT orders_remove('01930000-0000-7000-8000-000000000003')},);
for my $f (sort keys %writes)
{
	my ($ret, $stderr) = on_standby($writes{$f});
	isnt($ret, 0, "$f fails on the standby");
	like($stderr, qr/ERROR:\s+25006:/, "$f on the standby: SQLSTATE 25006")
	  or diag $stderr;
}
# consumer functions fail with 25006, saying why, with the hint
my %consumers = (
	'orders_events_register' => q{SELECT orders_events_register('reporting', false)},
	'orders_events_read'     => q{SELECT * FROM orders_events_read('app', 10)},
	'orders_events_ack'      => q{SELECT orders_events_ack('app', 1)},);
for my $f (sort keys %consumers)
{
	my ($ret, $stderr) = on_standby($consumers{$f});
	isnt($ret, 0, "$f fails on the standby");
	like($stderr, qr/ERROR:\s+25006: .*cannot run on a hot standby/,
		"$f on the standby: 25006, cannot run on a hot standby")
	  or diag $stderr;
	like($stderr, qr/HINT:\s+Connect consumers of the outbox to the primary server/,
		"$f on the standby: hint to connect consumers to the primary")
	  or diag $stderr;
}

# the consumer's checkpoint did not move, nothing was registered, and on
# the primary it still works
is( $standby->safe_psql('postgres',
		q{SELECT string_agg(name || ':' || pending, ',' ORDER BY name) FROM orders_events_consumers()}),
	'app:4', 'the standby still shows only consumer app, with 4 events pending');
is($primary->safe_psql('postgres', q{SELECT orders_events_register('reporting', false)}),
	't', 'on the primary, orders_events_register works');
is( $primary->safe_psql('postgres', q{SELECT count(*) FROM orders_events_read('reporting', 10)}),
	'0', 'on the primary, orders_events_read works');
is($primary->safe_psql('postgres', 'SELECT count(*) FROM orders'), '4',
	'the primary has the 4 orders: nothing was added or removed');

$standby->stop;
$primary->stop;
# a crash of any backend (a signal) or a failed assertion fails the test
for my $node ($primary, $standby)
{
	unlike(slurp_file($node->logfile), qr/terminated by signal|TRAP:/,
		$node->name . ': the server log shows no crash');
}
done_testing();
