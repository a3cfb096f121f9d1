#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for the storage tests and print the line to export.
#
#   eval "$(scripts/postgres.sh)"          # starts one, exports VOCALIS_TEST_POSTGRES_URL
#   scripts/postgres.sh stop "$VOCALIS_TEST_POSTGRES_DIR"
#
# Installs the Debian `postgresql` package first when no server binaries are found and we
# are root. The cluster lives in a temporary directory (or $VOCALIS_PG_DIR), listens on a free
# port on 127.0.0.1 only, trusts local connections and runs without fsync: test data only.
# initdb refuses to run as root, so as root the server runs as the `postgres` OS user.
# Only the export lines go to stdout; progress goes to stderr.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then echo "$d"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"; return 0
    fi
    return 1
}

as_owner() {
    # run a command as the cluster owner (postgres when we are root)
    if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [[ ${1:-} == stop ]]; then
    dir=${2:?usage: postgres.sh stop DATA_DIR}
    bindir=$(find_bindir) || { log "no PostgreSQL binaries found"; exit 1; }
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast stop >&2 || true
    rm -rf "$dir"
    exit 0
fi

if ! bindir=$(find_bindir); then
    if [[ $(id -u) -ne 0 ]]; then
        log "PostgreSQL is not installed and we are not root; install the 'postgresql' package"; exit 1
    fi
    log "installing postgresql (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    bindir=$(find_bindir) || { log "postgresql installed but initdb/pg_ctl not found"; exit 1; }
fi

if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

dir=${VOCALIS_PG_DIR:-$(mktemp -d /tmp/vocalis-pg.XXXXXX)}
mkdir -p "$dir"
chmod 755 "$dir"
[[ $(id -u) -eq 0 ]] && chown postgres "$dir"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
user=vocalis

log "initdb in $dir/data (bindir $bindir)"
as_owner "$bindir/initdb" -D "$dir/data" -U "$user" -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
log "starting on 127.0.0.1:$port"
as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >&2 || { cat "$dir/data/server.log" >&2; exit 1; }

echo "export VOCALIS_TEST_POSTGRES_URL=postgresql+psycopg://$user@127.0.0.1:$port/postgres"
echo "export VOCALIS_TEST_POSTGRES_DIR=$dir"
log "stop with: scripts/postgres.sh stop $dir"
