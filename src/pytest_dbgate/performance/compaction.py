"""Comparing schemas, not bloat: compacting the staging tables the release left with dead space.

A backfill that updates every row of a table leaves it (and its indexes) about twice its size
after VACUUM: the dead rows' space is free for later writes but the files do not shrink, so a
query that scans the table reads twice the pages. The un-migrated copy beside it is as compact
as a restore makes it. Measured as they are, an unchanged release that backfilled a table would
fail on a seq scan it made slower through space it will reuse, and a later VACUUM FULL or
pg_repack would undo; and that is a fact of maintenance, not of the release's queries.

So before measuring, each staging table that grew by more than :data:`GROWTH` (and at least
:data:`MIN_PAGES` pages) over its size before the migrations is compacted with ``VACUUM FULL``,
indexes and all, then vacuumed as the copy was, and the output says which. A table
that grew because the release added rows is only rewritten as compact as it already was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from psycopg import sql
from psycopg.rows import class_row, scalar_row

from pytest_dbgate.performance.stats import MARKER
from pytest_dbgate.pg.connections import Conn

GROWTH = 1.2
MIN_PAGES = 8

SIZES = f"""
SELECT {MARKER} c.oid AS oid, n.nspname AS schema, c.relname AS relname,
       pg_relation_size(c.oid) / current_setting('block_size')::int AS pages
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
"""


@dataclass(frozen=True)
class Table:
    oid: int
    schema: str
    relname: str
    pages: int

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.relname}"


@dataclass(frozen=True)
class Compacted:
    name: str
    before: int  # pages before the migrations
    grown: int  # pages after them, vacuumed
    after: int  # pages once compacted

    def describe(self) -> str:
        return f"{self.name} ({self.grown:,} → {self.after:,} pages; {self.before:,} before)"


def table_sizes(conn: Conn) -> dict[int, Table]:
    """Every user table's size in pages, by oid (a clone keeps its template's oids)."""
    with conn.cursor(row_factory=class_row(Table)) as cur:
        return {t.oid: t for t in cur.execute(SIZES)}


def compact_grown(
    conn: Conn, before: dict[int, Table], progress: Callable[[str], None]
) -> list[Compacted]:
    """Compact the tables that grew past :data:`GROWTH` since ``before``."""
    grown = [
        (before[oid], now)
        for oid, now in table_sizes(conn).items()
        if oid in before
        and now.pages >= before[oid].pages * GROWTH
        and now.pages - before[oid].pages >= MIN_PAGES
    ]
    done: list[Compacted] = []
    for was, now in grown:
        progress(
            f"VACUUM FULL on {now.name}: {now.pages:,} pages after the migrations, "
            f"{was.pages:,} before (dead space the release left is not a query regression)"
        )
        table = sql.Identifier(now.schema, now.relname)
        conn.execute(sql.SQL("VACUUM (FULL) {}").format(table))
        # A rewritten heap has no page marked all-visible, so every scan would check each row's
        # visibility: a plain VACUUM marks them, as it did the un-migrated copy's. (The
        # statistics are kept: the table's oid and contents are the same.)
        conn.execute(sql.SQL("VACUUM {}").format(table))
        done.append(Compacted(now.name, was.pages, now.pages, _pages(conn, now.oid)))
    return done


def _pages(conn: Conn, oid: int) -> int:
    with conn.cursor(row_factory=scalar_row) as cur:
        found = cur.execute(
            "SELECT pg_relation_size(%s) / current_setting('block_size')::int", (oid,)
        ).fetchone()
    return int(found or 0)
