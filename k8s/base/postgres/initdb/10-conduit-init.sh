#!/bin/sh
# Run by the postgres image's entrypoint on a fresh data directory only.
# init.sql takes the role passwords as psql variables, which the entrypoint's
# own handling of *.sql files cannot pass, hence this wrapper.
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v owner_password="$CONDUIT_OWNER_PASSWORD" \
  -v app_password="$CONDUIT_APP_PASSWORD" \
  -f /conduit-init/init.sql
