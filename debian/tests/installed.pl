# The installed package at work (debian/tests/installed runs this once per
# major, with PATH leading to that major's server and ORDERS_PACKAGE naming
# the package).  Every file of the extension the server can find must be the
# package's, unchanged since it was installed: a cluster started here runs
# the packaged library and scripts and nothing else.  On that cluster, with
# the library preloaded: CREATE EXTENSION, an order added and its event
# read and acknowledged, the relay worker sending the NOTIFY, and updates
# from the oldest release and from the one before the current one, each
# with an order written before the update and read after it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $package = $ENV{ORDERS_PACKAGE} or die 'ORDERS_PACKAGE is not set';

my $node = PostgreSQL::Test::Cluster->new('packaged');
my $libdir = $node->config_data('--pkglibdir');
my $extdir = $node->config_data('--sharedir') . '/extension';

# --- the files ---------------------------------------------------------

my @listed = split /\n/, `dpkg -L $package`;
is($?, 0, "dpkg lists ${package}'s files");
my %owned = map { $_ => 1 } @listed;
my @found = (glob("$libdir/orders.so"), glob("$libdir/bitcode/orders.index.bc"),
	glob("$libdir/bitcode/orders/*/*"), glob("$extdir/orders.control"), glob("$extdir/orders--*.sql"));
ok(-f "$libdir/orders.so", "the server's library folder has orders.so ($libdir)");
my @stray = grep { -f $_ && !$owned{$_} } @found;
is_deeply(\@stray, [], "every orders file the server can load is ${package}'s (none from make install)");
my $verify = `dpkg --verify $package 2>&1`;
is($verify, '', "${package}'s files are as it installed them (dpkg --verify)");

my ($default) = slurp_file("$extdir/orders.control") =~ /^default_version = '([^']+)'/m;
ok($default, "the packaged control file names the default version ($default)");
my @scripts = map { m{/orders--([^/]+)\.sql$} ? $1 : () } @listed;
ok((grep { $_ eq '1.0' } @scripts), 'the package installs the oldest release, 1.0');
ok((grep { $_ eq $default } @scripts), "the package installs the current release's script, $default");

# --- a cluster that preloads the packaged library ----------------------

$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'orders'
orders.relay_database = 'postgres'
});
$node->start;

sub version_key { my ($major, $minor) = split /\./, shift; return $major * 1000 + $minor }
my @available = sort { version_key($a) <=> version_key($b) } split /\n/, $node->safe_psql('postgres',
	q{SELECT version FROM pg_available_extension_versions WHERE name = 'orders'});
is($available[0], '1.0', 'the server offers 1.0, the oldest release');
is($available[-1], $default, "and $default, the newest");
my $previous = $available[-2];

$node->safe_psql('postgres', 'CREATE EXTENSION orders');
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'orders'}),
	$default, "CREATE EXTENSION installs $default");
# the library a backend has mapped, as the kernel tells
my @mapped = do
{
	my ($sql, $pid_out) = ("SELECT orders_next_id() IS NOT NULL;\nSELECT pg_backend_pid();\n", '');
	my $psql = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres') ],
		'<', \$sql, '>', \$pid_out, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	$psql->pump until $pid_out =~ /^t\n(\d+)\n/;
	my @lines = grep { m{/orders\.so} } split /\n/, slurp_file("/proc/$1/maps");
	$sql .= "\\q\n";
	$psql->finish;
	@lines;
};
ok(@mapped, 'a backend that called the extension has orders.so mapped');
ok(!grep({ !m{ \Q$libdir\E/orders\.so$} } @mapped), "and it is $libdir/orders.so, the package's")
  or diag(join "\n", @mapped);

my $worker = 0;
for (my $deadline = time + 60; !$worker && time < $deadline; usleep(100_000))
{
	# once it has found the database: the first worker, with none yet, exits
	# and the postmaster starts another
	$worker = $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'orders relay' AND datname = 'postgres'});
}
ok($worker, "the relay worker of the preloaded library runs (pid $worker)");

my $add = q{
	SELECT id FROM orders_add(
		customer_id => '7c6d3c2e-1f1a-4e55-9d0a-3b8f1e2a9c01', currency => 'EUR',
		lines => ARRAY[ROW('0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b', 'Green tea', 2, 450)::order_line],
		shipping_address => ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address)};

# an order and its event, read and acknowledged by a consumer
$node->safe_psql('postgres', q{SELECT orders_events_register('packaged', true)});
my $id = $node->safe_psql('postgres', $add);
like($id, qr/^[0-9a-f-]{36}$/, "orders_add stores an order ($id)");
is($node->safe_psql('postgres', qq{SELECT total FROM orders_get('$id')}), '900',
	'orders_get reads it back with its total');
is($node->safe_psql('postgres', q{
	SELECT string_agg(type || ' ' || order_id, ',') FROM orders_events_read('packaged', 10)}),
	"order_added $id", 'the consumer reads its order_added event');
$node->safe_psql('postgres', q{SELECT orders_events_ack('packaged', (SELECT max(position) FROM order_events))});
is($node->safe_psql('postgres', q{SELECT count(*) FROM orders_events_read('packaged', 10)}),
	'0', 'acknowledged, nothing is left to read');

# orders.notify = relay: the writer sends nothing, the worker notifies
my ($in, $out, $err) = ('', '', '');
my $listener = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres') ],
	'<', \$in, '>', \$out, '2>', \$err, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
$in .= "LISTEN orders_events;\nSELECT 'listening';\n";
$listener->pump until $out =~ /listening/;
my $relayed = $node->safe_psql('postgres', "SET orders.notify = relay; $add");
my $heard;
for (my $deadline = time + 60; time < $deadline; usleep(200_000))
{
	$in .= "SELECT 1;\n";
	$listener->pump while length $in;
	$listener->pump_nb;
	last if ($heard) = $out =~ /^(Asynchronous notification "orders_events" with payload ".*\Q$relayed\E.*" received from server process with PID \d+)/m;
}
$in .= "\\q\n";
$listener->finish;
ok($heard, 'a listener hears the relayed order\'s event');
like($heard // '', qr/PID \Q$worker\E\.?$/, 'sent by the relay worker, not by the writer');

# --- updates from older releases, with data written before them -------

for my $from ('1.0', $previous)
{
	my $db = 'from_' . ($from =~ tr/./_/r);
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION orders VERSION '$from'");
	my $old = $node->safe_psql($db, $add);
	my ($rc, $stdout, $stderr) = $node->psql($db, 'ALTER EXTENSION orders UPDATE');
	is($rc, 0, "ALTER EXTENSION orders UPDATE from $from succeeds") or diag($stderr);
	is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'orders'}),
		$default, "from $from, the extension is at $default");
	is($node->safe_psql($db, qq{SELECT total || ' ' || version FROM orders_get('$old')}), '900 1',
		"the order written at $from reads back after the update");
	is($node->safe_psql($db, qq{SELECT string_agg(type, ',') FROM orders_events_of('$old')}),
		'order_added', "and so does its event");
	my $new = $node->safe_psql($db, $add);
	ok($new, "after the update from $from, orders_add works");
}

$node->stop;
ok(!grep({ /TRAP:|terminated by signal/ } split /\n/, slurp_file($node->logfile)),
	'the server log shows no failed assertion and no crash');

done_testing();
