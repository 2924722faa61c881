# orders_add through a Citus coordinator, with 2 and 8 clients, against the
# same call on a single server, on this machine.  A benchmark, not a test:
# it prints TPS and asserts only that the runs happened.  Run it as the TAP
# tests run:
#
#   make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/bench/citus_add.pl
#
# (as the user that owns the tree; Citus built by test/citus-build).  Every
# node runs on this one machine: the coordinator, two workers and pgbench
# share its cores.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../t/lib";
use CitusCluster;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $seconds = $ENV{BENCH_SECONDS} // 10;
my $settings = "orders.notify = off\n";
my ($coordinator, @workers) = CitusCluster::start(workers => 2,
	conf => "shared_preload_libraries = 'citus,orders'\n$settings");
my $single = PostgreSQL::Test::Cluster->new('single');
$single->init;
$single->append_conf('postgresql.conf', "max_connections = 100\n$settings");
$single->start;
$single->safe_psql('postgres', 'CREATE EXTENSION orders');
$coordinator->safe_psql('postgres', 'CREATE EXTENSION orders; SELECT orders_distribute()');

my $script = $single->basedir . '/add.sql';
open my $fh, '>', $script or die;
print $fh q{SELECT id FROM orders_add(gen_random_uuid(), 'EUR', '{"(0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b,Green tea,2,450)","(1c2f5a6b-7d8e-4f9a-8b1c-2d3e4f5a6b7c,Teapot,1,3900)","(2d3a6b7c-8e9f-4a0b-9c2d-3e4f5a6b7c8d,Mug,4,1250)"}'::order_line[], '("Main St 1",Berlin,10115,DE)'::order_address);
};
close $fh;

sub tps
{
	my ($node, $clients) = @_;
	my ($out, $err);
	IPC::Run::run([ 'pgbench', '-n', '-M', 'prepared', '-c', $clients, '-j', 2, '-T', $seconds,
			'-f', $script, $node->connstr('postgres') ], '>', \$out, '2>', \$err);
	my ($tps) = $out =~ /^tps = ([\d.]+)/m;
	return $tps // die "pgbench failed: $err";
}

my %runs;
for my $round (1 .. 3)
{
	for my $clients (2, 8)
	{
		push @{ $runs{"single $clients"} }, tps($single, $clients);
		push @{ $runs{"cluster $clients"} }, tps($coordinator, $clients);
	}
}
sub median { my @s = sort { $a <=> $b } @_; return $s[$#s / 2]; }
diag(sprintf('orders_add, 3 lines, generated id, orders.notify = off, %d s x 3 rounds, medians', $seconds));
for my $clients (2, 8)
{
	my ($s, $c) = (median(@{ $runs{"single $clients"} }), median(@{ $runs{"cluster $clients"} }));
	diag(sprintf('%d clients: single server %.0f TPS (%s), coordinator + 2 workers %.0f TPS (%s), ratio %.2f',
		$clients, $s, join(' ', map { int } @{ $runs{"single $clients"} }),
		$c, join(' ', map { int } @{ $runs{"cluster $clients"} }), $c / $s));
}
is($coordinator->safe_psql('postgres', 'SELECT count(*) > 0 FROM orders'), 't', 'the cluster wrote orders');
ok((grep { $_ > 0 } map { @$_ } values %runs) == 12, 'every run ran');

CitusCluster::stop($coordinator, @workers);
$single->stop;
done_testing();
