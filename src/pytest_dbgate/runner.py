"""Applying migrations in version order and recording them in the tracking table.

A file runs in one transaction (all or nothing) unless it cannot: then statement by statement in
autocommit, and a failure records exactly which statements had already run. The first failure
stops the run; later files are left unapplied. Applying is lazy and incremental: asking for the
outcome of migration *n* applies everything up to *n* once, whoever asks first.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import psycopg
from psycopg import pq, sql

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
    ) -> None:
        self._conn = conn
        self._watch = watch
        self._migrations = list(migrations)
        self._progress = progress
        self._applied_by = applied_by
        self._recorded: dict[str, tuple[str, bool]] | None = None
        self._outcomes: list[Outcome] = []

    @property
    def migrations(self) -> list[Migration]:
        return list(self._migrations)

    @property
    def started(self) -> bool:
        return bool(self._outcomes)

    def recorded(self) -> dict[str, tuple[str, bool]]:
        """What the tracking table said before this run: version → (checksum, success)."""
        if self._recorded is None:
            self._conn.execute(CREATE_TRACKING)
            rows = self._conn.execute(
                sql.SQL("SELECT version, checksum, success FROM {}").format(TRACKING)
            ).fetchall()
            self._recorded = {str(v): (str(c), bool(s)) for v, c, s in rows}
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
        return self._apply(migration)

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
        with watching as timeline:
            started = time.monotonic()
            failure = (
                self._run_transactional(migration, timeline)
                if migration.transactional
                else self._run_autocommit(migration, timeline)
            )
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
            return Outcome(migration, Status.FAILED, duration_ms, run, failure)
        self._progress(f"{migration.id} applied in {duration_ms / 1000:.1f}s")
        return Outcome(migration, Status.APPLIED, duration_ms, run)

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

    def _run_autocommit(self, migration: Migration, log: StatementLog) -> Failure | None:
        for done, statement in enumerate(migration.statements):
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
