"""``column-constraint``: a column added to an existing table with a CHECK or a REFERENCES
constraint of its own. squawk looks at ADD CONSTRAINT only; a constraint written on the column
is checked against every row just the same, under the ADD COLUMN's ACCESS EXCLUSIVE."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ConstrType

from pytest_dbgate.lint.release import commands
from pytest_dbgate.lint.rule import Check, Rule
from pytest_dbgate.lint.rules import Case, Context
from pytest_dbgate.migrations.parse import Statement

RULE = Rule(
    "column-constraint",
    "lock",
    "a column added with a CHECK or REFERENCES constraint of its own",
    "the constraint is checked against every existing row while ADD COLUMN holds ACCESS "
    "EXCLUSIVE: reads and writes wait for the scan",
    "add the column plain, then ADD CONSTRAINT … NOT VALID and VALIDATE CONSTRAINT in a later "
    "migration",
    source="dbgate",
)
COVERED_BY: frozenset[str] = frozenset()
SUPERSEDES: frozenset[str] = frozenset()
CASES = (
    Case("ALTER TABLE t ADD COLUMN b bigint CHECK (b > 0);", fires=True),
    Case("ALTER TABLE t ADD COLUMN p bigint REFERENCES parent (id);", fires=True),
    Case("ALTER TABLE t ADD COLUMN b bigint;", fires=False),
)


def check(statement: Statement, context: Context) -> Iterator[Check]:
    for table, definition in commands(statement.tree, AlterTableType.AT_AddColumn):
        if not isinstance(definition, ast.ColumnDef):
            continue
        kinds = {getattr(c, "contype", None) for c in definition.constraints or ()}
        if ConstrType.CONSTR_CHECK in kinds or ConstrType.CONSTR_FOREIGN in kinds:
            what = "CHECK" if ConstrType.CONSTR_CHECK in kinds else "REFERENCES"
            yield RULE.id, table, f"{table}.{definition.colname} added with a {what} constraint"
