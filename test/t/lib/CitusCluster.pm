# A Citus cluster for TAP tests: a coordinator and workers, each a
# PostgreSQL::Test::Cluster node of the installation under test, which reach
# each other over loopback TCP.
#
#   use FindBin;
#   use lib "$FindBin::RealBin/lib";
#   use CitusCluster;
#
#   my ($coordinator, @workers) = CitusCluster::start(workers => 2,
#       conf => "shared_preload_libraries = 'citus,orders'\n");
#   ...
#   CitusCluster::stop($coordinator, @workers);
#
# Citus must be installed for that installation: test/citus-build does it,
# and test/check runs it before the TAP tests.  Without Citus, start() fails
# the test (it never skips: a cluster test that cannot run is a failure).
package CitusCluster;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

# Every node's settings; the caller's conf comes after them, so it may
# override any of them.
my $settings = <<'EOC';
# Citus connects node to node by TCP; nothing beyond loopback listens.
listen_addresses = '127.0.0.1'
# Citus refuses to load after another preloaded library.
shared_preload_libraries = 'citus'
# The default, sslmode=require, fails on the 17 and 18 built here, which
# lack SSL; on 15 it makes CREATE EXTENSION citus turn ssl on (ALTER SYSTEM)
# with a certificate it makes itself.
citus.node_conninfo = 'sslmode=disable'
# How a node reaches itself; Citus's default, 'localhost', may resolve to
# ::1 first, where nothing listens.
citus.local_hostname = '127.0.0.1'
# A transaction that writes on two workers commits with two-phase commit.
# Set, because Citus would otherwise raise 0 to twice max_connections, with
# a line in the log; as many as connections, as the documentation advises.
max_connections = 100
max_prepared_transactions = 100
# Shard moves copy through logical replication; its workers, Citus's
# maintenance daemon and background task executors, and orders' relay
# worker all need background worker slots.
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
max_worker_processes = 16
# As Citus's own test suite runs: 4 shards a table (not 32) makes
# distributing a table quick, 2 on each of 2 workers; a query opens at most
# 4 connections a worker, and opens them all at once rather than one every
# 10 ms.
citus.shard_count = 4
citus.max_adaptive_executor_pool_size = 4
citus.executor_slow_start_interval = '0ms'
# A node that is down is reported in 5 s, not 30.
citus.node_connection_timeout = '5s'
EOC

# The Citus version installed for the server under test (citus.control's
# default_version), or undef when citus.so or citus.control is missing.
sub installed
{
	my $pkglibdir = `pg_config --pkglibdir`;
	my $sharedir = `pg_config --sharedir`;
	return undef unless defined $pkglibdir && defined $sharedir;
	chomp($pkglibdir, $sharedir);
	my $control = "$sharedir/extension/citus.control";
	return undef unless -f "$pkglibdir/citus.so" && -f $control;
	my ($version) = slurp_file($control) =~ /^default_version\s*=\s*'([^']*)'/m;
	return $version;
}

# start(workers => N, conf => STRING): starts a coordinator and N workers
# (default 2), each with the settings above and then conf, creates the
# citus extension on each in the postgres database, registers the
# coordinator and adds the workers.  Returns ($coordinator, @workers).
sub start
{
	my (%params) = @_;
	my $nworkers = $params{workers} // 2;
	my $conf = $params{conf} // '';
	my $begun = time;

	my $version = installed();
	if (!defined $version)
	{
		chomp(my $bindir = `pg_config --bindir` // '');
		my $pg_config = "$bindir/pg_config";
		local $Test::Builder::Level = $Test::Builder::Level + 1;
		fail('Citus is installed for the server under test');
		diag("Citus is not installed for $pg_config: run test/citus-build $pg_config "
			  . '(as root; it builds Citus once per machine)');
		done_testing();
		exit 1;
	}
	note("Citus $version");

	# Only the last setting of a name counts, as in the server.
	my @preload = $conf =~ /^\s*shared_preload_libraries\s*=\s*'([^']*)'/mg;
	die "CitusCluster: citus must come first in shared_preload_libraries, not '$preload[-1]'"
	  if @preload && $preload[-1] !~ /^\s*citus\s*(,|$)/;

	my @nodes = map {
		my $node = PostgreSQL::Test::Cluster->new($_ == 0 ? 'coordinator' : "worker$_");
		$node->init;
		$node->append_conf('postgresql.conf', $settings . $conf);
		# Exactly what the nodes need: the tests' own connections on the
		# Unix socket, Citus's on loopback.
		open my $hba, '>', $node->data_dir . '/pg_hba.conf'
		  or die "could not write pg_hba.conf: $!";
		print $hba "local all all trust\nhost all all 127.0.0.1/32 trust\n";
		close $hba;
		$node->start;
		$node;
	} 0 .. $nworkers;
	my ($coordinator, @workers) = @nodes;

	$_->safe_psql('postgres', 'CREATE EXTENSION citus') for @nodes;
	$coordinator->safe_psql('postgres',
		'SELECT citus_set_coordinator_host(\'127.0.0.1\', ' . $coordinator->port . ')');
	for my $worker (@workers)
	{
		my $started = time;
		$coordinator->safe_psql('postgres',
			'SELECT citus_add_node(\'127.0.0.1\', ' . $worker->port . ')');
		note(sprintf('citus_add_node(%s): %.2f s', $worker->name, time - $started));
	}
	note(sprintf('Citus cluster of %d nodes up in %.1f s', scalar @nodes, time - $begun));
	return @nodes;
}

# stop(NODES): stops every node, the coordinator first so that it does not
# reach for workers that are gone.
sub stop
{
	$_->stop for @_;
	return;
}

# crashes(NODES): the lines of the nodes' logs that show a failed assertion
# or a process that a signal terminated.
# try_sql(NODE, SQL): the error output of SQL run on NODE's postgres
# database (verbose: with the SQLSTATE), empty when it succeeded.
sub try_sql
{
	my ($node, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return $err;
}

# shells_hold_nothing(@nodes): on every node, the tables under the orders
# extension's names are empty files: nothing was ever written into a
# shell, whose rows Citus would never read.
sub shells_hold_nothing
{
	for my $node (@_)
	{
		is($node->safe_psql('postgres',
				q{SELECT pg_relation_size('orders') + pg_relation_size('order_events')}),
			'0', $node->name . ': the shell tables hold nothing');
	}
}

sub crashes
{
	return map {
		my $log = slurp_file($_->logfile);
		my $name = $_->name;
		map { "$name: $_" } grep { /TRAP:|terminated by signal/ } split /\n/, $log;
	} @_;
}

1;
