-- wasmhost:no-transaction
-- Contract, step 1 of 4, once every replica runs the next version (which
-- writes a revision with every article): the articles the previous version
-- wrote get revision 1.
--
-- In batches of 1,000 ids along the primary key, each committed on its own
-- (hence outside a migration transaction, and one statement: a DO block may
-- COMMIT only at top level), so no batch holds its row locks or its snapshot
-- for long. Articles created after the maximum id read here come from the
-- next version and have their revision already. Running it again after a
-- failure does only what is left.
DO $$
DECLARE
    batch_start bigint := 0;
    last_id bigint;
BEGIN
    -- A row an API request holds (an update in flight) is waited for at
    -- most this long; past it the batch fails and wasmhost migrate runs the
    -- file again.
    SET lock_timeout = '1s';
    SELECT COALESCE(max(id), 0) INTO last_id FROM articles;
    WHILE batch_start <= last_id LOOP
        UPDATE articles SET revision = 1
        WHERE id >= batch_start AND id < batch_start + 1000 AND revision IS NULL;
        COMMIT;
        batch_start := batch_start + 1000;
    END LOOP;
END
$$;
