-- Deterministic data: every value is a function of the row number, so every load is identical.
-- Full size is about 1.4 million rows (200,000 recipes, 1,000,000 recipe ingredients). The custom setting dbgate_demo.scale
-- (e.g. PGOPTIONS='-c dbgate_demo.scale=0.01') shrinks it for quick runs.

CREATE FUNCTION pg_temp.scaled(n integer) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(1, round(n * coalesce(nullif(current_setting('dbgate_demo.scale', true), '')::numeric, 1)))::integer
$$;

CREATE FUNCTION pg_temp.pick(choices text[], i bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT choices[1 + (i % array_length(choices, 1))]
$$;

INSERT INTO users (id, public_id, email, display_name, created_at)
SELECT i,
       md5('https://recipes.example/users/' || i)::uuid,
       'cook' || i || '@example.com',
       pg_temp.pick(ARRAY['Ada', 'Bao', 'Chiara', 'Dmitri', 'Emeka', 'Farah', 'Goran', 'Hana',
                          'Ines', 'Jonas', 'Kiri', 'Lucia', 'Mateo', 'Nadia', 'Omar', 'Priya'], i)
           || ' ' || pg_temp.pick(ARRAY['Abara', 'Bianchi', 'Costa', 'Dubois', 'Eriksen', 'Fischer',
                                        'Garcia', 'Haddad', 'Ivanova', 'Jensen', 'Kowalski'], i / 16),
       timestamptz '2021-01-01 00:00:00+00' + i * interval '37 minutes'
FROM generate_series(1, pg_temp.scaled(20000)) AS i;

INSERT INTO ingredients (id, name)
SELECT i,
       pg_temp.pick(ARRAY['fresh', 'dried', 'smoked', 'toasted', 'ground', 'pickled', 'wild',
                          'roasted', 'young', 'aged'], i / 20)
           || ' ' || pg_temp.pick(ARRAY['basil', 'tomato', 'garlic', 'onion', 'chili', 'lentils',
                                       'rice', 'ginger', 'lemon', 'butter', 'cumin', 'paprika',
                                       'spinach', 'mushroom', 'chickpeas', 'coconut', 'almond',
                                       'fennel', 'thyme', 'saffron'], i)
FROM generate_series(1, 200) AS i;

INSERT INTO recipes (id, public_id, user_id, title, description, category, servings,
                     prep_minutes, created_at, updated_at)
SELECT i,
       md5('https://recipes.example/recipes/' || i)::uuid,
       1 + (i::bigint * 7919) % pg_temp.scaled(20000),
       pg_temp.pick(ARRAY['Smoky', 'Creamy', 'Crispy', 'Zesty', 'Slow-cooked', 'Grilled', 'Spicy',
                          'Tangy', 'Herby', 'Golden', 'Rustic', 'Silky', 'Charred'], i)
           || ' ' || pg_temp.pick(ARRAY['lentil', 'mushroom', 'chicken', 'tofu', 'salmon',
                                       'chickpea', 'pumpkin', 'lamb', 'aubergine', 'prawn',
                                       'beetroot', 'halloumi', 'pork', 'cauliflower',
                                       'sweet potato', 'beef', 'spinach'], i / 13)
           || ' ' || pg_temp.pick(ARRAY['stew', 'curry', 'tacos', 'risotto', 'salad', 'soup',
                                       'pie', 'noodles', 'flatbread', 'bake', 'skewers', 'dal',
                                       'traybake', 'burger', 'gratin'], i / 221)
           || ' #' || i,
       'A ' || pg_temp.pick(ARRAY['weeknight', 'weekend', 'family', 'party', 'quick'], i)
           || ' recipe from the community cookbook.',
       CASE WHEN i % 97 = 0 THEN NULL
            ELSE pg_temp.pick(ARRAY['Breakfast', 'Lunch', 'Dinner', 'Dessert', 'Snack', 'Soup',
                                    'Salad', 'Baking', 'Vegetarian', 'Vegan', 'Seafood',
                                    'Street Food'], i / 3)
       END,
       1 + i % 8,
       5 + (i * 13) % 175,
       timestamptz '2021-06-01 00:00:00+00' + i * interval '6 minutes',
       timestamptz '2021-06-01 00:00:00+00' + i * interval '6 minutes' + (i % 90) * interval '1 day'
FROM generate_series(1, pg_temp.scaled(200000)) AS i;

INSERT INTO recipe_ingredients (recipe_id, position, ingredient_id, quantity)
SELECT r, p,
       1 + (r * 31 + p * 197) % 200,
       (1 + (r + p) % 6) || ' ' || pg_temp.pick(ARRAY['g', 'tbsp', 'tsp', 'cups', 'pieces'], r + p)
FROM generate_series(1, pg_temp.scaled(200000)) AS r,
     generate_series(1, 5) AS p;

INSERT INTO ratings (user_id, recipe_id, stars, created_at)
SELECT DISTINCT ON (u, r) u, r, s, c
FROM (
    SELECT 1 + (i::bigint * 4243) % pg_temp.scaled(20000) AS u,
           1 + (i::bigint * 104729) % pg_temp.scaled(200000) AS r,
           (1 + (i * 7) % 5)::smallint AS s,
           timestamptz '2022-01-01 00:00:00+00' + i * interval '3 minutes' AS c
    FROM generate_series(1, pg_temp.scaled(300000)) AS i
) AS generated
ORDER BY u, r;

SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users));
SELECT setval(pg_get_serial_sequence('recipes', 'id'), (SELECT max(id) FROM recipes));
SELECT setval(pg_get_serial_sequence('ingredients', 'id'), (SELECT max(id) FROM ingredients));
