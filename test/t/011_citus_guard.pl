# orders on a Citus cluster, distributed by hand: the write path never
# writes a shell table.  A call delegated to the node of its order writes
# that node's shard, and the coordinator reads it back; a call that runs on
# a node without the order's shard is an error that says so, and writes
# nothing anywhere.  A table distributed some other way is refused.
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

my ($coordinator, @workers) = CitusCluster::start(workers => 2);
my @nodes = ($coordinator, @workers);

# CREATE EXTENSION on the coordinator reaches the workers.
$coordinator->safe_psql('postgres', 'CREATE EXTENSION orders');
is($workers[0]->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'orders'}),
	$coordinator->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'orders'}),
	'the extension is on the workers too');

# psql that shows the SQLSTATE of an error
# The outbox must go where the orders go: orders distributed alone is
# refused, not half-routed.  (A distributed table's unique keys must hold
# its distribution column: order_events' key becomes (order_id, position),
# which also serves as the replica identity a shard move copies by.)
$coordinator->safe_psql('postgres', q{
	ALTER TABLE order_events DROP CONSTRAINT order_events_pkey,
	    ADD PRIMARY KEY (order_id, position);
	SELECT create_distributed_table('orders', 'id');});
like(CitusCluster::try_sql($coordinator, q{SELECT orders_add('c0000000-0000-4000-8000-000000000001', 'EUR',
	                    id => 'a0000000-0000-4000-8000-000000000001')}),
	qr/0A000: extension "orders" cannot use tables "orders" and "order_events" unless Citus distributes both, colocated/,
	'orders distributed without order_events is refused');

# As the issue asks: orders by id, order_events by order_id, colocated.
$coordinator->safe_psql('postgres', q{
	SELECT create_distributed_table('order_events', 'order_id', colocate_with => 'orders');
	SELECT create_distributed_function(
	    'orders_add(uuid, text, order_line[], order_address, uuid, jsonb)',
	    distribution_arg_name => 'id', colocate_with => 'orders');
	SELECT create_distributed_function('orders_get(uuid)', '$1', colocate_with => 'orders');
	SELECT create_distributed_function('orders_remove(uuid, integer)', '$1',
	    colocate_with => 'orders');});

# A call with a constant id runs on the node of its order: a row and its
# event in that node's shards, read back through the coordinator.
# ids spread over the hash space, as real ones are
my @ids = map { my $h = md5_hex("order $_"); join '-', unpack('A8 A4 A4 A4 A12', $h) } 1 .. 8;
for my $id (@ids)
{
	$coordinator->safe_psql('postgres',
		qq{SELECT orders_add('c0000000-0000-4000-8000-000000000001', 'EUR', id => '$id')});
}
is($coordinator->safe_psql('postgres', 'SELECT count(*) FROM orders'), '8',
	'eight delegated adds: eight orders, read through the coordinator');
is($coordinator->safe_psql('postgres', q{SELECT count(*) FROM order_events WHERE type = 'order_added'}),
	'8', 'and their eight events');
# the shards themselves, each read where it is
sub in_shards
{
	my ($table) = @_;
	return $coordinator->safe_psql('postgres',
		qq{SELECT sum(result::bigint) FROM run_command_on_placements('$table', 'SELECT count(*) FROM %s')});
}
is(in_shards('orders') . ' ' . in_shards('order_events'), '8 8',
	'the shards hold the eight orders and their events');
my %ports = map {
	$coordinator->safe_psql('postgres',
		qq{SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
		   WHERE p.shardid = get_shard_id_for_distribution_column('orders', '$_')}) => 1
} @ids;
is(join(',', sort keys %ports), join(',', sort map { $_->port } @workers),
	'the orders are on both workers');
is($coordinator->safe_psql('postgres', qq{SELECT version FROM orders_get('$ids[0]')}),
	'1', 'a delegated orders_get finds its order');
is($coordinator->safe_psql('postgres', qq{SELECT id FROM orders_remove('$ids[1]')}),
	$ids[1], 'a delegated orders_remove removes its order');
is($coordinator->safe_psql('postgres', 'SELECT count(*) FROM orders') . ' ' . in_shards('orders'),
	'7 7', 'seven left, in the shards');

# A call that Citus does not delegate (the id is not a constant) runs on
# the coordinator, which holds no shard: an error, and nothing written.
for my $call (
	q{SELECT orders_add('c0000000-0000-4000-8000-000000000001', 'EUR',
	                    id => (SELECT 'a0000000-0000-4000-8000-000000000099'::uuid))},
	qq{SELECT * FROM orders_get((SELECT '$ids[0]'::uuid))},
	qq{SELECT * FROM orders_remove((SELECT '$ids[0]'::uuid))})
{
	like(CitusCluster::try_sql($coordinator, $call), qr/0A000: order is held on another node of the Citus cluster/,
		'a call on a node without its shard is refused: ' . (split /\(/, $call)[0]);
}
is($coordinator->safe_psql('postgres', 'SELECT count(*) FROM orders'), '7',
	'the refused calls changed nothing');

# Called directly on a worker: where the order's shard is, it works (even
# orders_save, which Citus cannot delegate); on the other worker it is
# refused as on the coordinator.
my $shard = $coordinator->safe_psql('postgres',
	qq{SELECT get_shard_id_for_distribution_column('orders', '$ids[0]')});
my $holder_port = $coordinator->safe_psql('postgres',
	qq{SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
	   WHERE p.shardid = $shard});
my ($holder) = grep { $_->port == $holder_port } @workers;
my ($other) = grep { $_->port != $holder_port } @workers;
my $save = qq{SELECT version FROM orders_save(jsonb_populate_record(
	(SELECT o FROM orders_get('$ids[0]') o), '{"status": "cancelled"}'))};
is($holder->safe_psql('postgres', $save), '2', 'orders_save on the worker that holds the order');
like(CitusCluster::try_sql($other, $save), qr/0A000: order is held on another node of the Citus cluster/,
	'and refused on the worker that does not');

# The lock a call takes is the one Citus's shard move takes exclusively:
# while a move's lock_shard_metadata holds it, the call waits.
my $mover = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $holder->connstr('postgres'), '-c',
	  "BEGIN; SELECT lock_shard_metadata(7, ARRAY[$shard]::bigint[]); SELECT pg_sleep(5); COMMIT;" ],
	'>', \my $mover_out, '2>', \my $mover_err);
$holder->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 8 AND granted})
  or die 'the move\'s lock was not taken';
like(CitusCluster::try_sql($holder, qq{SET lock_timeout = '500ms'; SELECT * FROM orders_get('$ids[0]')}),
	qr/55P03: canceling statement due to lock timeout/,
	'a call waits for a shard move of its order');
$mover->finish;
is($holder->safe_psql('postgres', qq{SELECT version FROM orders_get('$ids[0]')}), '2',
	'and goes on once the move is over');

# No shell table ever held a row: on every node, the tables under the
# extension's names are empty files.
CitusCluster::shells_hold_nothing(@nodes);

CitusCluster::stop(@nodes);
is(join("\n", CitusCluster::crashes(@nodes)), '', 'no node log shows a crash or a failed assertion');
done_testing();
