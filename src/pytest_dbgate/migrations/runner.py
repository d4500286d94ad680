"""Applying migrations in version order, each statement exactly once, whatever happens.

A file runs in one transaction with its ``dbgate.migrations`` row: all of it and its record, or
nothing. A file that cannot (it holds ``CREATE INDEX CONCURRENTLY``, its own ``BEGIN``/``COMMIT``,
``-- dbgate: no-transaction``) runs statement by statement, each with its journal row (see
:mod:`pytest_dbgate.migrations.tracking`): in the statement's transaction when it can share
one, else marked
*in doubt* before and *applied* after. A run resumes after the last statement the journal knows
applied; a statement left in doubt by a crash is settled from the catalog where that can tell
(an index that is there and valid), else the run stops and says how to check it. A failure to
write the tracking tables stops the run as a failure of its own, with nothing more applied.

The first failure stops the run; later files are left unapplied. Applying is lazy: asking for
the outcome of migration *n* applies everything up to *n* once, whoever asks first.

On production a :class:`~pytest_dbgate.migrations.holdbacks.Policy` adds a ``lock_timeout``
and bounded retries on lock timeouts (with backoff), which re-run only the statement that was
refused, never a committed one, and hold-backs (:mod:`pytest_dbgate.migrations.holdbacks`
decides whether a held-back file goes out in this run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime

import psycopg

from pytest_dbgate.core.interruptions import Interruptions
from pytest_dbgate.core.results import Progress
from pytest_dbgate.migrations.apply import (
    MIGRATION_RECORDED,
    RETRYABLE,
    Applier,
    Boundary,
    Hooks,
    StatementLog,
    stop_failure,
    tracking_failure,
)
from pytest_dbgate.migrations.history import Applied, history_for
from pytest_dbgate.migrations.holdbacks import Period, Policy, Release, release
from pytest_dbgate.migrations.outcomes import Attempt, Cause, Failure, Outcome, Status
from pytest_dbgate.migrations.parse import Migration, Statement
from pytest_dbgate.migrations.resume import Resuming
from pytest_dbgate.migrations.settle import drop_invalid_index
from pytest_dbgate.migrations.tracking import TrackedMigration, Tracking
from pytest_dbgate.pg.connections import Conn


class _Unobserved:
    def started(self, statement: Statement) -> None:
        pass

    def finished(self, statement: Statement, conn: Conn, in_transaction: bool) -> None:
        pass


# Something to run around each migration: it receives the migration and the migrating session.
Watch = Callable[[Migration, Conn], AbstractContextManager[StatementLog]]


class Runner(Resuming):
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
        boundary: Boundary | None = None,
        interruptions: Interruptions | None = None,
        keep_lock: Callable[[], None] | None = None,
        timeout_s: float | None = None,
        checkpoint: Callable[[Migration, Outcome], Conn] | None = None,
    ) -> None:
        self._conn = conn
        self._checkpoint = checkpoint
        self._timeout_s = timeout_s
        layouts = {m.layout for m in migrations}
        self._tracking = Tracking(conn, history_for(layouts.pop()) if len(layouts) == 1 else None)
        self._tool: Applied | None = None
        self._watch = watch
        self._policy = policy
        self._blockers = blockers
        self._interruptions = interruptions
        self._applier = Applier(
            conn,
            self._tracking,
            policy.retries if policy else 0,
            policy.wait if policy else lambda attempt: 0.0,
            policy.sleep if policy else time.sleep,
            Hooks(boundary, interruptions, self._settings, keep_lock),
        )
        self._migrations = list(migrations)
        self._progress = progress
        self._applied_by = applied_by
        self._recorded: dict[str, TrackedMigration] | None = None
        self._now: datetime | None = None
        self._outcomes: list[Outcome] = []

    @property
    def migrations(self) -> list[Migration]:
        return list(self._migrations)

    @property
    def started(self) -> bool:
        return bool(self._outcomes)

    def prepare(self) -> None:
        """Read the migration tool's history, create and read the tracking tables, read the
        server's clock (hold-backs count by it) and set the session up, before anything is
        applied; raises :class:`psycopg.Error`, or :class:`HistoryError` for a tool's history
        the tool itself would stop at."""
        if self._recorded is not None:
            return
        history = self._tracking.history
        # Read (and so check) the tool's table before creating anything: a table of that name
        # may be another tool's.
        tool = history.read(self._conn, self._migrations) if history else None
        self._tracking.create()
        recorded = self._tracking.migrations()
        self._settings()
        row = self._conn.execute("SELECT now()").fetchone()
        assert row is not None and isinstance(row[0], datetime)
        self._now = row[0]
        self._recorded = recorded
        self._tool = tool
        if tool is not None:
            ours = {v for v, r in recorded.items() if r.success}
            applied = [m for m in self._migrations if m.version in tool.versions | ours]
            self._progress(
                f"{len(applied)} of {len(self._migrations)} migrations already applied (as "
                f"{tool.table} and dbgate.migrations record them), "
                f"{len(self._migrations) - len(applied)} pending"
            )

    def _settings(self) -> None:
        """The gate's own settings of the migrating session: on production, the lock_timeout,
        and a check that cancels a statement within a second of its client going away (a killed
        run's statement then stops holding its locks, and the gate lock); everywhere, the
        migration timeout as the statement_timeout."""
        if self._timeout_s is not None:
            self._conn.execute(
                "SELECT set_config('statement_timeout', %s, false)",
                (f"{self._timeout_s * 1000:.0f}ms",),
            )
        if self._policy is None:
            return
        self._conn.execute(
            "SELECT set_config('lock_timeout', %s, false)",
            (f"{self._policy.lock_timeout_ms:.0f}ms",),
        )
        if self._conn.info.server_version >= 140000:
            self._conn.execute("SET client_connection_check_interval = '1s'")

    def _fresh_session(self) -> None:
        """Each file starts from the session the gate opened: what an earlier file set
        (search_path, a role, lock_timeout = 0) does not leak into it, on staging as on
        production, so a file runs the same way after a crash, a hold-back or a resume."""
        self._conn.execute("RESET SESSION AUTHORIZATION")
        self._conn.execute("RESET ALL")
        self._settings()

    def recorded(self) -> dict[str, TrackedMigration]:
        """What ``dbgate.migrations`` said before this run, by version."""
        self.prepare()
        assert self._recorded is not None
        return self._recorded

    def outcome(self, index: int) -> Outcome:
        """The outcome of migration ``index``, applying everything before it first."""
        held = self._interruptions.held() if self._interruptions else contextlib.nullcontext()
        with held:
            while len(self._outcomes) <= index:
                migration = self._migrations[len(self._outcomes)]
                outcome = self._next(migration)
                self._outcomes.append(outcome)
                if self._checkpoint is not None and outcome.status is Status.APPLIED:
                    # The point is a copy of the database, which must have no session while it
                    # is made: this one goes, and the checkpoint hands a new one.
                    self._conn.close()
                    self._rebind(self._checkpoint(migration, outcome))
        return self._outcomes[index]

    @property
    def outcomes_so_far(self) -> list[Outcome]:
        """The outcomes of the migrations up to the one applied last, in order."""
        return list(self._outcomes)

    def preset(self, outcomes: Sequence[Outcome]) -> None:
        """The first migrations' outcomes, from an earlier run's restore point (the database
        already holds what they did): this run applies from the next one."""
        assert not self._outcomes, "preset before anything is applied"
        self._outcomes = list(outcomes)

    def _rebind(self, conn: Conn) -> None:
        self._conn = conn
        self._tracking.rebind(conn)
        self._applier.rebind(conn)
        self._settings()

    def apply_all(self) -> list[Outcome]:
        if self._migrations:
            self.outcome(len(self._migrations) - 1)
        return list(self._outcomes)

    # -- one migration -----------------------------------------------------------------------

    def _next(self, migration: Migration) -> Outcome:
        # Facts about applied files are reported whatever happened before them, so every
        # edited file shows up at once; only pending files wait for earlier failures.
        recorded = self.recorded().get(migration.version)
        if recorded is not None and recorded.success:
            if recorded.checksum != migration.checksum:
                return Outcome(
                    migration, Status.CHECKSUM_CHANGED, recorded_checksum=recorded.checksum
                )
            return Outcome(migration, Status.ALREADY_APPLIED)
        if self._tool is not None and migration.version in self._tool.versions:
            return Outcome(migration, Status.ALREADY_APPLIED, recorded_by=self._tool.table)
        blocker = next((o for o in self._outcomes if not o.ok), None)
        if blocker is not None:
            return Outcome(migration, Status.NOT_APPLIED, blocked_by=blocker)
        if self._policy is not None:
            assert self._now is not None
            period = Period(
                self._now,
                any(o.status is Status.APPLIED for o in self._outcomes),
                self.recorded(),
                self._migrations,
                self._tracking.held_since,
            )
            decided = release(migration, self._policy, period, self._progress)
            if decided.held is not None:
                return decided.held
        else:
            decided = Release()
        refused = _outside(migration)
        if refused is not None:
            return Outcome(migration, Status.FAILED, failure=refused)
        self._applier.stop_if_asked(f"before {migration.id}")
        try:
            return self._apply(migration, decided.early, decided.released_by)
        except psycopg.Error as exc:  # reading the journal, or the session lost between steps
            known = self._applier.known.get(migration.version, 0)
            failure = stop_failure(self._conn, exc, None, known)
            return Outcome(migration, Status.FAILED, failure=failure)

    @contextlib.contextmanager
    def _watchdog(self, started: float) -> Iterator[None]:
        """Cancel the file's running statement when its time is up, whatever it set its own
        statement_timeout to (an endless loop in one statement, many slow ones in a file)."""
        if self._timeout_s is None:
            yield
            return
        self._applier.deadline = started + self._timeout_s
        timer = threading.Timer(self._timeout_s, lambda: self._conn.cancel_safe(timeout=5))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            self._applier.deadline = None

    def _timed_out(self, failure: Failure, started: float) -> bool:
        return (
            self._timeout_s is not None
            and failure.sqlstate == "57014"  # query_canceled
            and time.monotonic() - started >= self._timeout_s * 0.99
        )

    def _timeout_message(self, failure: Failure) -> str:
        where = f" in statement {failure.ordinal}" if failure.ordinal else ""
        return (
            f"ran longer than the migration timeout ({self._timeout_s:g} s) and was cancelled"
            f"{where}; make the migration faster (batches, CONCURRENTLY), or raise "
            "--dbgate-migration-timeout / dbgate_migration_timeout if it really takes that long"
        )

    def _apply(self, migration: Migration, early: bool, released_by: str | None) -> Outcome:
        self._fresh_session()
        resumed, notes, stop = self._resume(migration)
        if stop is not None:
            self._record_failure(migration, stop, 0.0)
            return Outcome(migration, Status.FAILED, failure=stop, resumed_after=resumed)
        how = "in one transaction" if migration.transactional else "statement by statement"
        count = len(migration.statements)
        noun = "statement" if count == 1 else "statements"
        resuming = (
            f", resuming after statement {resumed}: an earlier run applied 1-{resumed}"
            if resumed
            else ""
        )
        self._progress(f"applying {migration.id} ({count} {noun}, {how}{resuming})")
        watching: AbstractContextManager[StatementLog] = (
            self._watch(migration, self._conn)
            if self._watch is not None
            else contextlib.nullcontext(_Unobserved())
        )
        attempts: list[Attempt] = []
        applied_by = self._applied_by + (
            "; released early (--dbgate-release-early)"
            if early
            else ("; released after a passing watch" if released_by else "")
        )
        started = time.monotonic()
        with watching as timeline, self._watchdog(started):
            done = resumed
            while True:
                failure = (
                    self._applier.transactional(migration, timeline, applied_by, started)
                    if migration.transactional
                    else self._applier.stepwise(migration, timeline, done, applied_by)
                )
                if failure is not None and failure.cause is Cause.STATEMENT:
                    # Cancelled because the run was asked to stop: not the migration's fault,
                    # and what it did is rolled back or recorded.
                    self._applier.stop_if_asked(
                        f"in {migration.id}, whose statement {failure.ordinal} was cancelled "
                        "and rolled back"
                    )
                if failure is None or not self._retry(migration, failure, attempts):
                    break
                done = self._applier.applied_through(migration)
        duration_ms = (time.monotonic() - started) * 1000
        if failure is not None and self._timed_out(failure, started):
            failure = dataclasses.replace(failure, error=self._timeout_message(failure))
        if failure is None and not migration.transactional:
            failure = self._record_success(migration, duration_ms, applied_by)
        run = count if failure is None else failure.statements_committed
        if failure is not None:
            self._record_failure(migration, failure, duration_ms)
            self._progress(f"{migration.id} FAILED after {duration_ms / 1000:.1f}s")
            return Outcome(
                migration,
                Status.FAILED,
                duration_ms,
                run - resumed,
                failure,
                attempts=tuple(attempts),
                resumed_after=resumed,
                notes=notes,
            )
        self._applier.point(MIGRATION_RECORDED, migration, None)
        outcome = Outcome(
            migration,
            Status.APPLIED,
            duration_ms,
            run - resumed,
            attempts=tuple(attempts),
            resumed_after=resumed,
            notes=notes,
            released_early=early,
            released_by=released_by,
        )
        self._applier.stop_if_asked(f"after {migration.id}")
        return outcome

    # -- after a failure ---------------------------------------------------------------------

    def _retry(self, migration: Migration, failure: Failure, attempts: list[Attempt]) -> bool:
        """After a lock timeout: clean up, wait, and say whether to try again."""
        policy = self._policy
        if policy is None or failure.cause is not Cause.STATEMENT:
            return False
        if failure.sqlstate not in RETRYABLE:
            return False
        statement = failure.statement
        if statement is not None and statement.concurrent_index == "(unnamed)":
            return False  # its INVALID index cannot be found by name to clean up before a retry
        blockers = tuple(self._blockers(statement)) if self._blockers and statement else ()
        dropped, left = failure.cleaned, failure.left
        if statement is not None and dropped is None and left is None:
            dropped, left = drop_invalid_index(self._conn, statement)
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

    def _record_success(
        self, migration: Migration, duration_ms: float, applied_by: str
    ) -> Failure | None:
        """The row of a statement-by-statement file, once every statement is recorded."""
        try:
            self._tracking.write_migration(
                migration,
                success=True,
                duration_ms=duration_ms,
                applied=len(migration.statements),
                error=None,
                applied_by=applied_by,
            )
        except psycopg.Error as exc:
            return tracking_failure(
                exc,
                "dbgate.migrations",
                "every statement is applied and recorded in dbgate.statements; only the "
                "migration's own row is missing, which the next run writes without running "
                "anything",
                len(migration.statements),
            )
        return None

    def _record_failure(self, migration: Migration, failure: Failure, duration_ms: float) -> None:
        """The failed attempt in dbgate.migrations, when the session still allows it."""
        if self._conn.broken:
            return
        with contextlib.suppress(psycopg.Error):
            self._tracking.write_migration(
                migration,
                success=False,
                duration_ms=duration_ms,
                applied=failure.statements_committed,
                error=failure.error,
                applied_by=self._applied_by,
            )


def _outside(migration: Migration) -> Failure | None:
    """A file with a statement acting outside the migrated database is never applied, on staging
    (where its effect would land on the staging server, or on another server) or production."""
    for ordinal, statement in enumerate(migration.statements, 1):
        action = statement.outside
        if action is not None:
            return Failure(
                f"not applied: statement {ordinal} acts outside the migrated database (it "
                f"{action}); the gate never runs such a statement, on staging or production: "
                "take it out of the migration and have it done on purpose by whoever runs the "
                "server",
                None,
                statement,
                statement.line,
                0,
                Cause.STATEMENT,
                ordinal,
            )
    return None
