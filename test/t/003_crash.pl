# A crash under load: pgbench adds and saves orders, a client adds orders and
# notes each commit it saw, a consumer reads part of the outbox; then the
# server stops with an immediate shutdown and restarts from its WAL.
# Afterwards every add the client saw committed exists with its event, no
# event exists without the change it describes and no change without its
# event, and the consumer reads every event after its checkpoint: none
# missing, none twice, none invented.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', "max_connections = 30\nfsync = on\n");
$node->start;

$node->safe_psql('postgres', q{CREATE EXTENSION orders;
	SELECT orders_events_register('behind');});
$node->safe_psql('postgres', slurp_file('test/t/crash/seed.sql'));

local $ENV{PGHOST} = $node->host;
local $ENV{PGPORT} = $node->port;
local $ENV{PGDATABASE} = 'postgres';
my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';

my ($bench_out, $bench_err, $witness_out, $witness_err) = ('', '', '', '');
my $bench = IPC::Run::start(
	[
		'pgbench', '-n', '-c', '4', '-j', '2', '-T', '120', '--max-tries', '50',
		'-f', 'test/t/crash/add.sql@1', '-f', 'test/t/crash/save.sql@1', 'postgres'
	],
	'>', \$bench_out, '2>', \$bench_err);
my $witness = IPC::Run::start([ $python, 'test/t/crash/witness.py' ],
	'>', \$witness_out, '2>', \$witness_err);

# the consumer reads and acknowledges part of the outbox while the load runs
sleep 1;
my $acked = $node->safe_psql('postgres', q{
	WITH batch AS (SELECT position FROM orders_events_read('behind', 150))
	SELECT string_agg(position::text, ',' ORDER BY position) FROM batch;
});
my @acked = split /,/, $acked;
$node->safe_psql('postgres', "SELECT orders_events_ack('behind', $acked[-1])");
sleep 2;

$node->stop('immediate');
$bench->finish;
$witness->finish;
$node->start;

my @seen = grep { /^[0-9a-f-]{36}$/ } split /\n/, $witness_out;
cmp_ok(scalar @seen, '>', 10, scalar(@seen) . ' adds were seen committed before the crash');
note "pgbench: " . join(' ', grep { /processed|failed|retried/ } split /\n/, $bench_out);

my $seen_list = join ',', map { "'$_'" } @seen;
is( $node->safe_psql('postgres', qq{
		SELECT count(*) FROM unnest(ARRAY[$seen_list]::uuid[]) s(id)
		WHERE NOT EXISTS (SELECT FROM orders o WHERE o.id = s.id)
		   OR NOT EXISTS (SELECT FROM order_events e WHERE e.order_id = s.id AND e.type = 'order_added')}),
	'0', 'every add a client saw committed exists, with its order_added event');

is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM order_events e
		WHERE NOT EXISTS (SELECT FROM orders o WHERE o.id = e.order_id)}),
	'0', 'no event for an order that does not exist');
is( $node->safe_psql('postgres', q{
		WITH ev AS (
			SELECT order_id,
			       count(*) FILTER (WHERE type = 'order_added') AS added,
			       count(*) FILTER (WHERE type = 'order_lines_changed') AS changed,
			       max(version) AS last_version
			FROM order_events GROUP BY order_id)
		SELECT count(*) FROM orders o LEFT JOIN ev ON ev.order_id = o.id
		WHERE ev.added IS DISTINCT FROM 1
		   OR ev.changed <> o.version - 1
		   OR ev.last_version <> o.version
		   OR (o.lines[1]).quantity <> o.version}),
	'0', 'each order has one added event and one lines_changed event per save: no change without its event, no event without its change');
my $saves = $node->safe_psql('postgres',
	q{SELECT count(*) FROM order_events WHERE type = 'order_lines_changed'});
cmp_ok($saves, '>', 0, "$saves saves survived the crash");

# the consumer resumes from its checkpoint
my $after = $node->safe_psql('postgres', q{
	CREATE TEMP TABLE got (position bigint);
	DO $$
	DECLARE last bigint;
	BEGIN
		LOOP
			WITH batch AS (SELECT position FROM orders_events_read('behind', 500)),
			     kept AS (INSERT INTO got SELECT position FROM batch RETURNING position)
			SELECT max(position) INTO last FROM kept;
			EXIT WHEN last IS NULL;
			PERFORM orders_events_ack('behind', last);
		END LOOP;
	END $$;
	SELECT string_agg(position::text, ',' ORDER BY position) FROM got;
});
my %read_after = map { $_ => 1 } split /,/, $after;
my %acked_before = map { $_ => 1 } @acked;
my @all = split /,/, $node->safe_psql('postgres',
	q{SELECT string_agg(position::text, ',' ORDER BY position) FROM order_events});
my @missing = grep { !$read_after{$_} && !$acked_before{$_} } @all;
my @twice = grep { $acked_before{$_} } keys %read_after;
my %exists = map { $_ => 1 } @all;
my @invented = grep { !$exists{$_} } keys %read_after;
is(scalar @missing, 0, 'the consumer misses no event (' . scalar(@all) . ' in all, '
	  . scalar(@acked) . ' acknowledged before the crash)');
is(scalar @twice, 0, 'the consumer reads nothing it had acknowledged');
is(scalar @invented, 0, 'the consumer reads no event that does not exist');
is($node->safe_psql('postgres', q{SELECT pending FROM orders_events_consumers() WHERE name = 'behind'}),
	'0', 'the consumer is caught up');

$node->stop;
# a crash of any backend (a signal) or a failed assertion fails the test
unlike(slurp_file($node->logfile), qr/terminated by signal|TRAP:/, 'the server log shows no crash');
done_testing();
