# Shard moves under writers: four clients add orders through the coordinator
# (each call delegated to the node of its order) while shards of orders and
# order_events move between the workers, once blocking writes and once by
# logical replication.  Every add that committed left exactly its order and
# its one event, in the shards; none is lost and none is doubled; no shell
# table holds a byte.  A call that met a move got 40001 and was retried.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use CitusCluster;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my ($coordinator, @workers) = CitusCluster::start(workers => 2);
my @nodes = ($coordinator, @workers);

$coordinator->safe_psql('postgres', q{
	CREATE EXTENSION orders;
	ALTER TABLE order_events DROP CONSTRAINT order_events_pkey,
	    ADD PRIMARY KEY (order_id, position);
	SELECT create_distributed_table('orders', 'id');
	SELECT create_distributed_table('order_events', 'order_id', colocate_with => 'orders');
	SELECT create_distributed_function(
	    'orders_add(uuid, text, order_line[], order_address, uuid, jsonb)',
	    distribution_arg_name => 'id', colocate_with => 'orders');});

# Each transaction takes a new id, then adds the order with the id as a
# constant (pgbench's simple protocol puts it in the text), which is what
# Citus delegates.
my $script = $coordinator->basedir . '/add.sql';
open my $fh, '>', $script or die;
print $fh q{SELECT gen_random_uuid() AS id \gset
SELECT id FROM orders_add('c0000000-0000-4000-8000-000000000001', 'EUR', id => ':id');
};
close $fh;

my ($bench_out, $bench_err);
my $bench = IPC::Run::start(
	[
		'pgbench', '-n', '-M', 'simple', '-c', '4', '-j', '2', '-T', '20',
		'--max-tries', '20', '-f', $script, $coordinator->connstr('postgres')
	],
	'>', \$bench_out, '2>', \$bench_err);

# While they write: move a shard of orders (its order_events shard moves
# with it) to the other worker, blocking writes; then move one back by
# logical replication.
sleep 3;
my ($shard, $from) = split /\|/, $coordinator->safe_psql('postgres', q{
	SELECT p.shardid, n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
	JOIN pg_dist_shard s USING (shardid)
	WHERE s.logicalrelid = 'orders'::regclass ORDER BY p.shardid LIMIT 1});
my ($to) = grep { $_ != $from } map { $_->port } @workers;
$coordinator->safe_psql('postgres',
	qq{SELECT citus_move_shard_placement($shard, '127.0.0.1', $from, '127.0.0.1', $to,
	       shard_transfer_mode => 'block_writes')});
pass("shard $shard moved from $from to $to, blocking writes, under writers");
sleep 3;
$coordinator->safe_psql('postgres',
	qq{SELECT citus_move_shard_placement($shard, '127.0.0.1', $to, '127.0.0.1', $from,
	       shard_transfer_mode => 'force_logical')});
pass("and back by logical replication, under writers");
$bench->finish;

my ($processed) = $bench_out =~ /number of transactions actually processed: (\d+)/;
my ($failed) = $bench_out =~ /number of failed transactions: (\d+)/;
my ($retried) = $bench_out =~ /number of transactions retried: (\d+)/;
ok($processed && $processed > 100, "the writers committed $processed adds"
	. ' (' . ($retried // 0) . ' retried after 40001)')
  or diag($bench_out . $bench_err);
is($failed // 0, 0, 'no add failed for good');

is($coordinator->safe_psql('postgres', 'SELECT count(*) FROM orders'), $processed,
	'every committed add left its order');
is($coordinator->safe_psql('postgres', q{SELECT count(*) FROM order_events WHERE type = 'order_added'}),
	$processed, 'and its one event');
is($coordinator->safe_psql('postgres',
		q{SELECT count(*) FROM orders o WHERE NOT EXISTS
		  (SELECT FROM order_events e WHERE e.order_id = o.id AND e.version = 1)}),
	'0', 'each order with its own event');
for my $table ('orders', 'order_events')
{
	is($coordinator->safe_psql('postgres',
			qq{SELECT sum(result::bigint) FROM run_command_on_placements('$table', 'SELECT count(*) FROM %s')}),
		$processed, "the placements of $table hold exactly that many rows, none twice");
}
CitusCluster::shells_hold_nothing(@nodes);

CitusCluster::stop(@nodes);
is(join("\n", CitusCluster::crashes(@nodes)), '', 'no node log shows a crash or a failed assertion');
done_testing();
