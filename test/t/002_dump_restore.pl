# pg_dump and pg_restore keep every order and event, and the outbox's
# position sequence continues after the restored events.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->start;

$node->safe_psql('postgres', q{
	CREATE SCHEMA shop;
	CREATE EXTENSION orders SCHEMA shop;
	SELECT shop.orders_add(gen_random_uuid(), 'EUR',
		ARRAY[ROW(gen_random_uuid(), 'item ' || n, n, 100 * n)::shop.order_line],
		ROW('Main St ' || n, 'Berlin', '10115', 'DE')::shop.order_address)
	FROM generate_series(1, 50) n;
	SELECT shop.orders_remove(id) FROM shop.orders ORDER BY id LIMIT 10;
});

my $snapshot = q{
	SELECT md5(string_agg(o::text, ',' ORDER BY o.id)) FROM shop.orders o;
	SELECT md5(string_agg(e::text, ',' ORDER BY e.position)) FROM shop.order_events e;
	SELECT count(*) FROM shop.orders;
	SELECT count(*) FROM shop.order_events;
};
my $before = $node->safe_psql('postgres', $snapshot);

my $dump = $node->basedir . '/orders.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ],
	'pg_dump of a database with the extension');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ],
	'pg_restore into a new database');

my $after = $node->safe_psql('restored', $snapshot);
is($after, $before, 'every order and every event is restored, byte for byte');
like($after, qr/\n40\n60$/, '40 orders and 60 events');

# The restored database works: new events take positions after the old ones.
my $max = $node->safe_psql('restored', 'SELECT max(position) FROM shop.order_events');
$node->safe_psql('restored', q{SELECT (shop.orders_add(gen_random_uuid(), 'EUR')).id});
my $new = $node->safe_psql('restored', 'SELECT max(position) FROM shop.order_events');
cmp_ok($new, '>', $max, 'the position sequence continues after the restored events');

$node->stop;
# a crash of any backend (a signal) or a failed assertion fails the test
unlike(slurp_file($node->logfile), qr/terminated by signal|TRAP:/, 'the server log shows no crash');
done_testing();
