-- dbgate: no-transaction
-- Backfill in batches of 2,000 rows, each committed on its own, so no row stays locked for long
-- and the application's writes interleave. Safe to re-run: it only touches rows still missing
-- their category_id, and categories already present are kept.

INSERT INTO recipe_categories (name, slug)
SELECT DISTINCT category,
       trim(BOTH '-' FROM lower(regexp_replace(category, '[^A-Za-z0-9]+', '-', 'g')))
FROM recipes
WHERE category IS NOT NULL
ORDER BY 1
ON CONFLICT DO NOTHING;

DO $$
DECLARE
    batch   constant bigint := 2000;
    next_id bigint;
    last_id bigint;
BEGIN
    SELECT min(id), max(id) INTO next_id, last_id FROM recipes;
    WHILE next_id <= last_id LOOP
        UPDATE recipes AS r
        SET category_id = c.id
        FROM recipe_categories AS c
        WHERE r.id >= next_id AND r.id < next_id + batch
          AND r.category_id IS NULL
          AND c.name = r.category::citext;
        COMMIT;
        next_id := next_id + batch;
    END LOOP;
END
$$;
