#!/usr/bin/env bash
# Creates Conduit's roles, database and grants on a fresh data volume.
#
# The official postgres image runs /docker-entrypoint-initdb.d/*.sh once, when
# the data directory is empty, against a temporary server that listens only on
# its Unix socket. compose.yaml mounts this file there and migrations/init/init.sql
# at /conduit-init/init.sql; the passwords arrive as environment variables of
# the db service, so they never appear in a file or on a command line of the
# host machine. CONDUIT_INIT_SQL overrides the script's path (for tests).
#
# The file is executable, so the entrypoint runs it as a child process and the
# strict mode below cannot leak into the entrypoint's own shell.
set -euo pipefail

require_password() {
    local name=$1
    local value=${!name:-}
    if [[ -z $value ]]; then
        echo "conduit-init: $name is not set (see docker/.env.example)" >&2
        exit 1
    fi
    # The example file's placeholders must never become working credentials.
    if [[ $value == change-me* ]]; then
        echo "conduit-init: $name still holds the placeholder from docker/.env.example; set a real password in docker/.env" >&2
        exit 1
    fi
    # The passwords are embedded in postgres:// URLs (DATABASE_URL,
    # SPIN_VARIABLE_DB_URL) without escaping, so only URL-safe characters work.
    if [[ ! $value =~ ^[A-Za-z0-9._~-]+$ ]]; then
        echo "conduit-init: $name may only contain A-Z a-z 0-9 . _ ~ - (it is used inside a URL); e.g. openssl rand -hex 32" >&2
        exit 1
    fi
}

# The image accepts any superuser password; the placeholder must not work.
require_password POSTGRES_PASSWORD
require_password CONDUIT_OWNER_PASSWORD
require_password CONDUIT_APP_PASSWORD

# ON_ERROR_STOP makes a failing statement fail this script, and with it the
# container's first start, instead of leaving a half-initialised database.
psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password \
    --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v owner_password="$CONDUIT_OWNER_PASSWORD" \
    -v app_password="$CONDUIT_APP_PASSWORD" \
    -f "${CONDUIT_INIT_SQL:-/conduit-init/init.sql}"
