"""``concurrently-in-transaction``: a CONCURRENTLY statement inside the file's own BEGIN …
COMMIT. PostgreSQL refuses it there and the migration fails; squawk catches CREATE INDEX
CONCURRENTLY, this rule the others (DROP INDEX, REINDEX, DETACH PARTITION)."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import AlterTableType, ObjectType

from pytest_dbgate.lint.release import relation_name
from pytest_dbgate.lint.rule import Check, Rule
from pytest_dbgate.lint.rules import Case, Context
from pytest_dbgate.migrations.parse import Statement, option_on

RULE = Rule(
    "concurrently-in-transaction",
    "transaction",
    "a CONCURRENTLY statement inside BEGIN … COMMIT",
    "PostgreSQL refuses CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY and DETACH "
    "PARTITION CONCURRENTLY inside a transaction block: the migration fails",
    "remove the BEGIN/COMMIT around it; the gate runs such a file statement by statement",
    source="dbgate",
)
COVERED_BY = frozenset({"ban-concurrent-index-creation-in-transaction"})
SUPERSEDES: frozenset[str] = frozenset()
CASES = (
    Case("BEGIN;\nDROP INDEX CONCURRENTLY IF EXISTS i;\nCOMMIT;", fires=True),
    Case("BEGIN;\nREINDEX INDEX CONCURRENTLY i;\nCOMMIT;", fires=True),
    Case("BEGIN;\nALTER TABLE p DETACH PARTITION p1 CONCURRENTLY;\nCOMMIT;", fires=True),
    Case("DROP INDEX CONCURRENTLY IF EXISTS i;", fires=False),
)


def check(statement: Statement, context: Context) -> Iterator[Check]:
    if not context.in_block:
        return
    node = statement.tree
    what: str | None = None
    table: str | None = None
    if isinstance(node, ast.IndexStmt) and node.concurrent:
        what, table = "CREATE INDEX CONCURRENTLY", relation_name(node.relation)
    elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_INDEX:
        what = "DROP INDEX CONCURRENTLY" if node.concurrent else None
    elif isinstance(node, ast.ReindexStmt) and any(
        getattr(p, "defname", None) == "concurrently" and option_on(p) for p in node.params or ()
    ):
        what, table = "REINDEX CONCURRENTLY", relation_name(node.relation)
    elif isinstance(node, ast.AlterTableStmt) and any(
        isinstance(c, ast.AlterTableCmd)
        and c.subtype == AlterTableType.AT_DetachPartition
        and isinstance(c.def_, ast.PartitionCmd)
        and c.def_.concurrent
        for c in node.cmds or ()
    ):
        what, table = "DETACH PARTITION CONCURRENTLY", relation_name(node.relation)
    if what is not None:
        yield RULE.id, table, f"{what} inside BEGIN"
