# Consumers of the outbox on a Citus cluster: each reads every committed
# event exactly once, whichever worker wrote it and in whatever order the
# workers commit, a transaction left open on one worker holding back its
# own events and no other's; a checkpoint from before the cluster goes on;
# retention and monitoring judge each node's events by the consumers' cuts
# of it; what cannot work is refused, saying why.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use CitusCluster;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::MD5 qw(md5_hex);
use IPC::Run;

my ($coordinator, @workers) = CitusCluster::start(workers => 2,
	conf => "shared_preload_libraries = 'citus,orders'\n");
my @nodes = ($coordinator, @workers);

sub q1 { return $coordinator->safe_psql('postgres', $_[0]); }
sub as_app { return $coordinator->safe_psql('postgres', $_[0], extra_params => [ '-U', 'app' ]); }

my $line = q{ARRAY[ROW('0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b', 'Green tea', 2, 450)::order_line]};
my $addr = q{ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address};
sub add_sql
{
	my ($id) = @_;
	return qq{SELECT orders_add('c0000000-0000-4000-8000-000000000001', 'EUR', $line, id => '$id')};
}

# Before the cluster: a consumer registered from now, two orders after it,
# and a batch it has read one event of, left open.
q1(q{CREATE EXTENSION orders; SELECT orders_events_register('early')});
q1(add_sql("b0000000-0000-4000-8000-00000000000$_")) for 1 .. 2;
my $first = q1(q{BEGIN;
	CREATE TEMP TABLE r ON COMMIT DROP AS SELECT * FROM orders_events_read('early', 1);
	SELECT orders_events_ack('early', max(position)) FROM r;
	SELECT position || ' ' || order_id || ' ' || version FROM r;
	COMMIT;});
q1('SELECT orders_distribute(shard_count => 4)');
is(q1(q{SELECT batch_cuts IS NOT NULL FROM order_event_consumers WHERE name = 'early'}), 't',
	'the batch left open goes on as the coordinator\'s cut');

# An application role that is not a superuser consumes; Citus creates it on
# every node.
q1(q{CREATE ROLE app LOGIN;
	GRANT SELECT ON orders, order_events, order_event_consumers TO app;
	GRANT EXECUTE ON FUNCTION orders_events_register(text, boolean), orders_events_read(text, integer),
		orders_events_ack(text, bigint), orders_events_consumers(), orders_add(uuid, text, order_line[], order_address, uuid, jsonb)
		TO app});
is(as_app(q{SELECT orders_events_register('app')}), 't', 'a role that is not a superuser registers a consumer');
# one that reads only once a worker has left the cluster, and the README's
# consumer (test/consumer.py), registered now, run then
q1(q{SELECT orders_events_register('late'); SELECT orders_events_register('py')});
q1(q{SELECT orders_events_register('all', from_start => true)});
is(q1(q{SELECT array_length(acked_cuts, 1) FROM order_event_consumers WHERE name = 'app'}), '3',
	'its checkpoint holds a cut of each of the three nodes');
is(q1(q{SELECT acked_cuts IS NULL FROM order_event_consumers WHERE name = 'early'}), 't',
	'the checkpoint from before the cluster has no cuts: it is the coordinator\'s');

# ids spread over the hash space, and the worker of each
my @ids = map { my $h = md5_hex("order $_"); join '-', unpack('A8 A4 A4 A4 A12', $h) } 1 .. 40;
my %port_of = map {
	$_ => q1(qq{SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
	            WHERE p.shardid = get_shard_id_for_distribution_column('orders', '$_')})
} @ids;
my @on_w0 = grep { $port_of{$_} == $workers[0]->port } @ids;
my @on_w1 = grep { $port_of{$_} == $workers[1]->port } @ids;
ok(@on_w0 > 4 && @on_w1 > 4, 'ids on both workers');

# What each consumer was given, in the order it was given; the event read
# before the cluster, at its position now.
my ($first_row) = grep { /^\d+ / } split /\n/, $first;
my @first = split / /, $first_row;
my %got = (early => [ join ' ', $first[0] * 1024, @first[1, 2] ]);
# One read of up to max events, acknowledged; returns how many.
sub read_once
{
	my ($consumer, $as, $max) = @_;
	my $sql = qq{BEGIN;
		CREATE TEMP TABLE r ON COMMIT DROP AS SELECT * FROM orders_events_read('$consumer', $max);
		SELECT orders_events_ack('$consumer', max(position)) FROM r HAVING count(*) > 0;
		SELECT position || ' ' || order_id || ' ' || version FROM r ORDER BY position;
		COMMIT;};
	my $out = $as ? $coordinator->safe_psql('postgres', $sql, extra_params => [ '-U', $as ]) : q1($sql);
	my @rows = grep { /^\d+ / } split /\n/, $out;
	push @{ $got{$consumer} }, @rows;
	return scalar @rows;
}
# Reads until nothing is left; returns how many.
sub read_all
{
	my ($consumer, $as) = @_;
	my ($n, $m) = (0, 0);
	$n += $m while ($m = read_once($consumer, $as, 500)) > 0;
	return $n;
}

# A transaction left open on worker 0 while both workers commit others: the
# consumer gets the others now, and the open one's event once it commits.
my $long = IPC::Run::start(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $coordinator->connstr('postgres'), '-c',
	  'BEGIN; ' . add_sql($on_w0[0]) . '; SELECT pg_sleep(4); COMMIT;' ],
	'>', \my $long_out, '2>', \my $long_err);
$coordinator->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'BEGIN; SELECT orders_add%' AND wait_event = 'PgSleep'})
  or die 'the long transaction did not start';
q1(add_sql($_)) for @on_w0[1 .. 2], @on_w1[0 .. 1];
is(read_all('app', 'app'), 4, 'while one worker\'s transaction is open: the four committed events');
is(scalar(grep { index($_, $on_w0[0]) >= 0 } @{ $got{app} }), 0, 'and not the open one\'s');
$long->finish;
is($long_err, '', 'the long transaction committed');
is(read_all('app', 'app'), 1, 'once it committed: its event, once');
is(scalar(grep { index($_, $on_w0[0]) >= 0 } @{ $got{app} }), 1, 'it is the open one\'s');
is(read_all('app', 'app'), 0, 'then nothing');

# Four writers on both workers, adds and saves, while the consumer reads.
my $script = $coordinator->basedir . '/write.sql';
open my $fh, '>', $script or die $!;
print $fh qq{\\set r random(1, 1000000000)
SELECT orders_add('c0000000-0000-4000-8000-000000000002', 'EUR', $line, $addr, id => md5('w' || :client_id || '-' || :r)::uuid);
SELECT orders_save(jsonb_populate_record(o, '{"status": "confirmed"}')) FROM orders_get(md5('w' || :client_id || '-' || :r)::uuid) o;
};
close $fh;
# pgbench writes to files: a pipe that is read only between the consumer's
# reads stalls it.
my $bench_log = $coordinator->basedir . '/pgbench.out';
my $bench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '4', '-T', '6', '-f', $script, '-d', $coordinator->connstr('postgres') ],
	'>', $bench_log, '2>&1');
my $during = 0;
my $until = time + 6;
# small reads, so that batches stay open while the writers commit
$during += read_once('app', 'app', 7) while time < $until;
$bench->finish;
my $bench_out = slurp_file($bench_log);
like($bench_out, qr/number of transactions actually processed: [1-9]/, 'the writers wrote');
note($bench_out =~ /(number of transactions actually processed: \d+)/);
ok($during > 0, "the consumer read while they wrote ($during events)");
read_all('app', 'app');
read_all($_) for qw(all early);

# Worker 2 leaves: its shards move to worker 1, and it is removed.  The
# consumer that had not read since before gets its events all the same.
q1(q{SELECT citus_drain_node('127.0.0.1', } . $workers[1]->port . q{)});
q1(q{SELECT citus_remove_node('127.0.0.1', } . $workers[1]->port . q{)});
is(q1(q{SELECT count(*) FROM pg_dist_node WHERE groupid > 0}), '1', 'one worker is left');
q1(add_sql($on_w1[3]));
q1(q{SELECT orders_events_register('fresh', from_start => true)});
read_all($_) for qw(app all early late fresh);
my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
my ($py_out, $py_err) = run_command([ $python, "$FindBin::RealBin/../consumer.py",
	'--dsn', $coordinator->connstr('postgres'), '--name', 'py', '--exit-when-idle', '2' ]);
is($py_err, '', 'test/consumer.py ran against the coordinator');
$got{py} = [ map { my @f = split / /; "$f[0] $f[2] $f[3]" } grep { /^\d+ / } split /\n/, $py_out ];

# Exactly once, and every committed event: compared with the outbox.
my $since_app = q1(q{SELECT string_agg(position::text, ',' ORDER BY position) FROM order_events
	WHERE order_id::text NOT LIKE 'b0000000%'});
my $everything = q1(q{SELECT string_agg(position::text, ',' ORDER BY position) FROM order_events});
for my $case ([ 'app', $since_app ], [ 'late', $since_app ], [ 'py', $since_app ], [ 'all', $everything ], [ 'early', $everything ],
	[ 'fresh', $everything ])
{
	my ($consumer, $expected) = @$case;
	my @positions = map { (split / /)[0] } @{ $got{$consumer} };
	my %seen;
	my @dups = grep { $seen{$_}++ } @positions;
	is(scalar(@dups), 0, "$consumer: no event twice");
	is(join(',', sort { $a <=> $b } @positions), $expected, "$consumer: every committed event");
	my (%last, $out_of_order);
	for (@{ $got{$consumer} })
	{
		my (undef, $order, $version) = split / /;
		$out_of_order++ if defined $last{$order} && $version < $last{$order};
		$last{$order} = $version;
	}
	ok(!$out_of_order, "$consumer: each order's events in version order");
}
is(q1(q{SELECT count(DISTINCT position % 1024) FROM order_events WHERE order_id::text NOT LIKE 'b0000000%'}), '2',
	'the events were written on both workers');

# Monitoring counts each node's events by the cuts; retention removes what
# every consumer acknowledged, from every node.
is(as_app(q{SELECT string_agg(name || ':' || pending, ',' ORDER BY name) FROM orders_events_consumers()}),
	'all:0,app:0,early:0,fresh:0,late:0,py:0', 'nothing pending after reading');
q1(add_sql($on_w1[2]));
is(q1(q{SELECT string_agg(name || ':' || pending, ',' ORDER BY name) FROM orders_events_consumers()}),
	'all:1,app:1,early:1,fresh:1,late:1,py:1', 'one event written: one pending for each');
my $kept = q1('SELECT count(*) FROM order_events');
my $purged = q1('SELECT orders_events_purge()');
ok($purged > 0, "retention removed acknowledged events ($purged of $kept)");
is(q1(qq{SELECT count(*) FROM order_events WHERE order_id = '$on_w1[2]'}), '1', 'and kept the pending one');
is(read_all('app', 'app'), 1, 'which is read next');

# Refused, saying why.
like(CitusCluster::try_sql($coordinator, q{SET ROLE app; SELECT * FROM orders_internal.orders_events_cluster_cut((SELECT c FROM order_event_consumers c WHERE name = 'app'))}),
	qr/42501/, 'cutting directly: not granted');
like(CitusCluster::try_sql($workers[0], q{SELECT orders_events_register('w')}),
	qr/0A000: orders_events_register\(\) runs on the coordinator of a Citus cluster/,
	'on a worker: refused');
like(CitusCluster::try_sql($coordinator, q{BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT * FROM orders_events_read('all'); COMMIT}),
	qr/0A000: orders_events_consumer\(\) needs isolation level READ COMMITTED/,
	'in REPEATABLE READ: refused');

CitusCluster::shells_hold_nothing($coordinator, $workers[0]);
CitusCluster::stop(@nodes);
is(join("\n", CitusCluster::crashes(@nodes)), '', 'no node log shows a crash or a failed assertion');
done_testing();
