-- UNSAFE: a typo in the table name. The migration fails on staging with PostgreSQL's error,
-- file and line; its transaction is rolled back and the later migration is not applied.
ALTER TABLE recipes ADD COLUMN IF NOT EXISTS category_id bigint;
ALTER TABLE recipe ADD COLUMN IF NOT EXISTS category_note text;
