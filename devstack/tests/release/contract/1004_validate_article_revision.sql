-- Contract, step 3 of 4: proves the CHECK for the rows already there. The
-- scan runs under SHARE UPDATE EXCLUSIVE, which the API's reads and writes
-- do not conflict with. A migration of its own: in the transaction that
-- added the constraint, the scan would run under that statement's ACCESS
-- EXCLUSIVE lock and stop every query on articles until it ends.
SET LOCAL lock_timeout = '1s';

ALTER TABLE articles VALIDATE CONSTRAINT articles_revision_not_null;
