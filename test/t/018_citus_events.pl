# Extensions 1.8 and 1.9 on a Citus cluster: ALTER EXTENSION orders UPDATE
# of a cluster distributed at 1.7 gives every shard and every node's shell the
# envelope's columns; the events written on workers get their envelope and
# the metadata the coordinator's transaction set (it travels with each
# routed call, two-phase commit included); one order's history is read
# through the coordinator from its node; a cluster consumer reads by type,
# and a consumer group reads everything.  Rejecting an event (1.9) is
# refused on a cluster, and leaves the consumer as it was.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use CitusCluster;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my ($coordinator, @workers) = CitusCluster::start(workers => 2,
	conf => "shared_preload_libraries = 'citus,orders'\n");
my @nodes = ($coordinator, @workers);

sub q1 { return $coordinator->safe_psql('postgres', $_[0]); }

my $addr = q{ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address};
my $line = q{ARRAY[ROW('0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b', 'Green tea', 2, 450)::order_line]};

# A cluster distributed at 1.7, with events on both workers.
q1(qq{SET orders.notify = off;
	CREATE EXTENSION orders VERSION '1.7';
	SELECT orders_distribute(shard_count => 4);
	SELECT orders_add('c0000000-0000-4000-8000-000000000001', 'EUR', $line, $addr,
	                  ('b0000000-0000-4000-8000-00000000000' || n)::uuid)
	FROM generate_series(1, 8) n;
	SELECT orders_events_register('shipping', from_start => true);});
my $workers_with_events = q1(q{SELECT count(DISTINCT position % 1024) FROM order_events});
is($workers_with_events, '2', 'events on both workers before the update');

is(CitusCluster::try_sql($coordinator, 'ALTER EXTENSION orders UPDATE'), '',
	'ALTER EXTENSION orders UPDATE runs on the coordinator of a distributed outbox');
for my $node (@nodes)
{
	is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'orders'}),
		'1.12', $node->name . ': at 1.12, through 1.8 to 1.11');
	is($node->safe_psql('postgres',
			q{SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
			  WHERE attrelid = 'order_events'::regclass AND attnum > 8 AND NOT attisdropped}),
		'id,aggregatetype,schema_version,metadata', $node->name . ': the outbox has the envelope');
}
is(q1(q{SELECT string_agg(DISTINCT result, ',') FROM run_command_on_shards('order_events',
	$$SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
	  WHERE attrelid = '%s'::regclass AND attnum > 8 AND NOT attisdropped$$)}),
	'id,aggregatetype,schema_version,metadata', 'every shard has the envelope');
is(q1(q{SELECT count(*) FILTER (WHERE id IS NULL AND aggregatetype = 'order' AND schema_version = 1)
	FROM order_events}), '8', 'events from before the update: no id, the defaults');
# orders_distribute() gave orders_find a body of its own on the cluster,
# which names a helper that 1.11 moved to orders_internal
is(q1(q{SELECT count(*) FROM orders_find(customer_id => 'c0000000-0000-4000-8000-000000000001',
	                                      min_total => 1, max_rows => NULL)}),
	'8', 'orders_find of the distributed cluster finds its orders after the update');

# Metadata set on the coordinator, carried to the workers: one transaction
# writing on both (two-phase commit), and orders.notify travels as before.
q1(qq{BEGIN;
	SET LOCAL orders.notify = off;
	SET LOCAL orders.event_metadata = '{"correlation_id": "corr-cluster", "actor": "bob"}';
	SELECT orders_save(jsonb_populate_record(o, '{"status": "confirmed"}'))
	FROM generate_series(1, 8) n, orders_get(('b0000000-0000-4000-8000-00000000000' || n)::uuid) o;
	SELECT orders_add('c0000000-0000-4000-8000-000000000002', 'USD', $line);
	COMMIT;});
is(q1(q{SELECT count(*), count(DISTINCT position % 1024), count(DISTINCT id)
	FROM order_events WHERE metadata->>'correlation_id' = 'corr-cluster' AND metadata->>'actor' = 'bob'}),
	'9|2|9', 'nine events written on both workers carry the metadata, each with an id of its own');
is(q1(q{SELECT count(*) FROM order_events WHERE position > 0 AND id IS NOT NULL AND metadata IS NULL}),
	'0', 'no event of that transaction lacks it');
# a routed call without metadata stores none, also after one with
q1(q{SELECT orders_add('c0000000-0000-4000-8000-000000000003', 'USD', id => 'b0000000-0000-4000-8000-000000000020')});
is(q1(q{SELECT metadata IS NULL FROM order_events WHERE order_id = 'b0000000-0000-4000-8000-000000000020'}),
	't', 'a later call without metadata: none');
like(CitusCluster::try_sql($coordinator, q{BEGIN; SET LOCAL orders.event_metadata = '[1]';
	SELECT orders_add('c0000000-0000-4000-8000-000000000003', 'USD'); COMMIT;}),
	qr/22023: orders.event_metadata must be a JSON object/,
	'bad metadata is refused on the worker, with its message');

# One order's history, through the coordinator, from the order's node.
is(q1(q{SELECT string_agg(type || ' v' || version, ', ')
	FROM orders_events_of('b0000000-0000-4000-8000-000000000003')}),
	'order_added v1, order_confirmed v2', 'orders_events_of through the coordinator');
is(q1(q{SELECT string_agg(type, ', ') FROM orders_events_of('b0000000-0000-4000-8000-000000000003', 1)}),
	'order_confirmed', 'after a version');

# A cluster consumer reading by type: only the confirmations, each once;
# everything else acknowledged with them.
my @confirmed;
for (1 .. 10)
{
	my $batch = q1(q{SELECT string_agg(order_id || ' ' || type, ',' ORDER BY position)
		FROM orders_events_read('shipping', 3, ARRAY['order_confirmed'])});
	last if $batch eq '';
	push @confirmed, split /,/, $batch;
	q1(q{SELECT orders_events_ack('shipping', (SELECT max(position) FROM orders_events_read('shipping', 3, ARRAY['order_confirmed'])))});
}
is(scalar @confirmed, 8, 'the typed reader got the eight confirmations');
is(scalar(grep { !/ order_confirmed$/ } @confirmed), 0, 'and nothing else');
my %seen;
$seen{$_}++ for @confirmed;
is(scalar keys %seen, 8, 'each once');
is(q1(q{SELECT pending FROM orders_events_consumers() WHERE name = 'shipping'}), '0',
	'the skipped events count as acknowledged');

# A consumer group on the cluster: one reader holds the 16 parts and reads
# every event once, across both workers.
q1(q{SELECT orders_events_register_group('billing', from_start => true)});
my $group_read = q1(q{SELECT count(*) || ' ' || count(DISTINCT position) || ' ' || count(DISTINCT position % 1024)
	FROM orders_events_read_group('billing', 10000)});
is($group_read, q1(q{SELECT count(*) || ' ' || count(*) || ' 2' FROM order_events}),
	'a group reader reads every event of both workers once');

# Rejected events are held on one node only: refused on a cluster, and the
# consumer reads on as before.
my $next = q1(q{SELECT coalesce(min(position), 1) FROM orders_events_read('shipping', 1)});
like(CitusCluster::try_sql($coordinator, qq{SELECT orders_events_nack('shipping', $next, 'down')}),
	qr/0A000.*not supported while Citus distributes the outbox/s, 'nack refused on a cluster (0A000)');
is(q1(q{SELECT count(*) FROM orders_events_holds('shipping')}), '0', 'no hold on a cluster');
cmp_ok(q1(q{SELECT orders_events_purge()}), '>=', 0, 'the purge runs on a cluster');

is(join("\n", CitusCluster::crashes(@nodes)), '', 'no node crashed');
CitusCluster::stop(@nodes);
done_testing();
