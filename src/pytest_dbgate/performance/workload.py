"""The workload file: representative queries with literal parameters.

One query per statement; a ``-- name: <label>`` comment right before a query names its
performance item (``performance::query[<label>]``), otherwise it is numbered. Only data queries
(SELECT, INSERT, UPDATE, DELETE, MERGE, WITH, VALUES, TABLE) are allowed. Every measured run is
rolled back
(:mod:`pytest_dbgate.performance.timing`), so a workload that writes measures the write without
changing staging; the lock watch's simulated readers use only the queries that do not write
(:attr:`WorkloadQuery.writes`), and roll back too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pglast import ast

from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.migrations.parse import chunks
from pytest_dbgate.migrations.sqltext import read_sql

NAME = re.compile(r"--\s*name:\s*(?P<name>[A-Za-z0-9_.-]+)\s*$")
WRITES = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)
DATA_STATEMENTS = (ast.SelectStmt, *WRITES)


@dataclass(frozen=True)
class WorkloadQuery:
    label: str
    sql: str
    line: int
    # Whether it writes (or locks rows) by itself: an INSERT, UPDATE, DELETE or MERGE, a WITH
    # holding one, or SELECT … FOR UPDATE/SHARE. A function it calls may write too, which only
    # running it in a rolled-back transaction guards against.
    writes: bool = False


def parse_workload(path: Path) -> list[WorkloadQuery]:
    """The workload's queries; a ``ConfigError`` naming the file and line for anything wrong."""
    if not path.is_file():
        raise ConfigError.workload_missing(path)
    text = read_sql(path, "workload file")
    queries: list[WorkloadQuery] = []
    for number, chunk in enumerate(chunks(path, text, ConfigError.workload_malformed), start=1):
        if not isinstance(chunk.node, DATA_STATEMENTS):
            raise ConfigError.workload_malformed(
                path,
                chunk.line,
                f"only data queries belong in a workload, not {type(chunk.node).__name__}",
            )
        label = _label(text, chunk.start) or str(number)
        body = _strip_leading_comments(chunk.body)
        queries.append(WorkloadQuery(label, body, chunk.line, writes=_writes(chunk.node)))
    if not queries:
        raise ConfigError.workload_malformed(path, 1, "the file holds no query")
    labels = [q.label for q in queries]
    duplicate = next((label for label in labels if labels.count(label) > 1), None)
    if duplicate is not None:
        raise ConfigError.workload_malformed(path, 1, f"the name {duplicate!r} is used twice")
    return queries


def _label(text: str, start: int) -> str | None:
    """The ``-- name:`` comment among the lines just above a statement."""
    above = text[:start].rstrip().splitlines()
    for line in reversed(above[-5:]):
        stripped = line.strip()
        if not stripped:
            continue
        match = NAME.match(stripped)
        if match:
            return match.group("name")
        if not stripped.startswith("--"):
            return None
    return None


def _strip_leading_comments(sql: str) -> str:
    lines = sql.splitlines()
    while lines and lines[0].strip().startswith("--"):
        lines.pop(0)
    return "\n".join(lines).strip()


def _writes(node: ast.Node) -> bool:
    if isinstance(node, WRITES):
        return True
    assert isinstance(node, ast.SelectStmt)
    if node.lockingClause:
        return True
    ctes = node.withClause.ctes if node.withClause is not None else None
    return any(isinstance(cte.ctequery, WRITES) for cte in ctes or ())
