-- The migration history belongs to the schema owner. The default privileges
-- in init/init.sql give the application role DML on every table the owner
-- creates, schema_migrations included; the API never touches it, so the
-- application role keeps no right to it. (Where the role does not exist,
-- for a database set up without init.sql, there is nothing to revoke.)
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'conduit_app') THEN
        REVOKE ALL ON schema_migrations FROM conduit_app;
    END IF;
END
$$;
