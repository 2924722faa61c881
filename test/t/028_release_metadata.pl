# The release metadata (issue 27), no cluster needed: META.json against the
# PGXN Meta Spec 1.0.0's required fields and types, and against
# orders.control (name, default_version); an upgrade path from 1.0 to
# default_version through the upgrade scripts, each one installed by the
# Makefile; a CHANGELOG.md heading "## X.Y (YYYY-MM-DD)" for default_version
# and for every version on the way; debian/'s version and control file; and
# make dist's zip.
#
# make dist packs git's HEAD, and test/check runs the suites in a copy of the
# tree without .git: there, make dist must refuse, and the zip itself is the
# one test/check made in the checkout, in ORDERS_DIST_DIR with the list of
# files git tracks and HEAD's META.json (the checkout may be a folder the
# suites' user cannot read); run in a checkout, the test makes them itself;
# with neither, that part skips.
use strict;
use warnings;
use Cwd qw(realpath);
use File::Temp;
use FindBin;
use IPC::Run;
use JSON::PP;
use Test::More;

my $root = realpath("$FindBin::RealBin/../..");

sub slurp
{
	my ($path) = @_;
	open(my $fh, '<', $path) or return undef;
	local $/;
	return scalar <$fh>;
}

# ---- orders.control
my $control = slurp("$root/orders.control");
ok(defined $control, 'orders.control is there') or BAIL_OUT('no orders.control');
my ($default_version) = $control =~ /^default_version = '(\d+\.\d+)'$/m;
ok(defined $default_version, "orders.control's default_version is MAJOR.MINOR")
  or BAIL_OUT('no default_version');
my $extension = 'orders';    # the control file's name

# ---- META.json: the spec's required keys and their types
my $semver = qr/^(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)(?:-?[A-Za-z][0-9A-Za-z-]*)?$/;
my $meta_text = slurp("$root/META.json");
ok(defined $meta_text, 'META.json is there') or BAIL_OUT('no META.json');
my $meta = eval { JSON::PP->new->utf8->decode($meta_text) };
ok(ref $meta eq 'HASH', 'META.json is a JSON object') or BAIL_OUT("META.json: $@");

sub is_string { my ($v) = @_; return defined $v && !ref $v && $v =~ /\S/; }

for my $key (qw(name abstract maintainer license provides meta-spec version))
{
	ok(exists $meta->{$key}, "META.json has the required key $key");
}
ok(is_string($meta->{name}) && $meta->{name} =~ m{^[^/\\\s[:cntrl:]]{2,}$},
	'name: a string of two or more characters, no slash, backslash, space or control character');
is($meta->{name}, $extension, "name is the extension's, as orders.control names it");
ok(is_string($meta->{abstract}), 'abstract: a string');
my $maintainer = $meta->{maintainer};
ok(is_string($maintainer)
	  || (ref $maintainer eq 'ARRAY' && @$maintainer && !grep { !is_string($_) } @$maintainer),
	'maintainer: a string or a list of strings');
my %licenses = map { $_ => 1 }
  qw(agpl_3 apache_1_1 apache_2_0 artistic_1 artistic_2 bsd freebsd gfdl_1_2 gfdl_1_3 gpl_1 gpl_2 gpl_3
  lgpl_2_1 lgpl_3_0 mit mozilla_1_0 mozilla_1_1 openssl perl_5 postgresql qpl_1_0 ssleay sun zlib
  open_source restricted unrestricted unknown);
my $license = $meta->{license};
ok((is_string($license) && $licenses{$license})
	  || (ref $license eq 'ARRAY' && @$license && !grep { !defined $_ || ref $_ || !$licenses{$_} } @$license)
	  || (ref $license eq 'HASH' && %$license),
	'license: one of the spec\'s license strings, a list of them, or a name => URL object')
  or diag('license: ' . JSON::PP->new->canonical->allow_nonref->encode($license));

like($meta->{version} // '', $semver, 'version: a semantic version');
my ($meta_mm) = ($meta->{version} // '') =~ /^(\d+\.\d+)\./;
is($meta_mm, $default_version, "version's major.minor is orders.control's default_version");

my $mspec = $meta->{'meta-spec'};
ok(ref $mspec eq 'HASH', 'meta-spec: an object');
is($mspec->{version}, '1.0.0', 'meta-spec version 1.0.0');
like($mspec->{url} // '', qr{^https?://\S+$}, 'meta-spec url: a URL');

my $provides = $meta->{provides};
ok(ref $provides eq 'HASH' && %$provides, 'provides: an object, with an extension in it');
my $ext = ref $provides eq 'HASH' ? $provides->{$extension} : undef;
ok(ref $ext eq 'HASH', "provides $extension");
$ext = {} unless ref $ext eq 'HASH';
for my $name (sort keys %{ ref $provides eq 'HASH' ? $provides : {} })
{
	my $p = $provides->{$name};
	ok(ref $p eq 'HASH' && is_string($p->{file}) && is_string($p->{version}),
		"provides $name: an object with file and version");
}
like($ext->{version} // '', $semver, "provides $extension version: a semantic version");
is($ext->{version}, "$default_version.0", "provides $extension version is default_version $default_version as X.Y.0");
ok(is_string($ext->{file}) && $ext->{file} !~ m{^/|(?:^|/)\.\.(?:/|$)} && -f "$root/$ext->{file}",
	"provides $extension file is a file of the tree (" . ($ext->{file} // 'none') . ')');
ok(!exists $ext->{docfile} || (is_string($ext->{docfile}) && -f "$root/$ext->{docfile}"),
	"provides $extension docfile, if given, is a file of the tree");

# ---- META.json: the optional keys this one uses, and their types
ok(!exists $meta->{description} || is_string($meta->{description}), 'description: a string');
ok(!exists $meta->{generated_by} || is_string($meta->{generated_by}), 'generated_by: a string');
ok(!exists $meta->{release_status} || ($meta->{release_status} // '') =~ /^(?:stable|testing|unstable)$/,
	'release_status: stable, testing or unstable');
is($meta->{release_status}, 'stable', 'release_status stable');
my $tags = $meta->{tags};
ok(!exists $meta->{tags}
	  || (ref $tags eq 'ARRAY' && @$tags && !grep { !is_string($_) || length($_) > 255 } @$tags),
	'tags: a list of strings of at most 255 characters');

my $prereqs = $meta->{prereqs};
my $prereqs_ok = ref $prereqs eq 'HASH';
for my $phase (keys %{ $prereqs_ok ? $prereqs : {} })
{
	$prereqs_ok &&= $phase =~ /^(?:configure|build|test|runtime|develop)$/ && ref $prereqs->{$phase} eq 'HASH';
	for my $rel (keys %{ ref $prereqs->{$phase} eq 'HASH' ? $prereqs->{$phase} : {} })
	{
		my $r = $prereqs->{$phase}{$rel};
		$prereqs_ok &&= $rel =~ /^(?:requires|recommends|suggests|conflicts)$/ && ref $r eq 'HASH'
		  && !grep { !defined $r->{$_} || ref $r->{$_} || ($r->{$_} ne '0' && $r->{$_} !~ $semver) } keys %$r;
	}
}
ok($prereqs_ok, 'prereqs: phase => relation => { name => version or 0 }');
is(eval { $prereqs->{runtime}{requires}{PostgreSQL} }, '15.0.0',
	'prereqs: runtime requires PostgreSQL 15.0.0, the oldest major supported');

my $resources = $meta->{resources};
ok(!exists $meta->{resources} || ref $resources eq 'HASH', 'resources: an object');
# Only what is true: no placeholders, no address of the machine that wrote it.
my @urls;
if (ref $resources eq 'HASH')
{
	push @urls, $resources->{homepage} if exists $resources->{homepage};
	for my $k (qw(bugtracker repository))
	{
		next unless exists $resources->{$k};
		ok(ref $resources->{$k} eq 'HASH', "resources $k: an object");
		push @urls, grep { defined } map { $resources->{$k}{$_} } qw(web url)
		  if ref $resources->{$k} eq 'HASH';
	}
	ok(!exists $resources->{repository}{type} || is_string($resources->{repository}{type}),
		'resources repository type: a string');
}
ok(!grep({ !is_string($_) || $_ !~ m{^[a-z][a-z0-9+.-]*://[^\s/]+} || m{example|localhost|your-?|TODO}i } @urls),
	'resources: each address a URL, none a placeholder') or diag("@urls");

# ---- the upgrade path, through the upgrade scripts the Makefile installs
my $makefile = slurp("$root/Makefile") // '';
my ($data) = $makefile =~ /^DATA = ((?:.*\\\n)*.*)$/m;
my %installed = map { $_ => 1 } split /[\s\\]+/, $data // '';
opendir(my $dh, $root) or die $!;
my @scripts = sort grep { /^orders--\d+\.\d+--\d+\.\d+\.sql$/ } readdir $dh;
closedir $dh;
ok(@scripts, 'upgrade scripts are there');
ok(-f "$root/orders--1.0.sql" && $installed{'orders--1.0.sql'}, 'orders--1.0.sql is there, and installed');
my %next;
for my $s (@scripts)
{
	ok($installed{$s}, "$s is in the Makefile's DATA");
	my ($from, $to) = $s =~ /^orders--(\d+\.\d+)--(\d+\.\d+)\.sql$/;
	push @{ $next{$from} }, $to;
}
# breadth first from 1.0: the shortest chain to every reachable version
my %via = ('1.0' => undef);
my @queue = ('1.0');
while (defined(my $v = shift @queue))
{
	for my $w (@{ $next{$v} || [] })
	{
		next if exists $via{$w};
		$via{$w} = $v;
		push @queue, $w;
	}
}
ok(exists $via{$default_version}, "an upgrade path from 1.0 to default_version $default_version");
my @chain;
for (my $v = $default_version; defined $v && exists $via{$v}; $v = $via{$v}) { unshift @chain, $v; }
note('the chain: ' . join(' -> ', @chain));
sub vcmp { my @a = split /\./, $_[0]; my @b = split /\./, $_[1]; return $a[0] <=> $b[0] || $a[1] <=> $b[1]; }
my @beyond = grep { vcmp($_, $default_version) > 0 } keys %via;
ok(!@beyond, "no upgrade script goes past default_version $default_version") or diag("reachable: @beyond");
my @unreached = grep { !exists $via{$_} } map { /^orders--(\d+\.\d+)--/ } @scripts;
ok(!@unreached, 'every upgrade script starts from a version reachable from 1.0') or diag("@unreached");

# ---- CHANGELOG.md: a heading for default_version and every version on the way
my $changelog = slurp("$root/CHANGELOG.md");
ok(defined $changelog, 'CHANGELOG.md is there');
$changelog //= '';
my %entry;
my @bad;
for my $line (split /\n/, $changelog)
{
	next unless $line =~ /^##\s*\d/;    # a heading that starts like a version's
	if ($line =~ /^## (\d+\.\d+) \((\d{4})-(\d{2})-(\d{2})\)$/ && $3 >= 1 && $3 <= 12 && $4 >= 1 && $4 <= 31)
	{
		push @bad, "$line (twice)" if exists $entry{$1};
		$entry{$1} = "$2-$3-$4";
	}
	else
	{
		push @bad, $line;
	}
}
ok(!@bad, 'every version heading in CHANGELOG.md reads "## X.Y (YYYY-MM-DD)", once a version') or diag(join "\n", @bad);
ok(exists $entry{$default_version}, "CHANGELOG.md has an entry for default_version $default_version");
my @missing = grep { !exists $entry{$_} } sort { vcmp($a, $b) } keys %via;
ok(!@missing, 'CHANGELOG.md has an entry for every version the upgrade scripts reach from 1.0')
  or diag('no entry for: ' . join(', ', @missing));
my @dates = map { $entry{$_} } grep { exists $entry{$_} } sort { vcmp($a, $b) } keys %via;
ok(!grep({ $dates[$_] lt $dates[ $_ - 1 ] } 1 .. $#dates), 'and the later versions have the later dates')
  or diag(join ', ', map { "$_ $entry{$_}" } grep { exists $entry{$_} } sort { vcmp($a, $b) } keys %via);

# ---- debian/: the package's version is the release's, and its control is
# what pg_buildext makes of control.in (a build checks it; this tells first)
my $debian_changelog = slurp("$root/debian/changelog") // '';
my ($deb_upstream) = $debian_changelog =~ /\Aorders \(([^()-]+)-(\d+)\) /;
is($deb_upstream, $meta->{version}, "debian/changelog's latest entry is META.json's version, $meta->{version}")
  or diag('its first line: ' . ($debian_changelog =~ s/\n.*//sr));
my $control_in = slurp("$root/debian/control.in") // '';
my $debian_control = slurp("$root/debian/control") // '';
my ($template) = $control_in =~ /^Package: (\S+)$/m;
is($template, 'postgresql-PGVERSION-orders', 'debian/control.in: a binary package per major, postgresql-PGVERSION-orders');
my @built = $debian_control =~ /^Package: postgresql-(\d+)-orders$/mg;
my ($floor) = (slurp("$root/debian/pgversions") // '') =~ /^(\d+)\+$/m;
is($floor, '15', 'debian/pgversions: 15 and later, as META.json requires');
ok(@built && !grep({ $_ < 15 } @built), "debian/control builds a package per major, 15 or later (@built)");
# pg_buildext's expansion: the binary package's stanza once per major, and
# PGVERSION elsewhere the newest major
my $newest = (sort { $a <=> $b } @built)[-1] // '';
my $expanded = join "\n\n", map {
	my $stanza = $_;
	$stanza =~ /^Package: .*PGVERSION/m
	  ? map({ my $v = $_; $stanza =~ s/PGVERSION/$v/gr } @built)
	  : $stanza =~ s/PGVERSION/$newest/gr
} split /\n\s*\n/, $control_in =~ s/\s+\z//r;
is($debian_control =~ s/\s+\z//r, $expanded,
	'debian/control is debian/control.in for those majors (pg_buildext updatecontrol)');

# ---- make dist
my $tmp = File::Temp->newdir;
my $pg_config = $ENV{PG_CONFIG} // 'pg_config';
# make: the outer make's flags (its jobserver, its PROVE_TESTS) stay out
sub make_dist
{
	my ($dir, $to) = @_;
	my ($out, $err) = ('', '');
	local @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES)};
	delete @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES)};
	my $ok = IPC::Run::run([ 'make', '-s', '-C', $dir, "PG_CONFIG=$pg_config", 'dist', "DISTDIR=$to" ],
		'<', \undef, '>', \$out, '2>', \$err);
	return ($ok, $out . $err);
}

if (!-e "$root/.git")
{
	my ($ok, $out) = make_dist($root, "$tmp");
	ok(!$ok && $out =~ /not a git checkout/, 'make dist outside a git checkout refuses, and says why')
	  or diag($out);
}
# what make dist made, from test/check or here: the folder holding the zip,
# the files git tracks at HEAD, and HEAD's META.json
my $dist = $ENV{ORDERS_DIST_DIR};
if (!$dist && -e "$root/.git")
{
	my ($ok, $out) = make_dist($root, "$tmp");
	ok($ok, "make dist in $root") or diag($out);
	IPC::Run::run([ 'git', '-C', $root, 'ls-tree', '-r', '--name-only', 'HEAD' ], '>', "$tmp/tracked");
	IPC::Run::run([ 'git', '-C', $root, 'show', 'HEAD:META.json' ], '>', "$tmp/META.json");
	$dist = "$tmp";
}
SKIP:
{
	skip 'make dist: no zip to check (this tree has no .git, and ORDERS_DIST_DIR is not set)', 8
	  unless $dist && -f "$dist/tracked" && -f "$dist/META.json";
	my $head_meta = slurp("$dist/META.json");
	my $version = eval { decode_json($head_meta)->{version} } // '';
	my $top = "$extension-$version";
	my $zip = "$dist/$top.zip";
	ok(-f $zip, "make dist made $top.zip, named from HEAD's META.json");
	my ($names, $zmeta, $err) = ('', '', '');
	IPC::Run::run([ 'python3', '-c', 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))', $zip ],
		'>', \$names, '2>', \$err);
	my @names = split /\n/, $names;
	ok(@names && !grep({ !m{^\Q$top\E/} } @names), "one top folder, $top/") or diag($err);
	my %in = map { s{^\Q$top\E/}{}r => 1 } @names;
	my @wanted = grep { !m{^\.ci/} } split /\n/, slurp("$dist/tracked");
	my @left = grep { !$in{$_} } @wanted;
	ok(@wanted && !@left, 'every file git tracks at HEAD, tests included') or diag("missing: @left[0 .. ($#left < 9 ? $#left : 9)]");
	ok(!grep({ m{^\.ci/|^\.git/} } keys %in), 'and not the CI entry point or .git');
	ok(!grep({ /^orders--\d+\.\d+\.sql$/ && $_ ne 'orders--1.0.sql' } keys %in),
		'and not a built install script (make builds it from schema/)');
	ok($in{'META.json'} && $in{'orders.control'} && $in{'Makefile'} && $in{'test/t/028_release_metadata.pl'},
		'META.json, orders.control, the Makefile and the tests are in it');
	IPC::Run::run([ 'python3', '-c', 'import sys, zipfile; sys.stdout.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]).decode())',
		$zip, "$top/META.json" ], '>', \$zmeta, '2>', \$err);
	is($zmeta, $head_meta, "its META.json is HEAD's");
	ok($in{ eval { decode_json($head_meta)->{provides}{$extension}{file} } // '' },
		"provides $extension file is in it");
}

done_testing();
