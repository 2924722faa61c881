# The Python client tests (Debian's python3-psycopg2) against a cluster of
# their own: a writer and a listener on two connections; the README's
# consumer, killed and restarted under a writer.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('client');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION orders');

my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
local $ENV{PGHOST} = $node->host;
local $ENV{PGPORT} = $node->port;
local $ENV{PGDATABASE} = 'postgres';

for my $script ('test/client/test_client.py', 'test/client/test_consumer.py')
{
	my ($stdout, $stderr) = run_command([ $python, $script ]);
	note $stdout;
	is($stderr, '', "$script prints no errors") or diag $stderr;
	like($stdout, qr/^(\d+) passed, 0 failed$/m, "$script: all pass") or diag $stdout;
}

$node->stop;
# a crash of any backend (a signal) or a failed assertion fails the test
unlike(slurp_file($node->logfile), qr/terminated by signal|TRAP:/, 'the server log shows no crash');
done_testing();
