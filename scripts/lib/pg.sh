# Shared by scripts/backup and scripts/restore: which PostgreSQL server they
# talk to, and the client programs of that server's major version.
# shellcheck shell=bash

# The local stack's data directory (devstack's DEVSTACK_DATA_DIR, default
# .data under the project root).
local_data_dir() {
    local dir="${DEVSTACK_DATA_DIR:-.data}"
    case "$dir" in
        /*) echo "$dir" ;;
        *) echo "${root:?}/$dir" ;;
    esac
}

# A setting from the environment, else from the local stack's secrets.env
# (written once by scripts/stack).
local_secret() {
    local name="$1" value="${!1:-}" file
    file="$(local_data_dir)/secrets.env"
    if [ -z "$value" ] && [ -r "$file" ]; then
        value="$(sed -n "s/^${name}=//p" "$file" | tail -n 1)"
    fi
    echo "$value"
}

# Sets database_url to the superuser URL of the server to work on (for the
# local stack without its password: that goes to PGPASSWORD, so it never
# shows in `ps`): DATABASE_URL when set,
# else the local stack's private cluster. Its port is the running server's
# (postmaster.pid names it, even when devstack chose a free one), else
# DEVSTACK_PG_PORT, else devstack's default 55432.
# shellcheck disable=SC2034 # database_url is read by the sourcing script
resolve_database_url() {
    if [ -n "${DATABASE_URL:-}" ]; then
        database_url="$DATABASE_URL"
        return
    fi
    local data_dir port password
    data_dir="$(local_data_dir)"
    port="${DEVSTACK_PG_PORT:-55432}"
    if [ -r "$data_dir/postgres/postmaster.pid" ]; then
        port="$(sed -n 4p "$data_dir/postgres/postmaster.pid")"
    fi
    password="$(local_secret POSTGRES_PASSWORD)"
    if [ -z "$password" ]; then
        say "no DATABASE_URL, and no POSTGRES_PASSWORD in the environment or in $data_dir/secrets.env"
        return 1
    fi
    export PGPASSWORD="$password"
    database_url="postgres://postgres@127.0.0.1:$port/conduit?sslmode=disable"
}

# The database a URL names (conduit when it names none).
url_database() {
    local name
    name="$(echo "$1" | sed -E 's#^postgres(ql)?://[^/]*/?##; s#\?.*$##')"
    echo "${name:-conduit}"
}

# The same URL with another database (e.g. the maintenance database
# `postgres`, to create or drop the target).
url_with_database() {
    local url="$1" database="$2" query=""
    case "$url" in *\?*) query="?${url#*\?}" ;; esac
    url="${url%%\?*}"
    local authority
    authority="$(echo "$url" | sed -E 's#^(postgres(ql)?://[^/]*).*#\1#')"
    echo "$authority/$database$query"
}

# The server's major version, e.g. 15.
server_major() {
    psql -X -qAt -d "$1" -c 'SHOW server_version_num' | awk '{ print int($1 / 10000) }'
}

# The bin directory of Debian's client programs for a server of major
# version $1: the same major, else the oldest newer one installed (pg_dump
# reads servers older than itself, never newer ones).
pg_bin_dir() {
    local major="$1" dir version
    if [ -x "/usr/lib/postgresql/$major/bin/pg_dump" ]; then
        echo "/usr/lib/postgresql/$major/bin"
        return
    fi
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V); do
        version="$(basename "$(dirname "$dir")")"
        if [ "$version" -gt "$major" ] && [ -x "$dir/pg_dump" ]; then
            echo "$dir"
            return
        fi
    done
    say "no pg_dump for PostgreSQL $major; install it: sudo apt-get install postgresql-client-$major"
    return 1
}

# What a restore must reproduce, as SQL for psql to run, one line per item: every table of the public
# schema with its row count and the md5 of all its rows in primary-key order;
# owners and grants of the tables, sequences and functions, the schema's and
# the default privileges; every sequence's position. (An object whose rights
# are its owner's defaults may have them spelled out or not - pg_dump writes
# no GRANT for defaults - so both read as the spelled-out defaults.)
fingerprint_sql() {
    cat <<'SQL'
SELECT format(
    'SELECT %L || '' rows='' || count(*) || '' md5='' || md5(coalesce(string_agg(t::text, ''|'' ORDER BY %s), '''')) FROM %I t',
    c.relname,
    coalesce((SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY array_position(i.indkey::int2[], a.attnum))
              FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
              WHERE i.indrelid = c.oid AND i.indisprimary), 't::text'),
    c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
ORDER BY c.relname
\gexec
SELECT 'relation ' || c.relname || ' kind=' || c.relkind::text || ' owner=' || c.relowner::regrole || ' acl=' || coalesce(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner))::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
ORDER BY c.relname;
SELECT 'function ' || p.oid::regprocedure || ' owner=' || p.proowner::regrole || ' acl=' || coalesce(p.proacl, acldefault('f'::"char", p.proowner))::text
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' ORDER BY 1;
SELECT 'schema public owner=' || nspowner::regrole || ' acl=' || coalesce(nspacl, acldefault('n'::"char", nspowner))::text FROM pg_namespace WHERE nspname = 'public';
SELECT 'default acl ' || defaclrole::regrole || ' ' || defaclobjtype::text || ' ' || defaclacl::text FROM pg_default_acl ORDER BY 1;
SELECT 'sequence ' || sequencename || ' last=' || coalesce(last_value::text, '-') FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1;
SQL
}
