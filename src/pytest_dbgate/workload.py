"""The workload file: representative queries with literal parameters, run a fixed number of times.

One query per statement; a ``-- name: <label>`` comment right before a query names its
performance item (``performance::query[<label>]``), otherwise it is numbered. Only data queries
(SELECT, INSERT, UPDATE, DELETE, WITH, VALUES, TABLE) are allowed, and every run is rolled back,
so a workload that writes measures the write without changing staging.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from pglast import ast

from pytest_dbgate.exceptions import ConfigError
from pytest_dbgate.migrations import chunks

NAME = re.compile(r"--\s*name:\s*(?P<name>[A-Za-z0-9_.-]+)\s*$")
DATA_STATEMENTS = (ast.SelectStmt, ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt)
WARM_UP_RUNS = 3

Conn = psycopg.Connection[tuple[object, ...]]


@dataclass(frozen=True)
class WorkloadQuery:
    label: str
    sql: str
    line: int


def parse_workload(path: Path) -> list[WorkloadQuery]:
    """The workload's queries; a ``ConfigError`` naming the file and line for anything wrong."""
    if not path.is_file():
        raise ConfigError.workload_missing(path)
    text = path.read_text()
    queries: list[WorkloadQuery] = []
    for number, chunk in enumerate(chunks(path, text, ConfigError.workload_malformed), start=1):
        if not isinstance(chunk.node, DATA_STATEMENTS):
            raise ConfigError.workload_malformed(
                path,
                chunk.line,
                f"only data queries belong in a workload, not {type(chunk.node).__name__}",
            )
        label = _label(text, chunk.start) or str(number)
        queries.append(WorkloadQuery(label, _strip_leading_comments(chunk.body), chunk.line))
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


def run_workload(conn: Conn, queries: list[WorkloadQuery], runs: int) -> None:
    """Run every query ``runs`` times, each run in a transaction that is rolled back."""
    for query in queries:
        for _ in range(runs):
            with conn.transaction(force_rollback=True):
                conn.execute(query.sql)


def warm_up(conn: Conn, queries: list[WorkloadQuery]) -> None:
    run_workload(conn, queries, WARM_UP_RUNS)
