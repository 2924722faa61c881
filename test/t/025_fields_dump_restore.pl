# Issue 30: a dump and restore keeps the shop's own columns, attributes,
# constraints and indexes.  pg_dump dumps an extension's member objects as
# CREATE EXTENSION alone (and their privileges, and orders' rows: it is a
# configuration table), so a shop's ALTER TABLE orders ADD COLUMN, ALTER
# TYPE order_line ADD ATTRIBUTE, CHECK constraints and indexes are not in
# the dump, and its COPY of orders names columns the restored table does
# not have.  orders_fields_ddl() writes them as a script, in two parts: one
# run after pg_restore --section=pre-data, the other after the data.
#
# A source cluster whose orders have a column with a default, a NOT NULL
# column without one, an identity column, a stored generated column, a
# column named to break a careless script (quote, semicolon, newline) with
# a comment and a grant to a role, a CHECK constraint, a NOT VALID one that
# an older row breaks, a unique constraint, an index; order_line has an
# attribute more.  Orders and their events are written with fields
# (orders_add, orders_add_many, a save that changes a field).
#
# (a) pg_dump | pg_restore alone fails at the orders COPY, and restores no
#     order.
# (b) The procedure of docs/operations.md, into a second cluster: every
#     order and event restored as it was, every column, attribute,
#     constraint, index, comment and grant as in the source; the CHECK
#     constraints and NOT NULL enforced by orders_add (23514 with the
#     constraint's name, 23502); the identity column continuing after the
#     restored values; orders_add with fields working.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $src = PostgreSQL::Test::Cluster->new('source');
$src->init;
$src->start;
my $dst = PostgreSQL::Test::Cluster->new('target');
$dst->init;
$dst->start;

# a column name that a script made without quoting would end at, and run
# what follows it
my $odd = q{U&"gift ""note""; DROP TABLE shop.orders; --\000Aend"};
my $odd_key = q{E'gift "note"; DROP TABLE shop.orders; --\nend'};

# the role the shop granted a column to must exist where it is restored
$_->safe_psql('postgres', 'CREATE ROLE clerk') for ($src, $dst);

$src->safe_psql('postgres', qq{
SET client_min_messages = warning;
CREATE SCHEMA shop;
CREATE EXTENSION orders SCHEMA shop;
ALTER TYPE shop.order_line ADD ATTRIBUTE gift_wrap boolean CASCADE;
COMMENT ON COLUMN shop.order_line.gift_wrap IS 'wrapped as a gift';
ALTER TABLE shop.orders ADD COLUMN channel text NOT NULL;
ALTER TABLE shop.orders ADD COLUMN note text DEFAULT 'none';
ALTER TABLE shop.orders ADD COLUMN ref bigint GENERATED ALWAYS AS IDENTITY (START WITH 1000);
ALTER TABLE shop.orders ADD COLUMN total_with_tax bigint GENERATED ALWAYS AS (total * 119 / 100) STORED;
ALTER TABLE shop.orders ADD COLUMN coupon text NOT NULL DEFAULT '';
ALTER TABLE shop.orders ADD COLUMN $odd text COLLATE "C";
COMMENT ON COLUMN shop.orders.$odd IS 'it''s odd';
GRANT USAGE ON SCHEMA shop TO clerk;
GRANT SELECT ($odd, coupon) ON shop.orders TO clerk;
ALTER TABLE shop.orders ADD CONSTRAINT coupon_format CHECK (coupon ~ '^[A-Z0-9]*\$');
ALTER TABLE shop.orders ADD CONSTRAINT orders_ref_key UNIQUE (ref);
CREATE INDEX orders_channel_idx ON shop.orders (channel, coupon) WHERE coupon <> '';
COMMENT ON INDEX shop.orders_channel_idx IS 'orders with a coupon, by channel';

SELECT shop.orders_add(('c0000000-0000-0000-0000-' || lpad(n::text, 12, '0'))::uuid, 'EUR',
    ARRAY[ROW(gen_random_uuid(), 'tea ' || n, n, 100 * n, n % 2 = 0)::shop.order_line],
    ROW('Main St ' || n, 'Berlin', '10115', 'DE')::shop.order_address,
    ('a0000000-0000-0000-0000-' || lpad(n::text, 12, '0'))::uuid,
    jsonb_build_object('channel', 'web', 'coupon', CASE WHEN n % 3 = 0 THEN 'SAVE' || n ELSE '' END,
                       $odd_key, 'note ' || n))
FROM generate_series(1, 20) n;
-- an old order that the constraint added NOT VALID below does not allow
SELECT shop.orders_add('c0000000-0000-0000-0000-000000000099', 'EUR',
    id => 'a0000000-0000-0000-0000-000000000099',
    fields => '{"channel": "phone", "note": "a note far longer than the rule made later allows"}');
ALTER TABLE shop.orders ADD CONSTRAINT note_short CHECK (length(note) <= 20) NOT VALID;
SELECT count(*) FROM shop.orders_add_many(jsonb_build_array(
    jsonb_build_object('customer_id', 'c0000000-0000-0000-0000-000000000021', 'currency', 'EUR',
                       'fields', jsonb_build_object('channel', 'shop', 'coupon', 'BULK1')),
    jsonb_build_object('customer_id', 'c0000000-0000-0000-0000-000000000022', 'currency', 'USD',
                       'fields', jsonb_build_object('channel', 'shop'))));
-- a save that changes a field
SELECT shop.orders_save(jsonb_populate_record(o, '{"note": "call first"}'))
FROM shop.orders_get('a0000000-0000-0000-0000-000000000001') o;
});

# What the tables hold, and what the catalog says of the shop's additions,
# each independently of orders_fields_ddl().
my $rows = q{
SELECT count(*), md5(string_agg(o::text, E'\n' ORDER BY o.id)) FROM shop.orders o;
SELECT count(*), md5(string_agg(e::text, E'\n' ORDER BY e.position)) FROM shop.order_events e;
};
my $shape = q{
SELECT 'column ' || c.relname || '.' || quote_ident(a.attname) || ' #' || a.attnum
       || ' ' || format_type(a.atttypid, a.atttypmod)
       || coalesce(' collate ' || nullif(a.attcollation, t.typcollation)::regcollation, '')
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' identity ' || nullif(a.attidentity::text, ''), '')
       || coalesce(' generated ' || nullif(a.attgenerated::text, ''), '')
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
       || coalesce(' comment ' || col_description(c.oid, a.attnum), '')
       || coalesce(' acl ' || a.attacl::text, '')
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE c.oid IN ('shop.orders'::regclass, 'shop.order_line'::regclass, 'shop.order_address'::regclass)
UNION ALL
SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) || ' validated ' || convalidated
       || coalesce(' comment ' || obj_description(oid, 'pg_constraint'), '')
FROM pg_constraint WHERE conrelid = 'shop.orders'::regclass AND contype <> 'n'
UNION ALL
SELECT 'index ' || pg_get_indexdef(indexrelid) || coalesce(' comment ' || obj_description(indexrelid, 'pg_class'), '')
FROM pg_index WHERE indrelid = 'shop.orders'::regclass
UNION ALL
SELECT 'sequence ' || s.seqrelid::regclass || ' owned by ' || pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
       || ' ' || s.seqstart || ' ' || s.seqincrement || ' ' || s.seqmax
FROM pg_sequence s JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
 AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0
ORDER BY 1;
};
my $src_rows = $src->safe_psql('postgres', $rows);
my $src_shape = $src->safe_psql('postgres', $shape);
like($src_rows, qr/^23\|.*\n24\|/, 'the source: 23 orders, 24 events');
like($src_shape, qr/column orders\.channel #\d+ text not null\n/, 'the source\'s shape lists the shop\'s columns');
like($src_shape, qr/constraint note_short .* NOT VALID validated false/, '... and its NOT VALID constraint');

my $dir = PostgreSQL::Test::Utils::tempdir;
my $dump = "$dir/shop.dump";
command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $src->connstr('postgres') ], 'pg_dump -Fc of the source');

# ---------------------------------------------------------------------------
# (a) pg_restore alone

$dst->safe_psql('postgres', 'CREATE DATABASE plain');
my ($out, $err) = run_command([ 'pg_restore', '-d', $dst->connstr('plain'), $dump ]);
like($err, qr/ERROR:  column "channel" of relation "orders" does not exist\nCommand was: COPY shop\.orders \(/,
	'pg_restore alone fails at the COPY of orders: the dump has no column of the shop\'s');
is($dst->safe_psql('plain', 'SELECT count(*) FROM shop.orders'), '0', '... and restores no order');
unlike($dst->safe_psql('plain', $shape), qr/channel|gift_wrap|coupon_format|orders_channel_idx/,
	'... nor any column, attribute, constraint or index of the shop\'s');

# ---------------------------------------------------------------------------
# (b) the procedure: the two parts of the script written after pg_dump (the
# identity's sequence is read then), the sections restored around them

sub psql_to_file
{
	my ($node, $sql, $file) = @_;
	my $stderr;
	my $ok = IPC::Run::run([ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', $sql ],
		'>', $file, '2>', \$stderr);
	diag($stderr) if $stderr ne '';
	return $ok && $stderr eq '';
}
ok(psql_to_file($src, 'SELECT shop.orders_fields_ddl()', "$dir/fields.sql"),
	q{psql -Atc 'SELECT orders_fields_ddl()' > fields.sql});
ok(psql_to_file($src, 'SELECT shop.orders_fields_ddl(post_data => true)', "$dir/fields-post.sql"),
	q{psql -Atc 'SELECT orders_fields_ddl(post_data => true)' > fields-post.sql});
my $pre_sql = slurp_file("$dir/fields.sql");
my $post_sql = slurp_file("$dir/fields-post.sql");
like($pre_sql, qr/ADD COLUMN channel text (CONSTRAINT orders_channel_not_null )?NOT NULL;\n/, 'fields.sql adds the columns');
like($pre_sql, qr/SELECT pg_catalog\.setval\('shop\.orders_ref_seq', 1022, true\);/,
	'... sets the identity\'s sequence where the source\'s is');
like($post_sql, qr/^ALTER TABLE shop\.orders ADD CONSTRAINT note_short .* NOT VALID;$/m,
	'fields-post.sql adds the NOT VALID constraint, after the data');
unlike($pre_sql, qr/note_short|CREATE INDEX/, '... which fields.sql does not, nor the indexes');

$dst->safe_psql('postgres', 'CREATE DATABASE shop');
my $shop = $dst->connstr('shop');
# the grant on the shop's columns comes among the extension's objects,
# before the columns exist: that alone fails, and fields.sql grants it
($out, $err) = run_command([ 'pg_restore', '--section=pre-data', '-d', $shop, $dump ]);
my @errors = split /^pg_restore: error: /m, $err;
shift @errors;
is(scalar(@errors), 2, 'pg_restore --section=pre-data: two errors') or diag($err);
is( scalar(grep {
			/^could not execute query: ERROR:  column "(coupon|gift "note"; DROP TABLE shop\.orders; --\nend)" of relation "orders" does not exist\nCommand was: GRANT SELECT\(/
		} @errors),
	2,
	'... the grants on the shop\'s two columns') or diag($err);
command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-1', '-d', $shop, '-f', "$dir/fields.sql" ],
	'psql -f fields.sql');
command_ok([ 'pg_restore', '--section=data', '--exit-on-error', '-d', $shop, $dump ],
	'pg_restore --section=data');
command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-1', '-d', $shop, '-f', "$dir/fields-post.sql" ],
	'psql -f fields-post.sql');
command_ok([ 'pg_restore', '--section=post-data', '--exit-on-error', '-d', $shop, $dump ],
	'pg_restore --section=post-data');

is($dst->safe_psql('shop', $rows), $src_rows, 'every order and event restored, byte for byte');
is($dst->safe_psql('shop', $shape), $src_shape,
	'every column, attribute, constraint, index, comment, column grant and owned sequence as in the source');
is($dst->safe_psql('shop', 'SELECT shop.orders_fields_ddl() || shop.orders_fields_ddl(true)'),
	$src->safe_psql('postgres', 'SELECT shop.orders_fields_ddl() || shop.orders_fields_ddl(true)'),
	'orders_fields_ddl() says the same in both');
is($dst->safe_psql('shop', q{SELECT string_agg((l).gift_wrap::text, ',' ORDER BY o.id)
	FROM shop.orders o, unnest(o.lines) l WHERE o.id <= 'a0000000-0000-0000-0000-000000000004'}),
	'false,true,false,true', 'the lines\' gift_wrap restored');

# the rules hold in the restored database
sub error_of
{
	my ($sql) = @_;
	my ($ret, $stdout, $stderr) = $dst->psql('shop', "\\set VERBOSITY verbose\n$sql");
	return $ret == 0 ? 'no error' : $stderr;
}
my $add = q{SELECT shop.orders_add('c0000000-0000-0000-0000-000000000031', 'EUR', fields => '%s')};
like(error_of(sprintf($add, '{"channel": "web", "coupon": "save 5"}')),
	qr/ERROR:  23514: new row for relation "orders" violates check constraint "coupon_format"/,
	'a coupon the CHECK forbids: 23514, coupon_format');
like(error_of(sprintf($add, '{"channel": "web", "note": "a note far longer than twenty"}')),
	qr/ERROR:  23514: .*check constraint "note_short"/, 'a note the NOT VALID CHECK forbids: 23514, note_short');
like(error_of(sprintf($add, '{"coupon": "X"}')), qr/ERROR:  23502: .*"channel"/,
	'no channel: 23502, the column NOT NULL');
my ($ref, $added) = split /\|/, $dst->safe_psql('shop', q{
	SELECT ref, total_with_tax || ' ' || coupon || ' ' || note || ' ' || channel
	FROM shop.orders_add('c0000000-0000-0000-0000-000000000031', 'EUR',
		ARRAY[ROW(gen_random_uuid(), 'mug', 1, 1000, true)::shop.order_line],
		fields => '{"channel": "web", "coupon": "SAVE5"}')});
is($added, '1190 SAVE5 none web', 'orders_add with fields works: the default and the generated column filled');
cmp_ok($ref, '>', 1022, '... and the identity continues after the restored values (the last 1022)');
is($dst->safe_psql('shop', q{SELECT payload->'lines'->0->>'gift_wrap' || ' ' || (payload->>'coupon')
	FROM shop.order_events ORDER BY position DESC LIMIT 1}),
	'true SAVE5', '... and its event carries the fields and the line\'s attribute');
is($dst->safe_psql('shop', q{SET ROLE clerk; SELECT count(coupon) FROM shop.orders}), '24',
	'the grant on the shop\'s columns holds');

for my $node ($src, $dst)
{
	$node->stop;
	# a crash of any backend (a signal) or a failed assertion fails the test
	unlike(slurp_file($node->logfile), qr/terminated by signal|TRAP:/,
		$node->name . ': the server log shows no crash');
}
done_testing();
