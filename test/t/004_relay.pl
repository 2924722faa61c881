# orders.notify = relay on a server with the library preloaded: writers send
# no NOTIFY, the relay worker sends them after commit.  A listener records
# every notification while the worker is killed mid-stream and the server
# crashes once; at the end every committed relay event was notified at least
# once, and each order's events arrived in the order they happened.
#
# NOTIFY reaches only listeners connected when it is sent, and a crash drops
# every connection: the events the worker sends right after the restart may
# go out before the listener is back.  Those are exactly the ones it had not
# acknowledged before the crash; the test checks that it sent them all after
# the restart (it acknowledges an event in the transaction that sends it),
# and that the listener heard every other one.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('relay');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'orders'
orders.relay_database = 'postgres'
max_connections = 30
restart_after_crash = on
});
$node->start;

$node->safe_psql('postgres', q{CREATE EXTENSION orders;});
$node->safe_psql('postgres', slurp_file('test/t/crash/seed.sql'));

# The running worker's pid; with $gone, one other than that worker's, which
# was just told to go: pg_terminate_backend returns before the process has
# exited, and until then pg_stat_activity still lists it.
sub worker_pid
{
	my ($gone) = @_;
	my $deadline = time + 60;
	while (time < $deadline)
	{
		my $pid = $node->safe_psql('postgres',
			q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'orders relay'});
		return $pid if $pid && (!defined $gone || $pid != $gone);
		usleep(100_000);
	}
	die 'the relay worker is not running' . (defined $gone ? " (but for pid $gone)" : '');
}

sub relay_caught_up
{
	$node->poll_query_until('postgres',
		q{SELECT coalesce((SELECT pending FROM orders_events_consumers() WHERE name = 'orders_relay'), -1) = 0})
	  or die 'the relay worker did not catch up';
}

my $first = worker_pid();
ok($first, "the relay worker runs (pid $first)");
# From 17 on, pg_stat_activity names what the idle worker waits for.
my $idle_event = $node->safe_psql('postgres', 'SHOW server_version_num') >= 170000
  ? 'OrdersRelayIdle' : 'Extension';
ok($node->poll_query_until('postgres',
		qq{SELECT wait_event = '$idle_event' FROM pg_stat_activity WHERE backend_type = 'orders relay'}),
	"the idle relay worker waits on wait event $idle_event");
is($node->safe_psql('postgres', 'SET orders.notify = relay; SHOW orders.notify'), 'relay',
	'orders.notify = relay is accepted where the library is preloaded');

local $ENV{PGHOST} = $node->host;
local $ENV{PGPORT} = $node->port;
local $ENV{PGDATABASE} = 'postgres';
my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
my $log = $node->basedir . '/heard.log';
my $stop = $node->basedir . '/stop';
my $listener = IPC::Run::start([ $python, 'test/t/relay/listen_log.py', $log, $stop ],
	'>', \my $lout, '2>', \my $lerr);
# the listener makes the log once it listens; one that died never will
until (-e $log)
{
	$listener->pump_nb;
	die "the listener exited: $lerr" unless $listener->pumpable;
	usleep(100_000);
}

sub pgbench
{
	my ($seconds) = @_;
	local $ENV{PGOPTIONS} = '-c orders.notify=relay';
	return IPC::Run::start(
		[
			'pgbench', '-n', '-c', '4', '-j', '2', '-T', $seconds, '--max-tries', '50',
			'-f', 'test/t/crash/add.sql@1', '-f', 'test/t/crash/save.sql@1', 'postgres'
		],
		'>', \my $out, '2>', \my $err);
}

# writers in relay mode; the worker is killed mid-stream and comes back
my $bench = pgbench(4);
sleep 1;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($first)");
my $second = worker_pid($first);
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE pid = $first"), '0',
	"the killed worker is gone, and the postmaster started another (pid $second)");
$bench->finish;
relay_caught_up();

# the worker stops (SIGSTOP) while writers go on, then dies by SIGKILL: the
# server crashes, recovers, restarts the worker, which resumes from its
# checkpoint and notifies what it had not
kill 'STOP', $second;
$bench = pgbench(2);
$bench->finish;
my %backlog = map { $_ => 1 } split /,/, $node->safe_psql('postgres', q{
	SELECT string_agg(e.position::text, ',')
	FROM order_events e, order_event_consumers c
	WHERE c.name = 'orders_relay' AND e.relay
	  AND NOT pg_visible_in_snapshot(e.xid, c.acked_snapshot)
	  AND NOT (c.batch_snapshot IS NOT NULL AND pg_visible_in_snapshot(e.xid, c.batch_snapshot)
	           AND e.position <= c.batch_position)});
cmp_ok(scalar keys %backlog, '>', 0, scalar(keys %backlog) . ' events wait for the stopped worker');
kill 'KILL', $second;
# While the postmaster restarts after the crash, a connection may be cut
# halfway through its query (psql's stdin then breaks): ask again.
my $back = 0;
for (my $deadline = time + 60; !$back && time < $deadline; usleep(200_000))
{
	$back = eval { $node->safe_psql('postgres', 'SELECT true') eq 't' };
}
$back or die 'the server did not come back';
my $third = worker_pid($second);
ok($third, "after the crash the worker runs again (pid $third)");
relay_caught_up();

# the listener is back: writers again, and the worker killed once more
$node->poll_query_until('postgres',
	q{SELECT count(*) > 0 FROM pg_stat_activity WHERE query = 'LISTEN orders_events'})
  or die 'the listener did not come back';
$bench = pgbench(2);
sleep 1;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($third)");
$bench->finish;
worker_pid($third);
relay_caught_up();

open my $touch, '>', $stop or die;
close $touch;
$listener->finish;

my %heard;
my %order_versions;
my $notifications = 0;
my $in_order = 1;
open my $in, '<', $log or die "no $log";
while (<$in>)
{
	my ($position, $order_id, $version, $pid) = split;
	$notifications++;
	$heard{$position}++;
	my $last = $order_versions{$order_id} // 0;
	$in_order = 0 if $version < $last;
	$order_versions{$order_id} = $version;
}
close $in;

my @relayed = split /,/, $node->safe_psql('postgres',
	q{SELECT string_agg(position::text, ',') FROM order_events WHERE relay});
my @missing = grep { !$heard{$_} && !$backlog{$_} } @relayed;
my $backlog_heard = grep { $heard{$_} } keys %backlog;
cmp_ok(scalar @relayed, '>', 100, scalar(@relayed) . ' events were written in relay mode');
is(scalar @missing, 0, 'every committed relay event was notified at least once'
	. " ($notifications notifications heard; of the crash backlog, $backlog_heard of "
	. scalar(keys %backlog) . ' reached the reconnecting listener)');
ok($in_order, "each order's events were heard in the order they happened");
is($node->safe_psql('postgres', q{SELECT count(*) FROM order_events WHERE NOT relay AND position > 200}),
	'0', 'in relay mode writers mark every event for the relay');

$node->stop;
# the test kills the worker with SIGKILL itself; any other signal, or a
# failed assertion, is a crash
unlike(slurp_file($node->logfile), qr/terminated by signal (?!9:)|TRAP:/, 'the server log shows no crash');
done_testing();
