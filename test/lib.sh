# Sourced by the scripts in test/: what they need before they start.

# The major tested by default: Debian 12's own packages.
PG_MAJOR=15

# set_pg_config PATH: the PostgreSQL installation to build and test against.
set_pg_config() {
	PG_CONFIG=$1
	PG_BIN=$("$PG_CONFIG" --bindir)
}

# PG_CONFIG from the environment picks another installation.
PG_CONFIG_GIVEN=${PG_CONFIG:+1}

# use_pg [MAJOR]: picks the PostgreSQL to build and test against: MAJOR as
# test/pg-build makes it, else PG_CONFIG from the environment, else Debian's
# own PG_MAJOR.
use_pg() {
	if [ -n "${1:-}" ] || [ -z "$PG_CONFIG_GIVEN" ]; then
		set_pg_config "$(test/pg-build "${1:-$PG_MAJOR}")"
	else
		set_pg_config "$PG_CONFIG"
	fi
}

# Debian packages the build and the tests need (test/pg-build installs the
# server itself).
DEPS=${DEPS:-"make gcc libipc-run-perl python3 python3-psycopg2 python3-psycopg python3-psycopg-pool python3-build python3-setuptools python3-venv mypy prometheus-postgres-exporter"}

say() { printf '\n== %s\n' "$*"; }

# no_main_cluster: a server package installed from now on makes no cluster
# of its own (Debian's makes "main", started on port 5432): tests start
# their own.
no_main_cluster() {
	mkdir -p /etc/postgresql-common/createcluster.d
	echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/orders-no-main.conf
}

install_deps() {
	local missing=""
	for p in $DEPS; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing Debian packages:$missing (run as root, or apt-get install them)" >&2
		exit 1
	fi
	say "installing from Debian's packages:$missing"
	no_main_cluster
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# Nor a package's service (prometheus-postgres-exporter's, on every
	# address at :9187): test/t/029 starts its own exporter on loopback.
	# policy-rc.d keeps it from starting now, and it is disabled for boot.
	local policy=/usr/sbin/policy-rc.d ours="" rc=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && ours=1
	fi
	apt-get install -y -qq --no-install-recommends $missing >/dev/null || rc=$?
	[ -z "$ours" ] || rm -f "$policy"
	if [ "$rc" -eq 0 ] && [ -d /run/systemd/system ]; then
		systemctl disable --now prometheus-postgres-exporter >/dev/null 2>&1 || true
	fi
	return "$rc"
}

# mirror_uri: the first Debian archive (not the security archive) this
# machine's apt is configured with, in one-line or deb822 format.
mirror_uri() {
	{
		sed -n 's/^[[:space:]]*URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr ' ' '\n'
		sed -n 's/^[[:space:]]*deb\(-src\)\?[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\3/p' \
			/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
	} | grep -E '^(https?|ftp|file):' | grep -v -- '-security' | head -n 1 || true
}

# install_node_deps: clients/node's packages, exactly as its lockfile says,
# through a cache of its own (clients/node/.npm-cache, not tracked), from
# which test/t/027_node_package.pl installs the client's tarball offline.
install_node_deps() {
	say "installing the TypeScript client's packages (npm ci)"
	(cd clients/node && npm ci --cache .npm-cache --no-audit --no-fund --loglevel=error >/dev/null)
}

# copy_work_tree DEST: the sources as they are in the work tree, into DEST:
# what git tracks (less files deleted and not yet committed) and new files
# it does not ignore; without git, the tree less build outputs.
copy_work_tree() {
	if git rev-parse --verify -q HEAD >/dev/null 2>&1; then
		git ls-files -z --cached --others --exclude-standard |
			while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
			tar --null -T - -cf - | (cd "$1" && tar -xf -)
	else
		tar --exclude=.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' --exclude=node_modules \
			--exclude=.npm-cache --exclude='tmp_check*' -cf - . | (cd "$1" && tar -xf -)
	fi
}

# build_and_install [MAKE-ARGS...]
build_and_install() {
	say "building and installing the extension"
	make -s PG_CONFIG="$PG_CONFIG" clean
	make -s PG_CONFIG="$PG_CONFIG" "$@"
	make -s PG_CONFIG="$PG_CONFIG" install
}

# upgrade_from_install MAJOR: as root, for test/t/024_pg_upgrade.pl, the
# previous major tested (15 before 17, 17 before 18) with the extension
# built from these sources installed into it; sets UPGRADE_FROM to that
# installation's prefix (the parent of its bin/).  The build is made in a
# copy of the tree, so that the main build's objects stay as they are.
# 17 is used only if test/pg-build has made it already (building it takes
# minutes; test/matrix builds it before 18).  Not root, or no older major:
# UPGRADE_FROM stays as it was (ORDERS_UPGRADE_FROM from the environment).
upgrade_from_install() {
	local old pg_config dir
	case $1 in
	17) old=15 ;;
	18) old=17 ;;
	*) return 0 ;;
	esac
	[ "$(id -u)" -eq 0 ] || return 0
	if [ "$old" = 15 ]; then
		pg_config=$(test/pg-build 15) || return 1
	else
		pg_config=${ORDERS_PG_CACHE:-/var/cache/orders-pg}/postgresql-$old/bin/pg_config
		if [ ! -x "$pg_config" ]; then
			echo "PostgreSQL $old is not built (test/pg-build $old): no upgrade from it is tested"
			return 0
		fi
	fi
	say "building and installing the extension into PostgreSQL $old too (test/t/024_pg_upgrade.pl upgrades from it)"
	dir=$(mktemp -d -t orders-upgrade-from.XXXXXX)
	tar --exclude=.git -cf - . | (cd "$dir" && tar -xf -)
	if ! (cd "$dir" && make -s PG_CONFIG="$pg_config" clean &&
		make -s PG_CONFIG="$pg_config" COPT=-Werror && make -s PG_CONFIG="$pg_config" install); then
		rm -rf "$dir"
		return 1
	fi
	rm -rf "$dir"
	UPGRADE_FROM=$(dirname "$("$pg_config" --bindir)")
}

# initdb refuses to run as root; as root, run cluster work as this user.
RUN_USER=postgres

# as_user CMD...: runs CMD as RUN_USER when we are root, else as ourselves.
as_user() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u "$RUN_USER" -- "$@"
	else
		"$@"
	fi
}

# make_workdir: a temporary folder RUN_USER can write; removed on exit.
make_workdir() {
	WORKDIR=$(mktemp -d -t orders.XXXXXX)
	trap 'rm -rf "$WORKDIR"' EXIT
	[ "$(id -u)" -eq 0 ] && chown "$RUN_USER" "$WORKDIR"
	return 0
}
