# The whole API through a Citus coordinator, after orders_distribute():
# every call is sent to the worker that holds its order, whether or not
# the caller gave the id, in or out of a transaction block; a concurrent
# save gets 40001; a transaction that writes on both workers commits with
# two-phase commit, notifying as the coordinator's orders.notify says; a
# NULL id never reaches Citus's planner; positions tell their node; nothing
# is ever written into a shell table.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use CitusCluster;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::MD5 qw(md5_hex);
use IPC::Run;

my ($coordinator, @workers) = CitusCluster::start(workers => 2,
	conf => "shared_preload_libraries = 'citus,orders'\n");
my @nodes = ($coordinator, @workers);

sub q1 { return $coordinator->safe_psql('postgres', $_[0]); }

my $line = q{ARRAY[ROW('0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b', 'Green tea', 2, 450)::order_line]};
my $addr = q{ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address};

# Two orders before the cluster: their positions become the coordinator's.
q1(qq{CREATE EXTENSION orders;
	SELECT orders_add('c0000000-0000-4000-8000-000000000001', 'EUR', $line, $addr,
	                  ('b0000000-0000-4000-8000-00000000000' || n)::uuid)
	FROM generate_series(1, 2) n;});
my $before = q1('SELECT string_agg(position::text, \',\' ORDER BY position) FROM order_events');

# A consumer holding a rejected event: its position would not follow the
# outbox onto the cluster, so distributing waits until it is resolved.
q1(q{SELECT orders_events_register('mail', from_start => true)});
my $held = q1(q{SELECT position FROM orders_events_nack('mail',
		(SELECT min(position) FROM orders_events_read('mail', 1)), 'down')});
like(CitusCluster::try_sql($coordinator, 'SELECT orders_distribute(shard_count => 4)'),
	qr/55000: consumers hold rejected events/, 'orders_distribute() is refused while an event is held');
q1(qq{SELECT orders_events_discard('mail', $held); SELECT orders_events_unregister('mail')});

q1('SELECT orders_distribute(shard_count => 4)');
like(CitusCluster::try_sql($coordinator, 'SELECT orders_distribute()'),
	qr/55000: tables "orders" and "order_events" are distributed already/,
	'a second orders_distribute() is refused');
is(q1('SELECT string_agg(position::text, \',\' ORDER BY position) FROM order_events'),
	join(',', map { $_ * 1024 } split /,/, $before),
	'positions taken before are the coordinator\'s group\'s: times 1024, plus 0');

# ids spread over the hash space, and the worker of each
my @ids = map { my $h = md5_hex("order $_"); join '-', unpack('A8 A4 A4 A4 A12', $h) } 1 .. 20;
my %port_of = map {
	$_ => q1(qq{SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
	            WHERE p.shardid = get_shard_id_for_distribution_column('orders', '$_')})
} @ids;
my ($on_w0) = grep { $port_of{$_} == $workers[0]->port } @ids;
my ($on_w1) = grep { $port_of{$_} == $workers[1]->port } @ids;
ok($on_w0 && $on_w1, 'ids on both workers');

# Through the coordinator, ids given and not.
for my $id (@ids[0 .. 5])
{
	q1(qq{SELECT orders_add('c0000000-0000-4000-8000-000000000001', 'EUR', $line, $addr, '$id')});
}
my $generated = q1(qq{SELECT id FROM orders_add('c0000000-0000-4000-8000-000000000002', 'USD', $line)});
like($generated, qr/^[0-9a-f-]{36}$/, 'orders_add without an id: the coordinator makes one');
is(q1('SELECT count(*) FROM orders'), '9', 'nine orders, read through the coordinator');
is(q1(qq{SELECT customer_id FROM orders_get('$generated')}), 'c0000000-0000-4000-8000-000000000002',
	'orders_get finds the order whose id the coordinator made');
is(q1(qq{SELECT count(*) FROM orders_get('$ids[11]')}), '0', 'orders_get of no order: no row');
is(q1(qq{SELECT version || ' ' || status FROM orders_save(jsonb_populate_record(
	(SELECT o FROM orders_get('$ids[0]') o), '{"status": "confirmed"}'))}),
	'2 confirmed', 'orders_save through the coordinator');
is(q1(qq{SELECT id FROM orders_remove('$ids[1]', 1)}), $ids[1], 'orders_remove through the coordinator');
like(CitusCluster::try_sql($coordinator, qq{SELECT orders_remove('$ids[0]')}),
	qr/23514: order cannot be removed while it is in flight.*CONTEXT:.*order $ids[0]/s,
	'an invariant the worker checks: its SQLSTATE and message reach the caller');
like(CitusCluster::try_sql($coordinator, qq{SELECT orders_save(jsonb_populate_record(
	(SELECT o FROM orders_get('$ids[2]') o), '{"version": 7}'))}),
	qr/40001/, 'a stale version: 40001 from the worker');
is(q1(q{SELECT count(*) FROM orders_find(customer_id => 'c0000000-0000-4000-8000-000000000001')}),
	'7', 'orders_find through the coordinator');
is(q1(q{SELECT orders_count(status => 'pending')}), '7', 'orders_count');
is(q1(q{SELECT string_agg(currency || ':' || orders || ':' || total, ' ' ORDER BY currency) FROM orders_total()}),
	'EUR:7:6300 USD:1:900', 'orders_total');

# In a transaction block (force_delegation), rolled back: nothing stays.
q1(qq{BEGIN;
	SELECT orders_add('c0000000-0000-4000-8000-000000000001', 'EUR', id => '$ids[6]');
	SELECT orders_save(jsonb_populate_record((SELECT o FROM orders_get('$ids[6]') o),
	                                         '{"status": "cancelled"}'));
	ROLLBACK;});
is(q1(qq{SELECT count(*) FROM orders WHERE id = '$ids[6]'}) . ' '
	. q1(qq{SELECT count(*) FROM order_events WHERE order_id = '$ids[6]'}),
	'0 0', 'a rolled-back transaction block leaves no order and no event');

# A NULL id never reaches Citus's planner, whichever way it is written.
for my $call (
	q{SELECT orders_internal.orders_add_at('c0000000-0000-4000-8000-000000000001', 'EUR', '{}', NULL, NULL, 'on')},
	q{SELECT * FROM orders_internal.orders_get_at(NULL)},
	q{SELECT * FROM orders_internal.orders_save_at(NULL, NULL, 'on')},
	q{SELECT orders_internal.orders_remove_at(NULL::text::uuid, NULL, 'on')},
	q{SELECT orders_internal.orders_remove_at(id => NULL, expected_version => NULL, notify => 'on')},
	q{DO $$BEGIN EXECUTE 'SELECT * FROM orders_internal.orders_get_at($1)' USING NULL::uuid; END$$},
	q{PREPARE p(uuid) AS SELECT * FROM orders_internal.orders_get_at($1); EXECUTE p(NULL)},
	q{SELECT * FROM (SELECT * FROM orders_internal.orders_get_at(NULL)) s},
	q{WITH c AS (SELECT orders_internal.orders_remove_at(NULL, NULL, 'on')) SELECT * FROM c})
{
	like(CitusCluster::try_sql($coordinator, $call), qr/22004: order id must not be null/, "refused: $call");
}
is(q1('SELECT count(*) FROM orders_get(NULL)'), '0', 'orders_get(NULL): no row, as on one node');
like(CitusCluster::try_sql($coordinator, 'SELECT orders_remove(NULL)'), qr/22004/, 'orders_remove(NULL): 22004');

($on_w0) = grep { $port_of{$_} == $workers[0]->port } @ids[7 .. 11];
($on_w1) = grep { $port_of{$_} == $workers[1]->port } @ids[7 .. 11];
# One transaction that writes on both workers: rolled back, neither order
# stays; committed, both do, with two-phase commit (a delegated call in a
# transaction block, or in a function as each routed call is, is a write
# to Citus: function_call_delegation.c).  Each call carries the
# coordinator's orders.notify.
my $both = qq{BEGIN;
	SELECT orders_add('c0000000-0000-4000-8000-000000000003', 'EUR', id => '$on_w0');
	SELECT orders_add('c0000000-0000-4000-8000-000000000003', 'EUR', id => '$on_w1');};
q1("$both ROLLBACK;");
is(q1(q{SELECT count(*) FROM orders WHERE customer_id = 'c0000000-0000-4000-8000-000000000003'}), '0',
	'two workers in a transaction rolled back: neither order stays');

# NOTIFY cannot be prepared: with orders.notify = on the commit fails,
# saying what to do, and nothing stays.
like(CitusCluster::try_sql($coordinator, "$both COMMIT;"),
	qr/cannot prepare a transaction that wrote orders with orders.notify = on/,
	'two workers with orders.notify = on: the commit says why it cannot be prepared');
is(q1(q{SELECT count(*) FROM orders WHERE customer_id = 'c0000000-0000-4000-8000-000000000003'}), '0',
	'and neither order stays');

# What the workers' logs say from here on: each prepared its part.
sub prepared_on_both
{
	my ($sql, $what) = @_;
	my @offsets = map { -s $_->logfile } @workers;
	q1($sql);
	for my $i (0 .. $#workers)
	{
		like(slurp_file($workers[$i]->logfile, $offsets[$i]), qr/PREPARE TRANSACTION 'citus_/,
			"$what: " . $workers[$i]->name . ' prepared its part (two-phase commit)');
	}
}
prepared_on_both("SET orders.notify = off; $both COMMIT;", 'a transaction block on two workers');
is(q1(q{SELECT count(*) FROM orders WHERE customer_id = 'c0000000-0000-4000-8000-000000000003'}), '2',
	'committed: both');
my ($w0b) = grep { $port_of{$_} == $workers[0]->port } @ids[12 .. 19];
my ($w1b) = grep { $port_of{$_} == $workers[1]->port } @ids[12 .. 19];
prepared_on_both(qq{SET orders.notify = off;
	SELECT count(orders_add('c0000000-0000-4000-8000-000000000004', 'EUR', id => x))
	FROM unnest(ARRAY['$w0b', '$w1b']::uuid[]) x},
	'one statement on two workers');
is(q1(q{SELECT count(*) FROM orders WHERE customer_id = 'c0000000-0000-4000-8000-000000000004'}), '2',
	'committed: both');

# Concurrent saves of one order: the second gets 40001 once the first commits.
my $save = qq{SELECT version FROM orders_save(jsonb_populate_record(
	(SELECT o FROM orders_get('$ids[3]') o), '{"status": "cancelled"}'))};
my $slow = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $coordinator->connstr('postgres'), '-c',
	  "BEGIN; SELECT version FROM orders_save(jsonb_populate_record((SELECT o FROM orders_get('$ids[3]') o), '{\"status\": \"confirmed\"}')); SELECT pg_sleep(3); COMMIT;" ],
	'>', \my $slow_out, '2>', \my $slow_err);
$coordinator->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'BEGIN; SELECT version%' AND wait_event = 'PgSleep'})
  or die 'the first save did not start';
like(CitusCluster::try_sql($coordinator, $save), qr/40001/, 'a concurrent save of the same version: 40001');
$slow->finish;
is(q1(qq{SELECT version || ' ' || status FROM orders_get('$ids[3]')}), '2 confirmed',
	'the first save stands');

# Positions: unique, and each tells the group of the node that wrote it;
# an order's events in version order are in position order.
is(q1(q{SELECT count(*) - count(DISTINCT position) FROM order_events}), '0', 'positions are unique');
is(q1(q{SELECT count(*) FROM order_events e
	JOIN pg_dist_placement p ON p.shardid = get_shard_id_for_distribution_column('orders', e.order_id)
	WHERE e.order_id::text NOT LIKE 'b0000000%' AND e.position % 1024 <> p.groupid}), '0',
	'each new position ends in the group of the worker that holds its order');
is(q1(q{SELECT count(*) FROM (SELECT order_id, position, version,
	lag(version) OVER (PARTITION BY order_id ORDER BY position) AS before FROM order_events) e
	WHERE e.version < e.before}), '0', 'each order\'s events: version order is position order');

# The shop's own fields on the cluster: the DDL reaches every shard; a
# routed add fills the column's default on the order's node, and refuses
# fields it cannot carry yet (0A000, naming the field); a routed save
# stores the column, checks the shop's CHECK on the node (23514 and its
# name come back through the coordinator), and emits order_fields_changed.
q1(q{ALTER TABLE orders ADD COLUMN coupon text, ADD COLUMN channel text NOT NULL DEFAULT 'web';
	ALTER TABLE orders ADD CONSTRAINT coupon_only_in_eur CHECK (coupon IS NULL OR currency = 'EUR')});
is(q1(q{SELECT channel FROM orders_add('c0000000-0000-4000-8000-000000000005', 'EUR',
	id => 'a0000000-0000-4000-8000-000000000050')}), 'web', 'a routed add takes the column default on its node');
like(CitusCluster::try_sql($coordinator, q{SELECT orders_add('c0000000-0000-4000-8000-000000000005', 'EUR',
	fields => '{"coupon": "SPRING"}')}), qr/0A000: orders_add cannot send fields to a Citus node/,
	'a routed add with fields is refused, not half-done');
is(q1(q{SELECT version || ' ' || coupon FROM orders_save(jsonb_populate_record(
	(SELECT o FROM orders_get('a0000000-0000-4000-8000-000000000050') o), '{"coupon": "SPRING"}'))}),
	'2 SPRING', 'a routed save stores the shop\'s column');
is(q1(q{SELECT type || ' ' || payload::text FROM orders_events_of('a0000000-0000-4000-8000-000000000050', 1)}),
	'order_fields_changed {"coupon": "SPRING"}', 'and emits order_fields_changed on the node');
q1(q{SELECT orders_add('c0000000-0000-4000-8000-000000000005', 'USD', id => 'a0000000-0000-4000-8000-000000000051')});
like(CitusCluster::try_sql($coordinator, q{SELECT orders_save(jsonb_populate_record(
	(SELECT o FROM orders_get('a0000000-0000-4000-8000-000000000051') o), '{"coupon": "SPRING"}'))}),
	qr/23514: new row for relation "orders" violates check constraint "coupon_only_in_eur"/,
	'a broken rule of the shop\'s fails on the node, named');
is(q1(q{SELECT version || ' ' || coalesce(coupon, '-') FROM orders WHERE id = 'a0000000-0000-4000-8000-000000000051'}),
	'1 -', 'and stores nothing');

CitusCluster::shells_hold_nothing(@nodes);
CitusCluster::stop(@nodes);
is(join("\n", CitusCluster::crashes(@nodes)), '', 'no node log shows a crash or a failed assertion');
done_testing();
