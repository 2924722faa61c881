# Consumers survive a logical dump and restore into another cluster, whose
# transaction ids mean something else.  A checkpoint is a transaction
# snapshot of the cluster that took it (see "Gap-free reading" in
# schema/consumers.sql); restored elsewhere, the outbox's xids and the
# snapshots are foreign.  Issue 24: a database whose xid counter had reached
# about 12,800, consumer 'billing' acknowledged up to its last event, was
# restored into a fresh cluster; 20 orders were added there; every read
# failed with 40001 ("checkpoint is newer than this transaction's
# snapshot") until the counter passed, and then the 20 events were never
# delivered.  From 1.10 the database adopts the data (order_events_origin,
# orders_adopt()): each checkpoint becomes positions, exactly.
#
# Both directions (the target's counter far behind the source's, and far
# ahead), both dump formats (-Fc with pg_restore, plain with psql), the
# adoption done by the first write or by orders_adopt() first, twice a
# second hop into a third cluster, and issue 24's own path: a database
# still at 1.9 restored where 1.10 is installed.  In each, consumers are
# left in every state a checkpoint can be in at dump time: one that
# acknowledged everything (issue 24's billing), one registered from_start,
# a typed reader, one with a batch open, read further than acknowledged,
# one with an order held (an event rejected with orders_events_nack), and
# one that, restored, rejects one of the other cluster's events; a
# transaction started before some checkpoints and committed after them
# (the snapshots list it as running); another still running while pg_dump
# runs (its position is taken, its event never in the dump).  Before the
# second hop, consumers registered after the adoption (from the start,
# from now) are left half read too.  In the new cluster the purge runs
# first (not adopted yet), 20 orders are written before anything is read,
# the purge runs again (each must keep every event a consumer has not
# acknowledged), and then each consumer reads to the end: exactly the
# events it had not acknowledged at dump time, then everything written
# after, each once, in position order (a held order's as holds come, in
# version order; a rejected event twice); the first read at once.  The
# expectation is the test's own bookkeeping (what was committed, what each
# consumer was handed and acknowledged), never what the extension says.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use ConsumerLedger qw(session run_sql sql_ok add_order_sql set_status_sql add_order set_status
  outbox admin quit_admin sysid expected read_events read_ack drain no_acked_again);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# The typed reader's types; the others read everything.
my %types = (shipping => [ 'order_confirmed', 'order_cancelled' ]);

# Three clusters.  'ahead' has its transaction counter moved to 1,048,576
# with pg_resetwal -x on the stopped cluster: the documented safe value is
# (the largest pg_xact segment number + 1) * 0x100000, a fresh cluster
# having segment 0000 only; the new segment is created when its first page
# is written.  'fresh' and 'third' stay near the few hundred xids initdb
# used.  So ahead -> fresh restores into a counter a million behind (issue
# 24, larger), fresh -> ahead into one a million ahead, and the second hops
# end in 'third', whose counter is close to 'fresh''s (the two clusters'
# xids overlap in number: the collisions issue 24 is about) or far behind
# 'ahead''s.
my $fresh = PostgreSQL::Test::Cluster->new('fresh');
$fresh->init;
$fresh->start;
my $third = PostgreSQL::Test::Cluster->new('third');
$third->init;
$third->start;
my $ahead = PostgreSQL::Test::Cluster->new('ahead');
$ahead->init;
command_ok([ 'pg_resetwal', '-x', '1048576', $ahead->data_dir ],
	'pg_resetwal moves the counter of cluster ahead to 1,048,576');
$ahead->start;
cmp_ok($ahead->safe_psql('postgres', 'SELECT txid_current()'), '>=', 1048576,
	'cluster ahead hands out xids from 1,048,576');
cmp_ok($fresh->safe_psql('postgres', 'SELECT txid_current()'), '<', 10000,
	'cluster fresh is near its start');
# the adoption is keyed by the system identifier: each initdb makes its own
# (clusters copied from one INITDB_TEMPLATE would share it)
my %system = map { ($_->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()') => 1) }
  ($fresh, $third, $ahead);
is(scalar keys %system, 3, 'the three clusters have system identifiers of their own');

my $dumps = PostgreSQL::Test::Utils::tempdir;

# ---------------------------------------------------------------------------
# The source's story.  Events are committed in several transactions; the
# consumers read and acknowledge part of them; X starts before some
# checkpoints and commits after them; Y is still running while pg_dump
# runs.  Returns the open session of Y, to be committed after the dump.

sub write_story
{
	my ($st, $node, $db, $label) = @_;
	my $w = session($node, $db);
	my $x = session($node, $db);
	my $y = session($node, $db);
	my $c = session($node, $db);
	my (@o, $err);

	# round 1: four orders, one confirmed, one cancelled
	push @o, add_order($w) for 1 .. 4;
	set_status($w, $o[0], 'confirmed');
	set_status($w, $o[1], 'cancelled');
	# audit from the start: it must get round 1 too
	sql_ok($c, q{SELECT orders_events_register('audit', from_start => true)});

	# X takes its positions now, and commits after the checkpoints below
	sql_ok($x, 'BEGIN');
	add_order($x);
	set_status($x, $o[3], 'confirmed');

	# round 2: three orders, one confirmed
	my @r2 = map { add_order($w) } 1 .. 3;
	set_status($w, $r2[0], 'confirmed');
	push @o, @r2;

	# checkpoints that list X as running: billing, invoicing and audit read
	# to the end (X's events are not in their batches); shipping reads one
	# of its types, and acknowledges it
	for my $consumer (qw(billing invoicing audit ledger))
	{
		(undef, undef, $err) = drain($st, $c, $consumer);
		die "$label: $consumer could not read in the source: $err" if $err;
	}
	read_ack($st, $c, 'shipping', 1);

	sql_ok($x, 'COMMIT');

	# Y: running across the last checkpoints and the dump
	sql_ok($y, 'BEGIN');
	add_order($y);

	# round 3: three orders, one confirmed, one cancelled, one removed
	my @r3 = map { add_order($w) } 1 .. 3;
	set_status($w, $r3[0], 'confirmed');
	set_status($w, $r3[1], 'cancelled');
	sql_ok($w, qq{SELECT version FROM orders_remove('$r3[2]')});
	# round 4: two orders
	add_order($w) for 1 .. 2;

	# billing reads to the end: every event committed, acknowledged (issue
	# 24's billing); in the source, each exactly once
	my ($got, $first, $later) = drain($st, $c, 'billing');
	die "$label: billing could not read in the source: $first$later" if $first . $later;
	my $committed = outbox($c);
	is( join(',', sort { $a <=> $b } @{ $st->{handed}{billing} }),
		join(',', sort { $a <=> $b } keys %$committed),
		"$label: in the source, billing was handed every committed event once ("
		  . scalar(keys %$committed) . ')');
	# invoicing: a batch of 4 (X's two events first, late), the first 3
	# acknowledged: its batch stays open at dump time
	read_ack($st, $c, 'invoicing', 4, 3);
	# shipping: two more of its types, the first acknowledged
	read_ack($st, $c, 'shipping', 2, 1);
	# mailer reads 10 and rejects the first (its order is held: that
	# order's later events in the read come again after it), to be retried
	# at once, and acknowledges the read
	my ($read) = read_events($st, $c, 'mailer', 10);
	my $now = outbox($c);
	my $held_order = (split / /, $now->{ $read->[0] })[1];
	sql_ok($c, "SELECT 1 FROM orders_events_nack('mailer', $read->[0], 'no template', retry_delay => '0 seconds')");
	sql_ok($c, "SELECT orders_events_ack('mailer', $read->[-1])");
	$st->{acked}{mailer}{$_} = 1 for grep { (split / /, $now->{$_})[1] ne $held_order } @$read;
	$st->{held} = "$read->[0] " . join(' ', grep { (split / /, $now->{$_})[1] eq $held_order } @{$read}[ 1 .. $#$read ]);
	# audit reads no more: X's events (below positions it acknowledged) and
	# rounds 3 and 4 are pending

	no_acked_again($st, $label . ', in the source');

	# what is committed now is what the dump holds (Y is still running)
	$st->{dumped} = outbox($c);
	$st->{events} = { %{ $st->{events} // {} }, %{ $st->{dumped} } };
	$_->quit for ($w, $x, $c);
	return $y;
}

# ---------------------------------------------------------------------------
# Dump $db of $from, restore it as $db2 into $to, then: 20 orders written
# before anything is read, the purge, every consumer read to the end.

sub dump_restore
{
	my ($from, $db, $to, $db2, $format, $label) = @_;
	my $file = "$dumps/$db2." . ($format eq 'custom' ? 'dump' : 'sql');
	$from->command_ok(
		[ 'pg_dump', ($format eq 'custom' ? '-Fc' : '-Fp'), '-f', $file, '-d', $from->connstr($db) ],
		"$label: pg_dump -F" . ($format eq 'custom' ? 'c' : 'p'));
	admin($to, "CREATE DATABASE $db2");
	if ($format eq 'custom')
	{
		$to->command_ok([ 'pg_restore', '-d', $to->connstr($db2), $file ],
			"$label: pg_restore into cluster " . $to->name);
	}
	else
	{
		$to->command_ok(
			[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $to->connstr($db2), '-f', $file ],
			"$label: psql -f into cluster " . $to->name);
	}
}

sub in_new_cluster
{
	my ($st, $from, $to, $db2, $explicit, $label, $from_unknown) = @_;
	my $s = session($to, $db2);
	my $restored = outbox($s);
	is( join(',', map { "$_ $restored->{$_}" } sort { $a <=> $b } keys %$restored),
		join(',', map { "$_ $st->{dumped}{$_}" } sort { $a <=> $b } keys %{ $st->{dumped} }),
		"$label: the restored outbox is the dumped one ("
		  . scalar(keys %$restored) . ' events)');
	my $top = (sort { $b <=> $a } keys %$restored)[0];
	# a database dumped at 1.9 does not know its cluster
	my ($from_id, $to_id) = ($from_unknown ? '' : sysid($from), sysid($to));

	# A purge before anything else, not adopted yet: it judges the source's
	# checkpoints by the source's transaction ids, and keeps what a
	# consumer has not acknowledged
	my %needed = map { ($_ => 1) } map { @{ expected($st, $_) } } @{ $st->{consumers} };
	my ($out, $err) = run_sql($s, q{SELECT orders_events_purge()});
	is($err, '', "$label: orders_events_purge() runs before the adoption");
	my $left = outbox($s);
	is(join(' ', grep { $needed{$_} && !exists $left->{$_} } sort { $a <=> $b } keys %$restored), '',
		"$label: it deleted no event a consumer has not acknowledged");
	note("$label: the purge before the adoption deleted " . (scalar(keys %$restored) - scalar(keys %$left)) . ' events');
	$restored = $left;

	if ($explicit)
	{
		# orders_adopt() before any write or read: the adoption, reported
		($out, $err) = run_sql($s,
			q{SELECT adopted, previous_system_identifier, settled_position >= } . $top
			  . q{, consumers FROM orders_adopt()});
		my $n = scalar @{ $st->{consumers} };
		is($out, "t|$from_id|t|$n",
			"$label: orders_adopt() adopts: previous system identifier the source's, settled position at or above the last restored, $n consumers"
		) or diag($err);
	}

	# 20 orders, 3 of them confirmed and 1 cancelled, before any read: the
	# first write adopts the data (unless orders_adopt() did)
	my @new;
	for (1 .. 20)
	{
		($out, $err) = run_sql($s, add_order_sql());
		last if $err;
		push @new, $out;
	}
	is($err, '', "$label: 20 orders written in the new cluster");
	for my $i (0 .. 3)
	{
		last if @new < 4;
		my $status = $i < 3 ? 'confirmed' : 'cancelled';
		($out, $err) = run_sql($s, set_status_sql($new[$i], $status));
		last if $err;
	}
	is($err, '', "$label: 3 of them confirmed, 1 cancelled");

	($out, $err) = run_sql($s, q{SELECT system_identifier, adopted_from FROM order_events_origin});
	is($out, "$to_id|$from_id",
		"$label: order_events_origin names this cluster, adopted from "
		  . ($from_unknown ? 'no known cluster (a dump made at 1.9 names none)' : 'the source'))
	  or diag($err);
	unless ($explicit)
	{
		($out, $err) = run_sql($s, q{SELECT adopted FROM orders_adopt()});
		is($out, 'f', "$label: orders_adopt() after the first write has nothing to do") or diag($err);
	}

	my $now = outbox($s);
	my @written = grep { !exists $restored->{$_} } keys %$now;
	is(scalar @written, 24, "$label: 24 new events in the outbox");
	is(scalar(grep { $_ <= $top } @written), 0, "$label: their positions are above the restored ones");
	$st->{events}{$_} = $now->{$_} for @written;

	# The purge, before any read: it deletes nothing a consumer still needs
	%needed = map { ($_ => 1) } map { @{ expected($st, $_) } } @{ $st->{consumers} };
	($out, $err) = run_sql($s, q{SELECT orders_events_purge()});
	is($err, '', "$label: orders_events_purge() runs");
	$left = outbox($s);
	my @lost = sort { $a <=> $b } grep { $needed{$_} && !exists $left->{$_} } keys %$now;
	is("@lost", '', "$label: the purge deleted no event a consumer has not acknowledged");
	note("$label: the purge deleted " . (scalar(keys %$now) - scalar(keys %$left)) . ' events');

	# issue 24's billing: everything acknowledged at dump time, so it is
	# owed exactly the events written here
	is( join(' ', @{ expected($st, 'billing') }),
		join(' ', sort { $a <=> $b } @written),
		"$label: billing acknowledged everything before the dump: it is owed exactly the 24 new events");

	for my $consumer (@{ $st->{consumers} })
	{
		my $want = expected($st, $consumer);
		my @delivered;
		if ($consumer eq 'ledger')
		{
			# ledger rejects the first event of its first read, one of the
			# other cluster's, to be retried at once, and acknowledges the
			# read: that event comes again, and its order's later ones after
			# it (as they are held behind it)
			my ($read, $rerr) = read_events($st, $s, 'ledger', 4);
			$read //= [];
			$rerr ||= (run_sql($s,
				"SELECT 1 FROM orders_events_nack('ledger', $read->[0], 'no template', retry_delay => '0 seconds')"))[1]
			  if @$read;
			$rerr ||= (run_sql($s, "SELECT orders_events_ack('ledger', $read->[-1])"))[1] if @$read;
			is($rerr, '', "$label: ledger rejects an event of the other cluster's, carried to it ("
				  . ($read->[0] // 'none') . ')');
			if (@$read)
			{
				my $order = (split / /, $st->{events}{ $read->[0] })[1];
				$st->{acked}{ledger}{$_} = 1 for grep { (split / /, $st->{events}{$_})[1] ne $order } @$read;
				@delivered = @$read;
				$st->{rejected} = $read->[0];
			}
		}
		my ($got, $first, $later) = drain($st, $s, $consumer);
		is($first, '', "$label: $consumer: the first read works at once");
		is($later, '', "$label: $consumer: every read works");
		if ($consumer ne 'mailer' && $consumer ne 'ledger')
		{
			is("@$got", "@$want",
				"$label: $consumer reads exactly what it had not acknowledged, then the new events, each once, in position order ("
				  . scalar(@$want) . ')');
			next;
		}
		# a held order comes as holds do: the held event with the others,
		# the order's later events once it is acknowledged
		push @delivered, @$got;
		my %times;
		$times{$_}++ for @delivered;
		is(join(' ', sort { $a <=> $b } keys %times), "@$want",
			"$label: $consumer reads exactly what it had not acknowledged, then the new events ("
			  . scalar(@$want) . ')');
		my $rejected = delete $st->{rejected} // 0;
		is( join(' ', grep { $times{$_} != ($_ == $rejected ? 2 : 1) } sort { $a <=> $b } keys %times), '',
			"$label: $consumer reads each once" . ($rejected ? ", the one it rejected ($rejected) twice" : ''));
		my %versions;
		for my $p (@delivered)
		{
			next if $p == $rejected && !$versions{"seen $p"}++;    # its first delivery, rejected
			my (undef, $order, $version) = split / /, $st->{events}{$p};
			push @{ $versions{$order} }, $version;
		}
		is( join(' ', grep { !/^seen / && do { my @v = @{ $versions{$_} }; grep { $v[$_] <= $v[ $_ - 1 ] } 1 .. $#v } }
				sort keys %versions),
			'', "$label: $consumer reads each order's events in version order");
	}
	if (defined $st->{held})
	{
		my ($first) = split / /, $st->{held};
		ok(scalar(grep { $_ == $first } @{ $st->{handed}{mailer} }),
			"$label: the event mailer rejected before the dump came again ($st->{held}: the held event and its order's later ones)");
		delete $st->{held};
	}
	return $s;
}

# The second hop's story, in the restored database: more writes, with a
# transaction across checkpoints again and one running across the dump,
# and reads left half done.  Returns Y's session.
sub write_more
{
	my ($st, $s, $node, $db, $label) = @_;
	my $x = session($node, $db);
	my $y = session($node, $db);
	my @o = map { add_order($s) } 1 .. 3;
	sql_ok($x, 'BEGIN');
	add_order($x);
	set_status($x, $o[0], 'confirmed');
	add_order($s) for 1 .. 2;
	# checkpoints listing X as running
	my @errors;
	push @errors, (drain($st, $s, $_))[ 1, 2 ] for qw(billing audit);
	sql_ok($x, 'COMMIT');
	sql_ok($y, 'BEGIN');
	add_order($y);
	# consumers registered after the adoption: from the start (every event
	# kept, the settled ones carried to it) and from now
	sql_ok($s, q{SELECT orders_events_register('late', from_start => true)});
	sql_ok($s, q{SELECT orders_events_register('now')});
	my $kept = outbox($s);
	$st->{acked}{late}{$_} = 1 for grep { !exists $kept->{$_} } keys %{ $st->{events} };
	$st->{acked}{now}{$_} = 1 for keys %$kept, keys %{ $st->{events} };
	push @{ $st->{consumers} }, 'late', 'now';
	set_status($s, $o[1], 'cancelled');
	add_order($s) for 1 .. 2;
	# billing acknowledges everything again; invoicing leaves a batch open;
	# shipping reads one of its types; audit has X's events pending; late
	# leaves a batch of settled events open
	push @errors, (drain($st, $s, 'billing'))[ 1, 2 ];
	push @errors, (read_ack($st, $s, 'invoicing', 4, 2))[1];
	push @errors, (read_ack($st, $s, 'shipping', 1))[1];
	push @errors, (read_ack($st, $s, 'late', 5, 3))[1];
	is(join('', @errors), '', "$label: reads and acknowledgements before the dump work");
	no_acked_again($st, $label . ', in the restored database');
	$st->{dumped} = outbox($s);
	$st->{events} = { %{ $st->{events} }, %{ $st->{dumped} } };
	$x->quit;
	return $y;
}

# ---------------------------------------------------------------------------

my %cluster = (ahead => $ahead, fresh => $fresh);
my @cases = (
	# name, source, target, format, adoption by orders_adopt() first
	# a second hop, into 'third', in the other format: once each way;
	# and issue 24's own path, a database still at 1.9 restored into a
	# cluster with 1.10 installed
	[ 'behind_custom', 'ahead', 'fresh', 'custom', 0, 1, '' ],
	[ 'behind_plain',  'ahead', 'fresh', 'plain',  1, 0, '' ],
	[ 'ahead_custom',  'fresh', 'ahead', 'custom', 0, 0, '' ],
	[ 'ahead_plain',   'fresh', 'ahead', 'plain',  1, 1, '' ],
	[ 'from_19',       'ahead', 'fresh', 'custom', 0, 0, '1.9' ],);

for my $case (@cases)
{
	my ($name, $from_name, $to_name, $format, $explicit, $hop_too, $version) = @$case;
	my ($from, $to) = ($cluster{$from_name}, $cluster{$to_name});
	my $label = "$name ($from_name -> $to_name, $format" . ($version ? ", source at $version" : '') . ')';
	# the case's bookkeeping (see ConsumerLedger.pm), with what the restore
	# must be checked against beyond it: the consumers, the outbox the dump
	# holds, mailer's held order and the event ledger rejects
	my $st = { types => \%types, consumers => [qw(audit billing invoicing ledger mailer shipping)] };
	my $db = "src_$name";

	admin($from, "CREATE DATABASE $db");
	my $s = session($from, $db);
	sql_ok($s, 'CREATE EXTENSION orders' . ($version ? " VERSION '$version'" : ''));
	sql_ok($s, qq{SELECT orders_events_register('$_')}) for qw(billing invoicing ledger mailer shipping);
	$s->quit;
	my $y = write_story($st, $from, $db, $label);
	dump_restore($from, $db, $to, "dst_$name", $format, $label);
	sql_ok($y, 'COMMIT');    # Y's event is in the source only
	$y->quit;
	note("$label: xid counters: source " . admin($from, 'SELECT txid_current()')
		  . ', target ' . admin($to, 'SELECT txid_current()'));

	$s = in_new_cluster($st, $from, $to, "dst_$name", $explicit, $label, $version);

	unless ($hop_too)
	{
		$s->quit;
		next;
	}
	# the second hop: into 'third', in the other format; orders_adopt()
	# first if the first hop did not call it
	my $hop = "$name hop (" . $to_name . ' -> third, ' . ($format eq 'custom' ? 'plain' : 'custom') . ')';
	$y = write_more($st, $s, $to, "dst_$name", $hop);
	$s->quit;
	dump_restore($to, "dst_$name", $third, "hop_$name", $format eq 'custom' ? 'plain' : 'custom', $hop);
	sql_ok($y, 'COMMIT');
	$y->quit;
	$s = in_new_cluster($st, $to, $third, "hop_$name", !$explicit, $hop);
	$s->quit;
}

quit_admin();
# a crash of any backend (a signal) or a failed assertion fails the test
for my $node ($fresh, $ahead, $third)
{
	$node->stop;
	unlike(slurp_file($node->logfile), qr/terminated by signal|TRAP:/,
		$node->name . ': the server log shows no crash');
}
done_testing();
