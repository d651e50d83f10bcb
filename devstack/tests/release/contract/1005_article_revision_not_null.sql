-- Contract, step 4 of 4: the column becomes NOT NULL. SET NOT NULL needs
-- ACCESS EXCLUSIVE, but with a valid CHECK (revision IS NOT NULL) in place
-- PostgreSQL skips the scan that would prove it, so the lock is held for an
-- instant. The CHECK then says nothing more than NOT NULL and goes.
SET LOCAL lock_timeout = '1s';

ALTER TABLE articles ALTER COLUMN revision SET NOT NULL;
ALTER TABLE articles DROP CONSTRAINT articles_revision_not_null;
