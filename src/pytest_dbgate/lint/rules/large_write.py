"""``large-write``: an UPDATE or DELETE of a whole table in one statement. Reported, not
failed: how long it really holds its row locks is what the lock watch measures."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from pytest_dbgate.lint.release import relation_name
from pytest_dbgate.lint.rule import Check, Rule
from pytest_dbgate.lint.rules import Case, Context
from pytest_dbgate.migrations.parse import Statement

RULE = Rule(
    "large-write",
    "lock",
    "an UPDATE or DELETE of a whole existing table in one statement",
    "it locks every row it changes until the transaction commits, and writes them all in one "
    "go: the application's writes to those rows wait, and replicas fall behind",
    "do it in batches, each committed on its own (`-- dbgate: no-transaction` and a DO loop "
    "that COMMITs), so no row or table stays locked for long",
    severity="report",
    source="dbgate",
)
COVERED_BY: frozenset[str] = frozenset()
SUPERSEDES: frozenset[str] = frozenset()
CASES = (
    Case("UPDATE t SET a = 0;", fires=True),
    Case("DELETE FROM t;", fires=True),
    Case("UPDATE t SET a = 0 WHERE id BETWEEN 1 AND 1000;", fires=False),
)


def check(statement: Statement, context: Context) -> Iterator[Check]:
    node = statement.tree
    if isinstance(node, ast.UpdateStmt | ast.DeleteStmt) and node.whereClause is None:
        verb = "UPDATE" if isinstance(node, ast.UpdateStmt) else "DELETE"
        table = relation_name(node.relation)
        yield RULE.id, table, f"{verb} of every row of {table} in one statement"
