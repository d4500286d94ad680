-- UNSAFE: "deleting a recipe, an ingredient or a cook must be refused while anything refers to
-- it" means recreating the foreign keys of recipe_ingredients (600,000 rows), ratings and
-- recipes (200,000 rows each) with ON DELETE RESTRICT, validated in the same step. DROP
-- CONSTRAINT takes ACCESS EXCLUSIVE on each table and on the tables it refers to, and the
-- file's transaction holds those locks while all five new keys scan their tables: no read or
-- write of recipes gets through meanwhile. The gate fails migrate::locks[…] with the blocked
-- traffic.
-- The safe way: add the new keys NOT VALID under new names, VALIDATE them in a later migration
-- (SHARE UPDATE EXCLUSIVE: nothing waits), then drop the old ones.
ALTER TABLE recipe_ingredients
    DROP CONSTRAINT recipe_ingredients_recipe_id_fkey,
    ADD CONSTRAINT recipe_ingredients_recipe_id_fkey
        FOREIGN KEY (recipe_id) REFERENCES recipes (id) ON DELETE RESTRICT,
    DROP CONSTRAINT recipe_ingredients_ingredient_id_fkey,
    ADD CONSTRAINT recipe_ingredients_ingredient_id_fkey
        FOREIGN KEY (ingredient_id) REFERENCES ingredients (id) ON DELETE RESTRICT;

ALTER TABLE ratings
    DROP CONSTRAINT ratings_recipe_id_fkey,
    ADD CONSTRAINT ratings_recipe_id_fkey
        FOREIGN KEY (recipe_id) REFERENCES recipes (id) ON DELETE RESTRICT,
    DROP CONSTRAINT ratings_user_id_fkey,
    ADD CONSTRAINT ratings_user_id_fkey
        FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE RESTRICT;

ALTER TABLE recipes
    DROP CONSTRAINT recipes_user_id_fkey,
    ADD CONSTRAINT recipes_user_id_fkey
        FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE RESTRICT;
