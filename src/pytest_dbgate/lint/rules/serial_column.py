"""``adding-serial-column``: a serial column added to an existing table. Its default is
``nextval()``, volatile, so PostgreSQL rewrites the table to fill it; squawk only suggests an
identity column instead (``prefer-identity``), which rewrites it just the same."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType

from pytest_dbgate.lint.release import commands
from pytest_dbgate.lint.rule import Check, Rule
from pytest_dbgate.lint.rules import Case, Context
from pytest_dbgate.migrations.parse import SERIAL_TYPES, Statement, column_type

RULE = Rule(
    "adding-serial-column",
    "lock",
    "a serial column added to an existing table",
    "its default, nextval(), is volatile: filling it rewrites the whole table under ACCESS "
    "EXCLUSIVE",
    "add a plain nullable column, backfill it in batches, then attach a sequence as the "
    "default for new rows",
    source="dbgate",
)
COVERED_BY: frozenset[str] = frozenset()
SUPERSEDES: frozenset[str] = frozenset()
CASES = (
    Case("ALTER TABLE t ADD COLUMN n bigserial;", fires=True),
    Case("ALTER TABLE t ADD COLUMN n serial4;", fires=True),
    Case("ALTER TABLE t ADD COLUMN n bigint;", fires=False),
)


def check(statement: Statement, context: Context) -> Iterator[Check]:
    for table, definition in commands(statement.tree, AlterTableType.AT_AddColumn):
        kind = column_type(definition) if isinstance(definition, ast.ColumnDef) else ""
        if isinstance(definition, ast.ColumnDef) and kind in SERIAL_TYPES:
            yield RULE.id, table, f"{table}.{definition.colname} added as {kind}"
