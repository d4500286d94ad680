"""``concurrently-in-transaction``: a statement PostgreSQL refuses inside a transaction block (a
CONCURRENTLY one, VACUUM, …) written inside the file's own BEGIN … COMMIT: the migration fails.
squawk catches CREATE INDEX CONCURRENTLY; this rule every other such statement."""

from __future__ import annotations

from collections.abc import Iterator

from pytest_dbgate.lint.release import target
from pytest_dbgate.lint.rule import Check, Rule
from pytest_dbgate.lint.rules import Case, Context
from pytest_dbgate.migrations.parse import Statement

RULE = Rule(
    "concurrently-in-transaction",
    "transaction",
    "a CONCURRENTLY statement (or another one PostgreSQL refuses in a transaction) inside "
    "BEGIN … COMMIT",
    "PostgreSQL refuses CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY, DETACH PARTITION "
    "CONCURRENTLY, VACUUM and the like inside a transaction block: the migration fails",
    "remove the BEGIN/COMMIT around it; the gate runs such a file statement by statement",
    source="dbgate",
)
COVERED_BY = frozenset({"ban-concurrent-index-creation-in-transaction"})
SUPERSEDES: frozenset[str] = frozenset()
CASES = (
    Case("BEGIN;\nDROP INDEX CONCURRENTLY IF EXISTS i;\nCOMMIT;", fires=True),
    Case("BEGIN;\nREINDEX INDEX CONCURRENTLY i;\nCOMMIT;", fires=True),
    Case("BEGIN;\nALTER TABLE p DETACH PARTITION p1 CONCURRENTLY;\nCOMMIT;", fires=True),
    Case("BEGIN;\nVACUUM t;\nCOMMIT;", fires=True),
    Case("DROP INDEX CONCURRENTLY IF EXISTS i;", fires=False),
)


def check(statement: Statement, context: Context) -> Iterator[Check]:
    # The parser already knows what PostgreSQL refuses inside a transaction block (it is why
    # the runner applies such a file statement by statement); BEGIN/COMMIT themselves aside.
    reason = statement.autocommit_reason
    if context.in_block and reason is not None and statement.control is None:
        yield RULE.id, target(statement.tree), f"{reason}: it is inside BEGIN"
