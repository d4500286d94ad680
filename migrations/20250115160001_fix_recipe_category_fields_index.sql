-- The index for "recipes in a category", built CONCURRENTLY: writes to recipes go on while it
-- builds. (The gate runs this file outside a transaction, as PostgreSQL requires.)
CREATE INDEX CONCURRENTLY IF NOT EXISTS recipes_category_id_idx ON recipes (category_id);
