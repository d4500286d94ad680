"""``outside-database``: a statement that acts on other databases, the server, its files or
other servers. Staging is a copy of one database, so none of it is rehearsed; the gate never
applies such a file, and no ignore silences the rule."""

from __future__ import annotations

from collections.abc import Iterator

from pytest_dbgate.lint.rule import Check, Rule
from pytest_dbgate.lint.rules import Case, Context
from pytest_dbgate.migrations.parse import Statement

RULE = Rule(
    "outside-database",
    "outside",
    "a statement that acts outside the migrated database",
    "staging is a copy of one database: what the statement does to other databases, the "
    "server, its files or other servers is not rehearsed there, and on production it acts on "
    "production's server; the gate never applies it and no ignore silences it",
    "take the statement out of the migration and have whoever runs the server do it, on "
    "purpose, outside the release",
    source="dbgate",
    ignorable=False,
)
COVERED_BY: frozenset[str] = frozenset()
SUPERSEDES: frozenset[str] = frozenset()
CASES = (
    Case("DROP DATABASE IF EXISTS reporting;", fires=True),
    Case("SELECT pg_terminate_backend(pid) FROM pg_stat_activity;", fires=True),
    Case("DO $$ BEGIN PERFORM dblink_exec('x', 'DELETE FROM t'); END $$;", fires=True),
    Case("ALTER SYSTEM SET work_mem = '64MB';", fires=True),
    Case("CREATE TABLE audit (id bigint PRIMARY KEY);", fires=False),
)


def check(statement: Statement, context: Context) -> Iterator[Check]:
    if statement.outside is not None:
        yield RULE.id, None, f"acts outside the migrated database: it {statement.outside}"
