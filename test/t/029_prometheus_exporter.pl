# Consumer lag in Prometheus: Debian's prometheus-postgres-exporter, started
# on loopback with monitoring/postgres-exporter.yml and connected as a role
# with only the grants docs/monitoring.md gives, scrapes a cluster where one
# consumer has acknowledged everything and another has fallen behind with a
# held and a parked event; each figure of /metrics is checked against the
# database.  Then the relay worker is sent away to another database: the
# metrics say it is down and falling behind; and with the library no longer
# preloaded, that no worker is expected.  Where promtool is installed, the
# alert rules are checked and their unit tests run.
use strict;
use warnings;
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $exporter = '/usr/bin/prometheus-postgres-exporter';
plan skip_all => "$exporter is not installed (Debian's prometheus-postgres-exporter; "
  . 'test/check installs it when run as root)'
  unless -x $exporter;

my $queries = 'monitoring/postgres-exporter.yml';
ok(-r $queries, "the queries file $queries is there");

my $node = PostgreSQL::Test::Cluster->new('exporter');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'orders'
orders.relay_database = 'postgres'
});
$node->start;

# The monitoring role, with exactly the grants of docs/monitoring.md.
$node->safe_psql('postgres', q{
CREATE EXTENSION orders;
CREATE ROLE prometheus LOGIN;
GRANT pg_monitor TO prometheus;
GRANT EXECUTE ON FUNCTION orders_events_consumers() TO prometheus;
GRANT SELECT ON order_event_consumers TO prometheus;
GRANT SELECT (position, occurred_at, xid) ON order_events TO prometheus;
GRANT SELECT (consumer, later, parked_at) ON order_event_holds TO prometheus;
ALTER ROLE prometheus SET search_path = public;
});

# Monitoring reads no order: the events' payloads are not the role's.
my ($rc, $stdout, $stderr) = $node->psql('postgres', 'SELECT payload FROM order_events',
	extra_params => [ '-U', 'prometheus' ]);
like($stderr, qr/permission denied/, 'the monitoring role cannot read the payloads');

# Two consumers; 20 events, one an order.  billing handles them all;
# shipping rejects its first event for good (max_attempts 1: parked) and
# its second for now (retried in an hour: held), and stops there.
$node->safe_psql('postgres', q{
SELECT orders_events_register('billing');
SELECT orders_events_register('shipping');
SET orders.notify = relay;
SELECT count(orders_add(gen_random_uuid(), 'EUR')) FROM generate_series(1, 20);
});
$node->safe_psql('postgres', q{
SELECT orders_events_ack('billing', max(position)) FROM orders_events_read('billing', 100);
});
my ($first, $second) = split /\n/, $node->safe_psql('postgres',
	q{SELECT position FROM orders_events_read('shipping', 5) ORDER BY position LIMIT 2});
$node->safe_psql('postgres', qq{
SELECT orders_events_nack('shipping', $first, 'no such warehouse', max_attempts => 1);
SELECT orders_events_nack('shipping', $second, 'warehouse busy', retry_delay => '1 hour');
});
ok($node->poll_query_until('postgres',
		q{SELECT pending = 0 FROM orders_events_consumers() WHERE name = 'orders_relay'}),
	'the relay worker has relayed the events');
# the outbox's row count comes from the statistics: every writer has
# ended, so they are in
ok($node->poll_query_until('postgres',
		q{SELECT n_live_tup = 20 FROM pg_stat_user_tables WHERE relname = 'order_events'}),
	'the statistics count the 20 events');
sleep 2;    # ages worth measuring

# The exporter: loopback, a free port, the cluster's Unix socket.
my $port = PostgreSQL::Test::Cluster::get_free_port();
(my $socket = $node->host) =~ s{([^A-Za-z0-9/_.-])}{sprintf '%%%02X', ord $1}ge;
my ($out, $err) = ('', '');
my $harness;
{
	local $ENV{DATA_SOURCE_NAME} = 'postgresql://prometheus@:' . $node->port
	  . "/postgres?host=$socket&sslmode=disable";
	$harness = IPC::Run::start(
		[
			$exporter, "--web.listen-address=127.0.0.1:$port",
			"--extend.query-path=$queries", '--disable-default-metrics',
			'--disable-settings-metrics', '--no-collector.database',
			'--no-collector.bgwriter', '--log.level=warn'
		],
		'>', \$out, '2>', \$err);
}
my $http = HTTP::Tiny->new(timeout => 5);

# /metrics, parsed: name => { labels as "k=v,..." sorted => value }.
sub scrape
{
	my $response;
	for (1 .. 100)
	{
		$response = $http->get("http://127.0.0.1:$port/metrics");
		last if $response->{success};
		select undef, undef, undef, 0.1;
	}
	die "no /metrics from the exporter: $response->{status} $response->{content}\n$err"
	  unless $response->{success};
	my %m;
	for my $line (split /\n/, $response->{content})
	{
		next if $line =~ /^#/ || $line !~ /\S/;
		my ($name, $labels, $value) = $line =~ /^(\w+)(?:\{(.*)\})?\s+(\S+)$/
		  or die "cannot parse: $line";
		my %l = ($labels // '') =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
		delete $l{server};
		$m{$name}{ join ',', map { "$_=$l{$_}" } sort keys %l } = $value;
	}
	return \%m;
}

# The database's figures, taken just after a scrape: ages grow in between.
sub db_row
{
	my ($sql) = @_;
	return split /\|/, $node->safe_psql('postgres', $sql);
}

my $m = scrape();
my ($load) = grep { /(^|,)filename=\Q$queries\E(,|$)/ } keys %{ $m->{pg_exporter_user_queries_load_error} };
is($load && $m->{pg_exporter_user_queries_load_error}{$load}, 0, 'the exporter loads the queries file');
is($m->{pg_exporter_last_scrape_error}{''}, 0, 'and scrapes without an error') or diag $err;
my $tolerance = 3;    # seconds between the scrape and the database's answer, and more

for my $consumer ('billing', 'shipping', 'orders_relay')
{
	my ($pending, $age, $ack_age) = db_row(qq{
		SELECT pending, coalesce(extract(epoch FROM lag), 0),
		       extract(epoch FROM now() - coalesce(acked_at, registered_at))
		FROM orders_events_consumers() WHERE name = '$consumer'});
	my $k = "consumer=$consumer";
	is($m->{orders_consumer_pending}{$k}, $pending, "$consumer: pending is orders_events_consumers()'s ($pending)");
	my $got = $m->{orders_consumer_oldest_pending_age_seconds}{$k};
	ok(defined $got && $got <= $age + 0.001 && $got > $age - $tolerance,
		"$consumer: the oldest pending event's age ($got) is the database's ($age)");
	$got = $m->{orders_consumer_last_ack_age_seconds}{$k};
	ok(defined $got && $got <= $ack_age + 0.001 && $got > $ack_age - $tolerance,
		"$consumer: the time since its acknowledgement ($got) is the database's ($ack_age)");
}
is($m->{orders_consumer_pending}{'consumer=billing'}, 0, 'billing has nothing pending');
is($m->{orders_consumer_oldest_pending_age_seconds}{'consumer=billing'}, 0, 'and so no age');
# the two rejected events are held, not pending: 18 events, counted exactly
is($m->{orders_consumer_pending}{'consumer=shipping'}, 18, 'shipping has 18 events pending');
cmp_ok($m->{orders_consumer_oldest_pending_age_seconds}{'consumer=shipping'}, '>=', 2,
	'the oldest of them is 2 seconds old or more');
my %holds = map { my ($c, $held, $parked) = split /\|/; ($c => [ $held, $parked ]) }
  split /\n/, $node->safe_psql('postgres', q{
	SELECT name, (SELECT count(*) FROM orders_events_holds(name) WHERE parked_at IS NULL),
	       (SELECT count(*) FROM orders_events_parked(name))
	FROM orders_events_consumers()});
for my $consumer (sort keys %holds)
{
	is($m->{orders_consumer_held}{"consumer=$consumer"}, $holds{$consumer}[0],
		"$consumer: held is orders_events_holds()'s ($holds{$consumer}[0])");
	is($m->{orders_consumer_parked}{"consumer=$consumer"}, $holds{$consumer}[1],
		"$consumer: parked is orders_events_parked()'s ($holds{$consumer}[1])");
}
is($m->{orders_consumer_held}{'consumer=shipping'}, 1, 'shipping has one event held');
is($m->{orders_consumer_parked}{'consumer=shipping'}, 1, 'and one parked');
is($m->{orders_consumer_held_back}{'consumer=shipping'}, 0, 'and nothing waiting behind them');

my ($rows, $bytes, $last, $oldest) = db_row(q{
	SELECT count(*), pg_total_relation_size('order_events'), max(position),
	       extract(epoch FROM now() - min(occurred_at)) FROM order_events});
is($m->{orders_outbox_rows}{''}, $rows, "the outbox's rows ($rows)");
is($m->{orders_outbox_bytes}{''}, $bytes, "the outbox's size ($bytes bytes)");
is($m->{orders_outbox_last_position}{''}, $last, "the outbox's last position ($last)");
my $got = $m->{orders_outbox_oldest_event_age_seconds}{''};
ok($got <= $oldest + 0.001 && $got > $oldest - $tolerance, "the outbox's first event's age ($got) is the database's ($oldest)");

is($m->{orders_relay_up}{'relay_database=postgres'}, 1, 'the relay worker is up');
is($m->{orders_relay_serves}{'relay_database=postgres'}, 1, 'and serves this database');
is($m->{orders_relay_pending}{'relay_database=postgres'}, 0, 'with nothing to relay');
is($m->{orders_relay_lag_seconds}{'relay_database=postgres'}, 0, 'and no lag');

# The relay worker sent to a database that does not exist: it leaves this
# one, and the events written since wait for it.
$node->append_conf('postgresql.conf', "orders.relay_database = 'elsewhere'\n");
$node->reload;
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'orders relay' AND datname IS NOT NULL}),
	'the relay worker has left the database');
$node->safe_psql('postgres', q{SET orders.notify = off;
	SELECT count(orders_add(gen_random_uuid(), 'EUR')) FROM generate_series(1, 5)});
sleep 1;
$m = scrape();
is($m->{orders_relay_up}{'relay_database=elsewhere'}, 0, 'the metrics say the relay worker is down');
is($m->{orders_relay_serves}{'relay_database=elsewhere'}, 0, 'and serves another database');
is($m->{orders_relay_pending}{'relay_database=elsewhere'}, 5, 'with 5 events it has not passed');
my ($lag) = db_row(q{SELECT extract(epoch FROM lag) FROM orders_events_consumers() WHERE name = 'orders_relay'});
$got = $m->{orders_relay_lag_seconds}{'relay_database=elsewhere'};
ok($got > 0 && $got <= $lag + 0.001 && $got > $lag - $tolerance, "and its lag ($got) is the database's ($lag)");
is($m->{orders_consumer_pending}{'consumer=shipping'}, 23, 'shipping has 23 events pending now');
is($m->{orders_consumer_pending}{'consumer=billing'}, 5, 'billing 5');

like($err, qr/^\s*$/, 'the exporter logged no warning or error') or diag $err;

# Without the library preloaded there is no worker, and none is expected:
# no relay alert.  The exporter reconnects after the restart.
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''\norders.relay_database = 'postgres'\n");
$node->restart;
for (1 .. 50)
{
	$m = scrape();
	last if ($m->{pg_exporter_last_scrape_error}{''} // 1) == 0 && exists $m->{orders_relay_serves};
	select undef, undef, undef, 0.2;
}
is($m->{orders_relay_up}{'relay_database=postgres'}, 0, 'not preloaded: the relay worker is not up');
is($m->{orders_relay_serves}{'relay_database=postgres'}, 0, 'and not expected');

# The alert rules of docs/monitoring.md, where Debian's prometheus package
# is installed (it is not one of test/check's packages): their syntax, and
# their unit tests.
SKIP:
{
	skip 'promtool is not installed (Debian package prometheus)', 2 unless -x '/usr/bin/promtool';
	my ($stdout, $stderr) = run_command([ '/usr/bin/promtool', 'check', 'rules', 'monitoring/orders-alerts.yml' ]);
	like($stdout . $stderr, qr/SUCCESS: \d+ rules found/, 'promtool checks the alert rules');
	($stdout, $stderr) = run_command([ '/usr/bin/promtool', 'test', 'rules', 'monitoring/orders-alerts-test.yml' ]);
	like($stdout . $stderr, qr/^\s*SUCCESS\s*$/m, "and they pass their unit tests") or diag $stdout . $stderr;
}

$harness->kill_kill;
$node->stop;
unlike(slurp_file($node->logfile), qr/terminated by signal|TRAP:/, 'the server log shows no crash');
done_testing();
