# scripts/lib.sh: shared by scripts/run, scripts/test and bench/*.
# Installs packages, builds the extension, starts and stops control planes.
# Everything PostgreSQL runs as the postgres OS user; nothing starts by itself.

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_BIN=/usr/lib/postgresql/15/bin
PG_CONFIG=$PG_BIN/pg_config
export PATH="$PG_BIN:$PATH"

PACKAGES=(
	postgresql-15 postgresql-server-dev-15 postgresql-15-cron postgresql-15-pgtap pgtap
	libtap-parser-sourcehandler-pgtap-perl libipc-run-perl
	libhiredis-dev libcurl4-openssl-dev libzstd-dev libssl-dev
	redis-server redis-tools pgbackrest prometheus-postgres-exporter
	make gcc procps iproute2 ca-certificates curl zstd git
)

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() {
	[ "$(id -u)" = 0 ] || die "run this as root (it installs packages and starts servers as the postgres user)"
}

# Install whatever of PACKAGES is missing; apt-get update only when needed.
install_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/dborch-apt.log 2>&1; then
		apt-get update >>/tmp/dborch-apt.log 2>&1
		apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/dborch-apt.log 2>&1 ||
			{ tail -20 /tmp/dborch-apt.log >&2; die "apt-get install failed"; }
	fi
}

# Build and install the extension from $1 (default: the repository).
build_install() {
	local dir="${1:-$REPO}"
	make -C "$dir" -s PG_CONFIG="$PG_CONFIG" >/dev/null
	make -C "$dir" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
}

as_postgres() { (cd / && runuser -u postgres -- "$@"); }

# The extension version this repository builds (default_version).
extension_version() { sed -n "s/^default_version = '\(.*\)'/\1/p" "$REPO/dborch.control"; }

# chain_sum VERSION: SHA-256 of the scripts that make the catalog of VERSION
# (the install script of 0.1, then each update script up to VERSION); fails
# when this repository has no way there.
chain_sum() {
	local v=0.1 next files=("$REPO/sql/dborch--0.1.sql")
	while [ "$v" != "$1" ]; do
		next=$(ls "$REPO/sql/dborch--$v--"*.sql 2>/dev/null | head -1)
		[ -n "$next" ] || return 1
		files+=("$next")
		v=$(basename "$next" .sql | sed 's/.*--//')
	done
	cat "${files[@]}" | sha256sum | cut -c1-64
}

# The median of the numbers on standard input, one per line ("-" for none).
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# A TCP port on 127.0.0.1 that nothing listens on, from $1 upward.
free_port() {
	local p="${1:-5500}"
	while ss -Htln "sport = :$p" | grep -q . ; do p=$((p + 1)); done
	echo "$p"
}

# cp_init DIR PORT [extra config lines...]: a control-plane cluster in DIR/pgdata,
# its socket in DIR/run, managed instances under DIR/managed.
cp_init() {
	local dir="$1" port="$2"; shift 2
	mkdir -p "$dir"
	chown postgres: "$dir"
	[ -f "$dir/pgdata/PG_VERSION" ] && return 0
	as_postgres mkdir -p "$dir/run"
	as_postgres chmod 700 "$dir/run"
	as_postgres initdb -D "$dir/pgdata" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
		-E UTF8 --no-locale --no-instructions >/dev/null
	as_postgres tee -a "$dir/pgdata/postgresql.conf" >/dev/null <<-EOF
		# dborch control plane
		shared_preload_libraries = 'pg_cron,dborch'
		cron.database_name = 'postgres'
		# pg_cron runs scheduled backups in background workers: no connection
		# (and so no password) is needed for them
		cron.use_background_workers = on
		listen_addresses = '127.0.0.1'
		port = $port
		unix_socket_directories = '$dir/run'
		max_worker_processes = 24
		dborch.data_directory = '$dir/managed'
	EOF
	local line
	for line in "$@"; do echo "$line" | as_postgres tee -a "$dir/pgdata/postgresql.conf" >/dev/null; done
	# root and postgres may log in as postgres over the private socket
	as_postgres tee "$dir/pgdata/pg_hba.conf" >/dev/null <<-EOF
		local all all peer map=dborch
		host  all all 127.0.0.1/32 scram-sha-256
	EOF
	as_postgres tee -a "$dir/pgdata/pg_ident.conf" >/dev/null <<-EOF
		dborch root postgres
		dborch postgres postgres
		dborch /^(.*)\$ \\1
	EOF
}

cp_port() { sed -n "s/^port = \([0-9]*\)$/\1/p" "$1/pgdata/postgresql.conf" | tail -1; }

cp_running() { [ -f "$1/pgdata/postmaster.pid" ] && as_postgres pg_ctl -D "$1/pgdata" status >/dev/null 2>&1; }

# cp_start DIR: start (if stopped) and create the extensions (if missing).
cp_start() {
	local dir="$1"
	cp_running "$dir" || as_postgres pg_ctl -D "$dir/pgdata" -l "$dir/server.log" -w -t 60 start >/dev/null
	cp_psql "$dir" -q -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS dborch CASCADE" >/dev/null
}

# cp_psql DIR [psql args]: psql as postgres on the control plane.
cp_psql() {
	local dir="$1"; shift
	psql -X -v ON_ERROR_STOP=1 -h "$dir/run" -p "$(cp_port "$dir")" -U postgres -d postgres "$@"
}

# Pids of managed instances under DIR/managed, from their pid files.
managed_pids() {
	local dir="$1" f pid
	for f in "$dir"/managed/instances/*/data/postmaster.pid "$dir"/managed/instances/*/redis.pid; do
		[ -f "$f" ] || continue
		pid=$(head -1 "$f" 2>/dev/null) || continue	# gone meanwhile: the server exited
		[ -n "$pid" ] && [ -d "/proc/$pid" ] && echo "$pid"
	done
	return 0
}

# cp_stop DIR: stop the control plane, then every managed instance it started.
cp_stop() {
	local dir="$1" pid
	if cp_running "$dir"; then
		as_postgres pg_ctl -D "$dir/pgdata" -m fast -w -t 60 stop >/dev/null || true
	fi
	for pid in $(managed_pids "$dir"); do kill -TERM "$pid" 2>/dev/null || true; done
	for _ in $(seq 1 100); do
		[ -z "$(managed_pids "$dir")" ] && return 0
		sleep 0.1
	done
	for pid in $(managed_pids "$dir"); do kill -KILL "$pid" 2>/dev/null || true; done
}

# Processes named postgres or redis-server working under directory $1.
processes_under() {
	local root="$1" p cwd comm
	for p in /proc/[0-9]*; do
		comm=$(cat "$p/comm" 2>/dev/null) || continue
		case "$comm" in postgres|redis-server) ;; *) continue ;; esac
		cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
		case "$cwd" in "$root"/*) echo "${p#/proc/}" ;; esac
	done
	return 0
}
