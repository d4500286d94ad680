"""One execution of a workload query, timed by the server, and where its time went.

Each run is ``EXPLAIN (ANALYZE, TIMING OFF, BUFFERS, FORMAT JSON)`` inside a transaction that is
rolled back. The server's *Execution Time* is what the criterion compares: it includes the
triggers a write fires, the functions the query calls and JIT compilation, and excludes what the
network and the client add, which are noise to a comparison of two schemas. ``TIMING OFF`` keeps
the per-row clock reads out (they would cost more than a fast query itself); the plan's scans and
the shared blocks it touched come with the same run, so time, work and plan describe the very same
execution.

Why a slowdown happened is asked only of a query that regressed (:func:`where_time_went`): one
run with per-node timing, trigger times, and, where the role may set ``track_functions``, the
time spent in each user function.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pytest_dbgate.performance.stats import MARKER, plan_nodes
from pytest_dbgate.pg.connections import Conn

RUN = "EXPLAIN (ANALYZE, TIMING OFF, BUFFERS, FORMAT JSON) {}"
TIMED = "EXPLAIN (ANALYZE, TIMING ON, BUFFERS, FORMAT JSON) {}"
FUNCTIONS = f"""
SELECT {MARKER} format('%I.%I', schemaname, funcname) AS name, calls, total_time
FROM pg_stat_xact_user_functions
WHERE calls > 0
"""


@dataclass(frozen=True)
class Run:
    """What one execution cost."""

    ms: float
    blocks: int
    plan: tuple[str, ...]


@dataclass(frozen=True)
class Breakdown:
    """Where one execution's time went, for the message of a regressed query."""

    ms: float
    triggers: dict[str, float] = field(default_factory=dict)  # "name on table": ms
    functions: dict[str, float] = field(default_factory=dict)  # "schema.name": ms, all calls
    jit_ms: float | None = None


def _document(row: tuple[object, ...] | None) -> Mapping[str, object]:
    assert row is not None
    document = row[0]
    if isinstance(document, str):
        document = json.loads(document)
    assert isinstance(document, list)
    top = document[0]
    assert isinstance(top, dict)
    return top


def run_once(conn: Conn, text: str) -> Run:
    """Execute ``text`` once and roll it back; a ``psycopg.Error`` when it fails."""
    with conn.transaction(force_rollback=True):
        top = _document(conn.execute(sql.SQL(RUN).format(sql.SQL(text))).fetchone())
    plan = top["Plan"]
    assert isinstance(plan, dict)
    blocks = int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))
    return Run(float(str(top["Execution Time"])), blocks, tuple(plan_nodes(plan)))


def where_time_went(conn: Conn, text: str) -> Breakdown | None:
    """One timed run with triggers, user functions and JIT broken out; ``None`` if it fails."""
    try:
        with conn.transaction(force_rollback=True):
            functions = _track_functions(conn)
            top = _document(conn.execute(sql.SQL(TIMED).format(sql.SQL(text))).fetchone())
            spent: dict[str, float] = {}
            if functions:
                with conn.cursor(row_factory=dict_row) as cur:
                    for row in cur.execute(FUNCTIONS):
                        spent[str(row["name"])] = float(row["total_time"])
    except psycopg.Error:
        return None
    triggers: dict[str, float] = {}
    for trigger in top.get("Triggers", []) or []:  # type: ignore[attr-defined]
        name = f"{trigger['Trigger Name']} on {trigger.get('Relation', '?')}"
        triggers[name] = triggers.get(name, 0.0) + float(trigger.get("Time", 0.0))
    jit = top.get("JIT")
    jit_ms = None
    if isinstance(jit, dict) and isinstance(jit.get("Timing"), dict):
        total = jit["Timing"].get("Total")
        jit_ms = float(total) if isinstance(total, (int, float)) else None
    return Breakdown(float(str(top["Execution Time"])), triggers, spent, jit_ms)


def _track_functions(conn: Conn) -> bool:
    """Count user functions' time for this transaction, if this role may (superusers only)."""
    try:
        with conn.transaction():
            conn.execute("SET LOCAL track_functions = 'all'")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True
