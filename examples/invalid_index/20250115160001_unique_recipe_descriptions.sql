-- UNSAFE: a unique index on data that is not unique. CREATE UNIQUE INDEX CONCURRENTLY fails
-- on the first duplicate and, unlike a plain CREATE INDEX, leaves the index behind, INVALID:
-- never used by queries, still maintained by every write. The gate fails the migration and
-- drops the INVALID index it left (schema::indexes_valid_and_ready would name any it could not).
CREATE UNIQUE INDEX CONCURRENTLY recipes_description_key ON recipes (description);
