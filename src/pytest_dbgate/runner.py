"""Applying migrations in version order and recording them in the tracking table.

A file runs in one transaction (all or nothing) unless it cannot: then statement by statement in
autocommit, and a failure records exactly which statements had already run. The first failure
stops the run; later files are left unapplied. Applying is lazy and incremental: asking for the
outcome of migration *n* applies everything up to *n* once, whoever asks first.

On production a :class:`Policy` adds a ``lock_timeout`` and bounded retries on lock timeouts
(with backoff, dropping the INVALID index a failed ``CREATE INDEX CONCURRENTLY`` leaves), and
hold-backs: a held-back migration waits until its period has passed since the migrations before
it were applied, as the tracking table records.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import psycopg
from psycopg import pq, sql

from pytest_dbgate.layouts import version_key
from pytest_dbgate.migrations import Migration, Statement

Conn = psycopg.Connection[tuple[object, ...]]
Progress = Callable[[str], None]


class StatementLog(Protocol):
    """Told when each statement of a migration starts and ends (the lock monitor listens)."""

    def started(self, statement: Statement) -> None: ...

    def finished(self, statement: Statement, conn: Conn, in_transaction: bool) -> None: ...


class _Unobserved:
    def started(self, statement: Statement) -> None:
        pass

    def finished(self, statement: Statement, conn: Conn, in_transaction: bool) -> None:
        pass


# Something to run around each migration: it receives the migration and the migrating session.
Watch = Callable[[Migration, Conn], AbstractContextManager[StatementLog]]

TRACKING_SCHEMA = "dbgate"
TRACKING_TABLE = "migrations"
TRACKING = sql.Identifier(TRACKING_SCHEMA, TRACKING_TABLE)

CREATE_TRACKING = sql.SQL(
    """
    CREATE SCHEMA IF NOT EXISTS {schema};
    CREATE TABLE IF NOT EXISTS {table} (
        version            text PRIMARY KEY,
        name               text NOT NULL,
        checksum           text NOT NULL,
        success            boolean NOT NULL,
        applied_at         timestamptz NOT NULL DEFAULT now(),
        duration_ms        double precision NOT NULL,
        statements_applied integer NOT NULL,
        statements_total   integer NOT NULL,
        error              text,
        applied_by         text NOT NULL
    )
    """
).format(schema=sql.Identifier(TRACKING_SCHEMA), table=TRACKING)

RECORD = sql.SQL(
    """
    INSERT INTO {table} AS m (version, name, checksum, success, duration_ms,
                              statements_applied, statements_total, error, applied_by)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (version) DO UPDATE SET
        name = excluded.name, checksum = excluded.checksum, success = excluded.success,
        applied_at = now(), duration_ms = excluded.duration_ms,
        statements_applied = excluded.statements_applied,
        statements_total = excluded.statements_total, error = excluded.error,
        applied_by = excluded.applied_by
    """
).format(table=TRACKING)


class Status(enum.Enum):
    APPLIED = "applied"
    ALREADY_APPLIED = "already applied"
    FAILED = "failed"
    CHECKSUM_CHANGED = "checksum changed"
    NOT_APPLIED = "not applied"
    HELD_BACK = "held back"


# lock_not_available (lock_timeout) and deadlock_detected: another session was in the way.
RETRYABLE = ("55P03", "40P01")
MAX_RETRY_WAIT_S = 60.0


@dataclass(frozen=True)
class Policy:
    """How production applies migrations: a lock_timeout and bounded retries with backoff."""

    lock_timeout_ms: float
    retries: int
    retry_wait_s: float
    hold_backs: Mapping[str, timedelta] = field(default_factory=dict)  # by version
    sleep: Callable[[float], None] = time.sleep

    def wait(self, attempt: int) -> float:
        """Seconds before retry ``attempt`` (1-based): doubling, capped."""
        return float(min(self.retry_wait_s * 2 ** (attempt - 1), MAX_RETRY_WAIT_S))


@dataclass(frozen=True)
class Attempt:
    """A try that a lock timeout (or deadlock) stopped."""

    error: str
    statement_line: int | None
    blockers: tuple[str, ...]
    dropped_index: str | None = None
    left_index: str | None = None  # an INVALID index that could not be dropped


@dataclass(frozen=True)
class Failure:
    """Why a migration failed, located in its file."""

    error: str
    sqlstate: str | None
    statement: Statement | None
    line: int | None
    statements_committed: int


@dataclass(frozen=True)
class Outcome:
    migration: Migration
    status: Status
    duration_ms: float = 0.0
    statements_run: int = 0
    failure: Failure | None = None
    blocked_by: Outcome | None = None
    recorded_checksum: str | None = None
    attempts: tuple[Attempt, ...] = ()
    eligible_at: datetime | None = None
    held_since: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status in (Status.APPLIED, Status.ALREADY_APPLIED)

    def describe_failure(self, rel: Callable[[Migration], str]) -> str:
        """The message a failing migration item shows: where, what, what state it left."""
        m = self.migration
        if self.status is Status.CHECKSUM_CHANGED:
            return (
                f"{rel(m)}: already applied with checksum {self.recorded_checksum}, but the file "
                f"now has checksum {m.checksum}\n"
                "  an applied migration must never change: restore the file as it was applied "
                "and put the change in a new migration"
            )
        failure = self.failure
        assert failure is not None
        where = f"{rel(m)}:{failure.line}" if failure.line else rel(m)
        code = f" [{failure.sqlstate}]" if failure.sqlstate else ""
        lines = [f"{where}: {failure.error}{code}"]
        if failure.statement is not None:
            lines.append(f"    {failure.statement.excerpt()}")
        if self.attempts:
            lines.append(
                f"  gave up after {len(self.attempts)} attempt(s), each stopped by lock_timeout: "
                "another session held a lock the migration needed"
            )
            blockers = dict.fromkeys(b for a in self.attempts for b in a.blockers)
            lines += [f"    in the way: {b}" for b in list(blockers)[:5]]
            dropped = [a.dropped_index for a in self.attempts if a.dropped_index]
            if dropped:
                lines.append(
                    "  the INVALID index each failed CREATE INDEX CONCURRENTLY left was dropped "
                    f"({dropped[0]})"
                )
            left = next((a.left_index for a in self.attempts if a.left_index), None)
            if left:
                lines.append(
                    f"  the INVALID index {left} it left could not be dropped (a session is in the "
                    f"way): run DROP INDEX CONCURRENTLY {left}; before the next deploy"
                )
        total = len(m.statements)
        if m.transactional:
            lines.append(
                f"  the file ran in one transaction, which was rolled back: none of its {total} "
                "statements is applied"
            )
        else:
            done = failure.statements_committed
            ran = "statement 1" if done == 1 else f"statements 1-{done}"
            lines.append(
                f"  the file runs statement by statement ({m.autocommit_reason}): {ran} of "
                f"{total} ran before the failure and stay applied; make the file safe to re-run "
                "(IF NOT EXISTS, or a guarded DO block)"
                if done
                else f"  the file runs statement by statement ({m.autocommit_reason}): its first "
                "statement failed"
            )
        if failure.statement is not None and failure.statement.concurrent_index:
            lines.append(
                "  a failed CREATE INDEX CONCURRENTLY leaves its index behind, INVALID: drop it "
                f"(DROP INDEX CONCURRENTLY IF EXISTS {failure.statement.concurrent_index}) "
                "before the file runs again"
            )
        lines.append("  fix the migration and re-run the gate; later migrations were not applied")
        return "\n".join(lines)


class Runner:
    """Applies a release's migrations to one database, once, in order."""

    def __init__(
        self,
        conn: Conn,
        migrations: Sequence[Migration],
        progress: Progress,
        applied_by: str,
        watch: Watch | None = None,
        policy: Policy | None = None,
        blockers: Callable[[Statement], list[str]] | None = None,
    ) -> None:
        self._conn = conn
        self._watch = watch
        self._policy = policy
        self._blockers = blockers
        self._migrations = list(migrations)
        self._progress = progress
        self._applied_by = applied_by
        self._recorded: dict[str, tuple[str, bool, datetime]] | None = None
        self._now: datetime | None = None
        self._outcomes: list[Outcome] = []

    @property
    def migrations(self) -> list[Migration]:
        return list(self._migrations)

    @property
    def started(self) -> bool:
        return bool(self._outcomes)

    def recorded(self) -> dict[str, tuple[str, bool, datetime]]:
        """What the tracking table said before this run: version → (checksum, success,
        applied_at), and the server's clock, which hold-backs are counted by."""
        if self._recorded is None:
            self._conn.execute(CREATE_TRACKING)
            rows = self._conn.execute(
                sql.SQL("SELECT version, checksum, success, applied_at FROM {}").format(TRACKING)
            ).fetchall()
            self._recorded = {str(v): (str(c), bool(s), a) for v, c, s, a in rows}  # type: ignore[misc]
            if self._policy is not None:
                self._conn.execute(
                    "SELECT set_config('lock_timeout', %s, false)",
                    (f"{self._policy.lock_timeout_ms:.0f}ms",),
                )
            row = self._conn.execute("SELECT now()").fetchone()
            assert row is not None and isinstance(row[0], datetime)
            self._now = row[0]
        return self._recorded

    def outcome(self, index: int) -> Outcome:
        """The outcome of migration ``index``, applying everything before it first."""
        while len(self._outcomes) <= index:
            self._outcomes.append(self._next(self._migrations[len(self._outcomes)]))
        return self._outcomes[index]

    def apply_all(self) -> list[Outcome]:
        if self._migrations:
            self.outcome(len(self._migrations) - 1)
        return list(self._outcomes)

    def _next(self, migration: Migration) -> Outcome:
        # Facts about applied files are reported whatever happened before them, so every
        # edited file shows up at once; only pending files wait for earlier failures.
        recorded = self.recorded().get(migration.version)
        if recorded is not None and recorded[1]:
            if recorded[0] != migration.checksum:
                return Outcome(migration, Status.CHECKSUM_CHANGED, recorded_checksum=recorded[0])
            return Outcome(migration, Status.ALREADY_APPLIED)
        blocker = next((o for o in self._outcomes if not o.ok), None)
        if blocker is not None:
            return Outcome(migration, Status.NOT_APPLIED, blocked_by=blocker)
        hold_back = self._policy.hold_backs.get(migration.version) if self._policy else None
        if hold_back is not None:
            held = self._held(migration, hold_back)
            if held is not None:
                return held
        return self._apply(migration)

    def _held(self, migration: Migration, hold_back: timedelta) -> Outcome | None:
        """A held-back migration's outcome while it must wait, or ``None`` once it may run.

        The period runs from when the migrations before it were applied: now, if this run
        applied any of them; else the latest ``applied_at`` the tracking table has for them.
        """
        assert self._now is not None
        if any(o.status is Status.APPLIED for o in self._outcomes):
            since = self._now
        else:
            earlier = [
                applied_at
                for version, (_, ok, applied_at) in self.recorded().items()
                if ok and version_key(version) < version_key(migration.version)
            ]
            if not earlier:
                return None  # nothing before it: no release to wait behind
            since = max(earlier)
        eligible = since + hold_back
        if eligible <= self._now:
            return None
        return Outcome(migration, Status.HELD_BACK, eligible_at=eligible, held_since=since)

    def _apply(self, migration: Migration) -> Outcome:
        how = "in one transaction" if migration.transactional else "statement by statement"
        count = len(migration.statements)
        noun = "statement" if count == 1 else "statements"
        self._progress(f"applying {migration.id} ({count} {noun}, {how})")
        watching: AbstractContextManager[StatementLog] = (
            self._watch(migration, self._conn)
            if self._watch is not None
            else contextlib.nullcontext(_Unobserved())
        )
        attempts: list[Attempt] = []
        with watching as timeline:
            started = time.monotonic()
            done = 0
            while True:
                failure = (
                    self._run_transactional(migration, timeline)
                    if migration.transactional
                    else self._run_autocommit(migration, timeline, done)
                )
                if failure is None or not self._retry(migration, failure, attempts):
                    break
                done = failure.statements_committed
            duration_ms = (time.monotonic() - started) * 1000
        total = len(migration.statements)
        run = total if failure is None else failure.statements_committed
        self._conn.execute(
            RECORD,
            (
                migration.version,
                migration.name,
                migration.checksum,
                failure is None,
                duration_ms,
                run,
                total,
                None if failure is None else failure.error,
                self._applied_by,
            ),
        )
        if failure is not None:
            self._progress(f"{migration.id} FAILED after {duration_ms / 1000:.1f}s")
            return Outcome(
                migration, Status.FAILED, duration_ms, run, failure, attempts=tuple(attempts)
            )
        self._progress(f"{migration.id} applied in {duration_ms / 1000:.1f}s")
        return Outcome(migration, Status.APPLIED, duration_ms, run, attempts=tuple(attempts))

    def _retry(self, migration: Migration, failure: Failure, attempts: list[Attempt]) -> bool:
        """After a lock timeout: clean up, wait, and say whether to try again."""
        policy = self._policy
        if policy is None or failure.sqlstate not in RETRYABLE:
            return False
        statement = failure.statement
        blockers = tuple(self._blockers(statement)) if self._blockers and statement else ()
        dropped, left = self._drop_invalid_index(statement) if statement else (None, None)
        attempts.append(Attempt(failure.error, failure.line, blockers, dropped, left))
        if len(attempts) > policy.retries or left:
            return False
        wait = policy.wait(len(attempts))
        self._progress(
            f"{migration.id}: {failure.error} (attempt {len(attempts)} of "
            f"{policy.retries + 1}); retrying in {wait:g}s"
        )
        policy.sleep(wait)
        return True

    def _drop_invalid_index(self, statement: Statement) -> tuple[str | None, str | None]:
        """A failed CREATE INDEX CONCURRENTLY leaves its index INVALID: drop it before a retry
        (only if it is there and invalid: never an index someone else built). Returns (dropped,
        left behind)."""
        name = statement.concurrent_index
        if not name or name == "(unnamed)":
            return None, None
        find = (
            "SELECT i.indexrelid::regclass::text FROM pg_index i"
            " WHERE i.indexrelid = to_regclass(%s) AND NOT i.indisvalid"
        )
        row = self._conn.execute(find, (name,)).fetchone()
        if row is None:
            return None, None
        qualified = str(row[0])
        drop = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
            sql.SQL(".").join(sql.Identifier(part) for part in _split_qualified(qualified))
        )
        try:
            self._conn.execute(drop)
        except psycopg.Error:
            return None, qualified
        return qualified, None

    def _run_transactional(self, migration: Migration, log: StatementLog) -> Failure | None:
        current: Statement | None = None
        try:
            with self._conn.transaction():
                for statement in migration.statements:
                    current = statement
                    log.started(statement)
                    self._conn.execute(statement.text)
                    log.finished(statement, self._conn, in_transaction=True)
        except psycopg.Error as exc:
            return _failure(exc, current, 0)
        return None

    def _run_autocommit(
        self, migration: Migration, log: StatementLog, start: int = 0
    ) -> Failure | None:
        for done, statement in enumerate(migration.statements):
            if done < start:
                continue  # committed by an earlier attempt
            log.started(statement)
            try:
                self._conn.execute(statement.text)
                log.finished(statement, self._conn, in_transaction=False)
            except psycopg.Error as exc:
                if self._conn.info.transaction_status != pq.TransactionStatus.IDLE:
                    # The file opened a transaction of its own and failed inside it.
                    self._conn.execute("ROLLBACK")
                return _failure(exc, statement, done)
        if self._conn.info.transaction_status != pq.TransactionStatus.IDLE:
            self._conn.execute("ROLLBACK")
            return Failure(
                "the file left a transaction open (BEGIN without COMMIT); it was rolled back",
                None,
                None,
                None,
                len(migration.statements),
            )
        return None


def _failure(exc: psycopg.Error, statement: Statement | None, committed: int) -> Failure:
    diag = exc.diag
    message = diag.message_primary or str(exc).splitlines()[0]
    if diag.message_detail:
        message += f" ({diag.message_detail})"
    line = statement.line if statement else None
    position = diag.statement_position
    if statement is not None and position and position.isdigit():
        line = statement.line_of(int(position))
    return Failure(f"ERROR: {message}", diag.sqlstate, statement, line, committed)


def _split_qualified(name: str) -> list[str]:
    """``schema.index`` as regclass prints it (quoted where needed) → its parts, unquoted."""
    import csv

    row = next(csv.reader([name], delimiter=".", quotechar='"'))
    return [part for part in row if part]
