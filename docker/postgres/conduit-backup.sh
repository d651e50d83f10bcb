#!/usr/bin/env bash
# The compose stack's backups (the `backup` service, profile `backup`), run in
# the postgres image against the db service as conduit_owner, which owns every
# table and so may read and recreate them all:
#
#   conduit-backup.sh backup               pg_dump --format=custom into the
#                                          backup directory as
#                                          conduit-YYYYMMDDTHHMMSSZ.dump with
#                                          its .sha256; older dumps beyond the
#                                          newest CONDUIT_BACKUP_KEEP go
#   conduit-backup.sh list                 the dumps there, newest first
#   conduit-backup.sh restore [--force] NAME
#                                          checks NAME against its .sha256 and
#                                          restores it into database conduit;
#                                          refuses a database that holds tables
#                                          unless --force (then pg_restore
#                                          --clean replaces them)
#
# The connection comes from PGHOST, PGUSER, PGPASSWORD and PGDATABASE. pg_dump
# reads all tables in one snapshot while the API keeps serving: the recovery
# point is the moment the dump starts.
set -euo pipefail

backup_dir="${CONDUIT_BACKUP_DIR:-/var/lib/postgresql/data}"
keep="${CONDUIT_BACKUP_KEEP:-14}"
say() { echo "conduit-backup: $*" >&2; }

backup() {
    local name
    name="conduit-$(date -u +%Y%m%dT%H%M%SZ).dump"
    partial="$backup_dir/$name.partial"
    # A dump cut short never carries a backup's name.
    trap 'rm -f "${partial:-}"' EXIT
    pg_dump --format=custom --file="$partial"
    mv "$partial" "$backup_dir/$name"
    (cd "$backup_dir" && sha256sum "$name" >"$name.sha256")
    say "wrote $name ($(stat -c %s "$backup_dir/$name") bytes)"
    if [[ "$keep" =~ ^[1-9][0-9]*$ ]]; then
        local old
        # The names sort by time; everything past the newest $keep goes.
        find "$backup_dir" -maxdepth 1 -name 'conduit-*.dump' -printf '%f\n' | sort -r | tail -n "+$((keep + 1))" |
            while read -r old; do
                rm -f "$backup_dir/$old" "$backup_dir/$old.sha256"
                say "removed $old (keeping the newest $keep)"
            done
    fi
}

list() {
    find "$backup_dir" -maxdepth 1 -name 'conduit-*.dump' -printf '%f %s bytes\n' | sort -r
}

# SQL that revokes every default privilege the connected role gives other
# roles (the dump's own default privileges are restored after its tables).
clear_default_privileges() {
    cat <<'SQL'
DO $$
DECLARE
    d record;
BEGIN
    FOR d IN
        SELECT a.defaclnamespace, a.defaclobjtype, e.grantee
        FROM pg_default_acl a, aclexplode(a.defaclacl) e
        WHERE a.defaclrole = current_user::regrole AND e.grantee <> a.defaclrole
    LOOP
        EXECUTE format('ALTER DEFAULT PRIVILEGES %s REVOKE ALL ON %s FROM %s',
            CASE WHEN d.defaclnamespace = 0 THEN ''
                 ELSE format('IN SCHEMA %I', d.defaclnamespace::regnamespace) END,
            CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES'
                 WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' ELSE 'SCHEMAS' END,
            CASE WHEN d.grantee = 0 THEN 'PUBLIC' ELSE d.grantee::regrole::text END);
    END LOOP;
END
$$;
SQL
}

restore() {
    local force=false name=""
    while (($#)); do
        case "$1" in
            --force) force=true ;;
            *) name="$1" ;;
        esac
        shift
    done
    if [[ -z "$name" ]]; then
        say "usage: restore [--force] NAME (see: list)"
        exit 2
    fi
    name="$(basename "$name")"
    if [[ ! -f "$backup_dir/$name.sha256" ]]; then
        say "no $name.sha256 beside $name: its integrity cannot be checked; nothing restored"
        exit 1
    fi
    if ! (cd "$backup_dir" && sha256sum --quiet -c "$name.sha256"); then
        say "$name does not match $name.sha256 (damaged or changed); nothing restored"
        exit 1
    fi
    local tables
    tables="$(psql -X -qAt -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")"
    local clean=()
    if [[ "$tables" != 0 ]]; then
        if ! $force; then
            say "REFUSED: database ${PGDATABASE:-conduit} is not empty ($tables tables); restoring would overwrite it." \
                "Nothing was changed. To replace it with $name, stop the api service and run again with --force."
            exit 3
        fi
        clean=(--clean --if-exists)
        say "--force: replacing the $tables tables of ${PGDATABASE:-conduit}"
    fi
    # One transaction: a failed restore changes nothing. The role's default
    # privileges go first and come back from the dump at its end, so every
    # table the dump creates gets exactly the grants the dump lists, not
    # those a server initialised for the application gives new tables (a
    # table whose grants were narrowed, as schema_migrations', would widen).
    # The archive becomes SQL in the backup directory first (/tmp is small),
    # so a damaged one is refused before anything runs.
    restore_script="$backup_dir/.restore-$$.sql"
    trap 'rm -f "${restore_script:-}"' EXIT
    pg_restore --exit-on-error --no-owner "${clean[@]}" --file="$restore_script" "$backup_dir/$name"
    psql -X -q -v ON_ERROR_STOP=1 --single-transaction --output=/dev/null \
        -c "$(clear_default_privileges)" -f "$restore_script"
    rm -f "$restore_script"
    # pg_restore brings rows, not the planner's statistics (only the
    # restored tables: the system catalogs are the superuser's to analyze).
    psql -X -q -v ON_ERROR_STOP=1 <<<"SELECT format('ANALYZE public.%I', tablename) FROM pg_tables WHERE schemaname = 'public' \gexec"
    say "restored $name"
}

case "${1:-}" in
    backup) backup ;;
    list) list ;;
    restore) shift; restore "$@" ;;
    *) say "usage: conduit-backup.sh backup | list | restore [--force] NAME"; exit 2 ;;
esac
