"""The release criteria: what each generated test checks, and what it says when it fails.

A criterion names the gate steps it needs (prepared before it runs, so a broken prerequisite shows
as a skip or an error, not as this criterion failing) and checks one thing, returning the figures
it measured. A failure message names the object and the fix.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import psycopg
import pytest
from psycopg import sql

from pytest_dbgate import __version__
from pytest_dbgate.core.commands import CommandResult, run_command
from pytest_dbgate.core.errors import CriterionFailed, Figure
from pytest_dbgate.core.record import (
    GateRecord,
    RecordedMigration,
    RecordedServer,
    format_period,
    now_utc,
)
from pytest_dbgate.core.run import Database, Run, StepFailed, migration_step
from pytest_dbgate.lint.engine import Finding
from pytest_dbgate.migrations.outcomes import Outcome, Status
from pytest_dbgate.migrations.parse import BATCHES, Migration
from pytest_dbgate.migrations.tracking import MIGRATIONS
from pytest_dbgate.observe.locks import CONFLICTS, HeldLock, LockReport, sql_mode
from pytest_dbgate.observe.remeasure import Measure, again, median
from pytest_dbgate.performance.capture import Capture
from pytest_dbgate.performance.verdicts import MIN_TEST_CALLS, Comparison, Verdict
from pytest_dbgate.refresh.dumpfile import DumpFile, size
from pytest_dbgate.staging.gate import (
    AFTER_CAPTURE,
    BASELINE,
    COMMAND,
    DUMP_FILE,
    MIGRATED,
    PERFORMANCE,
    RUNNER,
    SNAPSHOT,
    SOURCE,
    STAGING_SERVER,
    Gate,
)

Figures = dict[str, Figure]
Conn = psycopg.Connection[tuple[object, ...]]

USER_SCHEMAS = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'"
)


class DbgateWarning(UserWarning):
    """Something a release engineer should see that does not fail the gate."""


R = TypeVar("R", bound=Run)


@dataclass(frozen=True)
class Criterion(Generic[R]):
    """One generated test, checked against a run of type ``R`` (a staging gate, a deploy, or
    any run for the checks both share)."""

    stage: ClassVar[str]
    # Where in its stage: below 0 before the project's phased tests, above 0 after them.
    position: ClassVar[int] = -1
    name: str
    path: Path
    requires: tuple[str, ...] = ()
    owns: tuple[str, ...] = ()
    needs_migrations: bool = field(default=False, kw_only=True)
    per_file: ClassVar[bool] = False  # named ``<file>::<check>`` rather than dbgate::<stage>::…

    def check(self, gate: R) -> Figures:
        raise NotImplementedError


# -- refresh -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceReachable(Criterion[Gate]):
    stage: ClassVar[str] = "refresh"

    def check(self, gate: Gate) -> Figures:
        source = gate.source()
        row = source.conn.execute("SHOW transaction_read_only").fetchone()
        read_only = row is not None and str(row[0]) == "on"
        figures: Figures = {
            "summary": f"{source.where}, PostgreSQL {source.identity.version.split()[0]}",
            "source": source.where,
            "server_version": source.identity.version,
            "read_only": read_only,
        }
        if not read_only:
            raise CriterionFailed(
                f"the session on the source {source.where} is not read only: the connection "
                "path drops startup options (a transaction-mode pooler does this)\n"
                "  connect the gate to the source directly, or through a session-mode pool",
                figures,
            )
        return figures


@dataclass(frozen=True)
class DumpFileRead(Criterion[Gate]):
    """The dump given with --dbgate-snapshot: its format and header were checked when the run
    started; this reads it whole once, for the checksum that keys the cached snapshot."""

    stage: ClassVar[str] = "refresh"

    def check(self, gate: Gate) -> Figures:
        dump = gate.dump_file()
        taken = dump.created_at.strftime("%Y-%m-%d %H:%M %Z")
        version = f"PostgreSQL {dump.server_version}" if dump.server_version else "version unknown"
        return {
            "summary": f"{dump.path.name}: {dump.format}, {size(dump.size)}, dumped {taken} "
            f"from {version}",
            "dump_file": str(dump.path),
            "format": dump.format,
            "dump_bytes": dump.size,
            "dumped_at": dump.created_at.isoformat(timespec="seconds"),
            "server_version": dump.server_version or "unknown",
            "checksum": dump.checksum or "",
        }


@dataclass(frozen=True)
class SnapshotRestored(Criterion[Gate]):
    stage: ClassVar[str] = "refresh"

    def check(self, gate: Gate) -> Figures:
        snap = gate.snapshot()
        if snap.cloned_by is not None:
            made = f"provisioned by `{snap.cloned_by}` (counts as of its copy)"
        elif snap.reused and snap.from_file is not None:
            made = (
                f"cloned the cached snapshot of {Path(snap.from_file).name} "
                f"in {snap.restore_seconds:.1f}s"
            )
        elif snap.reused and snap.taken_at is not None:
            made = (
                f"cloned the cached snapshot ({format_period(now_utc() - snap.taken_at)} old) "
                f"in {snap.restore_seconds:.1f}s"
            )
        elif snap.from_file is not None:
            made = f"restored from {Path(snap.from_file).name} in {snap.restore_seconds:.1f}s"
        else:
            made = f"dump {snap.dump_seconds:.1f}s, restore {snap.restore_seconds:.1f}s"
        figures: Figures = {
            "summary": f"{snap.staging_rows:,} rows in {len(snap.tables)} tables; {made}",
            "reused_snapshot": snap.reused,
            "from_file": snap.from_file or "",
            "staging_database": snap.staging.display(),
            "tables": len(snap.tables),
            "rows_source": snap.source_rows if snap.source_rows is not None else "not counted",
            "rows_staging": snap.staging_rows,
            "dump_bytes": snap.dump_bytes,
            "dump_seconds": round(snap.dump_seconds, 3),
            "restore_seconds": round(snap.restore_seconds, 3),
        }
        if snap.restore_warnings:
            figures["restore_warnings"] = len(snap.restore_warnings)
        wrong = snap.mismatched
        if wrong:
            lines = [
                f"    {t.qualified}: source {t.source_rows} rows, staging "
                + ("missing" if t.staging_rows is None else f"{t.staging_rows} rows")
                for t in wrong[:15]
            ]
            more = f"\n    … and {len(wrong) - 15} more" if len(wrong) > 15 else ""
            raise CriterionFailed(
                f"{len(wrong)} restored table(s) do not have the source's row count:\n"
                + "\n".join(lines)
                + more
                + "\n  check pg_restore's messages above and that the staging role may create "
                "every object the source has",
                figures,
            )
        return figures


@dataclass(frozen=True)
class VersionsMatch(Criterion[Gate]):
    stage: ClassVar[str] = "refresh"

    def check(self, gate: Gate) -> Figures:
        staging = gate.staging_server().identity
        if gate.config.file_only:
            dumped = gate.dump_file().identity
            if dumped is None:
                return {
                    "summary": f"dump file does not say its server's version; staging "
                    f"{staging.version.split()[0]}",
                    "staging_version": staging.version,
                }
            source = dumped
        else:
            source = gate.source().identity
        figures: Figures = {
            "summary": f"source {source.version.split()[0]}, staging {staging.version.split()[0]}",
            "source_version": source.version,
            "staging_version": staging.version,
            "client_version": gate.binaries.major,
        }
        if source.major != staging.major:
            raise CriterionFailed(
                f"the source runs PostgreSQL {source.version} and staging {staging.version}: "
                "the major versions must match, or staging proves nothing about production\n"
                f"  run staging on PostgreSQL {source.major} (embedded: install its server "
                "package and point --dbgate-pg-bindir at it)",
                figures,
            )
        if source.version_num != staging.version_num:
            figures["minor_mismatch"] = True
            warnings.warn(
                DbgateWarning(
                    f"minor versions differ: source {source.version}, staging {staging.version}"
                ),
                stacklevel=1,
            )
        return figures


EXTENSION_STATUS = """
SELECT
    (SELECT extversion FROM pg_extension WHERE extname = %(name)s),
    (SELECT default_version FROM pg_available_extensions WHERE name = %(name)s),
    coalesce((SELECT bool_or(trusted) FROM pg_available_extension_versions
              WHERE name = %(name)s), false),
    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
    has_database_privilege(current_database(), 'CREATE'),
    current_user, current_database()
"""


@dataclass(frozen=True)
class ExtensionAvailable(Criterion[Gate]):
    stage: ClassVar[str] = "refresh"
    extension: str = ""

    def check(self, gate: Gate) -> Figures:
        staging_conn = gate.staging_connection()
        figures: Figures = {}
        problems: list[str] = []
        sides: list[tuple[str, Conn, Database]] = [("staging", staging_conn, gate.staging_server())]
        file_only = gate.config.file_only
        if file_only:
            in_dump = self.extension in gate.dump_file().extensions
            figures["source_installed"] = "in the dump" if in_dump else "no"
        else:
            source = gate.source()
            sides.insert(0, ("source", source.conn, source))
        for side, conn, database in sides:
            installed, available, problem = extension_status(conn, self.extension, side, database)
            figures[f"{side}_installed"] = installed
            figures[f"{side}_available"] = available
            if problem:
                problems.append(problem)
        if problems:
            raise CriterionFailed("\n  ".join(problems), figures)
        staging = _installed(figures["staging_installed"])
        if file_only:
            made = "the dump creates it" if in_dump else "the dump does not create it"
            figures["summary"] = f"{made}; staging {staging}"
        else:
            figures["summary"] = (
                f"source {_installed(figures['source_installed'])}, staging {staging}"
            )
        if (
            not file_only
            and figures["source_installed"] != "no"
            and figures["staging_installed"] != "no"
            and figures["source_installed"] != figures["staging_installed"]
        ):
            warnings.warn(
                DbgateWarning(
                    f"extension {self.extension}: source has version "
                    f"{figures['source_installed']}, staging {figures['staging_installed']}"
                ),
                stacklevel=1,
            )
        return figures


def extension_status(
    conn: Conn, name: str, side: str, database: Database
) -> tuple[str, str, str | None]:
    """(installed version or "no", available version or "no", the problem if the extension is
    neither installed nor creatable by this role)."""
    installed, available, trusted, superuser, may_create, user, dbname = (
        conn.execute(EXTENSION_STATUS, {"name": name}).fetchone() or (None,) * 7
    )
    problem = None
    if not installed and not available:
        problem = (
            f"{name} is not installed on the {side} server {database.where} and cannot be: the "
            f"server has no such extension\n"
            f"    install the package that provides it on that server (Debian: "
            f"postgresql-contrib, or postgresql-{database.identity.major}-{name})"
        )
    elif not installed and not (superuser or (trusted and may_create)):
        problem = (
            f"{name} is not installed in {dbname} on the {side} server {database.where}, and "
            f"role {user} may not create it (not a superuser"
            + ("" if trusted else f"; {name} is not a trusted extension")
            + ")\n"
            f'    have an administrator run CREATE EXTENSION "{name}" there'
        )
    return str(installed or "no"), str(available or "no"), problem


def _installed(version: Figure) -> str:
    return "can create it" if version == "no" else f"has {version}"


# -- connect -------------------------------------------------------------------------------


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


# -- migrate -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MigrationApplied(Criterion[Run]):
    stage: ClassVar[str] = "migrate"
    migration: Migration | None = None
    index: int = 0

    def check(self, gate: Run) -> Figures:
        assert self.migration is not None
        outcome = gate.outcome(self.index)
        m = self.migration
        figures: Figures = {
            "file": gate.rel(m),
            "checksum": m.checksum,
            "status": outcome.status.value,
            "statements": len(m.statements),
            "transaction": "single" if m.transactional else "per statement",
        }
        figures["summary"] = outcome.status.value
        if outcome.recorded_by is not None:
            figures["summary"] = f"already applied ({outcome.recorded_by})"
            figures["recorded_by"] = outcome.recorded_by
        if outcome.attempts:
            figures["lock_timeouts"] = len(outcome.attempts)
        if outcome.resumed_after:
            figures["resumed_after"] = outcome.resumed_after
        if outcome.notes:
            figures["settled"] = "; ".join(outcome.notes)
        if outcome.status is Status.APPLIED:
            figures["duration_ms"] = round(outcome.duration_ms, 1)
            figures["statements_run"] = outcome.statements_run
            retried = f", after {len(outcome.attempts)} lock timeout(s)" if outcome.attempts else ""
            resumed = (
                f", resumed after statement {outcome.resumed_after} (applied by an earlier run)"
                if outcome.resumed_after
                else ""
            )
            figures["summary"] = (
                f"applied in {outcome.duration_ms / 1000:.1f}s"
                + ("" if m.transactional else ", statement by statement")
                + resumed
                + retried
            )
            if outcome.released_early:
                figures["released_early"] = True
                figures["summary"] = str(figures["summary"]) + ", released early on purpose"
                warnings.warn(
                    DbgateWarning(
                        f"{m.id} was held back and is released early by --dbgate-release-early; "
                        "the tracking table records that (applied_by)"
                    ),
                    stacklevel=1,
                )
        if outcome.status is Status.HELD_BACK:
            pytest.skip(held_back_message(outcome))
        if outcome.status is Status.NOT_APPLIED:
            blocker = outcome.blocked_by
            assert blocker is not None
            if blocker.status is Status.HELD_BACK:
                pytest.skip(
                    f"waits for {blocker.migration.id}, which comes before it: "
                    + held_back_message(blocker)
                )
            raise StepFailed(migration_step(blocker.migration), blocker.describe_failure(gate.rel))
        if not outcome.ok:
            raise CriterionFailed(outcome.describe_failure(gate.rel), figures)
        return figures


def held_back_message(outcome: Outcome) -> str:
    assert outcome.eligible_at is not None and outcome.held_since is not None
    period = format_period(outcome.eligible_at - outcome.held_since)
    return (
        f"held back until {outcome.eligible_at:%Y-%m-%d %H:%M %Z} ({period} after the migrations "
        f"before it were applied on {outcome.held_since:%Y-%m-%d %H:%M %Z}); a production run "
        "from then on applies it"
    )


@dataclass(frozen=True)
class LocksHeldBriefly(Criterion[Gate]):
    """No long lock that blocks reads or writes, and no application session blocked for long,
    while one migration ran under simulated traffic."""

    stage: ClassVar[str] = "migrate"
    migration: Migration | None = None
    index: int = 0

    def check(self, gate: Gate) -> Figures:
        assert self.migration is not None
        outcome = gate.outcome(self.index)
        if outcome.status is Status.NOT_APPLIED:
            blocker = outcome.blocked_by
            assert blocker is not None
            raise StepFailed(migration_step(blocker.migration), blocker.describe_failure(gate.rel))
        report = gate.lock_reports.get(self.migration.id)
        if report is None:
            already = (
                f"{outcome.status.value} ({outcome.recorded_by}): not part of this release"
                if outcome.recorded_by
                else f"{outcome.status.value}: nothing ran"
            )
            return {"summary": already, "status": outcome.status.value}
        config = gate.config
        measured = Measure.of(report, config.max_lock_ms, config.max_block_ms)
        measures = [measured]
        note = ""
        if measured.near():
            more, why_not = again(gate, self.index)
            report, measures = median([report, *more], config.max_lock_ms, config.max_block_ms)
            note = why_not and f"measured once: near a limit, but {why_not}"
        figures = _lock_figures(report)
        taken = ", ".join(f"{m.lock_ms:.0f}/{m.block_ms:.0f}" for m in measures)
        if len(measures) > 1:
            figures["measurements"] = f"lock/blocked ms: {taken}"
            figures["summary"] = f"{figures['summary']}; middle of {len(measures)}: {taken} ms"
        elif note:
            figures["measurements"] = note
        message = _lock_verdict(gate, report)
        if message:
            if len(measures) > 1:
                message += (
                    f"\n  measured {len(measures)} times, each on a fresh copy of the state "
                    f"before it (longest lock/blocked ms: {taken}): the "
                    "middle one, above, decides"
                )
            raise CriterionFailed(message, figures)
        return figures


def _lock_verdict(gate: Gate, report: LockReport) -> str:
    """The failure message, or ``""`` when every lock and wait was within the limits."""
    config = gate.config
    long_locks = _strongest_per_table(
        [lock for lock in report.locks if lock.dangerous and lock.held_ms > config.max_lock_ms]
    )
    blocked = {
        table: figures
        for table, figures in report.blocked_by_table().items()
        if figures[1] > config.max_block_ms
    }
    waits = [w for w in report.waits if w.waited_ms > config.max_block_ms]
    if not (long_locks or blocked or waits):
        return ""
    headline = []
    if blocked:
        worst = max(figures[1] for figures in blocked.values())
        headline.append(
            f"blocked the application for up to {worst:.0f} ms (limit {config.max_block_ms:.0f} ms)"
        )
    if long_locks:
        worst_lock = long_locks[0]
        headline.append(
            f"held {sql_mode(worst_lock.mode)} on {worst_lock.relation} for "
            f"{worst_lock.held_ms:.0f} ms (limit {config.max_lock_ms:.0f} ms)"
        )
    if waits:
        headline.append(f"waited {max(w.waited_ms for w in waits):.0f} ms for another session")
    lines = [f"{gate.rel(report.migration)} " + " and ".join(headline)]
    # Each statement at fault once: what it held, on which tables, and the safe way to do it.
    causes = list(long_locks)
    for table in blocked:
        cause = _cause(report, table)
        if cause is not None and cause.relation not in {c.relation for c in causes}:
            causes.append(cause)
    by_statement: dict[int, list[HeldLock]] = {}
    for lock in causes:
        by_statement.setdefault(lock.statement.line if lock.statement else 0, []).append(lock)
    for line, locks in sorted(by_statement.items()):
        statement = locks[0].statement
        held = ", ".join(
            f"{sql_mode(lock.mode)} on {lock.relation} {lock.held_ms:.0f} ms" for lock in locks
        )
        if statement is None:
            lines.append(f"  held {held}")
            continue
        lines.append(f"  line {line}: {statement.excerpt()}")
        lines.append(f"    held {held}")
        lines.append(
            "    fix: "
            + (
                statement.lock_fix
                or "the locks are held until the file's transaction commits: move the long "
                "statements after this one to a migration of their own, or make them brief"
            )
        )
    if blocked:
        parts = []
        for table, (count, longest, _) in blocked.items():
            kinds = sorted({b.kind for b in report.blocked if b.table == table})
            noun = " and ".join(k + ("s" if count > 1 else "") for k in kinds)
            parts.append(f"{table} ({count} {noun}, longest {longest:.0f} ms)")
        lines.append("  traffic that waited: " + "; ".join(parts))
        if not causes:
            lines.append(f"    they waited on row locks; fix: {BATCHES}")
    for wait in waits:
        lines.append(
            f"  the migration waited {wait.waited_ms:.0f} ms for session {wait.pid} "
            f"({wait.application or 'no application_name'}, {wait.state}): {wait.query}"
        )
        lines.append(
            "    fix: end such sessions (idle in transaction, long transactions) before "
            "migrating, and migrate with a lock_timeout"
        )
    return "\n".join(lines)


def _strongest_per_table(locks: list[HeldLock]) -> list[HeldLock]:
    strongest: dict[str, HeldLock] = {}
    for lock in locks:
        current = strongest.get(lock.relation)
        if current is None or _strength(lock.mode) > _strength(current.mode):
            strongest[lock.relation] = lock
    return sorted(strongest.values(), key=lambda lock: (-lock.held_ms, lock.relation))


def _strength(mode: str) -> int:
    return list(CONFLICTS).index(mode) if mode in CONFLICTS else -1


def _cause(report: LockReport, table: str) -> HeldLock | None:
    """The lock on ``table`` that traffic most likely queued behind: the strongest, longest."""
    on_table = [lock for lock in report.locks if lock.relation == table and lock.dangerous]
    return max(on_table, key=lambda lock: (_strength(lock.mode), lock.held_ms), default=None)


def _lock_figures(report: LockReport) -> Figures:
    dangerous = [lock for lock in report.locks if lock.dangerous]
    longest = max(dangerous, key=lambda lock: lock.held_ms, default=None)
    figures: Figures = {
        "locks": "; ".join(
            f"{lock.relation} {sql_mode(lock.mode)} {lock.held_ms:.0f} ms"
            for lock in report.locks[:12]
        ),
        "longest_blocking_lock_ms": round(longest.held_ms, 1) if longest else 0,
        "traffic_tables": ", ".join(report.tables),
        "probes": report.probes,
        "blocked_probes": len(report.blocked),
        "max_blocked_ms": round(report.max_blocked_ms, 1),
        "polls": report.polls,
    }
    if report.blockers_before:
        figures["blockers_before"] = " | ".join(report.blockers_before)
    if report.waits:
        figures["migration_waited_ms"] = round(max(w.waited_ms for w in report.waits), 1)
    lock_part = (
        f"longest blocking lock {sql_mode(longest.mode)} on {longest.relation} "
        f"{longest.held_ms:.0f} ms"
        if longest
        else "no lock blocking reads or writes on a table with rows"
    )
    figures["summary"] = (
        f"{lock_part}; traffic blocked at most {report.max_blocked_ms:.0f} ms "
        f"({len(report.blocked)} of {report.probes} probes)"
    )
    return figures


def _long_lock_message(gate: Gate, lock: HeldLock, limit: float) -> str:
    statement = lock.statement
    where = f"line {statement.line}: " if statement else ""
    lines = [
        f"{where}held {sql_mode(lock.mode)} on {lock.relation}, which blocks {lock.blocks}, for "
        f"{lock.held_ms:.0f} ms (limit {limit:.0f} ms)"
    ]
    if statement is not None:
        lines.append(f"    {statement.excerpt()}")
        if statement.lock_fix:
            lines.append(f"  fix: {statement.lock_fix}")
        else:
            lines.append(
                "  fix: the lock is held until the file's transaction commits: move the long "
                "statements after it to a migration of their own, or make them brief"
            )
    return "\n  ".join(lines)


# -- schema --------------------------------------------------------------------------------


UNVALIDATED = f"""
SELECT CASE WHEN c.conrelid <> 0 THEN c.conrelid::regclass::text
            ELSE format_type(c.contypid, NULL) END,
       quote_ident(c.conname),
       c.contype::text,
       c.conrelid <> 0
FROM pg_constraint c
JOIN pg_namespace n ON n.oid = c.connamespace
WHERE c.contype IN ('f', 'u', 'c') AND NOT c.convalidated AND {USER_SCHEMAS}
ORDER BY 1, 2
"""

CONSTRAINT_COUNT = f"""
SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
WHERE c.contype IN ('f', 'u', 'c') AND {USER_SCHEMAS}
"""

KINDS = {"f": "foreign key", "u": "unique", "c": "check"}


@dataclass(frozen=True)
class ConstraintsValidated(Criterion[Run]):
    stage: ClassVar[str] = "schema"

    def check(self, gate: Run) -> Figures:
        conn = gate.target_connection()
        rows = conn.execute(UNVALIDATED).fetchall()
        total = conn.execute(CONSTRAINT_COUNT).fetchone()
        checked = int(str(total[0])) if total else 0
        figures: Figures = {
            "summary": f"{checked} checked, {len(rows)} not valid{_partly_migrated(gate)}",
            "constraints": checked,
            "not_validated": len(rows),
        }
        if rows:
            listed = "\n".join(
                f"    {owner}.{name} ({KINDS.get(str(kind), str(kind))})"
                for owner, name, kind, _ in rows
            )
            fixes = "\n".join(
                f"    ALTER {'TABLE' if on_table else 'DOMAIN'} {owner} VALIDATE CONSTRAINT {name};"
                for owner, name, _, on_table in rows
            )
            raise CriterionFailed(
                f"{len(rows)} constraint(s) are NOT VALID: existing rows were never checked "
                f"against them\n{listed}\n"
                "  fix: validate them in a migration (VALIDATE takes SHARE UPDATE EXCLUSIVE: "
                f"reads and writes go on)\n{fixes}",
                figures,
            )
        return figures


def _partly_migrated(gate: Run) -> str:
    """Said beside a schema check's figure when a migration failed: what it judged is the
    schema the release reached, not the one it meant to reach (the failure is its item's)."""
    unapplied = [
        o
        for o in gate.outcomes()
        if o.status in (Status.FAILED, Status.NOT_APPLIED, Status.CHECKSUM_CHANGED)
    ]
    if not unapplied:
        return ""
    return f"; judged on a partly migrated schema ({len(unapplied)} migration(s) not applied)"


BROKEN_INDEXES = f"""
SELECT i.indexrelid::regclass::text, i.indrelid::regclass::text, i.indisvalid, i.indisready,
       pg_get_indexdef(i.indexrelid)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT (i.indisvalid AND i.indisready) AND {USER_SCHEMAS}
ORDER BY 1
"""

INDEX_COUNT = f"""
SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMAS}
"""


@dataclass(frozen=True)
class IndexesValid(Criterion[Run]):
    stage: ClassVar[str] = "schema"

    def check(self, gate: Run) -> Figures:
        conn = gate.target_connection()
        rows = conn.execute(BROKEN_INDEXES).fetchall()
        total = conn.execute(INDEX_COUNT).fetchone()
        checked = int(str(total[0])) if total else 0
        figures: Figures = {
            "summary": f"{checked} checked, {len(rows)} not valid or not ready"
            f"{_partly_migrated(gate)}",
            "indexes": checked,
            "broken": len(rows),
        }
        if rows:
            lines = []
            for index, table, valid, _ready, definition in rows:
                state = "not valid" if not valid else "not ready"
                concurrent = str(definition).replace(" INDEX ", " INDEX CONCURRENTLY ", 1)
                lines.append(
                    f"    {index} on {table} ({state}; usually a CREATE INDEX CONCURRENTLY that "
                    f"failed or was cancelled)\n"
                    f"      fix: REINDEX INDEX CONCURRENTLY {index};\n"
                    f"       or: DROP INDEX CONCURRENTLY {index}; {concurrent};"
                )
            raise CriterionFailed(
                f"{len(rows)} index(es) are not valid and ready: queries cannot use them, "
                "writes still maintain them\n" + "\n".join(lines),
                figures,
            )
        return figures


@dataclass(frozen=True)
class MigrationsRecorded(Criterion[Gate]):
    stage: ClassVar[str] = "schema"
    migrations: tuple[Migration, ...] = ()

    def check(self, gate: Gate) -> Figures:
        conn = gate.staging_connection()
        rows = conn.execute(
            sql.SQL("SELECT version, checksum, success FROM {} ORDER BY version").format(MIGRATIONS)
        ).fetchall()
        recorded = {str(v): (str(c), bool(s)) for v, c, s in rows}
        outcomes = {o.migration.version: o for o in gate.outcomes()}
        files = {m.version for m in self.migrations}
        problems = []
        by_tool: set[str] = set()
        unapplied = 0
        for m in self.migrations:
            outcome = outcomes.get(m.version)
            if outcome is not None and not outcome.ok:
                unapplied += 1  # its own item says why: one cause fails once
                continue
            if outcome is not None and outcome.recorded_by is not None:
                by_tool.add(outcome.recorded_by)
                continue  # applied before, by the project's tool, which records it
            entry = recorded.get(m.version)
            if entry is None:
                problems.append(f"    {m.id}: not recorded")
            elif not entry[1]:
                problems.append(f"    {m.id}: recorded as failed")
            elif entry[0] != m.checksum:
                problems.append(
                    f"    {m.id}: recorded checksum {entry[0][:12]}… differs from the file's "
                    f"{m.checksum[:12]}…"
                )
        orphans = sorted(v for v in recorded if v not in files)
        ok_count = len(self.migrations) - unapplied - len(problems)
        tables = ", ".join(["dbgate.migrations", *sorted(by_tool)])
        figures: Figures = {
            "summary": f"{ok_count} of {len(self.migrations)} recorded with their checksums "
            f"({tables})",
            "files": len(self.migrations),
            "recorded": ok_count,
            "tracking_table": tables,
        }
        if unapplied:
            figures["summary"] = f"{figures['summary']}{_partly_migrated(gate)}"
            figures["not_applied"] = unapplied
        if orphans:
            figures["recorded_without_file"] = ", ".join(orphans)
        if problems:
            raise CriterionFailed(
                f"{len(problems)} migration(s) are not recorded as applied in dbgate.migrations "
                "with the file's checksum:\n" + "\n".join(problems[:15]),
                figures,
            )
        return figures


# -- the project's own commands ------------------------------------------------------------


@dataclass(frozen=True)
class PostMigrateCommand(Criterion[Run]):
    """The post-migrate command (an ORM client regeneration, say) ran cleanly."""

    stage: ClassVar[str] = "after"

    def check(self, gate: Run) -> Figures:
        result = gate.migrated()
        assert result is not None
        return _command_figures(result)


def _command_figures(result: CommandResult) -> Figures:
    return {
        "summary": f"exit 0 in {result.seconds:.1f}s",
        "command": result.command,
        "exit_status": result.returncode,
        "seconds": round(result.seconds, 3),
    }


@dataclass(frozen=True)
class ExternalTests(Criterion[Gate]):
    """The project's non-pytest database tests (``dbgate_test_command``) pass on staging."""

    position: ClassVar[int] = 1
    command: str = ""

    def check(self, gate: Gate) -> Figures:
        if self.stage == "before" and gate.migrations_started:
            raise CriterionFailed(
                "the [before] test command would run after the migrations started: something "
                "reordered the gate's items; run the gate without reordering"
            )
        gate.open_window(self.stage)
        result = run_command(self.command, gate.snapshot().staging, gate.config.rootdir)
        figures = _command_figures(result)
        if not result.ok:
            figures["summary"] = f"exit {result.returncode} in {result.seconds:.1f}s"
            raise CriterionFailed(result.failure(f"the test command [{self.stage}]"), figures)
        return figures


@dataclass(frozen=True)
class ExternalTestsBefore(ExternalTests):
    stage: ClassVar[str] = "before"


@dataclass(frozen=True)
class ExternalTestsAfter(ExternalTests):
    stage: ClassVar[str] = "after"


# -- performance -----------------------------------------------------------------------------


def _capture_figures(capture: Capture) -> Figures:
    figures: Figures = {"test_queries": len(capture.tests), "seconds": round(capture.seconds, 3)}
    tests = f"{len(capture.tests)} test queries"
    if not capture.method:
        figures["summary"] = f"{tests}; the workload runs side by side after migrating"
        return figures
    rounds = [m.rounds for m in capture.workload.values()]
    figures.update(
        workload_queries=len(capture.workload),
        method=capture.method,
        ran_on=capture.where,
        budget_seconds=capture.budget_s,
        rounds=(
            f"{min(rounds)} to {max(rounds)}"
            if rounds and min(rounds) != max(rounds)
            else str(max(rounds, default=0))
        ),
    )
    workload_s = sum(m.seconds for m in capture.workload.values())
    figures.update(workload_seconds=round(workload_s, 3), prepared_seconds=capture.prepared_s)
    figures["summary"] = (
        f"{tests}; {len(capture.workload)} workload queries {capture.method}, "
        f"{figures['rounds']} rounds each in {workload_s:.1f}s (budget {capture.budget_s:g}s)"
        + (f", {capture.prepared_s:.1f}s preparing" if capture.prepared_s >= 0.05 else "")
    )
    if capture.compacted:
        figures["compacted"] = "; ".join(c.describe() for c in capture.compacted)
        figures["summary"] = f"{figures['summary']}; compacted first: {figures['compacted']}"
    return figures


@dataclass(frozen=True)
class BaselineCaptured(Criterion[Gate]):
    """The project's test queries before migrating (and the workload, when there is no
    un-migrated copy to measure it against after migrating)."""

    stage: ClassVar[str] = "before"
    position: ClassVar[int] = 2

    def check(self, gate: Gate) -> Figures:
        return _capture_figures(gate.baseline())


@dataclass(frozen=True)
class AfterCaptured(Criterion[Gate]):
    stage: ClassVar[str] = "after"
    position: ClassVar[int] = 2

    def check(self, gate: Gate) -> Figures:
        return _capture_figures(gate.after_capture())


INDEX_FIX = (
    "  fix: the release removed an index this query needs or changed what the planner can use: "
    "recreate it (CREATE INDEX CONCURRENTLY …), or keep it until the query no longer needs it"
)
CPU_FIX = (
    "  fix: look at what the release put on this query's path: triggers on the tables it "
    "writes, functions it calls, CHECK constraints, generated columns, foreign keys, column "
    "types that need casts"
)


def _regression_message(c: Comparison, what: str) -> str:
    lines = [f"{what} is slower after the migrations: {c.reason}"]
    lines.append(f"    {' '.join(c.sql.split())[:300]}")
    lines += [f"  {line}" for line in c.cpu_lines()]
    if c.plan_diff:
        lines += [f"  plan: {c.plan_diff}", INDEX_FIX]
    else:
        if c.before is not None:
            lines.append(f"  plan (unchanged): {'; '.join(c.before.plan or ['unknown'])}")
        lines.append(CPU_FIX)
    return "\n".join(lines)


@dataclass(frozen=True)
class QueryNotSlower(Criterion[Gate]):
    """One workload query is not slower than the allowed regression."""

    stage: ClassVar[str] = "performance"
    label: str = ""

    def check(self, gate: Gate) -> Figures:
        found = next(c for c in gate.comparisons() if c.key == f"workload:{self.label}")
        figures: Figures = dict(found.figures())
        what = f"workload query {self.label}"
        if found.regressed:
            raise CriterionFailed(_regression_message(found, what), figures)
        if found.verdict is not Verdict.OK:
            # Fails after, fails before, or could not be measured: each a gap the gate cannot
            # pass over; the reason says what to do.
            sql_line = f"    {' '.join(found.sql.split())[:300]}"
            raise CriterionFailed(f"{what} {found.reason}\n{sql_line}", figures)
        return figures


@dataclass(frozen=True)
class TestQueriesNotSlower(Criterion[Gate]):
    """The queries the project's own tests ran are not slower than the allowed regression."""

    stage: ClassVar[str] = "performance"

    def check(self, gate: Gate) -> Figures:
        tests = [c for c in gate.comparisons() if c.source == "tests"]
        judged = [c for c in tests if c.verdict is not Verdict.NOT_JUDGED]
        regressed = [c for c in judged if c.regressed]
        figures: Figures = {
            "summary": f"{len(judged)} judged, {len(regressed)} slower; "
            f"{len(tests) - len(judged)} reported, not judged (seen on one side, or called "
            f"fewer than {MIN_TEST_CALLS} times on a side)",
            "judged": len(judged),
            "regressed": len(regressed),
            "not_judged": len(tests) - len(judged),
        }
        notes = [f"{_short_sql(c.sql)}: {c.reason}" for c in tests if c not in judged]
        if notes:
            figures["notes"] = " | ".join(notes[:20])
        if regressed:
            raise CriterionFailed(
                "\n".join(
                    _regression_message(
                        c, f"a query of the project's tests (called {c.after.runs} times after)"
                    )
                    for c in regressed
                    if c.after is not None
                ),
                figures,
            )
        return figures


def _short_sql(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# -- lint ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MigrationLinted(Criterion[Run]):
    """One migration file against the static safety rules (:mod:`pytest_dbgate.lint.engine`).

    In the staging gate the restored copy says how big each table is: a finding on a table with
    fewer rows than ``dbgate_lint_small_table_rows`` is reported, not failed.
    """

    stage: ClassVar[str] = "lint"
    per_file: ClassVar[bool] = True
    migration: Migration | None = None

    def check(self, gate: Run) -> Figures:
        assert self.migration is not None
        findings = gate.findings.get(self.migration.id, [])
        applied = _applied_before(gate).get(self.migration.version)
        if applied is not None:
            # History, not the release: it ran on production long ago.
            return {"summary": f"already applied ({applied}): not part of this release"}
        rows = _table_rows(gate, self.migration)
        limit = gate.config.lint_small_table_rows
        failing: list[tuple[Finding, bool]] = []
        reported: list[tuple[Finding, bool]] = []
        for finding in findings:
            small = (
                finding.table is not None
                and rows is not None
                and _rows_of(rows, finding.table) < limit
            )
            (failing if finding.fails and not small else reported).append((finding, small))
        figures: Figures = {
            "summary": f"{len(failing)} failing, {len(reported)} reported"
            if findings
            else "no findings",
            "findings": len(findings),
            "failing": len(failing),
            "reported": len(reported),
            "rules": ", ".join(sorted({f.rule.id for f in findings})),
        }
        rel = gate.rel(self.migration)
        notes = []
        for finding, small in reported:
            line = f"{rel}:{finding.statement.line}: [{finding.rule.id}] {finding.detail}"
            if small and finding.table is not None and rows is not None:
                count = _rows_of(rows, finding.table)
                line += f" (reported: {finding.table} has {count:,} rows, fewer than {limit:,})"
            elif finding.ignored is not None:
                line += f" (ignored: {finding.ignored})"
            elif finding.held_back:
                line += " (held back: the sanctioned way to remove what the old release reads)"
            else:
                line += " (reported)"
            notes.append(line)
        if notes:
            figures["notes"] = " | ".join(notes)
        if failing:
            lines = [f"{len(failing)} unsafe statement(s) in {rel}:"]
            lines += [finding.describe(rel) for finding, _ in failing]
            if notes:
                lines.append("  also reported, not failing:")
                lines += [f"    {note}" for note in notes]
            if any(finding.rule.ignorable for finding, _ in failing):
                lines.append(
                    "  a reviewed exception: `-- dbgate: ignore <rule> <reason>` on the line "
                    "above the statement"
                )
            raise CriterionFailed("\n".join(lines), figures)
        return figures


def _applied_before(gate: Run) -> dict[str, str]:
    """Migrations the staging copy already has, when there is a copy that could be read."""
    if not isinstance(gate, Gate):
        return {}
    try:
        return gate.applied_before()
    except StepFailed:
        return {}


def _table_rows(gate: Run, migration: Migration) -> dict[str, int] | None:
    """Rows per table as the migration met them: counted just before it ran (what earlier
    migrations of the release inserted included), else as restored on the staging copy (the
    source of a dump file is not there to count, the copy is); by name as the SQL gave it and
    by unqualified name. ``None`` without a copy (lint mode)."""
    if not isinstance(gate, Gate):
        return None
    try:
        snapshot = gate.snapshot()
    except StepFailed:
        return None
    rows = {table: count for (_, table), count in snapshot.rows().items()}
    rows.update(gate.sizes_before.get(migration.version, {}))
    return rows


def _rows_of(rows: dict[str, int], table: str) -> int:
    return rows.get(table, rows.get(table.split(".")[-1], 0))


def lint_checklist(run: Run) -> list[Criterion[Any]]:
    return [MigrationLinted(f"{run.rel(m)}::lint", m.path, migration=m) for m in run.migrations]


# -- verdict -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateRecordWritten(Criterion[Gate]):
    """Every criterion passed: write the record production deploys from.

    It runs last and reads the verdicts of everything before it, so a run where anything
    failed, errored or was deselected writes no record (the item is skipped, saying why: the
    failures are already reported where they happened).
    """

    stage: ClassVar[str] = "verdict"

    def check(self, gate: Gate) -> Figures:
        results = gate.results
        criteria = [r for r in results.items.values() if r.stage != self.stage and not r.phased]
        ran = [r for r in criteria if r.outcome != "not run"]
        not_passed = [r for r in ran if r.outcome != "passed"]
        tests = [r for r in results.items.values() if r.phased]
        # A skipped test is not a passing one: the record vouches for tests green before and
        # after, every one of them.
        failed_tests = [r for r in tests if r.outcome in ("failed", "error", "skipped")]
        own = {r.nodeid for r in results.items.values() if r.stage == self.stage}
        missing = [
            nodeid
            for nodeid in results.expected
            if nodeid not in own
            and (nodeid not in results.items or results.items[nodeid].outcome == "not run")
        ]
        figures: Figures = {
            "criteria_passed": len(ran) - len(not_passed),
            "criteria_total": results.generated - 1,
            "project_tests_passed": sum(1 for r in tests if r.outcome == "passed"),
            "project_tests_skipped": sum(1 for r in tests if r.outcome == "skipped"),
        }
        problems = [f"    {r.nodeid}: {r.outcome}" for r in not_passed[:15]]
        problems += [f"    {r.nodeid}: {r.outcome}" for r in failed_tests[:15]]
        problems += [f"    {nodeid}: did not run" for nodeid in missing[:15]]
        if len(missing) > 15:
            problems.append(
                f"    … and {len(missing) - 15} more did not run (deselected, or the run "
                "stopped early)"
            )
        problems += [
            f"    {path}: not collected (--ignore for this run)" for path in results.ignored[:15]
        ]
        problems += [
            f"    {nodeid}: not collected"
            if nodeid.endswith("(skipped whole)")
            else f"    {nodeid}: could not be collected"
            for nodeid in results.uncollected[:15]
        ]
        if problems:
            # Not a failure of its own: what did not pass already failed (or was deselected).
            pytest.skip(
                "no gate record written: production deploys only a release whose every "
                "criterion passed and whose tests all ran, before and after, and "
                f"{len(problems)} did not:\n" + "\n".join(problems)
            )
        record = build_record(gate).signed(gate.config.signing_key)
        record.write(gate.config.record)
        signed = "signed" if record.signature else "unsigned (DBGATE_SIGNING_KEY not set)"
        figures.update(
            {
                "summary": f"{_shown(gate, gate.config.record)}: {len(record.migrations)} "
                f"migrations, {signed}",
                "record": str(gate.config.record),
                "migrations": len(record.migrations),
                "signed": record.signature is not None,
            }
        )
        return figures


def _shown(gate: Gate, path: Path) -> str:
    try:
        return str(path.relative_to(gate.config.rootdir))
    except ValueError:
        return str(path)


def build_record(gate: Gate) -> GateRecord:
    """What this passing run validated: files by checksum, the source, the figures."""
    outcomes = {o.migration.version: o for o in gate.outcomes()}
    figures_extra: dict[str, Figure] = {}
    if gate.config.migrate_command is not None:
        done = gate.command()
        figures_extra = {
            "migrate_command": done.result.command,
            "applied_by_command": ", ".join(done.applied),
        }
    held = gate.hold_backs
    staging = gate.staging_server()
    checks = tuple(
        {"id": r.nodeid, "outcome": r.outcome, "summary": str(r.figures.get("summary", ""))}
        for r in gate.results.items.values()
        if not r.phased and r.outcome != "not run"
    )
    figures: dict[str, Figure] = {
        "criteria": len(checks),
        "project_tests": sum(1 for r in gate.results.items.values() if r.phased),
    }
    for r in gate.results.items.values():
        if r.name == "snapshot_restored":
            figures["rows_restored"] = r.figures.get("rows_staging", 0)
    locks = [
        float(r.figures.get("longest_blocking_lock_ms", 0) or 0)
        for r in gate.results.items.values()
        if r.name.startswith("locks[")
    ]
    if locks:
        figures["longest_blocking_lock_ms"] = max(locks)
    figures.update(figures_extra)
    return GateRecord(
        created_at=now_utc().isoformat(timespec="seconds"),
        plugin_version=__version__,
        source=_recorded_dump(gate.dump_file())
        if gate.config.file_only
        else _recorded_server(gate.source()),
        staging=_recorded_server(staging),
        migrations=tuple(
            RecordedMigration(
                version=m.version,
                name=m.name,
                file=gate.rel(m),
                checksum=m.checksum,
                hold_back=format_period(held[m.version]) if m.version in held else None,
                staging=outcomes[m.version].status.value,
                layout=m.layout,
                transaction=m.transaction_mode,
                statements=tuple(s.short_digest for s in m.statements),
                executed_from=outcomes[m.version].resumed_after + 1,
            )
            for m in gate.migrations
            if m.version in outcomes  # in command mode the tool applied them: none here
        ),
        figures=figures,
        checks=checks,
    )


def _recorded_dump(dump: DumpFile) -> RecordedServer:
    """A dump file stands for the source: its database name and version, no identifier."""
    identity = dump.identity
    return RecordedServer(
        where=f"dump file {dump.path.name}",
        database=dump.dbname,
        server_version=identity.version if identity else "unknown",
        version_num=identity.version_num if identity else 0,
        system_identifier=None,
        embedded=False,
        dump_file=f"{dump.path.name} ({dump.checksum})",
    )


def _recorded_server(database: Database) -> RecordedServer:
    return RecordedServer(
        where=database.endpoint.display(),
        database=database.endpoint.dbname,
        server_version=database.identity.version,
        version_num=database.identity.version_num,
        system_identifier=database.identity.system_identifier,
        embedded=database.embedded,
    )


# -- the checklist -------------------------------------------------------------------------


def staging_checklist(gate: Gate, extensions: Sequence[str]) -> list[Criterion[Any]]:
    """Every criterion of a staging gate, in the order a release engineer reads them."""
    migrations = gate.migrations
    where = gate.config.migrations
    pool_size = gate.config.pool_size
    file_only = gate.config.file_only
    # What the source-side checks read: the source database, or only the dump file.
    source = (DUMP_FILE,) if file_only else (SOURCE,)
    restored_from = (gate.origin,) if file_only else (SOURCE, gate.origin)
    checklist: list[Criterion[Any]] = [*lint_checklist(gate)]
    if not file_only:
        checklist.append(SourceReachable("source_reachable", where, owns=(SOURCE,)))
    if gate.dump is not None:
        checklist.append(DumpFileRead("dump_file", gate.dump.path, owns=(DUMP_FILE,)))
    checklist += [
        SnapshotRestored(
            "snapshot_restored", where, (*dict.fromkeys(restored_from), STAGING_SERVER), (SNAPSHOT,)
        ),
        VersionsMatch("versions_match", where, (*source, STAGING_SERVER)),
        *(
            ExtensionAvailable(f"extension[{name}]", where, (*source, SNAPSHOT), extension=name)
            for name in extensions
        ),
        StagingReachable("staging_reachable", where, (SNAPSHOT,), (STAGING_SERVER,)),
        PoolHeadroom("pool_headroom", where, (STAGING_SERVER,), pool_size=pool_size),
    ]
    config = gate.config
    if config.migrate_command is not None:
        from pytest_dbgate.staging.command_items import CommandLocksHeldBriefly, MigrateCommandRan

        checklist += [
            MigrateCommandRan("command", where, (SNAPSHOT,), (COMMAND,)),
            CommandLocksHeldBriefly("locks[command]", where, (SNAPSHOT, COMMAND)),
        ]
    for index, migration in enumerate(() if config.migrate_command else migrations):
        owns = (migration_step(migration),) + ((RUNNER,) if index == 0 else ())
        checklist.append(
            MigrationApplied(
                f"applied[{migration.id}]",
                migration.path,
                (SNAPSHOT, RUNNER),
                owns,
                migration=migration,
                index=index,
            )
        )
        checklist.append(
            LocksHeldBriefly(
                f"locks[{migration.id}]",
                migration.path,
                (SNAPSHOT, RUNNER),
                migration=migration,
                index=index,
            )
        )
    if config.test_command:
        checklist.append(
            ExternalTestsBefore("test_command", where, (SNAPSHOT,), command=config.test_command)
        )
    if gate.performance is not None:
        checklist.append(BaselineCaptured("baseline_captured", where, (SNAPSHOT,), (BASELINE,)))
    schema_needs = (SNAPSHOT, COMMAND if config.migrate_command else RUNNER)
    checklist += [
        ConstraintsValidated("constraints_validated", where, schema_needs, needs_migrations=True),
        IndexesValid("indexes_valid_and_ready", where, schema_needs, needs_migrations=True),
    ]
    if config.migrate_command is None:  # the tool keeps its own history
        checklist.append(
            MigrationsRecorded(
                "migrations_recorded",
                where,
                schema_needs,
                needs_migrations=True,
                migrations=tuple(migrations),
            )
        )
    if config.post_migrate_command:
        checklist.append(PostMigrateCommand("post_migrate_command", where, owns=(MIGRATED,)))
    if config.test_command:
        checklist.append(
            ExternalTestsAfter("test_command", where, (MIGRATED,), command=config.test_command)
        )
    if gate.performance is not None:
        checklist.append(AfterCaptured("after_captured", where, (MIGRATED,), (AFTER_CAPTURE,)))
        perf_needs = (BASELINE, AFTER_CAPTURE, PERFORMANCE)
        workload_path = config.workload or where
        checklist += [
            QueryNotSlower(f"query[{q.label}]", workload_path, perf_needs, label=q.label)
            for q in gate.performance.workload
        ]
        checklist.append(TestQueriesNotSlower("test_queries", where, perf_needs))
    checklist.append(GateRecordWritten("gate_record", config.record, (*source, STAGING_SERVER)))
    return checklist
