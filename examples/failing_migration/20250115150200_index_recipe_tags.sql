-- Never applied: the migration before it fails, and the run stops there.
CREATE INDEX CONCURRENTLY IF NOT EXISTS recipe_tags_tag_idx ON recipe_tags (tag);
