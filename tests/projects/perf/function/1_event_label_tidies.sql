-- The label function tidies whitespace the slow way: same plan, same blocks, each call slower.
CREATE OR REPLACE FUNCTION event_label(kind text, payload text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    tidy text := payload;
BEGIN
    FOR i IN 1..100 LOOP
        tidy := regexp_replace(tidy, '\s+', ' ', 'g');
    END LOOP;
    RETURN kind || ': ' || left(tidy, 10);
END
$$;
