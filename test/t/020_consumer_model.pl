# The consumer model check (test/model/consumer_model.py): for
# ORDERS_MODEL_SECONDS (default 20) writers commit, roll back, roll back
# savepoints, prepare and later commit or roll back, and hold transactions
# open, while consumers of every kind (plain, typed, a group of three
# readers, one rejecting, replaying and discarding events) read, are
# terminated and restart, and orders_events_purge() runs at random moments.
# Once in the middle of the run the server is stopped with an immediate
# shutdown and started again.  Then every consumer reads to its end and the
# script checks each one's record against what committed: every committed
# event delivered, nothing rolled back, each order's events in order per
# reader, duplicates only where an acknowledgement was lost, no held event
# purged.  The seed comes from ORDERS_MODEL_SEED or is random; every failure
# says how to run the same seed again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(usleep);

my $seconds = $ENV{ORDERS_MODEL_SECONDS} // 20;
my $seed = $ENV{ORDERS_MODEL_SEED} // (1 + int(rand(2**31 - 2)));
my $repro = "ORDERS_MODEL_SEED=$seed ORDERS_MODEL_SECONDS=$seconds prove test/t/020_consumer_model.pl"
  . " (through PGXS: make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/t/020_consumer_model.pl)";
note("seed $seed, $seconds seconds; to run it again: $repro");

my $node = PostgreSQL::Test::Cluster->new('model');
$node->init;
# two-phase commit for the writers that prepare; room for ~15 sessions
$node->append_conf('postgresql.conf', "max_prepared_transactions = 10\nmax_connections = 40\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION orders');

my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
my $dsn = 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';
my $dir = $node->basedir;
my ($restart, $restarted, $summary) = map { "$dir/$_" } qw(restart_now restarted summary.json);
unlink $restart, $restarted, $summary;

my ($out, $err) = ('', '');
my $started = time;
my $model = IPC::Run::start(
	[
		$python, 'test/model/consumer_model.py',
		'--dsn', $dsn, '--seconds', $seconds, '--seed', $seed,
		'--restart-marker', $restart, '--restarted-marker', $restarted,
		'--summary', $summary,
		# ORDERS_MODEL_INJECT=drop (dup, reorder, rolled, delete) plants a
		# fault, to see this test fail as it should
		($ENV{ORDERS_MODEL_INJECT} ? ('--inject', $ENV{ORDERS_MODEL_INJECT}) : ())
	],
	'>', \$out, '2>', \$err);

# The script asks for the restart once, in the middle of its run, and
# goes on (its sessions reconnect) once the marker says the server is back.
my $restart_done = 0;
while ($model->pumpable)
{
	$model->pump_nb;
	if (!$restart_done && -e $restart)
	{
		$node->stop('immediate');
		$node->start;
		open my $fh, '>', $restarted or die "$restarted: $!";
		close $fh;
		$restart_done = 1;
		note('server stopped (immediate) and started at ' . (time - $started) . ' s');
	}
	# writes stop after $seconds; the drain and the checks take a few more
	if (time - $started > $seconds + 240)
	{
		$model->kill_kill;
		last;
	}
	usleep(50_000);
}
$model->finish;
my $wait_status = ($model->full_results)[0];
my $status = defined $wait_status && !($wait_status & 127) ? $wait_status >> 8 : 'killed';
my $took = time - $started;
note($out);

ok($restart_done, 'the server was restarted (immediate) in the middle of the run');
is($status, 0, "the model check passed (exit status; seed $seed)");
ok($took <= $seconds + 120, "it ended by itself, in ${took} s for $seconds s of load");

my $s = -e $summary ? decode_json(slurp_file($summary)) : {};
is_deeply($s->{failures} // ['no summary'], [], 'no failure in the summary');
is($s->{held_purged} // -1, 0, 'no held or parked event was purged');
is(scalar @{ $s->{api_errors} // ['no summary'] }, 0, 'no consumer call failed but by a lost connection');
is(scalar @{ $s->{writer_errors} // ['no summary'] }, 0, 'every writer transaction went as planned');
is($s->{left_after_final_purge} // -1, 0, 'once every consumer read to its end, the purge left nothing');

# each consumer's line: its counts, and its verdict
for my $kind (qw(plain typed group nack))
{
	my ($line) = grep { /^CONSUMER \S+ kind=$kind / } @{ $s->{lines} // [] };
	ok(defined $line && $line =~ / ok$/, "consumer $kind: every committed event delivered, in order, duplicates only where an ack was lost")
	  or diag($line // 'no line');
	next unless defined $line;
	my %n = $line =~ /(\w+)=(\d+)/g;
	is($n{missing} + $n{unexpected} + $n{out_of_order} + $n{bad_duplicates}, 0,
		"consumer $kind: none missing, unexpected, out of order or delivered again after its ack");
	cmp_ok($n{delivered}, '>', 0, "consumer $kind delivered $n{delivered} of $n{committed}, $n{duplicates} duplicates");
}

# what the run exercised: enough to mean something at the default length
if ($seconds >= 10)
{
	cmp_ok($s->{committed_events} // 0, '>=', 200, "events committed: " . ($s->{committed_events} // 0));
	cmp_ok($s->{rolled_back_events} // 0, '>', 0, "events rolled back: " . ($s->{rolled_back_events} // 0));
	cmp_ok($s->{txns}{'commit prepared'} // 0, '>', 0, 'prepared transactions committed');
	cmp_ok(($s->{txns}{'rollback prepared'} // 0) + ($s->{txns}{'prepare cut by restart'} // 0),
		'>', 0, 'prepared transactions rolled back');
	cmp_ok($s->{purges} // 0, '>', 0, 'purges: ' . ($s->{purges} // 0));
	my $deaths = 0;
	$deaths += $_ for values %{ $s->{kills} // {} }, values %{ $s->{closes} // {} };
	cmp_ok($deaths, '>', 0, "readers killed or gone mid-batch: $deaths");
	my ($nack) = grep { /kind=nack/ } @{ $s->{lines} // [] };
	like($nack // '', qr/ rejected=[1-9]/, 'the rejecting consumer rejected events');
}

if (!Test::More->builder->is_passing)
{
	diag("seed $seed; to run it again: $repro");
	diag("model stderr: $err") if $err ne '';
	diag($_) for grep { /^(FAIL|CONSUMER|WRITES|PURGE|MODEL|RESULT)/ } split /\n/, $out;
	diag($_) for grep { /ERROR|FATAL|PANIC/ && !/terminating connection|administrator command|immediate shutdown/ }
	  split /\n/, slurp_file($node->logfile);
}

$node->stop;
# a backend terminated by a signal (the immediate shutdown's is SIGQUIT,
# which the log does not report so) or a failed assertion fails the test
unlike(slurp_file($node->logfile), qr/terminated by signal|TRAP:/, 'the server log shows no crash');
done_testing();
