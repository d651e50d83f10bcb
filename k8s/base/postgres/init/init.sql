-- Prepares a fresh PostgreSQL server for Conduit. Run once, as a superuser:
--
--   psql -v owner_password=... -v app_password=... -f migrations/init/init.sql
--
-- Creates two roles, neither a superuser:
--   conduit_owner  owns database `conduit` and its schema; `wasmhost migrate`
--                  runs as this role, so every table it creates belongs to it.
--   conduit_app    the API's role: may read and write rows, never change the
--                  schema (no CREATE, no DDL), so a compromised component
--                  cannot drop or alter tables.
-- Re-running it is safe: existing roles get their passwords reset, the
-- database is created only when missing, grants are idempotent.

\set ON_ERROR_STOP on

SELECT format('CREATE ROLE conduit_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L',
              :'owner_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'conduit_owner')
\gexec
SELECT format('CREATE ROLE conduit_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L',
              :'app_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'conduit_app')
\gexec
-- Existing roles: make the passwords match what the caller passed.
SELECT format('ALTER ROLE conduit_owner PASSWORD %L', :'owner_password')
\gexec
SELECT format('ALTER ROLE conduit_app PASSWORD %L', :'app_password')
\gexec

SELECT 'CREATE DATABASE conduit OWNER conduit_owner ENCODING ''UTF8'' TEMPLATE template0'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'conduit')
\gexec

-- Only our two roles may connect.
REVOKE ALL ON DATABASE conduit FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE conduit TO conduit_owner;
GRANT CONNECT ON DATABASE conduit TO conduit_app;

\connect conduit

-- The owner owns the schema (and so may create tables in it); nobody else
-- may create objects there.
ALTER SCHEMA public OWNER TO conduit_owner;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO conduit_app;

-- Row access to whatever already exists (re-runs after migrations) ...
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO conduit_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO conduit_app;
-- ... and to every table and sequence conduit_owner creates later. The API
-- draws article ids from the identity sequence explicitly (nextval), hence
-- USAGE on sequences.
ALTER DEFAULT PRIVILEGES FOR ROLE conduit_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO conduit_app;
ALTER DEFAULT PRIVILEGES FOR ROLE conduit_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO conduit_app;
