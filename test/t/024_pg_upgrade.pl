# pg_upgrade from the previous major tested (15 to 17 when the suite runs on
# 17, 17 to 18 on 18) of a cluster whose databases hold the extension, its
# orders, an outbox with events pending, consumers of every kind (plain;
# typed; a group; one with a batch open and partly acknowledged; one that
# rejected two events, one held and due again, one parked; one registered
# while a writer was in flight) and idempotency records; and, in a third
# database, the shop's own fields (1.12): a column with a default, an
# identity and a stored generated column, a CHECK constraint, an index and
# a line attribute, with orders written through them.
#
# Every row of the extension's tables reaches the new cluster unchanged,
# and so does every addition of the shop's (pg_upgrade dumps an extension's
# members one by one, unlike pg_dump: see 025_fields_dump_restore.pl): the
# rules hold, the identity continues, orders_add with fields works.
# Then each consumer's reads (each acknowledged through its last event)
# deliver exactly what it had not acknowledged, then what is written after
# the upgrade, each once, in version order per order (and, with adoption,
# 1.10, in position order); the parked event comes when replayed; an
# idempotent call retried replays what it returned and writes nothing.
#
# The checkpoints are transaction snapshots.  pg_upgrade carries the
# transaction ids over (the new cluster continues the old one's xids), but
# the new cluster is another system (its own system identifier): from 1.10
# the first write or consumer call converts the checkpoints into positions
# (adoption).  Two databases take the two paths: in "postgres" the first
# call after the upgrade writes, in "second" it is a consumer's read.
# A transaction open while the consumers read and acknowledged, which
# commits before the upgrade, has events below their acknowledged positions
# that they have not had: those must come; one that rolled back leaves a
# gap of positions that must not.
#
# The older installation comes from ORDERS_UPGRADE_FROM (its prefix, the
# parent of its bin/, or that bin/ itself), with the extension built from
# the same sources installed: test/check does both, as root.
use strict;
use warnings;
use File::Basename qw(dirname);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $new = PostgreSQL::Test::Cluster->new('new');
my $new_major = $new->pg_version->major;
plan skip_all => "PostgreSQL $new_major is the oldest major tested: nothing older to upgrade from"
  if $new_major <= 15;
my $from = $ENV{ORDERS_UPGRADE_FROM} // '';
plan skip_all => 'ORDERS_UPGRADE_FROM is not set: no older PostgreSQL with the extension '
  . 'installed to upgrade from (test/check, run as root, builds one and sets it)'
  if $from eq '';
$from =~ s{/+$}{};
$from = dirname($from) if !-x "$from/bin/pg_config" && -x "$from/pg_config";
die "ORDERS_UPGRADE_FROM=$from: no bin/pg_config there" unless -x "$from/bin/pg_config";

my $old = PostgreSQL::Test::Cluster->new('old', install_path => $from);
my $old_major = $old->pg_version->major;
die "ORDERS_UPGRADE_FROM is PostgreSQL $old_major, not older than $new_major"
  unless $old_major < $new_major;
my $new_bin = $new->config_data('--bindir');
my $old_bin = "$from/bin";

# The extension as each installation has it: the same sources, so the same
# version (pg_upgrade keeps the old cluster's; the new one's library must
# serve it).
sub control_version
{
	my ($pg_config) = @_;
	my $share = `$pg_config --sharedir`;
	chomp $share;
	my $control = "$share/extension/orders.control";
	return '(not installed)' unless -f $control;
	my ($v) = slurp_file($control) =~ /^default_version\s*=\s*'([^']*)'/m;
	return $v;
}
my $old_version = control_version("$old_bin/pg_config");
my $new_version = control_version("$new_bin/pg_config");
is($old_version, $new_version,
	"the extension installed for $old_major and for $new_major is the same version");
note("PostgreSQL $old_major to $new_major, extension $old_version");

# Same locale, encoding and checksums on both sides, whatever each initdb's
# default (18 turns checksums on; pg_upgrade refuses a difference).
my @initdb = ('--locale=C', '--encoding=UTF8', '--data-checksums');
$old->init(extra => \@initdb);
$old->start;
$new->init(extra => \@initdb);

my @dbs = ('postgres', 'second');
$old->safe_psql('postgres', 'CREATE DATABASE second');
$old->safe_psql('postgres', 'CREATE DATABASE fields');

my $types = "ARRAY['order_confirmed', 'order_shipped']";
my %is_typed = (order_confirmed => 1, order_shipped => 1);

# ----------------------------------------------------------------------------
# The old cluster: the same story in each database.

my %st;    # per database: what each consumer has acknowledged, and more

for my $db (@dbs)
{
	my %s;
	$st{$db} = \%s;
	$old->safe_psql($db, q{
SET client_min_messages = warning;
CREATE SCHEMA shop;
CREATE EXTENSION orders SCHEMA shop;
-- o(n): order n's id
CREATE FUNCTION public.o(n integer) RETURNS uuid LANGUAGE sql IMMUTABLE AS $$
    SELECT ('a0000000-0000-0000-0000-' || lpad(to_hex(n), 12, '0'))::uuid $$;
-- add(n): order n, one line; move(n, status): order n saved with that status
-- (plpgsql's PERFORM: the same SELECT as the body of a SQL function returning
-- void did not call orders_save)
CREATE FUNCTION public.add(n integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM shop.orders_add('c0000000-0000-0000-0000-000000000001', 'EUR',
        ARRAY[ROW(public.o(n), 'item ' || n, 1 + n % 3, 100 * n)::shop.order_line],
        ROW('Main St ' || n, 'Berlin', '10115', 'DE')::shop.order_address, public.o(n));
END $$;
CREATE FUNCTION public.move(n integer, new_status text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM shop.orders_save(jsonb_populate_record(o, jsonb_build_object('status', new_status)))
    FROM shop.orders_get(public.o(n)) o;
END $$;
-- each table of the extension: its rows, their count and an md5 of them
CREATE FUNCTION public.fingerprint() RETURNS TABLE (tbl text, n bigint, md5 text)
LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    FOR r IN SELECT c.oid::regclass AS rel FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
             WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass
               AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'orders')
               AND d.deptype = 'e' AND c.relkind = 'r'
             ORDER BY c.relname
    LOOP
        tbl := r.rel::text;
        EXECUTE format('SELECT count(*), md5(coalesce(string_agg(t::text, E''\n'' ORDER BY t::text), ''''))'
                       ' FROM %s t', r.rel) INTO n, md5;
        RETURN NEXT;
    END LOOP;
    tbl := 'position sequence';
    SELECT s.last_value, md5(s.last_value::text) INTO n, md5 FROM shop.order_events_position_seq s;
    RETURN NEXT;
END $$;
SELECT shop.orders_events_register('plain', from_start => true);
SELECT shop.orders_events_register('typed', from_start => true);
SELECT shop.orders_events_register('batch', from_start => true);
SELECT shop.orders_events_register('poison', from_start => true);
SELECT shop.orders_events_register_group('fulfil', from_start => true);
-- orders 1 to 30: added; 1 to 20 confirmed; 1 to 10 shipped
SELECT public.add(n) FROM generate_series(1, 30) n;
SELECT public.move(n, 'confirmed') FROM generate_series(1, 20) n;
SELECT public.move(n, 'shipped') FROM generate_series(1, 10) n;
});

	# A writer in flight while the consumers read and acknowledge (it
	# commits later), another that rolls back: their positions are below
	# what the consumers acknowledge.
	my $inflight = $old->background_psql($db);
	$inflight->query_safe(q{BEGIN; SELECT public.add(101); SELECT public.move(101, 'confirmed')});
	$s{inflight} = [ split /\n/, $inflight->query_safe(
		'SELECT position FROM shop.order_events WHERE xid = pg_current_xact_id() ORDER BY position') ];
	my $rolledback = $old->background_psql($db);
	$rolledback->query_safe(q{BEGIN; SELECT public.add(102)});

	# registered now: what committed before counts as acknowledged, the
	# writer in flight does not
	$old->safe_psql($db, q{SELECT shop.orders_events_register('late')});
	$s{late_from} = $old->safe_psql($db, q{SELECT max(position) FROM shop.order_events});

	# orders 31 to 40: added and confirmed
	$old->safe_psql($db, q{
		SELECT public.add(n) FROM generate_series(31, 40) n;
		SELECT public.move(n, 'confirmed') FROM generate_series(31, 40) n;});

	# The consumers read and acknowledge (a group's acknowledgement needs
	# the session that read).
	my $r = $old->background_psql($db);
	$r->query_safe('SET client_min_messages = warning');
	my $read = sub {
		my ($sql) = @_;
		return [ map { (split / /)[0] } split /\n/,
			$r->query_safe("SELECT position || ' ' || type FROM $sql") ];
	};
	my %acked;
	# plain, typed and the group: through three quarters of their first
	# read, past the positions of the writer in flight
	for my $c ([ 'plain', "shop.orders_events_read('plain', 1000)", 'orders_events_ack' ],
		[ 'typed', "shop.orders_events_read('typed', 1000, $types)", 'orders_events_ack' ],
		[ 'fulfil', "shop.orders_events_read_group('fulfil', 1000)", 'orders_events_ack_group' ])
	{
		my ($name, $sql, $ack) = @$c;
		my $got = $read->($sql);
		my $upto = int(@$got * 3 / 4);
		die "$db: $name read @$got; the writer in flight has @{ $s{inflight} }"
		  unless @$got && $got->[$upto] > $s{inflight}[-1];
		$r->query_safe("SELECT shop.$ack('$name', $got->[$upto])");
		$acked{$name} = [ @$got[ 0 .. $upto ] ];
	}
	# batch: reads 10, acknowledges 4; its batch stays open
	my $got = $read->("shop.orders_events_read('batch', 10)");
	$r->query_safe("SELECT shop.orders_events_ack('batch', $got->[3])");
	$acked{batch} = [ @$got[ 0 .. 3 ] ];
	# poison: rejects order 1's first event (due again at once: its order's
	# later events wait behind it) and order 2's (parked after one attempt),
	# and acknowledges the rest of its read
	$got = $read->("shop.orders_events_read('poison', 1000)");
	my ($e1, $e2) = split /\n/, $old->safe_psql($db, q{
		SELECT min(position) FROM shop.order_events WHERE order_id = public.o(1);
		SELECT min(position) FROM shop.order_events WHERE order_id = public.o(2)});
	$r->query_safe("SELECT 1 FROM shop.orders_events_nack('poison', $e1, 'down', retry_delay => '0')");
	$r->query_safe("SELECT 1 FROM shop.orders_events_nack('poison', $e2, 'bad', max_attempts => 1)");
	$r->query_safe("SELECT shop.orders_events_ack('poison', $got->[-1])");
	$s{held} = $e1;
	$s{parked} = $e2;
	$s{poison_read} = $got;
	$s{acked} = \%acked;
	$r->quit;

	$inflight->query_safe('COMMIT');
	$inflight->quit;
	$rolledback->query_safe('ROLLBACK');
	$rolledback->quit;

	# pending for everyone: orders 41 to 50
	$old->safe_psql($db, 'SELECT public.add(n) FROM generate_series(41, 50) n');

	# Idempotency records: a keyed call, its id generated, and a keyed
	# transaction of two calls.  Their retries are the same SQL.
	$s{idem} = q{
SET client_min_messages = warning;
SET orders.idempotency_key = 'checkout-1';
SELECT id, version FROM shop.orders_add('c0000000-0000-0000-0000-000000000002', 'USD',
    ARRAY[ROW('b0000000-0000-0000-0000-000000000001', 'kettle', 1, 2500)::shop.order_line]);
RESET orders.idempotency_key;
BEGIN;
SET LOCAL orders.idempotency_key = 'checkout-2';
SELECT a::text AS added FROM shop.orders_add('c0000000-0000-0000-0000-000000000002', 'USD',
    ARRAY[ROW('b0000000-0000-0000-0000-000000000002', 'mug', 2, 900)::shop.order_line],
    ROW('Main St 301', 'Berlin', '10115', 'DE')::shop.order_address, public.o(301)) a \gset
SELECT id, status, version FROM shop.orders_save(jsonb_populate_record(:'added'::shop.orders, '{"status": "confirmed"}'));
COMMIT;
};
	$s{idem_out} = $old->safe_psql($db, $s{idem});

	# What the consumers have not acknowledged is what the outbox holds
	# now, less what each acknowledged.
	$s{events} = [ map { [ split / / ] } split /\n/, $old->safe_psql($db,
		q{SELECT position || ' ' || order_id || ' ' || type FROM shop.order_events ORDER BY position}) ];
	$s{fingerprint} = $old->safe_psql($db, 'SELECT * FROM public.fingerprint()');
}
# ----------------------------------------------------------------------------
# The shop's own fields, in a database of their own.

$old->safe_psql('fields', q{
SET client_min_messages = warning;
CREATE SCHEMA shop;
CREATE EXTENSION orders SCHEMA shop;
ALTER TYPE shop.order_line ADD ATTRIBUTE gift_wrap boolean CASCADE;
ALTER TABLE shop.orders ADD COLUMN channel text NOT NULL DEFAULT 'web';
ALTER TABLE shop.orders ADD COLUMN ref bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE shop.orders ADD COLUMN total_with_tax bigint GENERATED ALWAYS AS (total * 119 / 100) STORED;
ALTER TABLE shop.orders ADD CONSTRAINT channel_known CHECK (channel IN ('web', 'phone'));
CREATE INDEX orders_channel_idx ON shop.orders (channel, id);
COMMENT ON COLUMN shop.orders.channel IS 'where the order came from';
SELECT shop.orders_add('c0000000-0000-0000-0000-000000000003', 'EUR',
    ARRAY[ROW(gen_random_uuid(), 'item ' || n, 1, 100 * n, n % 2 = 0)::shop.order_line],
    fields => CASE WHEN n % 3 = 0 THEN '{"channel": "phone"}' END::jsonb)
FROM generate_series(1, 12) n;
SELECT shop.orders_save(jsonb_populate_record(o, '{"channel": "phone"}'))
FROM shop.orders o WHERE ref = 1;
});
# what the shop added, as the catalog has it, and the rows
my $fields_shape = q{
SELECT 'column ' || attrelid::regclass || '.' || attname || ' ' || format_type(atttypid, atttypmod)
       || CASE WHEN attnotnull THEN ' not null' ELSE '' END || ' ' || attidentity::text || attgenerated::text
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
       || coalesce(' comment ' || col_description(attrelid, attnum), '')
FROM pg_attribute a LEFT JOIN pg_attrdef d ON (d.adrelid, d.adnum) = (a.attrelid, a.attnum)
WHERE (attrelid = 'shop.orders'::regclass AND attnum > 10)
   OR (attrelid = 'shop.order_line'::regclass AND attnum > 4)
UNION ALL
SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE conrelid = 'shop.orders'::regclass AND contype = 'c'
UNION ALL
SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'shop.orders'::regclass
UNION ALL
SELECT 'rows ' || count(*) || ' ' || md5(string_agg(o::text, E'\n' ORDER BY o.id)) FROM shop.orders o
UNION ALL
SELECT 'events ' || count(*) || ' ' || md5(string_agg(e::text, E'\n' ORDER BY e.position)) FROM shop.order_events e
ORDER BY 1;
};
my $old_fields_shape = $old->safe_psql('fields', $fields_shape);
my $old_fields_ddl = $old->safe_psql('fields', 'SELECT shop.orders_fields_ddl() || shop.orders_fields_ddl(true)');
like($old_fields_shape, qr/^column shop\.orders\.channel text not null  default 'web'::text comment where the order came from$/m,
	'fields: the old cluster has the shop\'s column');
like($old_fields_shape, qr/^constraint channel_known .*^rows 12 /ms, 'fields: ... the CHECK, and 12 orders');

my $old_sysid = $old->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()');

# Debian's 15.20 keeps an option of its own, pg_attver, in the attoptions
# of every column it creates; its own pg_dump leaves it out, but that of a
# newer major that does not know it (17.11, 18.6) dumps it, and the new
# server refuses it ('unrecognized parameter "pg_attver"'): pg_upgrade
# then fails on any table, with or without this extension.  When the new
# pg_dump shows it, it is taken off the old cluster's columns (it is no
# data of theirs) so that the upgrade can be tested at all.
my ($dumped, $dump_err) = run_command(
	[ "$new_bin/pg_dump", '--schema-only', '--binary-upgrade', '--dbname=' . $old->connstr('postgres') ]);
die "pg_dump of the old cluster failed: $dump_err\n$dumped" unless $dumped =~ /CREATE TABLE/;
if ($dumped =~ /pg_attver/)
{
	note("PostgreSQL $old_major keeps pg_attver in attoptions, which $new_major does not know: removed");
	$old->safe_psql($_, q{
		UPDATE pg_catalog.pg_attribute
		SET attoptions = NULLIF(ARRAY(SELECT o FROM unnest(attoptions) o WHERE o NOT LIKE 'pg_attver=%'), '{}')
		WHERE attrelid >= 16384 AND attoptions::text LIKE '%pg_attver=%'}) for @dbs, 'fields';
}
$old->stop;

# ----------------------------------------------------------------------------
# What each consumer should get: the events it had not acknowledged.

my %order_of;    # position => order id, per database
my %type_of;
for my $db (@dbs)
{
	my $s = $st{$db};
	for my $e (@{ $s->{events} })
	{
		$order_of{$db}{ $e->[0] } = $e->[1];
		$type_of{$db}{ $e->[0] } = $e->[2];
	}
	my @all = map { $_->[0] } @{ $s->{events} };
	my %pending;
	for my $c (qw(plain typed fulfil batch))
	{
		my %acked = map { $_ => 1 } @{ $s->{acked}{$c} };
		# a typed reader's skipped events below its acknowledgement are
		# acknowledged too; those above are never its
		$pending{$c} = [ grep { !$acked{$_} && ($c ne 'typed' || $is_typed{ $type_of{$db}{$_} }) } @all ];
	}
	# late: what committed after it was registered, and the writer that was
	# in flight then
	my %inflight = map { $_ => 1 } @{ $s->{inflight} };
	$pending{late} = [ grep { $_ > $s->{late_from} || $inflight{$_} } @all ];
	# poison: its read, less the rejected events and their orders' later
	# ones; the parked order's come only when it is replayed
	my ($held_order, $parked_order) = map { $order_of{$db}{$_} } $s->{held}, $s->{parked};
	my %handled = map { $_ => 1 }
	  grep {
		!(($order_of{$db}{$_} eq $held_order && $_ >= $s->{held})
			|| ($order_of{$db}{$_} eq $parked_order && $_ >= $s->{parked})) } @{ $s->{poison_read} };
	$s->{parked_events} = [ grep { $order_of{$db}{$_} eq $parked_order && $_ >= $s->{parked} } @all ];
	my %parked = map { $_ => 1 } @{ $s->{parked_events} };
	$pending{poison} = [ grep { !$handled{$_} && !$parked{$_} } @all ];
	$s->{pending} = \%pending;
	note("$db: "
		  . scalar(@all)
		  . ' events; pending: '
		  . join(', ', map { "$_ " . scalar(@{ $pending{$_} }) } sort keys %pending)
		  . '; parked: '
		  . scalar(@{ $s->{parked_events} }));
}

# ----------------------------------------------------------------------------
# pg_upgrade, in a folder of its own: it writes its scripts and logs to the
# working directory.  --copy leaves the old cluster as it was.

my $workdir = PostgreSQL::Test::Utils::tempdir;
my @upgrade = (
	"$new_bin/pg_upgrade", '--no-sync',
	'--old-datadir' => $old->data_dir, '--new-datadir' => $new->data_dir,
	'--old-bindir' => $old_bin, '--new-bindir' => $new_bin,
	'--socketdir' => $new->host,
	'--old-port' => $old->port, '--new-port' => $new->port,
	'--copy', '--jobs=2');
my $started = time;
my $upgraded;
{
	chdir $workdir or die "chdir $workdir: $!";
	$upgraded = ok(run_log([ @upgrade, '--check' ]), "pg_upgrade --check, $old_major to $new_major")
	  && ok(run_log(\@upgrade), "pg_upgrade, $old_major to $new_major");
	chdir $PostgreSQL::Test::Utils::tmp_check;
}
note('pg_upgrade took ' . (time - $started) . ' s');
if (!$upgraded)
{
	# its logs stay in the new data directory when it fails
	for my $f (glob($new->data_dir . '/pg_upgrade_output.d/*/log/*.log'))
	{
		my @lines = split /\n/, slurp_file($f);
		diag("---- $f\n" . join("\n", @lines[ ($#lines > 30 ? $#lines - 30 : 0) .. $#lines ]));
	}
	die "pg_upgrade failed";
}
$new->start;
my $new_sysid = $new->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()');
note("system identifier: $old_sysid before, $new_sysid after");

# ----------------------------------------------------------------------------
# After the upgrade.

for my $db (@dbs)
{
	is($new->safe_psql($db, 'SELECT * FROM public.fingerprint()'),
		$st{$db}{fingerprint},
		"$db: every order, event, checkpoint, group part, hold and idempotency record "
		  . 'carried over (counts and md5 of the rows), and the position sequence');
	is($new->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'orders'}),
		$old_version, "$db: the extension is at $old_version");
}
like(
	$new->safe_psql('postgres', q{
		SELECT string_agg(tbl || ' ' || n, ', ') FROM public.fingerprint()
		WHERE tbl ~ '(consumers|holds|idempotency)$'}),
	qr/order_event_consumers 21, .*order_event_holds 2, .*order_idempotency 3/,
	'21 consumers (5 and a group of 16), 2 holds, 3 idempotency records');

my $has_adopt = $new->safe_psql('postgres', q{SELECT to_regproc('shop.orders_adopt') IS NOT NULL}) eq 't';

# drain(session, db, consumer): reads the consumer until a read is empty,
# each read acknowledged through its last event (in the session, as a
# group's reader must); returns the positions delivered and the reads'
# sizes.  Small reads, so that the carried events span several.
sub drain
{
	my ($s, $consumer) = @_;
	my ($read, $ack) =
	    $consumer eq 'fulfil' ? ("shop.orders_events_read_group('fulfil', 7)", 'orders_events_ack_group')
	  : $consumer eq 'typed' ? ("shop.orders_events_read('typed', 7, $types)", 'orders_events_ack')
	  :                        ("shop.orders_events_read('$consumer', 7)", 'orders_events_ack');
	my (@got, @reads);
	for (1 .. 200)
	{
		my @p = split /\n/, $s->query_safe("SELECT position FROM $read");
		last unless @p;
		push @got, @p;
		push @reads, scalar @p;
		$s->query_safe("SELECT shop.$ack('$consumer', $p[-1])");
	}
	return (\@got, \@reads);
}

# check_drain(session, db, consumer, expected, what): the consumer's reads
# deliver each expected event once and nothing else, an order's events in
# their order (and, with adoption, all in position order).
sub check_drain
{
	my ($s, $db, $consumer, $expected, $what) = @_;
	my ($got, $reads) = drain($s, $consumer);
	my @want = sort { $a <=> $b } @$expected;
	is_deeply([ sort { $a <=> $b } @$got ], \@want,
		"$db: $consumer gets $what, each once (" . scalar(@want) . ' events)')
	  or diag("got @$got\nwanted @want");
	my %last;
	my $out_of_order = 0;
	for my $p (@$got)
	{
		my $o = $order_of{$db}{$p} // $p;
		$out_of_order++ if defined $last{$o} && $last{$o} > $p;
		$last{$o} = $p;
	}
	is($out_of_order, 0, "$db: $consumer gets each order's events in their order");
	if ($has_adopt && $consumer ne 'poison')
	{
		is("@$got", "@want", "$db: $consumer gets them in position order");
	}
	note("$db: $consumer read " . scalar(@$got) . ' events in ' . scalar(@$reads) . " reads (@$reads)");
	return;
}

# the events written in the new cluster, after those of the old
sub new_events
{
	my ($db, $max_old) = @_;
	my @new = map { [ split / / ] } split /\n/, $new->safe_psql($db,
		"SELECT position || ' ' || order_id || ' ' || type FROM shop.order_events "
		  . "WHERE position > $max_old ORDER BY position");
	for my $e (@new)
	{
		$order_of{$db}{ $e->[0] } = $e->[1];
		$type_of{$db}{ $e->[0] } = $e->[2];
	}
	return @new;
}

sub check_adopt
{
	my ($db) = @_;
	SKIP:
	{
		skip "extension $old_version has no orders_adopt()", 3 unless $has_adopt;
		my ($adopted, $previous) = split /\|/,
		  $new->safe_psql($db, 'SELECT adopted, previous_system_identifier FROM shop.orders_adopt()');
		ok($adopted eq 'f' || ($previous // '') eq $old_sysid,
			"$db: orders_adopt() adopts the old cluster's outbox now, or did already ("
			  . ($adopted eq 't' ? 'now' : 'already') . ')');
		is($new->safe_psql($db, 'SELECT adopted FROM shop.orders_adopt()'), 'f',
			"$db: orders_adopt() again has nothing to do");
		is($new->safe_psql($db, 'SELECT system_identifier FROM shop.order_events_origin'),
			$new_sysid, "$db: the outbox is the new cluster's");
	}
	return;
}

my $max_old;

# "postgres": the idempotent retries first, then new writes, a purge, and
# only then the consumers.
{
	my $db = 'postgres';
	my $s = $st{$db};
	my $counts = q{SELECT (SELECT count(*) FROM shop.orders) || ' ' || (SELECT count(*) FROM shop.order_events)
	                || ' ' || (SELECT count(*) FROM shop.order_idempotency)};
	my $before = $new->safe_psql($db, $counts);
	is($new->safe_psql($db, $s->{idem}), $s->{idem_out},
		"$db: the idempotent calls retried return what they returned before the upgrade");
	is($new->safe_psql($db, $counts), $before, "$db: ... and write nothing ($before)");

	($max_old) = $new->safe_psql($db, 'SELECT max(position) FROM shop.order_events');
	$new->safe_psql($db, q{
		SELECT public.add(n) FROM generate_series(401, 410) n;
		SELECT public.move(n, 'confirmed') FROM generate_series(401, 405) n;
		SELECT public.move(21, 'confirmed');});
	my @new = new_events($db, $max_old);
	cmp_ok(scalar(@new), '==', 16, "$db: 16 events written after the upgrade");
	my @new_pos = map { $_->[0] } @new;
	my @new_typed = map { $_->[0] } grep { $is_typed{ $_->[2] } } @new;

	# the purge deletes only what every consumer has acknowledged
	my $purged = $new->safe_psql($db, 'SELECT shop.orders_events_purge()');
	note("$db: the purge deleted $purged events");

	my $r = $new->background_psql($db);
	$r->query_safe('SET client_min_messages = warning');
	for my $c (qw(plain typed fulfil batch late poison))
	{
		check_drain($r, $db, $c,
			[ @{ $s->{pending}{$c} }, $c eq 'typed' ? @new_typed : @new_pos ],
			'what it had not acknowledged, then what was written after the upgrade');
	}
	is($new->safe_psql($db, q{
		SELECT event_position || ' ' || (parked_at IS NOT NULL) || ' ' || cardinality(held_back)
		FROM shop.orders_events_holds('poison')}),
		"$s->{parked} true " . (@{ $s->{parked_events} } - 1),
		"$db: poison holds the parked order only, its later events behind it");
	$new->safe_psql($db, "SELECT shop.orders_events_replay('poison', $s->{parked})");
	check_drain($r, $db, 'poison', $s->{parked_events}, 'the parked order\'s events once replayed');
	is($new->safe_psql($db, q{SELECT count(*) FROM shop.orders_events_holds('poison')}),
		'0', "$db: poison holds nothing any more");
	check_adopt($db);
	$r->quit;
}

# "second": a consumer's read first, then the others', then new writes
# and the retries.
{
	my $db = 'second';
	my $s = $st{$db};
	my $r = $new->background_psql($db);
	$r->query_safe('SET client_min_messages = warning');
	check_drain($r, $db, 'plain', $s->{pending}{plain}, 'what it had not acknowledged');
	check_adopt($db);
	for my $c (qw(typed fulfil batch late poison))
	{
		check_drain($r, $db, $c, $s->{pending}{$c}, 'what it had not acknowledged');
	}

	my ($max) = $new->safe_psql($db, 'SELECT max(position) FROM shop.order_events');
	$new->safe_psql($db, q{
		SELECT public.add(n) FROM generate_series(401, 410) n;
		SELECT public.move(n, 'confirmed') FROM generate_series(401, 405) n;
		SELECT public.move(21, 'confirmed');});
	my @new = new_events($db, $max);
	my @new_pos = map { $_->[0] } @new;
	my @new_typed = map { $_->[0] } grep { $is_typed{ $_->[2] } } @new;
	for my $c (qw(plain typed fulfil batch late poison))
	{
		check_drain($r, $db, $c, $c eq 'typed' ? \@new_typed : \@new_pos,
			'what was written after the upgrade');
	}
	$new->safe_psql($db, "SELECT shop.orders_events_replay('poison', $s->{parked})");
	check_drain($r, $db, 'poison', $s->{parked_events}, 'the parked order\'s events once replayed');
	$r->quit;

	my $before = $new->safe_psql($db, 'SELECT count(*) FROM shop.order_events');
	is($new->safe_psql($db, $s->{idem}), $s->{idem_out},
		"$db: the idempotent calls retried return what they returned before the upgrade");
	is($new->safe_psql($db, 'SELECT count(*) FROM shop.order_events'), $before, "$db: ... and write no event");
}

# ----------------------------------------------------------------------------
# The shop's own fields after the upgrade.

is($new->safe_psql('fields', $fields_shape), $old_fields_shape,
	'fields: every column, attribute, CHECK and index of the shop\'s, every order and event, as before the upgrade');
# (from 18, a NOT NULL is a constraint with a name, which the script gives)
(my $new_fields_ddl = $new->safe_psql('fields', 'SELECT shop.orders_fields_ddl() || shop.orders_fields_ddl(true)'))
  =~ s/ CONSTRAINT \S+ NOT NULL/ NOT NULL/g
  if $old_major < 18;
is($new_fields_ddl, $old_fields_ddl, 'fields: orders_fields_ddl() says what it said (the identity\'s sequence included)');
{
	my ($ret, $stdout, $stderr) = $new->psql('fields', q{\set VERBOSITY verbose
SELECT shop.orders_add('c0000000-0000-0000-0000-000000000003', 'EUR', fields => '{"channel": "fax"}')});
	like($stderr, qr/ERROR:  23514: new row for relation "orders" violates check constraint "channel_known"/,
		'fields: the CHECK holds (23514, channel_known)');
}
my $max_ref = $new->safe_psql('fields', 'SELECT max(ref) FROM shop.orders');
my ($ref, $added) = split /\|/, $new->safe_psql('fields', q{
	SELECT ref, channel || ' ' || total_with_tax || ' ' || (lines[1]).gift_wrap
	FROM shop.orders_add('c0000000-0000-0000-0000-000000000003', 'EUR',
		ARRAY[ROW(gen_random_uuid(), 'mug', 1, 1000, true)::shop.order_line],
		fields => '{"channel": "phone"}')}), 2;
is($added, 'phone 1190 true',
	'fields: orders_add with fields works, the generated column and the line attribute filled');
cmp_ok($ref, '>', $max_ref, "fields: ... and the identity continues after the upgraded rows' ($max_ref)");

$new->stop;
# a crash of any backend (a signal) or a failed assertion fails the test
for my $node ($old, $new)
{
	unlike(slurp_file($node->logfile), qr/terminated by signal|TRAP:/,
		$node->name . ': the server log shows no crash');
}
done_testing();
