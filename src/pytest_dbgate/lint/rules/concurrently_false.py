"""``concurrently-false``: ``REINDEX (CONCURRENTLY false)`` reads as concurrent, and squawk takes
it so, but it is a plain REINDEX holding ACCESS EXCLUSIVE on the index for the whole build."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from pytest_dbgate.lint.release import relation_name
from pytest_dbgate.lint.rule import Check, Rule
from pytest_dbgate.lint.rules import Case, Context
from pytest_dbgate.migrations.parse import Statement, option_on

RULE = Rule(
    "concurrently-false",
    "lock",
    "REINDEX with CONCURRENTLY switched off",
    "it is a plain REINDEX: ACCESS EXCLUSIVE on the index, and the table's queries that use it "
    "wait for the whole build",
    "REINDEX (CONCURRENTLY) … or REINDEX … CONCURRENTLY, in a file of its own",
    source="dbgate",
)
COVERED_BY: frozenset[str] = frozenset()
SUPERSEDES: frozenset[str] = frozenset()
CASES = (
    Case("REINDEX (CONCURRENTLY false) TABLE t;", fires=True),
    Case("REINDEX (CONCURRENTLY off) INDEX t_pkey;", fires=True),
    Case("REINDEX (CONCURRENTLY) TABLE t;", fires=False),
    Case("REINDEX TABLE CONCURRENTLY t;", fires=False),
)


def check(statement: Statement, context: Context) -> Iterator[Check]:
    node = statement.tree
    if not isinstance(node, ast.ReindexStmt):
        return
    for option in node.params or ():
        if getattr(option, "defname", None) == "concurrently" and not option_on(option):
            name = relation_name(node.relation) or node.name or "the index"
            yield RULE.id, relation_name(node.relation), f"REINDEX of {name}, not concurrent"
