# The Python repository client (clients/python, psycopg 3): its contract
# tests against the extension and against the in-memory twin (units of
# work, events and the consumer included), the error mapping, pools,
# concurrent saves with retry, notifications while the handler is busy,
# and the consumer loop killed mid-batch, all with python3 -m unittest: on
# this machine's psycopg (Debian 12's 3.1), and on the newer ones that
# test/check fetched (ORDERS_PSYCOPG_NEWER).
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

# suite(LABEL, PYTHONPATH): the whole client suite, on the psycopg that the
# path puts first (empty: the machine's own, Debian 12's 3.1).
sub suite
{
	my ($label, $path) = @_;
	local $ENV{PYTHONPATH} = $path if $path ne '';
	my ($stdout, $stderr, $version);
	IPC::Run::run([ $python, '-c', 'import psycopg, psycopg_pool; print(psycopg.__version__, psycopg_pool.__version__)' ],
		'>', \$version, '2>', \$stderr);
	chomp $version;
	my $ok = IPC::Run::run([ $python, '-m', 'unittest', 'discover', '-v', '-s', 'tests', '-t', '.' ],
		'>', \$stdout, '2>', \$stderr, init => sub { chdir "$FindBin::RealBin/../../clients/python" or die $! });
	note($stderr);
	ok($ok, "the Python client's tests pass ($label: psycopg and psycopg_pool $version)");
	my ($ran) = $stderr =~ /^Ran (\d+) tests?/m;
	ok(defined $ran && $ran >= 30, "they all ran (" . ($ran // 0) . ")");
	unlike($stderr, qr/\bskipped\b/, 'none was skipped');
	return $version;
}

suite('this machine\'s', '');

# ORDERS_PSYCOPG_NEWER: folders of newer psycopg releases, separated by
# colons, that test/check fetched from Debian 13 and unstable
# (test/psycopg-fetch); the suite runs on each too.  Run by hand without
# it, those runs are skipped.
SKIP:
{
	my @newer = grep { $_ ne '' } split /:/, $ENV{ORDERS_PSYCOPG_NEWER} // '';
	skip 'no newer psycopg fetched (test/check does, as root, on PostgreSQL 15)', 1 unless @newer;
	for my $path (@newer)
	{
		my ($from) = $path =~ m{/psycopg-([^/]+)/};
		my $version = suite('Debian ' . ($from // $path) . '\'s', $path);
		like($version, qr/^3\.(?:[2-9]|\d\d)\./, "that psycopg is 3.2 or later ($version)");
	}
}

$node->stop;
is(join("\n", grep { /TRAP:|terminated by signal/ } split /\n/, slurp_file($node->logfile)), '',
	'the server log shows no crash');
done_testing();
