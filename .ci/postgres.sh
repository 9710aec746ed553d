#!/usr/bin/env bash
# The PostgreSQL package (postgres/): its tests against a real server. Installs Debian's
# `postgresql` if the server is missing, creates a throwaway cluster in a temporary directory
# owned by the `postgres` user (PostgreSQL refuses to run as root), starts it on 127.0.0.1 only,
# on a free port, with trust authentication, runs the package's checks and tests against it,
# and always stops the server and removes the cluster, also on failure or interruption.
# Needs nothing from an earlier run. Run from anywhere:
#   bash .ci/postgres.sh                 # everything
#   bash .ci/postgres.sh cancel          # extra arguments go to `cargo test` (a test filter)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../postgres"

step() { printf "\n==> [%3d s] %s\n" $((SECONDS - START)) "$*"; }

START=$SECONDS
CLUSTER=""
BIN=""

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n $CLUSTER && -f $CLUSTER/data/postmaster.pid ]]; then
        step "stop the server"
        if ((status != 0)) && [[ -f $CLUSTER/server.log ]]; then
            echo "-- last lines of the server log:"
            tail -n 40 "$CLUSTER/server.log" || true
        fi
        if ! (cd "$CLUSTER" && runuser -u postgres -- "$BIN/pg_ctl" -D "$CLUSTER/data" -m fast -w -t 30 stop); then
            # Whatever happens, no server is left running.
            kill -KILL "$(head -n 1 "$CLUSTER/data/postmaster.pid")" 2>/dev/null || true
        fi
    fi
    if [[ -n $CLUSTER ]]; then
        rm -rf "$CLUSTER"
    fi
    printf '\npostgres: %s after %d s\n' "$( ((status == 0)) && echo passed || echo FAILED)" \
        $((SECONDS - START))
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "PostgreSQL server"
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    # The package would create and start a cluster of its own (Debian's `main`, port 5432)
    # where services may start; a policy-rc.d that says no keeps it stopped. Many containers
    # have one already.
    POLICY=/usr/sbin/policy-rc.d
    added_policy=0
    if [[ ! -e $POLICY ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY"
        chmod 755 "$POLICY"
        added_policy=1
    fi
    install_status=0
    { apt-get update && apt-get install -y --no-install-recommends postgresql; } || install_status=$?
    if ((added_policy)); then
        rm -f "$POLICY"
    fi
    if ((install_status != 0)); then
        echo "installing postgresql failed" >&2
        exit "$install_status"
    fi
    printf 'installed postgresql after %d s\n' $((SECONDS - START))
fi
# The newest installed major version.
BIN=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
"$BIN/postgres" --version
id postgres >/dev/null

step "throwaway cluster"
CLUSTER=$(mktemp -d -t async-with-postgres.XXXXXX)
chown postgres: "$CLUSTER"
chmod 700 "$CLUSTER"
as_postgres() { (cd "$CLUSTER" && runuser -u postgres -- "$@"); }
as_postgres "$BIN/initdb" -D "$CLUSTER/data" -U postgres --auth=trust --no-sync \
    --encoding=UTF8 --locale=C >"$CLUSTER/initdb.log" 2>&1 || {
    cat "$CLUSTER/initdb.log" >&2
    exit 1
}
echo "cluster in $CLUSTER/data"

# A port nobody listens on (connecting is refused); if another process takes it before the
# server binds it, the start fails and the next attempt picks another port.
free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "no free port found" >&2
    return 1
}

# Only on 127.0.0.1, with the socket file in the cluster's directory; durability off, as
# nothing here outlives the run. max_connections: the load test holds 50 connections while
# the other tests run next to it.
started=0
for attempt in 1 2 3; do
    PORT=$(free_port)
    if as_postgres "$BIN/pg_ctl" -D "$CLUSTER/data" -l "$CLUSTER/server.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories=$CLUSTER \
            -c max_connections=150 -c fsync=off -c synchronous_commit=off \
            -c full_page_writes=off"; then
        started=1
        break
    fi
    echo "start on port $PORT failed (attempt $attempt):" >&2
    tail -n 5 "$CLUSTER/server.log" >&2 || true
done
if ((!started)); then
    exit 1
fi
export DATABASE_URL="host=127.0.0.1 port=$PORT user=postgres dbname=postgres"
echo "DATABASE_URL=$DATABASE_URL"

step "format and clippy (postgres/)"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings

step "tests against the server"
cargo test --locked -- --show-output "$@"
