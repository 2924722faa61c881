# A failover to a physical standby, under writers and a consumer.  Two
# pgbench clients add and confirm orders on the primary (each order's two
# events in two transactions) while a consumer reads and acknowledges.  The
# standby streams asynchronously, as most do; to know exactly what it has
# when the primary dies, the test waits for it to replay everything up to
# a point, then cuts its WAL receiver (primary_conninfo emptied): what the
# primary commits after that is lost at the failover, as the tail of an
# asynchronous standby is.  The consumer goes on reading and acknowledging
# on the primary past the cut, reads a last batch without acknowledging
# it, and the primary is stopped with 'immediate'.  The standby is promoted;
# the consumer goes on against it, with more orders written there, and
# reads to the end.
#
# The new primary has the checkpoint of the consumer's last acknowledgement
# before the cut, and so must deliver exactly its events that that
# checkpoint does not cover: every event it has and the consumer had not
# acknowledged before the cut, once each, each order's in version order;
# nothing it has is skipped.  An event is told by its id (a position handed
# out after the cut is handed out again by the new primary).  Delivered
# twice: only the events the old primary delivered after the cut,
# acknowledged there or not (the standby never received those
# acknowledgements); delivered by the old primary and absent from the new:
# only events committed after the cut.  Both are counted and listed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use ConsumerLedger qw(session run_sql sql_ok add_order_sql set_status_sql add_order set_status);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->start;
$primary->safe_psql('postgres', q{
	CREATE EXTENSION orders;
	SELECT orders_events_register('billing');
});
$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;

sub add_and_confirm
{
	my ($s) = @_;
	set_status($s, add_order($s), 'confirmed');
}

# The writers: pgbench, two clients, 50 orders a second each, until the
# primary goes away.
my $script = $primary->basedir . '/writer.sql';
open my $fh, '>', $script or die "$script: $!";
print $fh add_order_sql() . " \\gset\n" . set_status_sql(':id', 'confirmed') . ";\n";
close $fh;
my ($bench_out, $bench_err) = ('', '');
my $writers = IPC::Run::start(
	[
		'pgbench', '-n', '-c', '2', '-j', '2', '-T', '120', '-R', '50', '-f', $script,
		'-h', $primary->host, '-p', $primary->port, 'postgres'
	],
	'>', \$bench_out, '2>', \$bench_err);

# The consumer.  Each event handed: [phase, id, position, order, version].
my @handed;
my %acked_before_cut;    # id => 1: acknowledged before the cut

sub read_batch
{
	my ($s, $phase, $n) = @_;
	my ($out, $err) = run_sql($s,
		"SELECT id, position, order_id, version FROM orders_events_read('billing', $n)");
	return (undef, $err) if $err ne '';
	my @got = map { [ $phase, split /\|/ ] } grep { $_ ne '' } split /\n/, $out;
	push @handed, @got;
	return (\@got, '');
}

# a read acknowledged whole: (events, error of the read or of the
# acknowledgement); nothing to acknowledge after an empty read
sub read_ack
{
	my ($s, $phase, $n) = @_;
	my ($got, $err) = read_batch($s, $phase, $n);
	return ($got, $err) if $err ne '' || !@$got;
	return ($got, (run_sql($s, "SELECT orders_events_ack('billing', $got->[-1][2])"))[1]);
}

my $reader = session($primary, 'postgres');
my $w = session($primary, 'postgres');
my $err;

# Before the cut: reads of 20, each acknowledged, while the writers write;
# at least 30, and on until one ends its batch (fewer than 20), so that the
# first read after the cut opens a batch of its own
my $reads = 0;
for (1 .. 1000)
{
	my $got;
	($got, $err) = read_ack($reader, 'before', 20);
	last if $err;
	$acked_before_cut{ $_->[1] } = 1 for @$got;
	$reads++;
	last if $reads >= 30 && @$got < 20;
	usleep(25_000);
}
is($err, '', "before the cut: $reads reads, each acknowledged, under the writers");

# Six orders the consumer has not read yet, then the standby replays
# everything so far, then its WAL receiver is cut: the checkpoint the
# standby has is the last acknowledgement above.
add_and_confirm($w) for 1 .. 6;
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
$standby->safe_psql('postgres',
	q{ALTER SYSTEM SET primary_conninfo = ''; SELECT pg_reload_conf();});
$standby->poll_query_until('postgres', 'SELECT count(*) = 0 FROM pg_stat_wal_receiver')
  or die 'the WAL receiver of the standby does not stop';
$primary->poll_query_until('postgres', 'SELECT count(*) = 0 FROM pg_stat_replication')
  or die 'the primary still streams';
my $cut = $standby->safe_psql('postgres', 'SELECT pg_last_wal_receive_lsn()');
note("the standby has the WAL up to $cut");

# After the cut: one more order, then two reads of 4 acknowledged on the
# primary only, with more orders, then a read of the rest of the batch not
# acknowledged when the primary dies.  The batch (opened by the first read)
# holds at least 12 events committed before the cut, unread (the six
# orders), then the order just written, and at most two events committed
# after the cut have lower positions than those 12 (a pgbench client's
# transaction that had taken its position): so the first 8 events read hold
# at least 6 the standby has, the rest of the batch at least 2, and the two
# events of the order written after the cut, which the standby never gets.
add_and_confirm($w);
my %after_cut;    # id => 'acknowledged' or 'not acknowledged'
for (1 .. 2)
{
	my $got;
	($got, $err) = read_ack($reader, 'after', 4);
	last if $err;
	$after_cut{ $_->[1] } = 'acknowledged' for @$got;
	add_and_confirm($w);
}
is($err, '', 'after the cut: two reads acknowledged on the primary');
my $last;
($last, $err) = read_batch($reader, 'after', 1000);
is($err, '', 'a last read on the primary, not acknowledged (' . scalar(@$last) . ' events)');
$after_cut{ $_->[1] } //= 'not acknowledged' for @$last;

$primary->stop('immediate');
$writers->finish;
$reader->quit;
$w->quit;
note('pgbench: ' . (split /\n/, $bench_err)[-1]) if $bench_err;

$standby->promote;
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 'f', 'the standby is promoted');

# The consumer goes on against the new primary, where 10 more orders are
# written first, and reads to the end
$reader = session($standby, 'postgres');
$w = session($standby, 'postgres');
my $top_before = sql_ok($w, 'SELECT max(position) FROM order_events');
add_and_confirm($w) for 1 .. 10;
my $new_reads = 0;
for (1 .. 500)
{
	my $got;
	($got, $err) = read_ack($reader, 'new', 50);
	last if $err;
	last unless @$got;
	$new_reads++;
}
is($err, '', "on the new primary, the consumer reads to the end ($new_reads reads)");

# What the new primary has: id => [position, order, version]
my %has;
for (split /\n/, sql_ok($w, 'SELECT id, position, order_id, version FROM order_events'))
{
	my ($id, @rest) = split /\|/;
	$has{$id} = \@rest;
}
# A promoted physical standby numbers its transactions as the primary did:
# nothing to adopt
is( sql_ok($w, q{SELECT system_identifier = (SELECT system_identifier FROM pg_control_system())
		AND adopted_at IS NULL FROM order_events_origin}),
	't', 'the new primary keeps the outbox as its own, never adopted (same system identifier)');
my @written_new = grep { $has{$_}[0] > $top_before } keys %has;
is(scalar @written_new, 20, 'the 10 orders written on the new primary: 20 events, above every position it had');
$reader->quit;
$w->quit;

my (%old, %new);
for my $h (@handed)
{
	my ($phase, $id) = @$h;
	if ($phase eq 'new') { $new{$id}++; }
	else { $old{$id}++; }
}
my @ids = sort { $has{$a}[0] <=> $has{$b}[0] } keys %has;
note(sprintf('the new primary has %d events; the consumer was handed %d on the old primary, %d on the new one',
	scalar(@ids), scalar(grep { $_->[0] ne 'new' } @handed), scalar(grep { $_->[0] eq 'new' } @handed)));

is(join(' ', grep { !$old{$_} && !$new{$_} } @ids), '',
	'every event the new primary has was delivered: nothing skipped');
is(join(' ', grep { $new{$_} > 1 } sort keys %new), '', 'the new primary delivered no event twice');
is(join(' ', grep { $old{$_} > 1 } sort keys %old), '', 'the old primary delivered no event twice');
is( join(' ', grep { $new{$_} } @ids),
	join(' ', grep { !$acked_before_cut{$_} } @ids),
	'the new primary delivered exactly the events it has that were not acknowledged before the cut');
is(join(' ', grep { !exists $has{$_} } sort keys %new), '', 'the new primary delivered only events it has');

# positions as ranges: 3 4 5 9 -> 3-5 9
sub ranges
{
	my @p = sort { $a <=> $b } @_;
	my @r;
	for my $p (@p)
	{
		if (@r && $r[-1][1] == $p - 1) { $r[-1][1] = $p; }
		else { push @r, [ $p, $p ]; }
	}
	return join(' ', map { $_->[0] == $_->[1] ? $_->[0] : "$_->[0]-$_->[1]" } @r);
}

# twice: only what the old primary delivered after the cut
my @twice = grep { $old{$_} && $new{$_} } @ids;
is(join(' ', grep { !$after_cut{$_} } @twice), '',
	'an event delivered twice was delivered by the old primary after the cut');
my @twice_acked = grep { ($after_cut{$_} // '') eq 'acknowledged' } @twice;
my @twice_unacked = grep { ($after_cut{$_} // '') eq 'not acknowledged' } @twice;
note(scalar(@twice) . ' events delivered twice: ' . scalar(@twice_acked)
	  . ' acknowledged on the old primary, the acknowledgement never received by the standby (positions '
	  . ranges(map { $has{$_}[0] } @twice_acked) . '); ' . scalar(@twice_unacked)
	  . ' read and not acknowledged when it died (positions ' . ranges(map { $has{$_}[0] } @twice_unacked) . ')');
cmp_ok(scalar @twice_acked, '>=', 6,
	'events committed before the cut and acknowledged after it came again');
cmp_ok(scalar @twice_unacked, '>=', 2,
	'events committed before the cut and read, not acknowledged, when the primary died came again');
# delivered by the old primary, lost with it
my @lost = grep { !exists $has{$_} } sort keys %old;
is(join(' ', grep { !$after_cut{$_} } @lost), '',
	'an event delivered by the old primary and absent from the new one was delivered after the cut');
note(scalar(@lost) . ' events delivered by the old primary were committed after the cut and are not on the new one');
cmp_ok(scalar @lost, '>=', 2, 'the order written after the cut was delivered by the old primary, and is lost with it');

# each order's events in version order, on each primary
my %versions;
for my $h (@handed)
{
	my ($phase, $id, $position, $order, $version) = @$h;
	push @{ $versions{ $phase eq 'new' ? 'new' : 'old' }{$order} }, $version;
}
for my $side ('old', 'new')
{
	my @disorder = grep {
		my @v = @{ $versions{$side}{$_} };
		grep { $v[$_] <= $v[ $_ - 1 ] } 1 .. $#v
	} sort keys %{ $versions{$side} };
	is("@disorder", '', "on the $side primary, each order's events came in version order");
}

$standby->stop;
# A crash of a backend (a signal) or a failed assertion fails the test.  The
# primary was stopped with 'immediate': its backends quit on SIGQUIT, which
# the server logs as a shutdown, not as a crash.
for my $node ($primary, $standby)
{
	unlike(slurp_file($node->logfile), qr/terminated by signal|TRAP:/,
		$node->name . ': the server log shows no crash');
}
done_testing();
