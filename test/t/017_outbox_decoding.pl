# The outbox as Debezium's outbox event router reads it, without Debezium:
# a publication of order_events, decoded through a logical replication slot
# with pgoutput (the plugin Debezium uses), and the pgoutput protocol parsed
# here.  Every field the router needs with the README's settings is in each
# insert (id, aggregatetype, type, payload, and order_id as the key), with
# the payload's schema version and the writer's metadata; the events of a
# transaction that rolled back are not; the orders table is not published.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('decoding');
$node->init(allows_streaming => 'logical');
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION orders;
CREATE PUBLICATION orders_outbox FOR TABLE order_events WITH (publish = 'insert');
SELECT 'slot' FROM pg_create_logical_replication_slot('debezium', 'pgoutput');
});

# Two orders in one transaction with metadata, one confirmed later without,
# and a transaction that rolls back.
$node->safe_psql('postgres', q{
BEGIN;
SET LOCAL orders.event_metadata = '{"correlation_id": "corr-42", "actor": "alice",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}';
SELECT orders_add('7c6d3c2e-1f1a-4e55-9d0a-3b8f1e2a9c01', 'EUR',
    ARRAY[ROW('0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b', 'Green tea', 2, 450)::order_line],
    ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address,
    '01930000-0000-7000-8000-000000000001');
SELECT orders_add('7c6d3c2e-1f1a-4e55-9d0a-3b8f1e2a9c01', 'USD',
    id => '01930000-0000-7000-8000-000000000002');
COMMIT;
SELECT orders_save(jsonb_populate_record(o, '{"status": "confirmed"}'))
FROM orders_get('01930000-0000-7000-8000-000000000001') o;
BEGIN;
SELECT orders_add('7c6d3c2e-1f1a-4e55-9d0a-3b8f1e2a9c01', 'EUR',
    id => '01930000-0000-7000-8000-000000000003');
ROLLBACK;
});

# pgoutput's protocol, version 1: Begin, Relation, Insert, Commit.
my $hex = $node->safe_psql('postgres', q{
SELECT string_agg(encode(data, 'hex'), ',' ORDER BY lsn)
FROM pg_logical_slot_get_binary_changes('debezium', NULL, NULL,
    'proto_version', '1', 'publication_names', 'orders_outbox')});

my (%relations, @inserts, $begins, $commits);
for my $message (map { pack('H*', $_) } split /,/, $hex)
{
	my $kind = substr($message, 0, 1);
	my $rest = substr($message, 1);
	if ($kind eq 'B') { $begins++; }
	elsif ($kind eq 'C') { $commits++; }
	elsif ($kind eq 'R')
	{
		my ($relid, $nsp, $rel, undef, $ncols, $cols) = unpack('N Z* Z* C n a*', $rest);
		my @names;
		for (1 .. $ncols)
		{
			my ($flags, $name, $type, $typmod);
			($flags, $name, $type, $typmod, $cols) = unpack('C Z* N N a*', $cols);
			push @names, $name;
		}
		$relations{$relid} = { name => "$nsp.$rel", columns => \@names };
	}
	elsif ($kind eq 'I')
	{
		my ($relid, $new, $ncols, $cols) = unpack('N a n a*', $rest);
		my @values;
		for (1 .. $ncols)
		{
			my $k;
			($k, $cols) = unpack('a a*', $cols);
			if ($k eq 't')
			{
				my $value;
				($value, $cols) = unpack('N/a a*', $cols);
				push @values, $value;
			}
			else { push @values, undef; }
		}
		my %row;
		@row{ @{ $relations{$relid}{columns} } } = @values;
		push @inserts, { relation => $relations{$relid}{name}, row => \%row };
	}
}

is($begins, 2, 'two committed transactions are decoded; the rolled-back one is not');
is($commits, 2, 'each with its commit');
is_deeply([ sort map { $_->{name} } values %relations ], ['public.order_events'],
	'only the outbox is published');
is(scalar @inserts, 3, 'three events: two adds and one confirmation');

my @columns = @{ (values %relations)[0]{columns} };
for my $field (qw(id aggregatetype type payload order_id schema_version metadata occurred_at))
{
	ok((grep { $_ eq $field } @columns), "the published row has column $field");
}

my $uuid = qr/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
my %ids;
for my $insert (@inserts)
{
	my $row = $insert->{row};
	like($row->{id}, $uuid, "event $row->{position}: id is a version 7 uuid");
	$ids{ $row->{id} }++;
	is($row->{aggregatetype}, 'order', "event $row->{position}: aggregatetype");
	like($row->{order_id}, qr/^01930000-0000-7000-8000-00000000000[12]$/,
		"event $row->{position}: order_id, the aggregate id and message key");
	is($row->{schema_version}, '1', "event $row->{position}: schema_version");
	my $payload = decode_json($row->{payload});
	is(ref $payload, 'HASH', "event $row->{position}: payload is a JSON object");
}
is(scalar keys %ids, 3, 'every event has an id of its own');

my @types = map { "$_->{row}{type} $_->{row}{order_id} v$_->{row}{version}" } @inserts;
is_deeply(
	\@types,
	[
		'order_added 01930000-0000-7000-8000-000000000001 v1',
		'order_added 01930000-0000-7000-8000-000000000002 v1',
		'order_confirmed 01930000-0000-7000-8000-000000000001 v2',
	],
	'the events in commit order, with type and version');

my $added = decode_json($inserts[0]{row}{payload});
is($added->{id}, '01930000-0000-7000-8000-000000000001', 'order_added carries the whole order');
is($added->{lines}[0]{product_name}, 'Green tea', 'with its lines');
my $confirmed = decode_json($inserts[2]{row}{payload});
is_deeply($confirmed, { status => 'confirmed', previous_status => 'pending' },
	'order_confirmed carries the status change');

my $metadata = decode_json($inserts[0]{row}{metadata});
is($metadata->{correlation_id}, 'corr-42', 'metadata: the correlation id');
is($metadata->{actor}, 'alice', 'metadata: the actor');
like($metadata->{traceparent}, qr/^00-4bf92f35/, 'metadata: the trace context');
is($inserts[1]{row}{metadata}, $inserts[0]{row}{metadata},
	'every event of the transaction carries it');
ok(!defined $inserts[2]{row}{metadata}, 'an event written without metadata has none');

# what was decoded is what the outbox holds, id for id
my $stored = $node->safe_psql('postgres',
	q{SELECT string_agg(id::text, ',' ORDER BY position) FROM order_events});
is($stored, join(',', map { $_->{row}{id} } @inserts), 'the decoded ids are the stored ones');

$node->safe_psql('postgres', q{SELECT pg_drop_replication_slot('debezium')});
$node->stop;
done_testing();
