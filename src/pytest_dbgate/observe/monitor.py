"""The monitor: a thread polling pg_locks and pg_stat_activity while a migration runs."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg.rows import args_row

from pytest_dbgate.migrations.parse import Statement
from pytest_dbgate.pg.connections import Conn

POLL_INTERVAL_S = 0.02


# The migration's relation locks in this database, and every lock the watched sessions (the
# migration and the traffic) are waiting for, with who is in their way.
# (A table the migration is creating is not visible yet from here: it has no pg_class row for
# this session, so the join leaves it out; nobody else can be waiting for it either.)
POLL = """
SELECT l.pid, l.relation::regclass::text, l.mode, l.granted, pg_blocking_pids(l.pid)
FROM pg_locks l
WHERE (l.pid = %(migration)s AND l.granted AND l.locktype = 'relation'
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = l.relation
                   AND c.relkind IN ('r', 'p', 'm')
                   AND c.relnamespace <> 'pg_catalog'::regnamespace))
   OR (NOT l.granted AND l.pid = ANY(%(watched)s))
"""


# The same, when the migration is every session the watch did not open (a tool's own).
POLL_OTHERS = """
SELECT l.pid, l.relation::regclass::text, l.mode, l.granted, pg_blocking_pids(l.pid)
FROM pg_locks l
WHERE l.pid <> ALL(%(ours)s) AND l.pid <> pg_backend_pid()
  AND ((l.granted AND l.locktype = 'relation'
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = l.relation
                    AND c.relkind IN ('r', 'p', 'm')
                    AND c.relnamespace <> 'pg_catalog'::regnamespace))
       OR NOT l.granted)
UNION ALL
SELECT l.pid, l.relation::regclass::text, l.mode, l.granted, pg_blocking_pids(l.pid)
FROM pg_locks l WHERE NOT l.granted AND l.pid = ANY(%(ours)s)
"""


WHO = """
SELECT pid, coalesce(application_name, ''), coalesce(state, ''),
       left(regexp_replace(coalesce(query, ''), '\\s+', ' ', 'g'), 200)
FROM pg_stat_activity WHERE pid = ANY(%s)
"""


@dataclass(frozen=True)
class LockRow:
    """A row of :data:`POLL`: a lock held or awaited, and who stands in its way."""

    pid: int
    relation: str | None
    mode: str
    granted: bool
    blocked_by: list[int] | None


@dataclass(frozen=True)
class Who:
    """A row of :data:`WHO`."""

    pid: int
    application: str
    state: str
    query: str


@dataclass
class Seen:
    first: float
    last: float


@dataclass
class Monitor:
    """Polls pg_locks in its own thread while a migration runs."""

    connect: Callable[[], Conn]
    migration_pid: int | None  # None: every session but ``ours`` is the migration's
    traffic_pids: list[int]
    ours: list[int] = field(default_factory=list)  # the watch's own sessions
    interval: float = POLL_INTERVAL_S
    held: dict[tuple[str, str], Seen] = field(default_factory=dict)
    waiting: dict[int, list[Seen]] = field(default_factory=dict)
    blockers: dict[int, Seen] = field(default_factory=dict)
    who: dict[int, tuple[str, str, str]] = field(default_factory=dict)
    polls: int = 0
    error: str | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Conn | None = None

    def start(self) -> None:
        self._conn = self.connect()
        self.ours = [*self.ours, self._conn.info.backend_pid]
        self._thread = threading.Thread(target=self._loop, daemon=True, name="dbgate-monitor")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except psycopg.Error as exc:
                self.error = str(exc).splitlines()[0]
                return
            self._stop.wait(self.interval)

    def poll(self) -> None:
        assert self._conn is not None
        with self._conn.cursor(row_factory=args_row(LockRow)) as cur:
            if self.migration_pid is not None:
                watched = [self.migration_pid, *self.traffic_pids]
                cur.execute(POLL, {"migration": self.migration_pid, "watched": watched})
            else:
                cur.execute(POLL_OTHERS, {"ours": self.ours})
            rows = cur.fetchall()
        # Stamped when the answer is in: pg_locks was read at some moment of the round trip,
        # and a session seen waiting may have started its query during it.
        now = time.monotonic()
        self.polls += 1
        waiting_now: set[int] = set()
        blockers_now: set[int] = set()
        for row in rows:
            pid, relation, mode, granted = row.pid, row.relation, row.mode, row.granted
            blocking = row.blocked_by or []
            migrating = self._migrating(pid)
            if migrating and granted and relation:
                seen = self.held.setdefault((relation, mode), Seen(now, now))
                seen.last = now
            elif migrating and not granted:
                blockers_now.update(b for b in blocking if b not in self.traffic_pids)
            elif not migrating and any(self._migrating(b) for b in blocking):
                waiting_now.add(pid)
        for pid in waiting_now:
            spans = self.waiting.setdefault(pid, [])
            if spans and now - spans[-1].last <= self.interval * 3:
                spans[-1].last = now
            else:
                spans.append(Seen(now, now))
        for pid in blockers_now:
            seen = self.blockers.setdefault(pid, Seen(now, now))
            seen.last = now
        unknown = [p for p in blockers_now if p not in self.who]
        if unknown:
            with self._conn.cursor(row_factory=args_row(Who)) as cur:
                for who in cur.execute(WHO, (unknown,)).fetchall():
                    self.who[who.pid] = (who.application, who.state, who.query)

    def _migrating(self, pid: int) -> bool:
        if self.migration_pid is None:
            return pid not in self.ours
        return pid == self.migration_pid

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self.poll()  # the last word: whatever is still held at the end
            with contextlib.suppress(Exception):
                self._conn.close()


# Locks on tables only (not their indexes, sequences or TOAST): what traffic queues behind.
OWN_LOCKS = """
SELECT l.relation::regclass::text, l.mode
FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
  AND c.relkind IN ('r', 'p', 'm') AND c.relnamespace <> 'pg_catalog'::regnamespace
"""


class Timeline:
    """When each statement started, and, inside a transaction, the locks it had taken by its
    end: exact, however brief, and held until the transaction commits."""

    def __init__(self) -> None:
        self.starts: list[tuple[float, Statement]] = []
        self.taken: dict[tuple[str, str], tuple[float, Statement]] = {}
        self.ended: float | None = None

    def started(self, statement: Statement) -> None:
        self.starts.append((time.monotonic(), statement))

    def finished(self, statement: Statement, conn: Conn, in_transaction: bool) -> None:
        if not in_transaction:
            return
        begun = self.starts[-1][0]
        for relation, mode in conn.execute(OWN_LOCKS).fetchall():
            self.taken.setdefault((str(relation), str(mode)), (begun, statement))

    def statement_at(self, moment: float) -> Statement | None:
        """The statement running at ``moment`` (the last one started before it)."""
        current = None
        for started, statement in self.starts:
            if started <= moment + POLL_INTERVAL_S:
                current = statement
        return current
