-- UNSAFE: the demo release (the links beside this file) plus a new version of recipe_label, the
-- function the app's recipe cards call, that tidies the title's whitespace the slow way. Every
-- migration applies cleanly and no plan changes; the performance stage fails
-- query[recipe_cards]: the same plan and the same blocks, each call many times slower.
CREATE OR REPLACE FUNCTION recipe_label(title text, servings integer, prep_minutes integer)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    tidy text := title;
BEGIN
    FOR i IN 1..300 LOOP
        tidy := regexp_replace(tidy, '\s+', ' ', 'g');
    END LOOP;
    RETURN tidy || ' · serves ' || servings || ' · ' || prep_minutes || ' min';
END
$$;
