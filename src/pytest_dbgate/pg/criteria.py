"""The connect stage's criteria: staging reachable, connections to spare."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

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
SELECT current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
       (SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user),
       (SELECT count(*) FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND usename = current_user)
"""

GATE_CONNECTIONS = 2  # the migration session and the lock monitor


@dataclass(frozen=True)
class PoolHeadroom(Criterion[Gate]):
    stage: ClassVar[str] = "connect"
    pool_size: int = 0

    def check(self, gate: Gate) -> Figures:
        return pool_headroom(gate.staging_server(), "staging", self.pool_size)


def pool_headroom(server: Database, side: str, pool_size: int) -> Figures:
    """Room for the migration, the monitor and the application's pool; fails when short."""
    max_conn, reserved, in_use, superuser, role_limit, role_in_use = server.conn.execute(
        POOL
    ).fetchone() or (0, 0, 0, False, -1, 0)
    usable = int(str(max_conn)) - (0 if superuser else int(str(reserved)))
    headroom = usable - int(str(in_use))
    limit_note = ""
    if int(str(role_limit)) >= 0:
        role_room = int(str(role_limit)) - int(str(role_in_use))
        if role_room < headroom:
            headroom = role_room
            limit_note = f" (role connection limit {role_limit}, {role_in_use} in use)"
    needed = pool_size + GATE_CONNECTIONS
    pool = f" and the application pool {pool_size}" if pool_size else ""
    figures: Figures = {
        "max_connections": int(str(max_conn)),
        "reserved": int(str(reserved)),
        "in_use": int(str(in_use)),
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
