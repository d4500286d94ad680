"""Simulated application traffic: readers and writers sending queries to the tables a migration
touches, timing how long each waits."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg

from pytest_dbgate.pg.connections import Conn


@dataclass(frozen=True)
class Target:
    """A table with rows, and how the simulated application reads and writes it."""

    table: str
    reads: tuple[str, ...]
    write: str


@dataclass(frozen=True)
class Probe:
    table: str
    kind: str
    pid: int
    start: float
    end: float
    error: str | None = None

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1000


def targets(conn: Conn, relations: Sequence[str], reads: dict[str, list[str]]) -> list[Target]:
    """The touched relations that are tables with rows now, with reads and a write for each.

    Reads are the workload's queries on the table where there are some (``reads`` maps the
    names they use to queries), a one-row SELECT otherwise; the write is a no-op UPDATE of a
    random row, rolled back: it takes the locks a real write takes, and changes nothing.
    """
    resolved: dict[str, list[str]] = {}
    for name, queries in reads.items():
        row = conn.execute("SELECT to_regclass(%s)::text", (name,)).fetchone()
        if row and row[0]:
            resolved.setdefault(str(row[0]), []).extend(queries)
    found: list[Target] = []
    for name in relations:
        row = conn.execute(
            "SELECT c.oid::regclass::text, (SELECT quote_ident(attname) FROM pg_attribute"
            " WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum LIMIT 1)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p') AND c.reltuples <> 0"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
            (name,),
        ).fetchone()
        if row is None or row[1] is None:
            continue
        table, column = str(row[0]), str(row[1])  # regclass text comes quoted as needed
        write = (
            f"UPDATE {table} SET {column} = {column} WHERE ctid = "
            f"(SELECT ctid FROM {table} TABLESAMPLE SYSTEM (1) LIMIT 1)"
        )
        own_reads = tuple(resolved.get(table, ())) or (f"SELECT * FROM {table} LIMIT 1",)
        found.append(Target(table, own_reads, write))
    return list({t.table: t for t in found}.values())


class Traffic:
    """Reader and writer sessions probing the target tables until stopped."""

    def __init__(self, connect: Callable[[], Conn], targets: Sequence[Target], rate: float) -> None:
        self._connect = connect
        self._targets = list(targets)
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[Conn] = []
        self.probes: list[Probe] = []
        self._lock = threading.Lock()

    @property
    def pids(self) -> list[int]:
        return [c.info.backend_pid for c in self._conns]

    def open(self) -> None:
        for target in self._targets:
            for kind in ("read", "write"):
                conn = self._connect()
                self._conns.append(conn)
                thread = threading.Thread(
                    target=self._run, args=(conn, target, kind), daemon=True, name="dbgate-traffic"
                )
                self._threads.append(thread)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _run(self, conn: Conn, target: Target, kind: str) -> None:
        pid = conn.info.backend_pid
        turn = 0
        while not self._stop.is_set():
            started = time.monotonic()
            error = None
            try:
                # Rolled back either way: a function a read calls may write.
                with conn.transaction(force_rollback=True):
                    conn.execute(
                        target.reads[turn % len(target.reads)] if kind == "read" else target.write
                    )
            except psycopg.Error as exc:
                error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
            ended = time.monotonic()
            with self._lock:
                self.probes.append(Probe(target.table, kind, pid, started, ended, error))
            turn += 1
            self._stop.wait(max(self._interval - (ended - started), 0.001))

    def stop(self) -> None:
        self._stop.set()
        for conn in self._conns:
            with contextlib.suppress(Exception):
                conn.cancel_safe(timeout=2)
        for thread in self._threads:
            thread.join(timeout=10)
        for conn in self._conns:
            with contextlib.suppress(Exception):
                conn.close()
