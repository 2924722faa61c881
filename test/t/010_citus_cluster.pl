# The Citus cluster the distributed tests run on (test/t/lib/CitusCluster.pm):
# a coordinator and two workers start, know each other, and a table
# distributed through the coordinator keeps its rows on both workers, all of
# which the coordinator reads back.  No node crashes.  Without Citus
# installed for the server under test, this fails: run test/citus-build.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CitusCluster;

my ($coordinator, @workers) = CitusCluster::start(workers => 2);
is(scalar @workers, 2, 'two workers started');

# Each worker is active and has the metadata, so it can take delegated calls.
is( $coordinator->safe_psql('postgres', q{
		SELECT string_agg(format('%s %s %s %s %s', nodeport, groupid = 0, isactive,
		                         hasmetadata, metadatasynced), ',' ORDER BY groupid)
		FROM pg_dist_node}),
	join(',',
		$coordinator->port . ' t t t t',
		map { $_->port . ' f t t t' } @workers),
	'pg_dist_node: the coordinator in group 0, both workers active with synced metadata');

$coordinator->safe_psql('postgres', q{
CREATE TABLE items (id integer PRIMARY KEY, note text NOT NULL);
SELECT create_distributed_table('items', 'id');
INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 100) i;
});

is($coordinator->safe_psql('postgres', 'SELECT count(*), sum(id) FROM items'),
	'100|5050', 'the coordinator reads all 100 rows');

# Each worker's own shards, read on that worker, not through Citus's planner:
# the rows are where Citus's metadata says, and on both workers.
my $total = 0;
for my $worker (@workers)
{
	my @shards = split /\n/, $coordinator->safe_psql('postgres', qq{
		SELECT shard_name FROM citus_shards
		WHERE table_name = 'items'::regclass AND nodeport = @{[ $worker->port ]}
		ORDER BY shardid});
	is(scalar @shards, 2, $worker->name . ' holds 2 of the 4 shards');
	my $rows = $worker->safe_psql('postgres',
		'SELECT ' . join(' + ', map { "(SELECT count(*) FROM $_)" } @shards));
	cmp_ok($rows, '>', 0, $worker->name . " holds rows ($rows)");
	$total += $rows;
}
is($total, 100, 'the workers hold the 100 rows between them');
is( $coordinator->safe_psql('postgres', q{
		SELECT count(*) FROM citus_shards WHERE nodeport = } . $coordinator->port),
	'0', 'the coordinator holds no shard');

# A row through the coordinator lands in the shard its id hashes to.
$coordinator->safe_psql('postgres', q{UPDATE items SET note = 'changed' WHERE id = 42});
my ($shard, $port) = split /\|/, $coordinator->safe_psql('postgres', q{
	SELECT shard_name, nodeport FROM citus_shards
	WHERE shardid = get_shard_id_for_distribution_column('items', 42)});
my ($holder) = grep { $_->port == $port } @workers;
is($holder->safe_psql('postgres', "SELECT note FROM $shard WHERE id = 42"),
	'changed', "the update of id 42 is in $shard on " . $holder->name);

CitusCluster::stop($coordinator, @workers);
is(join("\n", CitusCluster::crashes($coordinator, @workers)), '',
	'no node log shows a failed assertion or a process killed by a signal');

done_testing();
