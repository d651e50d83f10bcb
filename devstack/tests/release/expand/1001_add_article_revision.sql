-- Expand: the column the next version of the API writes and reads
-- (components/conduit with the `release-fixture` feature). Runs while the
-- current version serves, before any replica is replaced.
--
-- Nullable and without a default, so adding it changes only the catalog:
-- no table rewrite, no scan, and the ACCESS EXCLUSIVE lock it needs is held
-- for an instant. The current version never names the column (its INSERTs
-- list their columns, its SELECTs name theirs), so it keeps working while
-- the column is there, and the rows it writes get NULL.
--
-- lock_timeout: queued behind a long transaction, the ALTER would make every
-- query on articles wait behind it; it gives up after a second instead, and
-- wasmhost migrate tries it again.
SET LOCAL lock_timeout = '1s';

ALTER TABLE articles ADD COLUMN revision integer;
