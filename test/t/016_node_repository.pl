# The TypeScript repository client (clients/node, node-postgres): its
# contract test against the extension and against the in-memory
# repository, the error mapping, units of work, concurrent saves with
# retry, and the consumer loop killed mid-batch, all with `npm test`
# (node's test runner; test/check installs the client's packages first).
use strict;
use warnings;
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $dir = "$FindBin::RealBin/../../clients/node";
ok(-d "$dir/node_modules/pg", 'the client\'s packages are installed (npm ci)')
  or BAIL_OUT('run npm ci in clients/node: test/check does');

my $node = PostgreSQL::Test::Cluster->new('node');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION orders');

# node-postgres reads the connection from the environment
local $ENV{PGHOST} = $node->host;
local $ENV{PGPORT} = $node->port;
local $ENV{PGDATABASE} = 'postgres';
local $ENV{TMPDIR} = $node->basedir;
my ($stdout, $stderr);
my $ok = IPC::Run::run([ 'npm', 'test' ], '>', \$stdout, '2>', \$stderr,
	init => sub { chdir $dir or die $! });
note($stdout);
note($stderr) if $stderr ne '';
ok($ok, 'the TypeScript client\'s tests pass');
my ($tests) = $stdout =~ /^# tests (\d+)/m;
my ($passed) = $stdout =~ /^# pass (\d+)/m;
ok(defined $tests && $tests >= 30 && $passed == $tests, 'they all ran and passed (' . ($passed // 0) . ' of ' . ($tests // 0) . ')');
like($stdout, qr/^# skipped 0$/m, 'none was skipped');

$node->stop;
is(join("\n", grep { /TRAP:|terminated by signal/ } split /\n/, slurp_file($node->logfile)), '',
	'the server log shows no crash');
done_testing();
