"""The connect stage's criteria: staging reachable, connections to spare."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from psycopg.rows import class_row

from pytest_dbgate.core.criterion import Criterion, Figures
from pytest_dbgate.core.errors import CriterionFailed
from pytest_dbgate.core.run import Database
from pytest_dbgate.staging.gate import Gate


@dataclass(frozen=True)
class StagingReachable(Criterion[Gate]):
    stage: ClassVar[str] = "connect"

    def check(self, gate: Gate) -> Figures:
        import time

        server = gate.staging_server()
        started = time.monotonic()
        conn = gate.staging_connection(purpose="app check")
        row = conn.execute("SELECT current_user, current_database()").fetchone() or ("", "")
        elapsed_ms = (time.monotonic() - started) * 1000
        return {
            "summary": f"as {row[0]} in {elapsed_ms:.0f} ms",
            "staging": server.where,
            "user": str(row[0]),
            "database": str(row[1]),
            "connect_ms": round(elapsed_ms, 1),
        }


POOL = """
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS reserved,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS in_use,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       (SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user) AS role_limit,
       (SELECT count(*) FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND usename = current_user) AS role_in_use
"""

GATE_CONNECTIONS = 2  # the migration session and the lock monitor


@dataclass(frozen=True)
class PoolHeadroom(Criterion[Gate]):
    stage: ClassVar[str] = "connect"
    pool_size: int = 0

    def check(self, gate: Gate) -> Figures:
        return pool_headroom(gate.staging_server(), "staging", self.pool_size)


@dataclass(frozen=True)
class Connections:
    """A row of :data:`POOL`."""

    max_connections: int
    reserved: int
    in_use: int
    superuser: bool
    role_limit: int  # -1: the role has no connection limit (as pg_roles says)
    role_in_use: int


def pool_headroom(server: Database, side: str, pool_size: int) -> Figures:
    """Room for the migration, the monitor and the application's pool; fails when short."""
    with server.conn.cursor(row_factory=class_row(Connections)) as cur:
        row = cur.execute(POOL).fetchone()
    assert row is not None  # one row of sub-selects
    max_conn, reserved, in_use = row.max_connections, row.reserved, row.in_use
    usable = max_conn - (0 if row.superuser else reserved)
    headroom = usable - in_use
    limit_note = ""
    if row.role_limit >= 0:
        role_room = row.role_limit - row.role_in_use
        if role_room < headroom:
            headroom = role_room
            limit_note = f" (role connection limit {row.role_limit}, {row.role_in_use} in use)"
    needed = pool_size + GATE_CONNECTIONS
    pool = f" and the application pool {pool_size}" if pool_size else ""
    figures: Figures = {
        "max_connections": max_conn,
        "reserved": reserved,
        "in_use": in_use,
        "headroom": headroom,
        "needed": needed,
    }
    figures["summary"] = f"{headroom} free of {max_conn}, {needed} needed"
    if headroom < needed:
        raise CriterionFailed(
            f"{side} {server.where} has room for {headroom} more connection(s){limit_note}: "
            f"max_connections {max_conn}, {reserved} reserved, {in_use} in use; the gate needs "
            f"{GATE_CONNECTIONS} (the migration and a second session){pool}\n"
            "  raise max_connections (or the role's CONNECTION LIMIT), close idle sessions, "
            "or lower the pool size (dbgate_pool_size) to what the app really opens",
            figures,
        )
    return figures
