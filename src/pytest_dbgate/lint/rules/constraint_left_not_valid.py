"""``constraint-left-not-valid``: a constraint the release adds NOT VALID and never validates.
Only the whole release can tell, so this rule looks at it once every file was read; squawk
sees one file at a time."""

from __future__ import annotations

from collections.abc import Iterator

from pytest_dbgate.lint.release import Release
from pytest_dbgate.lint.rule import Check, Rule
from pytest_dbgate.lint.rules import Case, Context
from pytest_dbgate.migrations.parse import Migration, Statement

RULE = Rule(
    "constraint-left-not-valid",
    "compat",
    "a constraint added NOT VALID and never validated in the release",
    "existing rows were never checked against it, and the gate's own criterion (every "
    "constraint validated) fails on the migrated database",
    "ALTER TABLE … VALIDATE CONSTRAINT … in a later migration of the same release",
    source="dbgate",
    judged_by="dbgate::schema::constraints_validated",
)
COVERED_BY: frozenset[str] = frozenset()
SUPERSEDES: frozenset[str] = frozenset()
CASES = (
    Case("ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (p) REFERENCES parent (id) NOT VALID;", True),
    Case(
        "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (p) REFERENCES parent (id) NOT VALID;\n"
        "-- next\nALTER TABLE t VALIDATE CONSTRAINT f;",
        fires=False,
    ),
)


def check(statement: Statement, context: Context) -> Iterator[Check]:
    return iter(())


def left(release: Release) -> Iterator[tuple[Migration, Statement, Check]]:
    """Every constraint still NOT VALID when the release ends, where it was added."""
    for (table, name), (migration, statement) in release.not_valid.items():
        detail = f"{table}.{name} is added NOT VALID and no later migration validates it"
        yield migration, statement, (RULE.id, table, detail)
