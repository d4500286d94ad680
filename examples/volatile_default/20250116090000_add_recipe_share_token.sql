-- UNSAFE: a NOT NULL column with a volatile default. PostgreSQL must compute a value for every
-- existing row, so it rewrites recipes and all its indexes under ACCESS EXCLUSIVE: no read and
-- no write gets through until it is done. The gate fails migrate::locks[…].
-- The safe way: add the column nullable with no default, backfill it in batches, set the
-- default, then add the NOT NULL through a validated CHECK.
ALTER TABLE recipes ADD COLUMN share_token uuid NOT NULL DEFAULT gen_random_uuid();
