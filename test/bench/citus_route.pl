# The cost of finding an order's shard on a Citus worker: orders_get called
# directly on a worker, for orders whose shards it holds, against the same
# call on a server with Citus loaded and nothing distributed.  A benchmark, not a test: it prints TPS and
# asserts only that the runs happened.  Run it as the TAP tests run:
#
#   make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/bench/citus_route.pl
#
# (as the user that owns the tree; Citus built by test/citus-build).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../t/lib";
use CitusCluster;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $seconds = $ENV{BENCH_SECONDS} // 10;
my ($coordinator, @workers) = CitusCluster::start(workers => 2);
# the same server with Citus loaded, its tables not distributed: what is
# left between the two is finding the shard
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->append_conf('postgresql.conf', "shared_preload_libraries = 'citus'\n");
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION citus');

my $orders = q{SELECT count(orders_add('c0000000-0000-4000-8000-000000000001', 'EUR',
	id => md5('order ' || n)::uuid)) FROM generate_series(1, 1000) n};
$plain->safe_psql('postgres', "CREATE EXTENSION orders; $orders");
$coordinator->safe_psql('postgres', q{
	CREATE EXTENSION orders;
	ALTER TABLE order_events DROP CONSTRAINT order_events_pkey,
	    ADD PRIMARY KEY (order_id, position);
	SELECT create_distributed_table('orders', 'id');
	SELECT create_distributed_table('order_events', 'order_id', colocate_with => 'orders');});
# written through Citus's own SQL path: the rows land in the shards
$coordinator->safe_psql('postgres', q{
	INSERT INTO orders (id, customer_id, status, currency, lines, total, version, created_at, updated_at)
	SELECT md5('order ' || n)::uuid, 'c0000000-0000-4000-8000-000000000001', 'pending', 'EUR',
	       '{}', 0, 1, now(), now()
	FROM generate_series(1, 1000) n});

# the ids whose shards the first worker holds, in a local table of its own
my $worker = $workers[0];
my $local = $coordinator->safe_psql('postgres', qq{
	SELECT string_agg(quote_literal(o.id), ',')
	FROM (SELECT md5('order ' || n)::uuid AS id FROM generate_series(1, 1000) n) o
	WHERE EXISTS (SELECT FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
	              JOIN pg_dist_node d USING (groupid)
	              WHERE s.logicalrelid = 'orders'::regclass AND d.nodeport = @{[ $worker->port ]}
	                AND worker_hash(o.id) BETWEEN s.shardminvalue::int AND s.shardmaxvalue::int)});
for my $node ($worker, $plain)
{
	$node->safe_psql('postgres', qq{
		SET citus.enable_ddl_propagation = off;
		CREATE TABLE bench_ids AS SELECT row_number() OVER () AS n, id::uuid
		FROM unnest(ARRAY[$local]) id;});
}
my $count = $worker->safe_psql('postgres', 'SELECT count(*) FROM bench_ids');

my $script = $plain->basedir . '/get.sql';
open my $fh, '>', $script or die;
print $fh "\\set n random(1, $count)\n"
  . "SELECT * FROM orders_get((SELECT id FROM bench_ids WHERE n = :n));\n";
close $fh;

sub tps
{
	my ($node) = @_;
	my ($out, $err);
	IPC::Run::run([ 'pgbench', '-n', '-M', 'prepared', '-c', '2', '-j', '2', '-T', $seconds,
			'-f', $script, $node->connstr('postgres') ], '>', \$out, '2>', \$err);
	my ($tps) = $out =~ /^tps = ([\d.]+)/m;
	return $tps // die "pgbench failed: $err";
}

my %runs;
for my $round (1 .. 3)
{
	push @{ $runs{plain} }, tps($plain);
	push @{ $runs{worker} }, tps($worker);
}
sub median { my @s = sort { $a <=> $b } @_; return $s[$#s / 2]; }
my ($p, $w) = (median(@{ $runs{plain} }), median(@{ $runs{worker} }));
diag(sprintf('orders_get, %d of its orders local to the worker, 2 clients, %d s x 3 rounds', $count, $seconds));
diag(sprintf('not distributed: median %.0f TPS (%s)', $p, join(' ', map { int } @{ $runs{plain} })));
diag(sprintf('Citus worker: median %.0f TPS (%s)', $w, join(' ', map { int } @{ $runs{worker} })));
diag(sprintf('worker / not distributed: %.2f', $w / $p));
ok($p > 0 && $w > 0, 'both ran');

CitusCluster::stop($coordinator, @workers);
$plain->stop;
done_testing();
