-- dbgate: hold-back 7d
-- The cleanup: drop the free-text column. The release before this one still reads it, so
-- production applies this migration only 7 days after the rest of the release, once the old
-- application is gone and the metrics are flat. Staging validates it with the others.
ALTER TABLE recipes DROP COLUMN IF EXISTS category;
