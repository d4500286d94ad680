-- Applies cleanly: the failure comes in the next migration.
CREATE TABLE recipe_tags (
    recipe_id bigint NOT NULL REFERENCES recipes (id) ON DELETE CASCADE,
    tag       text   NOT NULL,
    PRIMARY KEY (recipe_id, tag)
);
