# The TypeScript client as a package (issue 26): from a copy of clients/node,
# npm pack builds the tarball (ESM and .d.ts); a clean application installs
# it OFFLINE from the npm cache that test/check's npm ci filled
# (clients/node/.npm-cache), type-checks a program using it with
# tsc --strict (and a wrong one fails), and runs the program against a
# throw-away cluster: Order.new, add, a unit of work on a pool, eventsOf,
# a consumer pass.
use strict;
use warnings;
use File::Copy;
use File::Path qw(make_path);
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $client = "$FindBin::RealBin/../../clients/node";
my $cache = "$client/.npm-cache";
ok(-d "$client/node_modules/typescript" && -d $cache, 'the client\'s packages and npm cache are there (npm ci)')
  or BAIL_OUT('run npm ci --cache .npm-cache in clients/node: test/check does');

# run(DIR, COMMAND...): the command in DIR; its output, and whether it worked
sub run_in
{
	my ($dir, @cmd) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(\@cmd, '>', \$out, '2>', \$err, init => sub { chdir $dir or die $! });
	return ($ok, $out, $err);
}

my $tmp = PostgreSQL::Test::Utils::tempdir;
my ($ok, $out, $err);

# a copy, so that the build touches nothing of the checkout
($ok, $out, $err) = run_in($tmp, 'cp', '-a', $client, "$tmp/client");
ok($ok, 'the client copied') or diag($err);
IPC::Run::run([ 'rm', '-rf', "$tmp/client/dist", "$tmp/client/.npm-cache" ]);
($ok, $out, $err) = run_in("$tmp/client", 'npm', 'pack', '--offline', '--cache', $cache, '--json',
	'--pack-destination', $tmp);
ok($ok, 'npm pack builds the tarball') or diag($err);
my $tarball = 'orders-repository-0.2.0.tgz';
ok(-f "$tmp/$tarball", "$tarball is there");
my ($listed) = IPC::Run::run([ 'tar', '-tzf', "$tmp/$tarball" ], '>', \my $files);
like($files, qr{^package/dist/src/index\.js$}m, 'ESM in it');
like($files, qr{^package/dist/src/index\.d\.ts$}m, 'type declarations in it');
unlike($files, qr{^package/(?:dist/test|src|test)/}m, 'no sources or tests in it');

# a clean application, installed offline
my $app = "$tmp/app";
make_path($app);
copy("$tmp/$tarball", "$app/$tarball") or die $!;
copy("$FindBin::RealBin/node_package/$_", "$app/$_") or die $! for qw(main.ts wrong.ts);
($ok, $out, $err) = run_in($app, 'node', "$FindBin::RealBin/node_package/lock.mjs", "$client/package-lock.json",
	$tarball, $app);
ok($ok, 'the application\'s lockfile, from the client\'s') or diag($err);
($ok, $out, $err) = run_in($app, 'npm', 'ci', '--offline', '--cache', $cache, '--no-audit', '--no-fund');
ok($ok, 'npm ci --offline installs the tarball and its dependencies') or diag($err);
ok(-f "$app/node_modules/orders-repository/dist/src/index.d.ts", 'installed, with its declarations');

my @tsc = ("$app/node_modules/.bin/tsc", '--strict', '--target', 'es2022', '--module', 'nodenext',
	'--moduleResolution', 'nodenext');
($ok, $out, $err) = run_in($app, @tsc, '--outDir', 'out', 'main.ts');
ok($ok, 'tsc --strict is clean on a program using the package') or diag($out . $err);
($ok, $out, $err) = run_in($app, @tsc, '--noEmit', 'wrong.ts');
ok(!$ok && $out =~ /wrong\.ts.*TS2322/, 'and refuses a bigint taken for a number') or diag($out . $err);

my $node = PostgreSQL::Test::Cluster->new('node_package');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION orders');
{
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	local $ENV{PGDATABASE} = 'postgres';
	($ok, $out, $err) = run_in($app, 'node', 'out/main.js');
}
ok($ok, 'the program runs against the cluster') or diag($err);
is($out, '{"total":"900","version":2,"history":["order_added","order_confirmed"],'
	  . '"consumed":["order_added","order_confirmed"],"refused":"not_integer","required":"1.12"}' . "\n",
	'it added, confirmed in a unit, read the history, consumed the events; the twin refused 12.99');

$node->stop;
done_testing();
