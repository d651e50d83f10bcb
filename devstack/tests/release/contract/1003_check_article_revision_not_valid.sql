-- Contract, step 2 of 4: a CHECK that the revision is there, NOT VALID, so
-- PostgreSQL checks only rows written from now on and does not scan the
-- table. The ACCESS EXCLUSIVE lock it takes is held for an instant, and for
-- at most a second of waiting (lock_timeout; wasmhost migrate tries again).
SET LOCAL lock_timeout = '1s';

ALTER TABLE articles
    ADD CONSTRAINT articles_revision_not_null CHECK (revision IS NOT NULL) NOT VALID;
