"""The gate lock: one pytest-dbgate run per target at a time, and who holds it otherwise.

A session advisory lock, held for the run. It also guards exactly-once: a run killed mid-deploy
leaves its server session behind until the statement it was running ends, and that session
keeps the lock, so a re-run cannot start while a statement of the old run may still commit.
When the lock is taken, the message says by whom, whether that run looks alive, and what to do.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row

from pytest_dbgate.core.errors import SafetyError
from pytest_dbgate.pg.connections import Conn

GATE_LOCK_WAIT_S = 5.0
NAMESPACE = "pytest-dbgate"

HOLDER = """
SELECT a.pid, coalesce(a.application_name, '') AS application, coalesce(a.state, '') AS state,
       a.backend_start,
       round(extract(epoch FROM now() - coalesce(a.state_change, a.backend_start)))::int
           AS state_seconds,
       left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 160) AS query
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.classid = hashtext(%s)::oid AND l.objid = hashtext(%s)::oid
"""

# The application_name a run gives its sessions names its own process, so another run can tell
# whether it is still alive: "pytest-dbgate deploy, pid 4242 on ci-runner-7".
CLIENT = re.compile(r"pid (?P<pid>\d+) on (?P<host>\S+)")


def client_tag() -> str:
    """``pid <n> on <host>``: this process, as the sessions it opens say it."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


@dataclass(frozen=True)
class Holder:
    """The session that holds the gate lock."""

    pid: int
    application: str
    state: str
    backend_start: datetime
    state_seconds: int | None
    query: str

    def describe(self) -> str:
        doing = f"{self.state or 'unknown state'}"
        if self.state_seconds is not None:
            doing += f" for {self.state_seconds} s"
        running = f", running: {self.query}" if self.query and self.state == "active" else ""
        return (
            f'server process {self.pid} ("{self.application or "no application_name"}", {doing}, '
            f"connected at {self.backend_start:%Y-%m-%d %H:%M:%S %Z}{running})"
        )

    def liveness(self) -> str:
        """Whether the run that holds it is alive, as far as this machine can tell."""
        found = CLIENT.search(self.application)
        if found is None:
            return "find the run that opened this session (its CI job) and see whether it is alive"
        pid, host = int(found["pid"]), found["host"]
        if host != socket.gethostname():
            return f"see whether process {pid} on {host} (that run's CI job) is still running"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return (
                f"its client, process {pid} on this machine, is no longer running: this session "
                "is what a killed run left behind"
            )
        except PermissionError:
            pass
        return f"its client, process {pid} on this machine, is still running: that run is alive"


def take_gate_lock(conn: Conn, key: str, where: str, wait_s: float = GATE_LOCK_WAIT_S) -> None:
    """Hold the gate lock on ``key`` for the run, so two runs never interleave on a target.

    A run that has just ended may hold it for a moment more (its server process is still
    exiting), so wait a few seconds before calling the target busy.
    """
    deadline = time.monotonic() + wait_s
    while True:
        row = conn.execute(
            "SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))", (NAMESPACE, key)
        ).fetchone()
        if row and row[0]:
            return
        if time.monotonic() >= deadline:
            raise _busy(conn, key, where)
        time.sleep(0.1)


def keep_gate_lock(conn: Conn, key: str, where: str) -> None:
    """Hold the lock on ``key`` again (a no-op when it is held): a statement may have let it go
    (``DISCARD ALL``, ``pg_advisory_unlock_all()``). Another run cannot have taken it meanwhile
    while this run holds its other lock; if one did, stop."""
    row = conn.execute(
        "SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))", (NAMESPACE, key)
    ).fetchone()
    if not (row and row[0]):
        raise _busy(conn, key, where)


def _busy(conn: Conn, key: str, where: str) -> SafetyError:
    with conn.cursor(row_factory=class_row(Holder)) as cur:
        holder = cur.execute(HOLDER, (NAMESPACE, key)).fetchone()
    if holder is None:  # it was released meanwhile, or this role cannot see the holder
        return SafetyError.gate_running(where, "", "wait for it to finish, then re-run")
    return SafetyError.gate_running(
        where,
        holder.describe(),
        f"{holder.liveness()}. A live run must be let finish: two runs must not interleave. "
        "A killed run (kill -9, a cancelled CI job) leaves its session behind until the "
        "statement it was running ends (within about a second where PostgreSQL notices the "
        "client is gone, 14 and later); if the lock is still held, end that session with "
        f"SELECT pg_terminate_backend({holder.pid}); then re-run: the deploy reads its journal "
        "and resumes after the last statement known applied",
    )
