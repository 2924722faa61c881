# The Python client as its users get it: from a copy of clients/python in a
# temporary folder, python3 -m build --no-isolation makes a wheel and an
# sdist; each is installed offline (pip --no-index) in a venv of its own
# that sees Debian's psycopg and psycopg_pool; a small program runs against
# this test's cluster from each, and mypy --strict checks that program
# against the installed package (py.typed shipped).
use strict;
use warnings;
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('python_package');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION orders');

my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
my $root = "$FindBin::RealBin/../..";
my $work = PostgreSQL::Test::Utils::tempdir();
local $ENV{TMPDIR} = $node->basedir;
local $ENV{PIP_NO_INDEX} = '1';             # offline, whatever pip.conf says
local $ENV{PIP_DISABLE_PIP_VERSION_CHECK} = '1';
local $ENV{PYTHONDONTWRITEBYTECODE} = '1';

# run(NAME, DIR, COMMAND...): the command's success, its output noted
sub run
{
	my ($name, $dir, @cmd) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(\@cmd, '>', \$out, '2>', \$err, init => sub { chdir $dir or die $! });
	note("$name:\n$out$err");
	ok($ok, $name) or diag("$out$err");
	return $out;
}

system('cp', '-R', "$root/clients/python", "$work/src") == 0 or die "cp: $?";
system('rm', '-rf', "$work/src/tests", "$work/src/build", "$work/src/dist") == 0 or die;
run('the wheel and the sdist build', "$work/src", $python, '-m', 'build', '--no-isolation', '--outdir',
	"$work/dist", '.');
my ($wheel) = glob("$work/dist/orders_repository-*.whl");
my ($sdist) = glob("$work/dist/orders-repository-*.tar.gz");
ok(defined $wheel && defined $sdist, 'both artifacts are there');
like($wheel // '', qr/-0\.2\.0-py3-none-any\.whl$/, 'the wheel is 0.2.0, pure Python');

my $program = "$FindBin::RealBin/package/program.py";
my $dsn = $node->connstr('postgres');
for my $artifact ([ 'wheel', $wheel ], [ 'sdist', $sdist ])
{
	my ($kind, $file) = @$artifact;
	my $venv = "$work/venv-$kind";
	run("a venv for the $kind", $work, $python, '-m', 'venv', '--system-site-packages', $venv);
	# the sdist is built by Debian's setuptools, offline: no isolated build
	run("the $kind installs offline", $work, "$venv/bin/pip", 'install', '--no-index', '--no-build-isolation',
		$file);
	my $out = run("the program runs from the $kind", $work, "$venv/bin/python", $program, $dsn);
	like($out, qr{^from \Q$venv\E/lib/python3[^/]*/site-packages/orders_repository/}m,
		"the package imported is the $kind\'s, not the source");
	like($out, qr/^version 0\.2\.0 needs 1\.12$/m, 'it says its version and the extension it needs');
	like($out, qr/^twin confirmed 900$/m, 'the twin ran the service');
	like($out, qr/^events_of \['order_added', 'order_confirmed'\]$/m, 'the unit of work wrote its events');
	like($out, qr/^consumed \['order_added', 'order_confirmed', 'order_added'\]$/m,
		'the consumer read them on a pool');
	run("mypy --strict passes on the program against the $kind", $work, 'mypy', '--strict', '--no-incremental',
		'--python-executable', "$venv/bin/python", $program);
}

$node->stop;
done_testing();
