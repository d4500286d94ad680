-- A nullable column without a default: a catalog change only, no table rewrite. The old
-- release ignores it; the new one fills it.
ALTER TABLE recipes ADD COLUMN IF NOT EXISTS category_id bigint;
