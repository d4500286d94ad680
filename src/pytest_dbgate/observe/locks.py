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
import time
from collections.abc import Callable, Iterator, Sequence

from psycopg import sql

from pytest_dbgate.migrations.parse import Migration, Statement
from pytest_dbgate.observe.lockmodes import strength
from pytest_dbgate.observe.monitor import Monitor, Timeline
from pytest_dbgate.observe.relations import biggest_tables, tables_with_rows, touched_relations
from pytest_dbgate.observe.timeline import BlockedProbe, HeldLock, LockReport, MigrationWait
from pytest_dbgate.observe.traffic import Traffic, targets
from pytest_dbgate.pg.connections import Conn

# -- what a migration touches ----------------------------------------------------------------


# -- traffic ---------------------------------------------------------------------------------


# -- the monitor -------------------------------------------------------------------------------


# -- what happened -----------------------------------------------------------------------------


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
    strongest: dict[str, str] = {}
    for lock in locks:
        current = strongest.get(lock.relation)
        if current is None or strength(lock.mode) > strength(current):
            strongest[lock.relation] = lock.mode
    return strongest
