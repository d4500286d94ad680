-- The recipes app's real access paths, with literal parameters: what the performance stage
-- measures before and after the release (dbgate_workload). Each query must run on both schemas;
-- every run is rolled back, so the write at the end measures an edit without keeping it.

-- name: search_by_title
SELECT id, title FROM recipes WHERE title ILIKE '%lentil curry%' ORDER BY title LIMIT 20;

-- name: recipes_of_a_cook
SELECT id, title, created_at FROM recipes WHERE user_id = 42 ORDER BY created_at DESC LIMIT 20;

-- name: latest_recipes
SELECT id, title FROM recipes ORDER BY created_at DESC LIMIT 20;

-- name: recipe_page
SELECT r.title, r.description, i.name, ri.quantity
FROM recipes r
JOIN recipe_ingredients ri ON ri.recipe_id = r.id
JOIN ingredients i ON i.id = ri.ingredient_id
WHERE r.id = 1234
ORDER BY ri.position;

-- name: top_rated
SELECT r.id, r.title, avg(t.stars) AS stars
FROM ratings t
JOIN recipes r ON r.id = t.recipe_id
WHERE t.recipe_id BETWEEN 1000 AND 1200
GROUP BY r.id, r.title
ORDER BY stars DESC, r.id
LIMIT 10;

-- name: cook_profile
SELECT u.display_name, count(r.id) AS recipes
FROM users u
LEFT JOIN recipes r ON r.user_id = u.id
WHERE u.email = 'cook42@example.com'
GROUP BY u.display_name;

-- name: recipe_cards
SELECT id, recipe_label(title, servings, prep_minutes) AS label
FROM recipes
WHERE user_id = 42
ORDER BY created_at DESC
LIMIT 20;

-- name: edit_recipes
-- A write, as the app's editor sends it: measured, then rolled back.
UPDATE recipes SET updated_at = now() WHERE id BETWEEN 1000 AND 1019;
