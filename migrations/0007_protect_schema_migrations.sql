-- The migration history belongs to the schema owner. The default privileges
-- in init/init.sql give the application role DML on every table the owner
-- creates, schema_migrations included; the API never touches it, so no role
-- but its owner keeps any right to it.
DO $$
DECLARE
    holder record;
BEGIN
    FOR holder IN
        SELECT DISTINCT grantee
        FROM information_schema.role_table_grants
        WHERE table_schema = current_schema()
          AND table_name = 'schema_migrations'
          AND grantee NOT IN (current_user, 'PUBLIC')
    LOOP
        EXECUTE format('REVOKE ALL ON schema_migrations FROM %I', holder.grantee);
    END LOOP;
END
$$;
