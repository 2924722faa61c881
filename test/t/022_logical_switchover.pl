# A switchover to a logical replica.  The publisher has the extension, its
# consumers read there while a subscriber, with the extension created in the
# same schema, replicates the extension's tables: FOR ALL TABLES; FOR TABLE
# listing every one, order_events_origin included; and FOR TABLE with only
# what the consumers need (no origin row reaches the subscriber).  While
# the subscription exists, every write and every consumer call on the
# subscriber is refused (55000) and changes nothing, disabled or not: the
# rows are still arriving, and the checkpoints are the publisher's, in its
# transaction ids (the purge does run there: it judges the publisher's
# checkpoints by the publisher's ids).  Then the switchover, as a DBA does
# it: writes stopped on the publisher, the subscriber caught up, the
# subscription disabled and dropped (slot_name = NONE, the slot dropped on
# the publisher), SELECT * FROM orders_adopt() on the subscriber.  There
# every consumer reads exactly what it had not acknowledged on the
# publisher (its batch open at the switchover from its acknowledged
# position; the events of a transaction that was running at its
# checkpoint), then the events written on the new primary, each once, in
# position order; those take positions above every replicated one (a
# subscriber's sequence is not replicated).  Consumers registered after
# the switchover start from the start or from now, as anywhere.  The
# expectation is the test's own bookkeeping (test/t/lib/ConsumerLedger.pm),
# as in 021_restore_consumers.pl.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use ConsumerLedger qw(session run_sql sql_ok add_order_sql set_status_sql add_order set_status
  outbox admin quit_admin sysid expected read_ack drain no_acked_again);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my %types = (shipping => [ 'order_confirmed', 'order_cancelled' ]);
my @consumers = qw(audit billing invoicing shipping);

my $pub = PostgreSQL::Test::Cluster->new('publisher');
$pub->init(allows_streaming => 'logical');
$pub->start;
my $sub = PostgreSQL::Test::Cluster->new('subscriber');
$sub->init;
$sub->start;

# the checkpoints as rows, to compare the two sides
my $checkpoints = q{SELECT string_agg(concat_ws(' ', name, acked_snapshot, batch_snapshot, batch_position,
	acked_top_position, batch_top_position), ', ' ORDER BY name) FROM order_event_consumers};

# Every call that writes an event or uses a checkpoint: on the subscriber,
# while the subscription exists, each is refused.
sub refused_calls
{
	my ($id, $position) = @_;
	return (
		orders_add => add_order_sql(),
		orders_add_many => q{SELECT orders_add_many('[{"customer_id": "7c6d3c2e-1f1a-4e55-9d0a-3b8f1e2a9c01", "currency": "EUR"}]')},
		orders_save => set_status_sql($id, 'confirmed'),
		orders_remove => qq{SELECT orders_remove('$id')},
		orders_events_register => q{SELECT orders_events_register('reporting')},
		orders_events_read => q{SELECT count(*) FROM orders_events_read('billing', 10)},
		'orders_events_read (typed)' =>
		  q{SELECT count(*) FROM orders_events_read('shipping', 10, ARRAY['order_confirmed'])},
		orders_events_ack => qq{SELECT orders_events_ack('audit', $position)},
		orders_events_nack => qq{SELECT orders_events_nack('invoicing', $position, 'no template')},
		orders_events_unregister => q{SELECT orders_events_unregister('audit')},
		orders_adopt => q{SELECT * FROM orders_adopt()},);
}

# name, publication, label, whether order_events_origin is published
my @variants = (
	[ 'all', 'FOR ALL TABLES', 'publication FOR ALL TABLES', 1 ],
	[ 'listed', 'FOR TABLE orders, order_events, order_event_consumers, order_event_holds, '
		  . 'order_idempotency, order_events_origin',
	  'publication FOR TABLE (each table of the extension)', 1 ],
	# a DBA who publishes what the consumers need and no more: the
	# subscriber does not know the publisher's identifier, and adopts all
	# the same
	[ 'core', 'FOR TABLE orders, order_events, order_event_consumers',
	  'publication FOR TABLE orders, order_events, order_event_consumers', 0 ],);

for my $variant (@variants)
{
	my ($name, $what, $label, $with_origin) = @$variant;
	my ($pdb, $sdb, $subname) = ("pub_$name", "sub_$name", "sub_$name");
	my $st = { types => \%types };
	my $err;

	admin($pub, "CREATE DATABASE $pdb");
	admin($sub, "CREATE DATABASE $sdb");
	my $p = session($pub, $pdb);
	my $x = session($pub, $pdb);
	sql_ok($p, 'CREATE EXTENSION orders');
	sql_ok($p, "SELECT orders_events_register('$_')") for qw(billing invoicing shipping);

	# round 1 before the subscription: the initial copy
	my @o = map { add_order($p) } 1 .. 4;
	set_status($p, $o[0], 'confirmed');
	set_status($p, $o[1], 'cancelled');

	sql_ok($p, "CREATE PUBLICATION pub_$name $what");
	my $s = session($sub, $sdb);
	sql_ok($s, 'CREATE EXTENSION orders');
	sql_ok($s, sprintf(q{CREATE SUBSCRIPTION %s CONNECTION 'host=%s port=%d dbname=%s' PUBLICATION pub_%s},
		$subname, $pub->host, $pub->port, $pdb, $name));
	$sub->wait_for_subscription_sync($pub, $subname, $sdb);

	# while replicating: audit from the start, X running across the
	# checkpoints of billing, invoicing and audit, shipping's batch open
	sql_ok($p, q{SELECT orders_events_register('audit', from_start => true)});
	sql_ok($x, 'BEGIN');
	add_order($x);
	set_status($x, $o[3], 'confirmed');
	my @r2 = map { add_order($p) } 1 .. 3;
	set_status($p, $r2[0], 'confirmed');
	for my $consumer (qw(billing invoicing audit))
	{
		(undef, undef, $err) = drain($st, $p, $consumer);
		die "$label: $consumer could not read on the publisher: $err" if $err;
	}
	read_ack($st, $p, 'shipping', 1);
	sql_ok($x, 'COMMIT');
	my @r3 = map { add_order($p) } 1 .. 3;
	set_status($p, $r3[0], 'confirmed');
	set_status($p, $r3[1], 'cancelled');
	sql_ok($p, qq{SELECT version FROM orders_remove('$r3[2]')});

	# On the subscriber, caught up so far: every write and consumer call is
	# refused with 55000, and changes nothing (the same session is used
	# after the switchover, as a pooled connection would be).
	$pub->wait_for_catchup($subname);
	my $before = sql_ok($s, $checkpoints) . ' / ' . join(',', sort { $a <=> $b } keys %{ outbox($s) });
	my %calls = refused_calls($r2[1], (sort { $a <=> $b } keys %{ outbox($s) })[-1]);
	for my $call (sort keys %calls)
	{
		my ($out, $cerr) = run_sql($s, $calls{$call});
		like($cerr, qr/ERROR:\s+55000:/, "$label: on the subscriber, $call is refused with 55000")
		  or diag("it returned '$out'");
	}
	like((run_sql($s, $calls{orders_events_read}))[1],
		qr/replicated into this database by subscription "$subname"/,
		"$label: the message names the subscription");
	# The purge does not adopt: it judges the publisher's checkpoints by the
	# publisher's transaction ids, both replicated, and so deletes what
	# every consumer has acknowledged there (here, nothing: shipping's
	# checkpoint is where it registered)
	my ($purged, $perr) = run_sql($s, 'SELECT orders_events_purge()');
	is("$purged$perr", '0', "$label: on the subscriber, orders_events_purge() deletes nothing");

	# the publisher goes on: billing reads all, invoicing a batch of 4 of
	# which it acknowledges 3 (its batch stays open), shipping two of which
	# it acknowledges one; audit reads no more (X's events and everything
	# after are pending)
	add_order($p) for 1 .. 2;
	(undef, undef, $err) = drain($st, $p, 'billing');
	read_ack($st, $p, 'invoicing', 4, 3);
	read_ack($st, $p, 'shipping', 2, 1);
	no_acked_again($st, "$label: on the publisher");
	$st->{events} = outbox($p);

	# writes stopped; the subscriber catches up
	$pub->wait_for_catchup($subname);
	is(sql_ok($s, $checkpoints), sql_ok($p, $checkpoints),
		"$label: the subscriber has the publisher's checkpoints");
	is( join(',', sort { $a <=> $b } keys %{ outbox($s) }),
		join(',', sort { $a <=> $b } keys %{ $st->{events} }),
		"$label: the subscriber has the publisher's events ("
		  . scalar(keys %{ $st->{events} }) . '), the refused calls left nothing behind');
	isnt(sql_ok($s, $checkpoints) . ' / ' . join(',', sort { $a <=> $b } keys %{ outbox($s) }), $before,
		"$label: and replication went on after them");

	# The switchover: disable, wait for the publisher's walsender to let go
	# of the slot, detach the slot, drop the subscription, drop the slot.
	sql_ok($s, "ALTER SUBSCRIPTION $subname DISABLE");
	# disabled is not enough: its rows could come again when it is enabled
	like((run_sql($s, $calls{orders_events_read}))[1], qr/ERROR:\s+55000:/,
		"$label: with the subscription disabled, a consumer call is still refused (55000)");
	$pub->poll_query_until('postgres',
		"SELECT NOT active FROM pg_replication_slots WHERE slot_name = '$subname'")
	  or die "the slot of $subname stays active";
	sql_ok($s, "ALTER SUBSCRIPTION $subname SET (slot_name = NONE)");
	sql_ok($s, "DROP SUBSCRIPTION $subname");
	admin($pub, "SELECT pg_drop_replication_slot('$subname')");
	$p->quit;
	$x->quit;

	my $top = (sort { $b <=> $a } keys %{ $st->{events} })[0];
	my ($out);
	($out, $err) = run_sql($s, "SELECT adopted, previous_system_identifier, settled_position >= $top, consumers FROM orders_adopt()");
	my $pub_id = $with_origin ? sysid($pub) : '';
	my $from_what = $with_origin ? "the publisher's" : 'unknown (NULL)';
	is($out, "t|$pub_id|t|4",
		"$label: orders_adopt() on the subscriber adopts: previous system identifier $from_what, settled position at or above the last replicated, 4 consumers"
	) or diag($err);
	($out, $err) = run_sql($s, 'SELECT adopted FROM orders_adopt()');
	is($out, 'f', "$label: orders_adopt() a second time has nothing to do") or diag($err);
	($out, $err) = run_sql($s, 'SELECT system_identifier, adopted_from FROM order_events_origin');
	is($out, sysid($sub) . "|$pub_id",
		"$label: order_events_origin names the new primary, adopted from $from_what") or diag($err);

	# the new primary: 10 orders, 2 confirmed, 1 cancelled
	my @new;
	for my $i (1 .. 10)
	{
		($out, $err) = run_sql($s, add_order_sql());
		last if $err;
		push @new, $out;
	}
	is($err, '', "$label: orders written on the new primary");
	if (@new == 10)
	{
		for my $i (0 .. 2)
		{
			my $status = $i < 2 ? 'confirmed' : 'cancelled';
			($out, $err) = run_sql($s, set_status_sql($new[$i], $status));
			last if $err;
		}
	}
	is($err, '', "$label: saved on the new primary");
	my $now = outbox($s);
	my @written = grep { !exists $st->{events}{$_} } keys %$now;
	is(scalar @written, 13, "$label: 13 new events");
	is(join(',', grep { $_ <= $top } sort { $a <=> $b } @written), '',
		"$label: each takes a position above every replicated one ($top)");
	$st->{events}{$_} = $now->{$_} for @written;

	# the purge keeps what a consumer needs
	my %needed = map { ($_ => 1) } map { @{ expected($st, $_) } } @consumers;
	($out, $err) = run_sql($s, 'SELECT orders_events_purge()');
	is($err, '', "$label: orders_events_purge() runs on the new primary");
	my $left = outbox($s);
	is(join(' ', grep { $needed{$_} && !exists $left->{$_} } sort { $a <=> $b } keys %$now), '',
		"$label: the purge deleted no event a consumer has not acknowledged");
	note("$label: the purge deleted " . (scalar(keys %$now) - scalar(keys %$left)) . ' events');

	# consumers registered on the new primary: from the start, every event
	# kept; from now, nothing before
	sql_ok($s, q{SELECT orders_events_register('late', from_start => true)});
	sql_ok($s, q{SELECT orders_events_register('now')});
	$st->{acked}{late}{$_} = 1 for grep { !exists $left->{$_} } keys %{ $st->{events} };
	$st->{acked}{now}{$_} = 1 for keys %{ $st->{events} };
	for (1 .. 3)
	{
		($out, $err) = run_sql($s, add_order_sql());
		last if $err;
	}
	is($err, '', "$label: 3 more orders on the new primary");
	$now = outbox($s);
	$st->{events}{$_} //= $now->{$_} for keys %$now;

	for my $consumer (@consumers, 'late', 'now')
	{
		my $want = expected($st, $consumer);
		my ($got, $first, $later) = drain($st, $s, $consumer);
		is($first . $later, '', "$label: $consumer reads on the new primary");
		is("@$got", "@$want",
			"$label: $consumer reads exactly what it had not acknowledged, then the new events, each once, in position order ("
			  . scalar(@$want) . ')');
	}
	$s->quit;
}

quit_admin();
# a crash of any backend (a signal) or a failed assertion fails the test
for my $node ($pub, $sub)
{
	$node->stop;
	unlike(slurp_file($node->logfile), qr/terminated by signal|TRAP:/,
		$node->name . ': the server log shows no crash');
}
done_testing();
