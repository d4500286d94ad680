"""Locks while a migration runs: what it takes, for how long, and whom it blocks.

While a migration runs, simulated application traffic reads and writes the tables it touches
(one reader and one writer session per table, each probing at a modest rate; writes are rolled
back), and a monitor session polls ``pg_locks`` for the migration's session and the traffic's.
The monitor records every relation lock the migration holds (first and last time seen, so how
long it was held) and every probe that had to wait for the migration; the probe's own clock says
how long. A lock *blocks reads* when its mode conflicts with ACCESS SHARE (plain SELECT) and
*blocks writes* when it conflicts with ROW EXCLUSIVE (INSERT, UPDATE, DELETE), per PostgreSQL's
lock conflict table.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import psycopg
from pglast import parse_plpgsql, parse_sql
from pglast.parser import ParseError
from pglast.visitors import Visitor
from psycopg import sql

from pytest_dbgate.migrations.parse import Migration, Statement

Conn = psycopg.Connection[tuple[object, ...]]

POLL_INTERVAL_S = 0.02

# PostgreSQL's table-level lock conflict table (docs: "Explicit Locking").
CONFLICTS: dict[str, frozenset[str]] = {
    "AccessShareLock": frozenset({"AccessExclusiveLock"}),
    "RowShareLock": frozenset({"ExclusiveLock", "AccessExclusiveLock"}),
    "RowExclusiveLock": frozenset(
        {"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}
    ),
    "ShareUpdateExclusiveLock": frozenset(
        {
            "ShareUpdateExclusiveLock",
            "ShareLock",
            "ShareRowExclusiveLock",
            "ExclusiveLock",
            "AccessExclusiveLock",
        }
    ),
    "ShareLock": frozenset(
        {
            "RowExclusiveLock",
            "ShareUpdateExclusiveLock",
            "ShareRowExclusiveLock",
            "ExclusiveLock",
            "AccessExclusiveLock",
        }
    ),
    "ShareRowExclusiveLock": frozenset(
        {
            "RowExclusiveLock",
            "ShareUpdateExclusiveLock",
            "ShareLock",
            "ShareRowExclusiveLock",
            "ExclusiveLock",
            "AccessExclusiveLock",
        }
    ),
    "ExclusiveLock": frozenset(
        {
            "RowShareLock",
            "RowExclusiveLock",
            "ShareUpdateExclusiveLock",
            "ShareLock",
            "ShareRowExclusiveLock",
            "ExclusiveLock",
            "AccessExclusiveLock",
        }
    ),
}
CONFLICTS["AccessExclusiveLock"] = frozenset({*CONFLICTS, "AccessExclusiveLock"})


def blocks(mode: str) -> str:
    """What ordinary traffic a lock mode stops: ``reads and writes``, ``writes`` or ``nothing``."""
    conflicts = CONFLICTS.get(mode, frozenset())
    if "AccessShareLock" in conflicts:
        return "reads and writes"
    if "RowExclusiveLock" in conflicts:
        return "writes"
    return "nothing"


def sql_mode(mode: str) -> str:
    """``ShareRowExclusiveLock`` → ``SHARE ROW EXCLUSIVE``, as LOCK TABLE spells it."""
    words: list[str] = []
    for char in mode.removesuffix("Lock"):
        if char.isupper() and words:
            words.append(" ")
        words.append(char.upper())
    return "".join(words)


# -- what a migration touches ----------------------------------------------------------------


class _Relations(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def visit_RangeVar(self, parent: object, node: object) -> None:
        schema = getattr(node, "schemaname", None)
        name = str(getattr(node, "relname", ""))
        self.names.append(quoted(schema, name))


def quoted(*parts: str | None) -> str:
    """A relation's name as SQL spells it, each part quoted (``"app"."Document"``), so
    ``to_regclass`` finds exactly the relation the statement named, whatever its case or
    characters. (The parser has already folded unquoted names to lower case.)"""
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts if part)


def touched_relations(migration: Migration) -> list[str]:
    """Relations a migration's statements name, DO blocks' bodies included, in order."""
    found: list[str] = []
    for statement in migration.statements:
        found.extend(_relations_in(statement))
    return list(dict.fromkeys(found))


def _relations_in(statement: Statement) -> list[str]:
    if statement.node == "DoStmt":
        return relations_in_sql(_plpgsql_queries(statement.text))
    if statement.tree is not None:  # parsed at discovery: no need to parse again
        visitor = _Relations()
        visitor(statement.tree)
        return visitor.names
    return relations_in_sql([statement.text])


def relations_in_sql(texts: Sequence[str]) -> list[str]:
    """Relation names in SQL texts; PL/pgSQL expressions are tried as SELECT lists."""
    visitor = _Relations()
    for text in texts:
        for candidate in (text, f"SELECT {text}"):
            try:
                visitor(parse_sql(candidate))
                break
            except ParseError:
                continue
    return visitor.names


def _plpgsql_queries(do_statement: str) -> list[str]:
    """The SQL inside a DO block, as PL/pgSQL's parser sees it."""
    body = do_statement.strip()
    start, end = body.find("$"), body.rfind("$")
    if start < 0 or end <= start:
        return []
    quote_end = body.index("$", start + 1)
    tag = body[start : quote_end + 1]
    inner = body[quote_end + 1 : body.rfind(tag)]
    wrapper = (
        "CREATE FUNCTION dbgate_probe() RETURNS void LANGUAGE plpgsql AS "
        f"$dbgate_body${inner}$dbgate_body$"
    )
    try:
        tree = parse_plpgsql(wrapper)
    except ParseError:
        return []
    queries: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "query" and isinstance(value, str):
                    queries.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    return queries


# -- traffic ---------------------------------------------------------------------------------


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


# -- the monitor -------------------------------------------------------------------------------


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
        if self.migration_pid is not None:
            rows = self._conn.execute(
                POLL,
                {
                    "migration": self.migration_pid,
                    "watched": [self.migration_pid, *self.traffic_pids],
                },
            ).fetchall()
        else:
            rows = self._conn.execute(POLL_OTHERS, {"ours": self.ours}).fetchall()
        # Stamped when the answer is in: pg_locks was read at some moment of the round trip,
        # and a session seen waiting may have started its query during it.
        now = time.monotonic()
        self.polls += 1
        waiting_now: set[int] = set()
        blockers_now: set[int] = set()
        for pid_value, relation, mode, granted, blocked_by in rows:
            pid = int(str(pid_value))
            blocking = [int(str(b)) for b in blocked_by] if isinstance(blocked_by, list) else []
            migrating = self._migrating(pid)
            if migrating and granted and relation:
                seen = self.held.setdefault((str(relation), str(mode)), Seen(now, now))
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
            for row in self._conn.execute(WHO, (unknown,)).fetchall():
                self.who[int(str(row[0]))] = (str(row[1]), str(row[2]), str(row[3]))

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


# -- what happened -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldLock:
    relation: str
    mode: str
    held_ms: float
    statement: Statement | None
    has_rows: bool

    @property
    def blocks(self) -> str:
        return blocks(self.mode)

    @property
    def dangerous(self) -> bool:
        return self.has_rows and self.blocks != "nothing"


@dataclass(frozen=True)
class BlockedProbe:
    table: str
    kind: str
    waited_ms: float
    mode: str


@dataclass(frozen=True)
class MigrationWait:
    pid: int
    application: str
    state: str
    query: str
    waited_ms: float


@dataclass
class LockReport:
    """What one migration locked and whom it blocked."""

    migration: Migration
    locks: list[HeldLock] = field(default_factory=list)
    blocked: list[BlockedProbe] = field(default_factory=list)
    waits: list[MigrationWait] = field(default_factory=list)
    blockers_before: list[str] = field(default_factory=list)
    probes: int = 0
    polls: int = 0
    tables: list[str] = field(default_factory=list)
    monitor_error: str | None = None

    @property
    def max_blocked_ms(self) -> float:
        return max((b.waited_ms for b in self.blocked), default=0.0)

    def blocked_by_table(self) -> dict[str, tuple[int, float, float]]:
        """table → (blocked probes, longest wait ms, total wait ms)."""
        out: dict[str, tuple[int, float, float]] = {}
        for b in self.blocked:
            count, longest, total = out.get(b.table, (0, 0.0, 0.0))
            out[b.table] = (count + 1, max(longest, b.waited_ms), total + b.waited_ms)
        return out


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


def biggest_tables(conn: Conn, count: int = 10) -> list[str]:
    """The tables with the most rows: where traffic goes when what a migration touches is not
    known beforehand (the project's own tool runs it)."""
    rows = conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND c.reltuples > 0"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"
        " ORDER BY c.reltuples DESC LIMIT %s",
        (count,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def tables_with_rows(conn: Conn) -> set[str]:
    """Tables that had rows before the migration; locks on new or empty tables harm nobody."""
    rows = conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'm') AND c.reltuples <> 0"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"
    ).fetchall()
    return {str(r[0]) for r in rows}


BLOCKERS = """
SELECT a.pid, coalesce(a.application_name, ''), a.state,
       round(extract(epoch FROM now() - a.xact_start) * 1000)::bigint,
       left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 120),
       EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.granted
               AND l.relation = ANY(SELECT to_regclass(r) FROM unnest(%(rels)s::text[]) r))
           AS holds
FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
  AND a.pid <> ALL(%(ours)s) AND a.backend_type = 'client backend'
  AND a.xact_start IS NOT NULL
"""


def blockers(
    conn: Conn,
    ours: Sequence[int],
    relations: Sequence[str],
    *,
    open_longer_ms: float = 1000,
    idle_longer_ms: float = 0,
    lock_holders: bool = True,
) -> list[str]:
    """Sessions that would hold up a migration, one line each: a transaction open longer than
    ``open_longer_ms``, idle in transaction longer than ``idle_longer_ms``, or (with
    ``lock_holders``) holding a lock on one of ``relations``."""
    rows = conn.execute(
        sql.SQL(BLOCKERS)
        + sql.SQL(
            " AND (now() - a.xact_start > %(open)s * interval '1 millisecond'"
            " OR (a.state LIKE 'idle in transaction%%'"
            "     AND now() - a.state_change > %(idle)s * interval '1 millisecond')"
            " OR (%(holders)s AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid"
            "     AND l.relation = ANY(SELECT to_regclass(r) FROM unnest(%(rels)s::text[]) r))))"
            " ORDER BY a.xact_start"
        ),
        {
            "ours": list(ours),
            "rels": list(relations),
            "open": open_longer_ms,
            "idle": idle_longer_ms,
            "holders": lock_holders,
        },
    ).fetchall()
    return [
        f"pid {pid} ({app or 'no application_name'}, {state}, transaction open {age} ms"
        + (", holds locks on the tables it touches" if holds else "")
        + f"): {query}"
        for pid, app, state, age, query, holds in rows
    ]


def blockers_before(conn: Conn, ours: Sequence[int], relations: Sequence[str]) -> list[str]:
    """Sessions that would hold up a migration on staging: in a transaction for a second or
    more, idle in transaction, or holding locks on what it touches."""
    return blockers(conn, ours, relations)


def statement_relations(statement: Statement) -> list[str]:
    """Relations one statement names (a DO block's body included)."""
    return _relations_in(statement)


@contextlib.contextmanager
def watching(
    connect: Callable[[], Conn],
    migration: Migration,
    migration_conn: Conn | None,
    reads: dict[str, list[str]],
    rate: float,
) -> Iterator[tuple[LockReport, Timeline]]:
    """Traffic and monitor around one migration; the report is filled when the block ends.

    The caller tells the timeline when each statement starts and ends. Without a migrating
    session (``None``: the project's own tool migrates, in sessions of its own), every session
    the watch did not open is the migration's, and the traffic goes to the biggest tables.
    Every session and thread started here is stopped here, whatever happens inside.
    """
    report = LockReport(migration)
    timeline = Timeline()
    traffic: Traffic | None = None
    monitor: Monitor | None = None
    probe_conn = connect()
    try:
        relations = (
            touched_relations(migration)
            if migration_conn is not None
            else biggest_tables(probe_conn)
        )
        with_rows = tables_with_rows(probe_conn)
        chosen = targets(probe_conn, relations, reads) if rate > 0 else []
        report.tables = [t.table for t in chosen]
        traffic = Traffic(connect, chosen, rate)
        traffic.open()
        pid = migration_conn.info.backend_pid if migration_conn is not None else None
        ours = [probe_conn.info.backend_pid, *traffic.pids, *([pid] if pid else [])]
        report.blockers_before = blockers_before(probe_conn, ours, relations)
        monitor = Monitor(connect, pid, traffic.pids, ours=ours)
        monitor.start()
        traffic.start()
        yield report, timeline
        timeline.ended = time.monotonic()
    finally:
        if traffic is not None:
            traffic.stop()
        if monitor is not None:
            monitor.stop()
        probe_conn.close()
    assert monitor is not None and traffic is not None
    _fill(report, monitor, traffic, timeline, with_rows)


def _fill(
    report: LockReport,
    monitor: Monitor,
    traffic: Traffic,
    timeline: Timeline,
    with_rows: set[str],
) -> None:
    report.polls = monitor.polls
    report.monitor_error = monitor.error
    report.probes = len(traffic.probes)
    held: dict[tuple[str, str], tuple[float, Statement | None]] = {}
    for key, seen in monitor.held.items():
        polled = (seen.last - seen.first) * 1000 + monitor.interval * 1000
        held[key] = (polled, timeline.statement_at(seen.first))
    end = timeline.ended or time.monotonic()
    for key, (begun, statement) in timeline.taken.items():
        # The session's own view names the statement exactly; the poller may only have
        # caught the lock during a later one.
        polled = held[key][0] if key in held else 0.0
        held[key] = (max(polled, (end - begun) * 1000), statement)
    for (relation, mode), (ms, taken_by) in held.items():
        report.locks.append(HeldLock(relation, mode, ms, taken_by, relation in with_rows))
    report.locks.sort(key=lambda lock: (-int(lock.dangerous), -lock.held_ms))
    strongest = _strongest_modes(report.locks)
    for probe in traffic.probes:
        spans = monitor.waiting.get(probe.pid, [])
        slack = monitor.interval
        if any(probe.start - slack <= span.first <= probe.end + slack for span in spans):
            report.blocked.append(
                BlockedProbe(
                    probe.table, probe.kind, probe.ms, strongest.get(probe.table, "row locks")
                )
            )
    for pid, seen in monitor.blockers.items():
        app, state, query = monitor.who.get(pid, ("", "", ""))
        waited = (seen.last - seen.first) * 1000 + monitor.interval * 1000
        report.waits.append(MigrationWait(pid, app, state, query, waited))


def _strongest_modes(locks: Sequence[HeldLock]) -> dict[str, str]:
    order = list(CONFLICTS)
    strongest: dict[str, str] = {}
    for lock in locks:
        current = strongest.get(lock.relation)
        if current is None or order.index(lock.mode) > order.index(current):
            strongest[lock.relation] = lock.mode
    return strongest
