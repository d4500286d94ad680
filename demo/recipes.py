"""The recipes application's data access: the queries its pages run.

Small on purpose: it stands for the real application whose tests the gate runs before and after
the release. Both releases' category queries are here: the old one reads the free-text column,
the new one the recipe_categories table.
"""

from __future__ import annotations

from typing import Any

import psycopg

Conn = psycopg.Connection[Any]


def search(conn: Conn, text: str, limit: int = 20) -> list[tuple[int, str]]:
    """Title search, served by the recipes_title_trgm index."""
    rows = conn.execute(
        "SELECT id, title FROM recipes WHERE title ILIKE %s ORDER BY id LIMIT %s",
        (f"%{text}%", limit),
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def recipes_of(conn: Conn, user_id: int) -> list[int]:
    rows = conn.execute(
        "SELECT id FROM recipes WHERE user_id = %s ORDER BY created_at DESC", (user_id,)
    ).fetchall()
    return [int(r[0]) for r in rows]


def ingredients(conn: Conn, recipe_id: int) -> list[str]:
    rows = conn.execute(
        "SELECT i.name FROM recipe_ingredients ri JOIN ingredients i ON i.id = ri.ingredient_id"
        " WHERE ri.recipe_id = %s ORDER BY ri.position",
        (recipe_id,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def top_rated(conn: Conn, limit: int = 10) -> list[tuple[int, float]]:
    rows = conn.execute(
        "SELECT recipe_id, avg(stars)::float FROM ratings GROUP BY recipe_id"
        " HAVING count(*) >= 1 ORDER BY 2 DESC, 1 LIMIT %s",
        (limit,),
    ).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows]


def by_category_before_release(conn: Conn, name: str, limit: int = 20) -> list[int]:
    """The old release: categories are free text on the recipe."""
    rows = conn.execute(
        "SELECT id FROM recipes WHERE category = %s ORDER BY id LIMIT %s", (name, limit)
    ).fetchall()
    return [int(r[0]) for r in rows]


def by_category(conn: Conn, slug: str, limit: int = 20) -> list[int]:
    """The new release: categories have their own table."""
    rows = conn.execute(
        "SELECT r.id FROM recipes r JOIN recipe_categories c ON c.id = r.category_id"
        " WHERE c.slug = %s ORDER BY r.id LIMIT %s",
        (slug, limit),
    ).fetchall()
    return [int(r[0]) for r in rows]


def categories(conn: Conn) -> list[str]:
    rows = conn.execute("SELECT slug FROM recipe_categories ORDER BY name").fetchall()
    return [str(r[0]) for r in rows]
