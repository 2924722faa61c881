# The randomized concurrency test (test/fuzz.py, Debian's python3-psycopg2)
# against a cluster of its own: four sessions race on a shared pool of
# orders with valid and invalid calls, in transactions that commit, roll
# back and use savepoints; each step's outcome, the stored orders, the
# outbox and every invariant are checked as it runs and once it stopped.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('fuzz');
$node->init;
# tens of thousands of calls, thousands of them refused on purpose: the log
# keeps their errors, not every statement (fuzz.py reports what it sent)
$node->append_conf('postgresql.conf',
	"log_statement = none\nlog_min_error_statement = fatal\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION orders');

my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
local $ENV{PGHOST} = $node->host;
local $ENV{PGPORT} = $node->port;
local $ENV{PGDATABASE} = 'postgres';

my ($stdout, $stderr);
my $exited_0 = IPC::Run::run(
	[ $python, 'test/fuzz.py', '--seconds', '20', '--sessions', '4' ],
	'>', \$stdout, '2>', \$stderr);
chomp($stdout);
note $stdout;
ok($exited_0, 'test/fuzz.py exits with status 0');
is($stderr, '', 'test/fuzz.py prints no errors') or diag $stderr;
# the seed is on the first line: --seed repeats the run's choices
like($stdout, qr/^seed \d+/m, 'test/fuzz.py names its seed');
# its closing line counts the checks: some passed, none failed
like($stdout, qr/^[1-9]\d* passed, 0 failed\n?\z/m, 'test/fuzz.py: every check passes')
  or diag $stdout;

$node->stop;
# a crash of any backend (a signal) or a failed assertion fails the test
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal/, 'the server log shows no backend killed by a signal');
unlike($log, qr/TRAP:/, 'the server log shows no failed assertion');
done_testing();
