# The Python repository client (clients/python, psycopg 3): its contract
# tests against the extension and against the in-memory twin (units of
# work, events and the consumer included), the error mapping, pools,
# concurrent saves with retry, notifications while the handler is busy,
# and the consumer loop killed mid-batch, all with python3 -m unittest.
use strict;
use warnings;
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('python');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION orders');

my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
local $ENV{ORDERS_DSN} = $node->connstr('postgres');
local $ENV{TMPDIR} = $node->basedir;
my ($stdout, $stderr);
my $ok = IPC::Run::run([ $python, '-m', 'unittest', 'discover', '-v', '-s', 'tests', '-t', '.' ],
	'>', \$stdout, '2>', \$stderr, init => sub { chdir "$FindBin::RealBin/../../clients/python" or die $! });
note($stderr);
ok($ok, 'the Python client\'s tests pass');
my ($ran) = $stderr =~ /^Ran (\d+) tests?/m;
ok(defined $ran && $ran >= 30, 'they all ran (' . ($ran // 0) . ')');
unlike($stderr, qr/\bskipped\b/, 'none was skipped');

$node->stop;
is(join("\n", grep { /TRAP:|terminated by signal/ } split /\n/, slurp_file($node->logfile)), '',
	'the server log shows no crash');
done_testing();
