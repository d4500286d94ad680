"""``exclusion-constraint``: an EXCLUDE constraint added to an existing table. squawk's advice
for constraints (NOT VALID) does not apply: PostgreSQL cannot add an EXCLUDE constraint NOT
VALID, so this rule says what does."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ConstrType

from pytest_dbgate.lint.release import commands
from pytest_dbgate.lint.rule import Check, Rule
from pytest_dbgate.lint.rules import Case, Context
from pytest_dbgate.migrations.parse import Statement

RULE = Rule(
    "exclusion-constraint",
    "lock",
    "an EXCLUDE constraint added to an existing table",
    "it builds its index and checks every row under ACCESS EXCLUSIVE, and cannot be added NOT "
    "VALID",
    "create the table with it, or build the new table with it and switch over, or accept a "
    "maintenance window for the build",
    source="dbgate",
)
COVERED_BY: frozenset[str] = frozenset()
SUPERSEDES = frozenset({"constraint-missing-not-valid"})
CASES = (
    Case("ALTER TABLE t ADD CONSTRAINT x EXCLUDE USING gist (r WITH &&);", fires=True),
    Case("CREATE TABLE booking (r int4range, EXCLUDE USING gist (r WITH &&));", fires=False),
)


def check(statement: Statement, context: Context) -> Iterator[Check]:
    for table, definition in commands(statement.tree, AlterTableType.AT_AddConstraint):
        if (
            isinstance(definition, ast.Constraint)
            and definition.contype == ConstrType.CONSTR_EXCLUSION
        ):
            yield RULE.id, table, f"EXCLUDE constraint built on {table}"
