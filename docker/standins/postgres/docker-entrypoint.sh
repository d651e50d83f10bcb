#!/usr/bin/env bash
# Entrypoint of the PostgreSQL stand-in (docker/standins/postgres). It keeps
# the contract of the official image's entrypoint, which compose.yaml and
# test containers rely on:
#
#   - `postgres [ARGS...]` or just `-c ...` options: the server, set up first;
#     any other command, and postgres --version, --help or -C, runs as given.
#   - Started as root: PGDATA and the socket directory are created and given
#     to the postgres user, then the script runs again as that user (setpriv;
#     needs only CHOWN, DAC_OVERRIDE, FOWNER, SETGID and SETUID, and works
#     under no-new-privileges).
#   - On an empty PGDATA: initdb with superuser POSTGRES_USER (default
#     postgres) and password POSTGRES_PASSWORD (required unless
#     POSTGRES_HOST_AUTH_METHOD=trust); connections over TCP authenticate
#     with POSTGRES_HOST_AUTH_METHOD (default scram-sha-256), local socket
#     connections are trusted; POSTGRES_INITDB_ARGS (split on spaces) and
#     POSTGRES_INITDB_WALDIR go to initdb. Then a temporary server on the Unix
#     socket only, database POSTGRES_DB (default: the user's name) created,
#     /docker-entrypoint-initdb.d/ run in name order (*.sh executed when
#     executable, else sourced; *.sql, *.sql.gz, *.sql.xz, *.sql.zst through
#     psql, stopping at the first error), the temporary server stopped.
#   - A data directory that holds a cluster is used as it is.
#   - The server is exec'ed, so it is PID 1 and gets docker's stop signal.
#
# The server prints "database system is ready to accept connections" each
# time it is ready (the temporary one too) and this script prints
# "PostgreSQL init process complete; ready for start up." after an init.
set -Eeo pipefail

PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export PGDATA
socket_dir=/var/run/postgresql
initdb_dir=/docker-entrypoint-initdb.d
me="$(basename "${BASH_SOURCE[0]}")"

note() { printf '%s: %s\n' "$me" "$*"; }
fail() {
    printf '%s: error: %s\n' "$me" "$*" >&2
    exit 1
}

# Options only: they are the server's.
if [ "${1#-}" != "${1:-}" ]; then
    set -- postgres "$@"
fi
if [ "${1:-}" != postgres ]; then
    exec "$@"
fi
# `postgres --version`, `--help`, `-C setting`... print and exit: no setup.
for argument in "${@:2}"; do
    case "$argument" in
        -'?' | --help | -V | --version | --describe-config | -C | -C*) exec "$@" ;;
    esac
done

# --- as root: the directories, then the same script as postgres ---------------
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" "$socket_dir"
    # The server refuses a data directory open to others.
    chmod 0700 "$PGDATA"
    chmod 3777 "$socket_dir"
    find "$PGDATA" "$socket_dir" -xdev \! -user postgres -exec chown postgres:postgres {} +
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
fi

# --- as the server's user ------------------------------------------------------
if [ ! -w "$PGDATA" ] && ! mkdir -p "$PGDATA" 2>/dev/null; then
    fail "$PGDATA is not writable by uid $(id -u); start the container as root or give that user the directory"
fi

# psql as the superuser over the Unix socket of the temporary server.
init_psql() {
    psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" "$@"
}

temporary_server_stop() {
    pg_ctl -D "$PGDATA" -m fast -w stop
}

initialise() {
    export POSTGRES_USER="${POSTGRES_USER:-postgres}"
    export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
    local auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
        cat >&2 <<EOF
$me: error: the database is not initialised and POSTGRES_PASSWORD is not set.
  Set POSTGRES_PASSWORD to the superuser's password (for example
  docker run -e POSTGRES_PASSWORD=...). To accept every connection without a
  password instead, which is unsafe, set POSTGRES_HOST_AUTH_METHOD=trust.
EOF
        exit 1
    fi
    if [ "$auth" = trust ]; then
        note "POSTGRES_HOST_AUTH_METHOD=trust: every connection is accepted without a password"
    fi

    local initdb_args=(--username="$POSTGRES_USER" --auth-local=trust --auth-host="$auth")
    local extra=()
    read -r -a extra <<<"${POSTGRES_INITDB_ARGS:-}"
    if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
        initdb_args+=(--waldir="$POSTGRES_INITDB_WALDIR")
    fi
    note "initialising a new cluster in $PGDATA"
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
        initdb "${initdb_args[@]}" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") "${extra[@]}" -D "$PGDATA"
    else
        initdb "${initdb_args[@]}" "${extra[@]}" -D "$PGDATA"
    fi
    # Other containers connect from their own addresses.
    printf '\n# Added by %s: connections from other hosts and containers.\nhost all all all %s\n' \
        "$me" "$auth" >>"$PGDATA/pg_hba.conf"

    # The temporary server: the image's CMD options, but reachable only on
    # the Unix socket, so that nobody connects before the init is over.
    local options="-c listen_addresses='' -p ${PGPORT:-5432}"
    if [ "$#" -gt 1 ]; then
        options="$(printf '%q ' "${@:2}")$options"
    fi
    pg_ctl -D "$PGDATA" -o "$options" -w start
    trap 'note "initialisation failed; $PGDATA holds an incomplete cluster: empty it (docker compose down -v) before the next start"; temporary_server_stop >/dev/null 2>&1 || true' ERR

    if [ "$POSTGRES_DB" != postgres ]; then
        note "creating database $POSTGRES_DB"
        init_psql --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi

    local file
    shopt -s nullglob
    for file in "$initdb_dir"/*; do
        case "$file" in
            *.sh)
                if [ -x "$file" ]; then
                    note "running $file"
                    "$file"
                else
                    note "sourcing $file"
                    # shellcheck disable=SC1090 # the image user's scripts
                    . "$file"
                fi
                ;;
            *.sql)
                note "running $file"
                init_psql --dbname "$POSTGRES_DB" -f "$file"
                ;;
            *.sql.gz)
                note "running $file"
                gzip -dc "$file" | init_psql --dbname "$POSTGRES_DB"
                ;;
            *.sql.xz)
                note "running $file"
                xz -dc "$file" | init_psql --dbname "$POSTGRES_DB"
                ;;
            *.sql.zst)
                note "running $file"
                zstd -dc "$file" | init_psql --dbname "$POSTGRES_DB"
                ;;
            *) note "ignoring $file" ;;
        esac
    done
    shopt -u nullglob

    temporary_server_stop
    trap - ERR
    echo
    echo 'PostgreSQL init process complete; ready for start up.'
    echo
}

if [ -s "$PGDATA/PG_VERSION" ]; then
    note "$PGDATA holds a PostgreSQL $(cat "$PGDATA/PG_VERSION") cluster; skipping initialisation"
else
    initialise "$@"
fi

exec "$@"
