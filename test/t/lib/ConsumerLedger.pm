# What a consumer must be handed, kept by the test itself: the TAP tests
# that move a database's outbox somewhere else (a restore into another
# cluster, a logical switchover, a failover) check its consumers against
# their own record of what was committed and what each consumer was handed
# and acknowledged, never against what the extension says.
#
#   use FindBin;
#   use lib "$FindBin::RealBin/lib";
#   use ConsumerLedger qw(session sql_ok add_order drain expected);
#
#   my $s = session($node, 'postgres');
#   my $st = { types => { shipping => [ 'order_confirmed' ] } };
#   add_order($s);
#   $st->{events} = outbox($s);
#   my ($got, $first_err, $later_err) = drain($st, $s, 'billing');
#   is("@$got", "@{ expected($st, 'billing') }", ...);
#
# The ledger ($st) is a plain hash, so that a test keeps what else it needs
# in it:
#   types     consumer => [types]: a typed reader (the others read everything)
#   events    position => "type order version": every event committed
#   acked     {consumer}{position}: handed to the consumer and acknowledged
#   handed    consumer => [positions]: every event it was handed, in order
#   again     consumer => [positions]: acknowledged, and handed again
package ConsumerLedger;

use strict;
use warnings;
use Exporter 'import';
use Test::More;

our @EXPORT_OK = qw(session run_sql sql_ok add_order_sql set_status_sql
  add_order set_status outbox admin quit_admin sysid
  expected read_events read_ack drain no_acked_again);

# ---------------------------------------------------------------------------
# Sessions

# session(NODE, DB): a psql kept open (a psql per statement would cost 70 ms
# each), ON_ERROR_STOP off: an error is reported, and the session goes on.
sub session
{
	my ($node, $db) = @_;
	my $s = $node->background_psql($db, on_error_stop => 0);
	$s->query_safe('\set VERBOSITY verbose');
	return $s;
}

# run_sql(SESSION, SQL): (output, error); error is '' unless the server
# said ERROR or FATAL
sub run_sql
{
	my ($s, $sql) = @_;
	$s->{stderr} = '';
	my ($out) = $s->query($sql);
	my $stderr = $s->{stderr};
	$s->{stderr} = '';
	return ($out, $stderr =~ /ERROR|FATAL|PANIC/ ? $stderr : '');
}

# sql_ok(SESSION, SQL): the output; for the steps that are the setting, not
# the subject: they must work
sub sql_ok
{
	my ($s, $sql) = @_;
	my ($out, $err) = run_sql($s, $sql);
	die "query failed: $sql\n$err" if $err ne '';
	return $out;
}

# a session on each cluster's postgres database, for what a DBA types
my %admin;

# admin(NODE, SQL): the output of SQL, which must work, in NODE's postgres
# database
sub admin
{
	my ($node, $sql) = @_;
	$admin{ $node->name } //= session($node, 'postgres');
	return sql_ok($admin{ $node->name }, $sql);
}

# quit_admin(): closes the sessions admin() opened, before the nodes stop
sub quit_admin
{
	$_->quit for values %admin;
	%admin = ();
	return;
}

sub sysid
{
	my ($node) = @_;
	return admin($node, 'SELECT system_identifier FROM pg_control_system()');
}

# ---------------------------------------------------------------------------
# Orders.  The statements are single lines, so that a pgbench script can
# hold them too.

my $line = q{ARRAY[ROW(gen_random_uuid(), 'Green tea', 2, 450)::order_line]};
my $addr = q{ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address};

# add_order_sql(): adds an order of one line, returning its id
sub add_order_sql
{
	return "SELECT id FROM orders_add(gen_random_uuid(), 'EUR', $line, $addr)";
}

# set_status_sql(ID, STATUS): saves order ID with STATUS, returning its
# version
sub set_status_sql
{
	my ($id, $status) = @_;
	return qq{SELECT version FROM orders_save(jsonb_populate_record(}
	  . qq{(SELECT o FROM orders_get('$id') o), '{"status": "$status"}'))};
}

sub add_order
{
	my ($s) = @_;
	return sql_ok($s, add_order_sql());
}

sub set_status
{
	my ($s, $id, $status) = @_;
	return sql_ok($s, set_status_sql($id, $status));
}

# outbox(SESSION): every event the outbox has, as this session sees it:
# position => "type order version"
sub outbox
{
	my ($s) = @_;
	my %events;
	for (split /\n/, sql_ok($s, q{SELECT position, type, order_id, version FROM order_events}))
	{
		my ($p, @rest) = split /\|/;
		$events{$p} = "@rest";
	}
	return \%events;
}

# ---------------------------------------------------------------------------
# The ledger

sub wants
{
	my ($st, $consumer, $desc) = @_;
	my $types = $st->{types}{$consumer};
	return 1 unless $types;
	my ($type) = split / /, $desc;
	return scalar grep { $_ eq $type } @$types;
}

# expected(LEDGER, CONSUMER): what the consumer must still be handed: the
# events of its types that it has not acknowledged, in position order
sub expected
{
	my ($st, $consumer) = @_;
	return [ sort { $a <=> $b }
		  grep { wants($st, $consumer, $st->{events}{$_}) && !$st->{acked}{$consumer}{$_} }
		  keys %{ $st->{events} } ];
}

# read_events(LEDGER, SESSION, CONSUMER, N): one read, of the consumer's
# types: (positions, error).  Records nothing: the caller decides what the
# read means for the ledger.
sub read_events
{
	my ($st, $s, $consumer, $n) = @_;
	my $types = $st->{types}{$consumer};
	my $call = $types
	  ? sprintf(q{orders_events_read('%s', %d, ARRAY[%s])}, $consumer, $n,
		join(', ', map { "'$_'" } @$types))
	  : sprintf(q{orders_events_read('%s', %d)}, $consumer, $n);
	my ($out, $err) = run_sql($s, "SELECT position FROM $call");
	return (undef, $err) if $err ne '';
	return ([ grep { $_ ne '' } split /\n/, $out ], '');
}

# read_ack(LEDGER, SESSION, CONSUMER, N, K): reads N events and
# acknowledges the first K of them (all: K undef), in two transactions, as
# a consumer does.  Returns (positions, error).
sub read_ack
{
	my ($st, $s, $consumer, $n, $k) = @_;
	my ($got, $err) = read_events($st, $s, $consumer, $n);
	return (undef, $err) if $err ne '';
	# an event acknowledged never comes again
	push @{ $st->{again}{$consumer} }, grep { $st->{acked}{$consumer}{$_} } @$got;
	$k = scalar @$got unless defined $k;
	$k = scalar @$got if $k > @$got;
	if ($k > 0)
	{
		my ($out, $aerr) = run_sql($s,
			sprintf(q{SELECT orders_events_ack('%s', %d)}, $consumer, $got->[ $k - 1 ]));
		return ($got, $aerr) if $aerr ne '';
		$st->{acked}{$consumer}{$_} = 1 for @{$got}[ 0 .. $k - 1 ];
	}
	push @{ $st->{handed}{$consumer} }, @$got;
	return ($got, '');
}

# drain(LEDGER, SESSION, CONSUMER): reads to the end, 5 at a time,
# acknowledging each read.  Returns (positions handed, error of the first
# read, error of a later one): the first read is the one a move of the
# database could break.
sub drain
{
	my ($st, $s, $consumer) = @_;
	my (@all, $first_err, $later_err);
	for my $i (1 .. 200)
	{
		my ($got, $err) = read_ack($st, $s, $consumer, 5);
		if ($err ne '')
		{
			if ($i == 1) { $first_err = $err; }
			else { $later_err = $err; }
			last;
		}
		last unless @$got;
		push @all, @$got;
	}
	return (\@all, $first_err // '', $later_err // '');
}

# no_acked_again(LEDGER, LABEL): one test, that no consumer was handed an
# event it had acknowledged since the last call
sub no_acked_again
{
	my ($st, $label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is( join(' ', map { "$_: @{ $st->{again}{$_} }" } grep { @{ $st->{again}{$_} } } sort keys %{ $st->{again} }),
		'', "$label: no consumer was handed an event it had acknowledged");
	$st->{again} = {};
	return;
}

1;
