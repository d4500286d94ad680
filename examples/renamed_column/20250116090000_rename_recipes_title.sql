-- UNSAFE: the demo release (the links beside this file) plus a rename of a column the running
-- application reads. The migration applies cleanly, but the app's title search fails in the
-- [after] tests: this is the release that breaks the app on deploy. The safe way: add the new
-- column, write both, switch the reads, and drop the old column in a later, held-back release.
ALTER TABLE recipes RENAME COLUMN title TO name;
