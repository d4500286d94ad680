"""Running one migration's statements on the migrating session, each with its record.

A file that runs in one transaction commits with its ``dbgate.migrations`` row. A file that runs
statement by statement journals each statement
(see :mod:`pytest_dbgate.migrations.tracking`): inside its
own transaction when the statement can share one (both commit or neither), inside the file's
own ``BEGIN``/``COMMIT`` block when it has one (the block's ``COMMIT`` commits its rows), and for
a statement that must run alone, *in doubt* before it runs and *applied* after. So whatever
stops a run, the journal says which statements took effect, or which one may have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import psycopg
from psycopg import pq
from psycopg.errors import QueryCanceled

from pytest_dbgate.core.interruptions import Interruptions
from pytest_dbgate.migrations.outcomes import Cause, Failure
from pytest_dbgate.migrations.parse import Migration, Statement
from pytest_dbgate.migrations.settle import drop_invalid_index
from pytest_dbgate.migrations.tracking import APPLIED, IN_DOUBT, Tracking, resolution_sql
from pytest_dbgate.pg.connections import Conn

# Where a run can stop, statement by statement (what the crash tests kill at): the statement
# not started; marked in doubt (runs alone); executed (not yet recorded, or, in one transaction,
# not yet committed); recorded with its journal row; a one-transaction file about to commit;
# the migration's row committed.
START = "statement:start"
MARKED = "statement:marked"
DONE = "statement:done"
RECORDED = "statement:recorded"
COMMIT = "migration:commit"
MIGRATION_RECORDED = "migration:recorded"
POINTS = (START, MARKED, DONE, RECORDED, COMMIT, MIGRATION_RECORDED)

# Told at each of those points (point, migration, 1-based statement or None for the file).
Boundary = Callable[[str, Migration, "int | None"], None]

# lock_not_available (lock_timeout) and deadlock_detected: another session was in the way.
RETRYABLE = ("55P03", "40P01")
# active_sql_transaction, invalid_transaction_termination: it cannot share a transaction.
MUST_RUN_ALONE = ("25001", "2D000")


class StatementLog(Protocol):
    """Told when each statement of a migration starts and ends (the lock monitor listens)."""

    def started(self, statement: Statement) -> None: ...

    def finished(self, statement: Statement, conn: Conn, in_transaction: bool) -> None: ...


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class Hooks:
    """What a run does around statements, besides applying them."""

    boundary: Boundary | None = None  # told at each point where a run can stop
    interruptions: Interruptions | None = None  # SIGTERM and Ctrl-C, held while applying
    settings: Callable[[], None] = _nothing  # the gate's own session settings (lock_timeout)
    keep_lock: Callable[[], None] | None = None  # take back a gate lock a statement let go


@dataclass(frozen=True)
class Step:
    """One statement of a statement-by-statement file, as it is applied."""

    migration: Migration
    ordinal: int  # 1-based position in the file
    statement: Statement
    log: StatementLog
    applied_by: str


class Applier:
    """Applies statements and writes their records, on one session."""

    def __init__(
        self,
        conn: Conn,
        tracking: Tracking,
        retries: int,
        wait: Callable[[int], float],
        sleep: Callable[[float], None],
        hooks: Hooks,
    ) -> None:
        self._conn = conn
        self._tracking = tracking
        self._retries = retries
        self._wait = wait
        self._sleep = sleep
        self._hooks = hooks
        self.known: dict[str, int] = {}  # statements known applied, by version
        # When the file's time is up (monotonic clock): no statement starts after it.
        self.deadline: float | None = None

    def rebind(self, conn: Conn) -> None:
        """Go on in a new session (the runner's, after a restore point was taken)."""
        self._conn = conn

    def applied_through(self, migration: Migration) -> int:
        """The last statement the journal knows applied (what a retry starts after)."""
        try:
            entries = self._tracking.journal(migration.version).get(migration.version, [])
        except psycopg.Error:
            return self.known.get(migration.version, 0)
        through = max((e.ordinal for e in entries if e.state == APPLIED), default=0)
        self.known[migration.version] = through
        return through

    def transactional(
        self, migration: Migration, log: StatementLog, applied_by: str, started: float
    ) -> Failure | None:
        conn = self._conn
        current: Statement | None = None
        ordinal = 0
        recording = False
        try:
            with conn.transaction():
                for ordinal, statement in enumerate(migration.statements, 1):
                    current = statement
                    self._begin_statement(migration, ordinal)
                    log.started(statement)
                    self._execute(statement)
                    log.finished(statement, conn, in_transaction=True)
                    self.point(DONE, migration, ordinal)
                recording = True
                self._tracking.write_migration(
                    migration,
                    success=True,
                    duration_ms=(time.monotonic() - started) * 1000,
                    applied=len(migration.statements),
                    error=None,
                    applied_by=applied_by,
                )
                self.point(COMMIT, migration, None)
        except psycopg.Error as exc:
            if conn.broken:
                return stop_failure(conn, exc, current, 0, ordinal)
            if recording:
                return tracking_failure(
                    exc,
                    "dbgate.migrations",
                    "the migration was rolled back with its row: none of its statements is applied",
                    0,
                )
            return statement_failure(exc, current, 0, ordinal)
        return None

    # -- statement by statement --------------------------------------------------------------

    def stepwise(
        self, migration: Migration, log: StatementLog, start: int, applied_by: str
    ) -> Failure | None:
        conn = self._conn
        try:
            self._reopen(migration, start)
            for ordinal, statement in enumerate(migration.statements, 1):
                if ordinal <= start:
                    continue  # applied by an earlier run or attempt: never again
                self._begin_statement(migration, ordinal)
                step = Step(migration, ordinal, statement, log, applied_by)
                failure = self._one(step)
                if failure is not None:
                    return failure
                self.point(RECORDED, migration, ordinal)
        except BaseException:
            _rollback(conn)  # the file's own transaction, if one is open: it did not commit
            raise
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            _rollback(conn)
            return Failure(
                "the file left a transaction open (BEGIN without COMMIT); it was rolled back",
                None,
                None,
                None,
                self.applied_through(migration),
            )
        return None

    def _reopen(self, migration: Migration, start: int) -> None:
        """Resuming inside the file's own block (after ``COMMIT AND CHAIN``, the block goes
        on): open it again as the file opened it, so what follows runs in one transaction, as
        it did on staging."""
        opened: Statement | None = None
        for statement in migration.statements[:start]:
            if statement.control == "begin":
                opened = statement
            elif statement.control in ("commit", "rollback", "prepare"):
                opened = opened if statement.chain else None
        idle = self._conn.info.transaction_status == pq.TransactionStatus.IDLE
        if opened is not None and idle:
            self._conn.execute(opened.text)

    def _one(self, step: Step) -> Failure | None:
        in_block = self._conn.info.transaction_status == pq.TransactionStatus.INTRANS
        if in_block or step.statement.control == "begin":
            return self._in_block(step)
        if step.statement.alone or step.statement.control == "prepared":
            return self._alone(step)
        return self._shared(step)

    def _shared(self, step: Step) -> Failure | None:
        """A statement and its journal row in one transaction: both commit or neither."""
        conn = self._conn
        recording = False
        try:
            with conn.transaction():
                step.log.started(step.statement)
                self._execute(step.statement)
                step.log.finished(step.statement, conn, in_transaction=False)
                self.point(DONE, step.migration, step.ordinal)
                recording = True
                self._journal(step, APPLIED)
        except psycopg.Error as exc:
            if not recording and not conn.broken and exc.sqlstate in MUST_RUN_ALONE:
                # It cannot share a transaction after all: nothing of it ran; run it alone.
                return self._alone(step)
            return self._refused(
                exc,
                step,
                recording,
                f"statement {step.ordinal} was rolled back with its journal row: it is not applied",
            )
        self.known[step.migration.version] = step.ordinal
        return None

    def _in_block(self, step: Step) -> Failure | None:
        """Inside the file's own transaction: the journal rows commit with its COMMIT."""
        conn = self._conn
        commits = step.statement.control in ("commit", "prepare")
        recording = commits
        try:
            step.log.started(step.statement)
            if commits:  # its row first, so the COMMIT commits it
                self._journal(step, APPLIED)
                recording = False
            self._execute(step.statement)
            step.log.finished(step.statement, conn, in_transaction=False)
            self.point(DONE, step.migration, step.ordinal)
            if not commits:
                recording = True
                self._journal(step, APPLIED)
        except psycopg.Error as exc:
            _rollback(conn)
            return self._refused(
                exc,
                step,
                recording,
                "the file's own transaction was rolled back with its journal rows",
            )
        if commits or conn.info.transaction_status == pq.TransactionStatus.IDLE:
            self.known[step.migration.version] = step.ordinal
        return None

    def _refused(self, exc: psycopg.Error, step: Step, recording: bool, undone: str) -> Failure:
        """A statement, or its journal row, failed in a transaction now rolled back."""
        known = self.known.get(step.migration.version, 0)
        if self._conn.broken:
            return stop_failure(self._conn, exc, step.statement, known, step.ordinal)
        if recording:
            return tracking_failure(exc, "dbgate.statements", undone, known)
        return statement_failure(exc, step.statement, known, step.ordinal)

    def _alone(self, step: Step) -> Failure | None:
        """A statement that commits on its own: in doubt while it runs, applied once done."""
        conn = self._conn
        statement, ordinal = step.statement, step.ordinal
        known = self.known.get(step.migration.version, 0)
        try:
            self._journal(step, IN_DOUBT)
        except psycopg.Error as exc:
            return tracking_failure(
                exc, "dbgate.statements", f"statement {ordinal} was not run", known
            )
        self.point(MARKED, step.migration, ordinal)
        step.log.started(statement)
        try:
            # Cancelling a statement that commits as it goes would leave part of it applied.
            self._execute(statement, cancellable=not statement.commits_itself)
            step.log.finished(statement, conn, in_transaction=False)
        except psycopg.Error as exc:
            _rollback(conn)
            if conn.broken or statement.commits_itself:
                why = (
                    "it COMMITs as it goes, so part of it may be applied"
                    if statement.commits_itself
                    else "the session was lost while it ran"
                )
                return Failure(
                    f"statement {ordinal} (line {statement.line}) failed and may have taken "
                    f"effect in part: {_error_text(exc)}",
                    exc.sqlstate,
                    statement,
                    statement.line,
                    known,
                    Cause.IN_DOUBT,
                    ordinal,
                    f"{why}; it stays 'in doubt' in dbgate.statements",
                )
            failure = statement_failure(exc, statement, known, ordinal)
            # It did not take effect; a failed index build leaves its index INVALID: dropped
            # here, or, if that fails too, left in doubt for the next run to settle.
            with contextlib.suppress(psycopg.Error):
                dropped, left = drop_invalid_index(conn, statement)
                if left is None:
                    self._tracking.forget(step.migration.version, ordinal)
                return dataclasses.replace(failure, cleaned=dropped, left=left)
            return failure
        self.point(DONE, step.migration, ordinal)
        return self._mark_applied(step, known)

    def _mark_applied(self, step: Step, known: int) -> Failure | None:
        """Record a statement that took effect: retried on lock timeouts, as it must never run
        again."""
        version, ordinal, statement = step.migration.version, step.ordinal, step.statement
        tries = 1 + self._retries
        for attempt in range(1, tries + 1):
            try:
                self._tracking.settle(version, ordinal, "ran to completion")
            except psycopg.Error as exc:
                if self._conn.broken or exc.sqlstate not in RETRYABLE or attempt == tries:
                    took, _ = resolution_sql(version, ordinal)
                    return Failure(
                        f"statement {ordinal} (line {statement.line}) took effect, but its journal "
                        f"row could not be marked applied: {_error_text(exc)}",
                        exc.sqlstate,
                        statement,
                        statement.line,
                        known,
                        Cause.TRACKING,
                        ordinal,
                        f"it stays 'in doubt' in dbgate.statements; it did take effect, so record "
                        f"that before the next run: {took}",
                    )
                self._sleep(self._wait(attempt))
                continue
            break
        self.known[version] = ordinal
        return None

    def _journal(self, step: Step, state: str) -> None:
        self._tracking.write_statement(
            step.migration, step.ordinal, step.statement, state, step.applied_by
        )

    def _execute(self, statement: Statement, cancellable: bool = True) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            # The watchdog cancelled the statement running when time was up; one that would
            # start after it fails the same way, through the same path.
            raise QueryCanceled("canceling statement due to the migration timeout")
        interruptions = self._hooks.interruptions
        if interruptions is None:
            self._conn.execute(statement.text)
        else:
            cancel = (lambda: self._conn.cancel_safe(timeout=5)) if cancellable else None
            with interruptions.statement(cancel):
                self._conn.execute(statement.text)
        if statement.session == "reset":  # RESET ALL, DISCARD ALL: the gate's settings back
            self._hooks.settings()

    def point(self, point: str, migration: Migration, ordinal: int | None) -> None:
        if self._hooks.boundary is not None:
            self._hooks.boundary(point, migration, ordinal)

    def stop_if_asked(self, where: str) -> None:
        if self._hooks.interruptions is not None:
            self._hooks.interruptions.check(where)

    def _begin_statement(self, migration: Migration, ordinal: int) -> None:
        """At a statement's start: tell the hook, stop if asked, hold the gate lock."""
        self.point(START, migration, ordinal)
        self.stop_if_asked(f"before statement {ordinal} of {migration.id}")
        if self._hooks.keep_lock is not None:
            self._hooks.keep_lock()


def _rollback(conn: Conn) -> None:
    if not conn.broken and conn.info.transaction_status != pq.TransactionStatus.IDLE:
        with contextlib.suppress(psycopg.Error):
            conn.execute("ROLLBACK")


def _error_text(exc: psycopg.Error) -> str:
    diag = exc.diag
    message = diag.message_primary or (str(exc).splitlines() or ["unknown error"])[0]
    if diag.message_detail:
        message += f" ({diag.message_detail})"
    return f"ERROR: {message}"


def statement_failure(
    exc: psycopg.Error, statement: Statement | None, committed: int, ordinal: int | None = None
) -> Failure:
    line = statement.line if statement else None
    position = exc.diag.statement_position
    if statement is not None and position and position.isdigit():
        line = statement.line_of(int(position))
    return Failure(_error_text(exc), exc.diag.sqlstate, statement, line, committed, ordinal=ordinal)


def tracking_failure(exc: psycopg.Error, table: str, state: str, committed: int) -> Failure:
    return Failure(
        f"could not write the tracking table {table}: {_error_text(exc)}",
        exc.sqlstate,
        None,
        None,
        committed,
        Cause.TRACKING,
        detail=state,
    )


def stop_failure(
    conn: Conn,
    exc: psycopg.Error,
    statement: Statement | None,
    committed: int,
    ordinal: int | None = None,
) -> Failure:
    """The session was lost (or the tracking tables could not be read) mid-way."""
    if conn.broken:
        return Failure(
            f"lost the session to the database: {_error_text(exc)}",
            exc.sqlstate,
            statement,
            statement.line if statement else None,
            committed,
            Cause.CONNECTION,
            ordinal,
            "what committed is recorded with it in the tracking tables",
        )
    return tracking_failure(exc, "dbgate.statements", "nothing more was applied", committed)
