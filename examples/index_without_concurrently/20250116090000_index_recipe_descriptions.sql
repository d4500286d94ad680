-- UNSAFE: a plain CREATE INDEX on the big recipes table. It holds SHARE on recipes for the whole
-- build (seconds for a trigram index on 200,000 rows): reads go on, every write waits. The gate
-- fails migrate::locks[…] with the lock, its duration and the writes it blocked.
-- The safe way: CREATE INDEX CONCURRENTLY, in a migration of its own.
CREATE INDEX recipes_description_trgm ON recipes USING gin (description gin_trgm_ops);
