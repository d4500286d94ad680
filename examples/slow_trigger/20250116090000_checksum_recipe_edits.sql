-- UNSAFE: the demo release (the links beside this file) plus an audit checksum of every edited
-- recipe, computed the slow way in a BEFORE UPDATE trigger. Every migration applies cleanly, no
-- lock is long and no plan changes; the performance stage fails query[edit_recipes]: the same
-- plan and the same blocks, many times the CPU per row.
CREATE FUNCTION recipes_edit_checksum() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    digest text := '';
BEGIN
    FOR i IN 1..200 LOOP
        digest := md5(digest || row_to_json(NEW)::text);
    END LOOP;
    RETURN NEW;
END
$$;

CREATE TRIGGER recipes_edit_checksum
    BEFORE UPDATE ON recipes
    FOR EACH ROW EXECUTE FUNCTION recipes_edit_checksum();
