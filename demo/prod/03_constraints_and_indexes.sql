-- Foreign keys and secondary indexes, added after the data as a restore would.
-- recipes_title_trgm serves the app's title search (ILIKE '%…%'); the others its listing pages.

ALTER TABLE recipes
    ADD CONSTRAINT recipes_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id);
ALTER TABLE recipe_ingredients
    ADD CONSTRAINT recipe_ingredients_recipe_id_fkey
        FOREIGN KEY (recipe_id) REFERENCES recipes (id) ON DELETE CASCADE,
    ADD CONSTRAINT recipe_ingredients_ingredient_id_fkey
        FOREIGN KEY (ingredient_id) REFERENCES ingredients (id);
ALTER TABLE ratings
    ADD CONSTRAINT ratings_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    ADD CONSTRAINT ratings_recipe_id_fkey
        FOREIGN KEY (recipe_id) REFERENCES recipes (id) ON DELETE CASCADE;

CREATE INDEX recipes_title_trgm ON recipes USING gin (title gin_trgm_ops);
CREATE INDEX recipes_user_id_idx ON recipes (user_id);
CREATE INDEX recipes_created_at_idx ON recipes (created_at);
CREATE INDEX recipe_ingredients_ingredient_id_idx ON recipe_ingredients (ingredient_id);
CREATE INDEX ratings_recipe_id_idx ON ratings (recipe_id);

ANALYZE;
