"""The recipes app's own database tests.

`pytest --dbgate=staging` runs each of them against the staging copy before and after the
release's migrations (`[before]`/`[after]`); `dbgate_phase` keeps the ones tied to one release's
schema to its side. Without --dbgate they run against $DATABASE_URL, or are skipped.
"""

from __future__ import annotations

import pytest
import recipes


def test_title_search_finds_recipes_by_fragment(dbgate_db: recipes.Conn) -> None:
    found = recipes.search(dbgate_db, "lentil")
    assert found, "the demo data has lentil recipes"
    assert all("lentil" in title.lower() for _, title in found)
    assert found == sorted(found)


def test_search_is_case_insensitive(dbgate_db: recipes.Conn) -> None:
    assert recipes.search(dbgate_db, "LENTIL") == recipes.search(dbgate_db, "lentil")


def test_a_cooks_recipes_newest_first(dbgate_db: recipes.Conn) -> None:
    ids = recipes.recipes_of(dbgate_db, 1)
    assert ids
    dates = [
        dbgate_db.execute("SELECT created_at FROM recipes WHERE id = %s", (i,)).fetchone()
        for i in ids
    ]
    assert dates == sorted(dates, reverse=True)


def test_recipe_ingredients_come_in_order(dbgate_db: recipes.Conn) -> None:
    assert len(recipes.ingredients(dbgate_db, 1)) == 5


def test_top_rated_recipes(dbgate_db: recipes.Conn) -> None:
    best = recipes.top_rated(dbgate_db)
    assert len(best) == 10
    assert all(1 <= stars <= 5 for _, stars in best)


@pytest.mark.dbgate_phase("before")
def test_old_release_lists_a_category_from_free_text(dbgate_db: recipes.Conn) -> None:
    # The release's held-back cleanup drops recipes.category: only the old release reads it.
    assert recipes.by_category_before_release(dbgate_db, "Dessert")


@pytest.mark.dbgate_phase("after")
def test_new_release_lists_a_category_from_its_table(dbgate_db: recipes.Conn) -> None:
    assert "street-food" in recipes.categories(dbgate_db)
    desserts = recipes.by_category(dbgate_db, "dessert")
    assert desserts
    assert len(set(desserts)) == len(desserts)


@pytest.mark.dbgate_phase("after")
def test_every_categorised_recipe_got_its_category(dbgate_db: recipes.Conn) -> None:
    # The demo data leaves every 97th recipe without a category; the backfill must map the rest.
    total, missing = dbgate_db.execute(
        "SELECT max(id), count(*) FILTER (WHERE category_id IS NULL) FROM recipes"
    ).fetchone() or (0, 0)
    assert missing == total // 97
