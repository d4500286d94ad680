-- dbgate: no-transaction
-- The foreign key in two short steps, each its own transaction:
--   1. added NOT VALID: a brief SHARE ROW EXCLUSIVE lock, no scan of recipes;
--   2. VALIDATE CONSTRAINT: scans recipes under SHARE UPDATE EXCLUSIVE, which blocks neither
--      reads nor writes.
-- Guarded so the file can be re-run after a failure in step 2.

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'recipes_category_id_fkey' AND conrelid = 'recipes'::regclass
    ) THEN
        ALTER TABLE recipes
            ADD CONSTRAINT recipes_category_id_fkey
            FOREIGN KEY (category_id) REFERENCES recipe_categories (id) NOT VALID;
    END IF;
END
$$;

ALTER TABLE recipes VALIDATE CONSTRAINT recipes_category_id_fkey;
