# A consumer group read by four processes of the Python client while
# orders are written; one is killed (SIGKILL) inside its handler mid-batch.
# Every event is handled at least once; within each reader, each order's
# events come in version order; an order's events are one reader's at a
# time (they never go back and forth between live readers); the killed
# reader's parts are taken by the three others, which then hold all 16.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('groups');
$node->init;
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION orders;
SELECT orders_events_register_group('fulfil', from_start => true);
});

my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
my $dsn = 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';
my $log = $node->basedir . '/handled.log';

my %stderr;

sub reader
{
	my ($name, @extra) = @_;
	$stderr{$name} = '';
	return IPC::Run::start([ $python, 'test/t/groups/group_reader.py', $dsn, 'fulfil', $log, $name, @extra ],
		'>', \my $out, '2>', \$stderr{$name});
}

sub parts_held
{
	return $node->safe_psql('postgres', q{
		SELECT count(DISTINCT l.objid) || ' parts by ' || count(DISTINCT l.pid) || ' readers'
		FROM pg_locks l WHERE l.locktype = 'advisory' AND l.mode = 'ExclusiveLock' AND l.objsubid = 1});
}

# 60 orders before the readers start, 60 more while they read; each added,
# confirmed and shipped: three events, versions 1 to 3
my $line = q{ARRAY[ROW('0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b', 'Green tea', 2, 450)::order_line]};
my $addr = q{ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address};
my $write = sub {
	my ($from, $to) = @_;
	$node->safe_psql('postgres', qq{
		DO \$\$
		DECLARE o orders;
		BEGIN
		    FOR n IN $from..$to LOOP
		        o := orders_add('c0000000-0000-0000-0000-000000000001', 'EUR', $line, $addr);
		        o := orders_save(jsonb_populate_record(o, '{"status": "confirmed"}'));
		        o := orders_save(jsonb_populate_record(o, '{"status": "shipped"}'));
		    END LOOP;
		END \$\$;});
};
$write->(1, 60);

# The victim starts first, so that it surely holds parts and events; the
# three others join as soon as it handles its first event, and take parts
# as it gives them back; it dies in its seventh event, its batch half done.
my $victim = reader('victim', '--kill-after', '7');
my $started = time;
until (-s $log || time - $started > 60)
{
	$victim->pump_nb;
	usleep(20_000);
}
my @readers = map { reader("r$_") } 1 .. 3;
$victim->finish;
my $victim_status = ($victim->full_results)[0];
is($victim_status & 127, 9, 'the victim was killed by SIGKILL, inside its handler');

for my $batch (1 .. 6)
{
	$write->(60 + ($batch - 1) * 10 + 1, 60 + $batch * 10);
	usleep(200_000);
}

# the three take the victim's parts as soon as its session is gone
my $held = '';
for (1 .. 100)
{
	$held = parts_held();
	last if $held eq '16 parts by 3 readers';
	usleep(100_000);
}
is($held, '16 parts by 3 readers', 'the three survivors hold all 16 parts');

$_->finish for @readers;
is(join(',', map { ($_->results)[0] } @readers), '0,0,0', 'the three readers ended cleanly when idle');

my %expected = map { ($_ => 1) } split /\n/, $node->safe_psql('postgres',
	q{SELECT order_id || ' ' || version FROM order_events ORDER BY position});
is(scalar keys %expected, 360, '120 orders, 3 events each');

my (%handled, %by_reader, %timeline);
open my $fh, '<', $log or die "no log: $!";
while (<$fh>)
{
	chomp;
	my ($reader, $order, $version, $at) = split / /;
	$handled{"$order $version"}++;
	push @{ $by_reader{$reader}{$order} }, $version;
	push @{ $timeline{$order} }, [ $at, $reader ];
}
close $fh;
is(scalar(grep { !$handled{$_} } keys %expected), 0, 'every event was handled at least once');
ok(scalar(keys %handled) == scalar(keys %expected), 'and nothing else');
ok(exists $by_reader{victim} && scalar(keys %{ $by_reader{victim} }) > 0,
	'the victim handled events before it died (' . scalar(map { @$_ } values %{ $by_reader{victim} // {} }) . ')');

my $out_of_order = 0;
for my $reader (keys %by_reader)
{
	for my $order (keys %{ $by_reader{$reader} })
	{
		my @v = @{ $by_reader{$reader}{$order} };
		for my $i (1 .. $#v)
		{
			$out_of_order++ if $v[$i] < $v[$i - 1];
		}
	}
}
is($out_of_order, 0, 'within each reader, each order\'s events in version order');

# An order moves between readers only with its part: given back when a
# reader joins (so away from a reader, never back to it while the others
# live), or taken from the victim.  So, leaving the victim's handling out,
# each live reader handled each order in one stretch of time: a reader
# that handled an order, then another, then the first again, would have
# shared it.
my $back_and_forth = 0;
for my $order (keys %timeline)
{
	my @readers = map { $_->[1] } sort { $a->[0] <=> $b->[0] } grep { $_->[1] ne 'victim' } @{ $timeline{$order} };
	my (%done, $current);
	for my $r (@readers)
	{
		next if defined $current && $r eq $current;
		$back_and_forth++ if $done{$r};
		$done{$current} = 1 if defined $current;
		$current = $r;
	}
}
is($back_and_forth, 0, 'no order went back and forth between live readers');
my $redelivered = grep { $handled{$_} > 1 } keys %handled;
note("events handled twice (the victim's unacknowledged batch, again): $redelivered");
ok($redelivered <= 5, 'at most a batch handled again');

# what the readers said, and what the server refused, should anything fail
if (!Test::More->builder->is_passing)
{
	diag("$_ said: $stderr{$_}") for grep { $stderr{$_} ne '' } sort keys %stderr;
	diag($_) for grep { /ERROR|FATAL/ } split /\n/, slurp_file($node->logfile);
	diag('handled lines: ' . scalar(keys %handled) . '; readers: ' . join(',', sort keys %by_reader));
}

$node->stop;
done_testing();
