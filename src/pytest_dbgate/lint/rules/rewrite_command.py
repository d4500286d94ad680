"""``rewrite-command``: VACUUM FULL or CLUSTER, which rewrite the table under ACCESS EXCLUSIVE.
squawk flags them (``prefer-repack``) only for PostgreSQL 19 and later, where REPACK exists; on
the versions teams run today the rewrite is just as blocking."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from pytest_dbgate.lint.release import relation_name
from pytest_dbgate.lint.rule import Check, Rule
from pytest_dbgate.lint.rules import Case, Context
from pytest_dbgate.migrations.parse import Statement, option_on

RULE = Rule(
    "rewrite-command",
    "lock",
    "VACUUM FULL or CLUSTER",
    "it rewrites the whole table (and its indexes) under ACCESS EXCLUSIVE: reads and writes "
    "wait until it is done",
    "leave it out of the release; plain VACUUM, or pg_repack (REPACK CONCURRENTLY from "
    "PostgreSQL 19) outside it, reclaims the space without blocking",
    source="dbgate",
)
COVERED_BY = frozenset({"prefer-repack"})
SUPERSEDES: frozenset[str] = frozenset()
CASES = (
    Case("VACUUM FULL t;", fires=True),
    Case("VACUUM (FULL, ANALYZE) t;", fires=True),
    Case("CLUSTER t USING t_pkey;", fires=True),
    Case("VACUUM ANALYZE t;", fires=False),
)


def check(statement: Statement, context: Context) -> Iterator[Check]:
    node = statement.tree
    if isinstance(node, ast.VacuumStmt) and node.is_vacuumcmd:
        full = any(
            getattr(o, "defname", None) == "full" and option_on(o) for o in node.options or ()
        )
        if full:
            for rel in node.rels or ():
                table = relation_name(getattr(rel, "relation", None))
                yield RULE.id, table, f"VACUUM FULL of {table or 'every table'}"
            if not node.rels:
                yield RULE.id, None, "VACUUM FULL of every table of the database"
    elif isinstance(node, ast.ClusterStmt):
        table = relation_name(node.relation)
        yield RULE.id, table, f"CLUSTER of {table or 'every clustered table'}"
