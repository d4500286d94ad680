"""What applying a migration came to, and what its item says when it did not go well.

A failure says where (file and line), what (PostgreSQL's error, or the tracking table that could
not be written, or the statement whose outcome is unknown), what state it left (which statements
are applied and recorded) and what to do; the runner decides, these only say.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pytest_dbgate.migrations.parse import Migration, Statement
from pytest_dbgate.migrations.tracking import MIGRATIONS_NAME, STATEMENTS_NAME, resolution_sql


class Status(enum.Enum):
    APPLIED = "applied"
    ALREADY_APPLIED = "already applied"
    FAILED = "failed"
    CHECKSUM_CHANGED = "checksum changed"
    NOT_APPLIED = "not applied"
    HELD_BACK = "held back"


class Cause(enum.Enum):
    """Why a migration failed."""

    STATEMENT = "statement"  # PostgreSQL refused a statement
    TRACKING = "tracking"  # the tracking tables could not be written
    IN_DOUBT = "in doubt"  # a statement may or may not have taken effect
    JOURNAL = "journal"  # the journal of an earlier run does not fit the file
    CONNECTION = "connection"  # the session was lost mid-way
    CLEANUP = "cleanup"  # what an earlier run left (an INVALID index) could not be removed


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
    """Why a migration failed, located in its file, and what stayed applied."""

    error: str
    sqlstate: str | None
    statement: Statement | None
    line: int | None
    statements_committed: int  # statements of the file applied (and recorded) after it
    cause: Cause = Cause.STATEMENT
    ordinal: int | None = None  # 1-based position of the statement in the file
    detail: str = ""  # the state it left, for tracking and in-doubt failures
    cleaned: str | None = None  # the INVALID index a failed build left, dropped
    left: str | None = None  # … or left behind, as it could not be dropped


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
    resumed_after: int = 0  # statements an earlier run had applied, not run again
    notes: tuple[str, ...] = ()  # in-doubt statements settled from the catalog
    released_early: bool = False
    # A held-back migration whose period has passed: why it still waits (production's metrics),
    # or, once applied, the watch that released it.
    waits_for: str | None = None
    needs_watch: bool = False  # held for its period, and then for a passing watch
    # Not applied by this run: a restore point of an earlier run holds it (staging), and that
    # run's figures are these; when that run started.
    cached_from: str | None = None
    released_by: str | None = None
    recorded_by: str | None = None  # already applied, as the migration tool's history says

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
        if failure.cause is not Cause.STATEMENT:
            return _describe_stop(where, m, failure)
        code = f" [{failure.sqlstate}]" if failure.sqlstate else ""
        lines = [f"{where}: {failure.error}{code}"]
        if failure.statement is not None:
            lines.append(f"    {failure.statement.excerpt()}")
        lines += self._attempt_lines()
        total = len(m.statements)
        if m.transactional:
            lines.append(
                f"  the file ran in one transaction, which was rolled back: none of its {total} "
                "statements is applied"
            )
        else:
            lines.append(_applied_so_far(m, failure.statements_committed))
        index = failure.statement.concurrent_index if failure.statement else None
        if failure.cleaned and not self.attempts:
            lines.append(
                f"  the INVALID index the failed build left was dropped ({failure.cleaned})"
            )
        elif failure.left and not self.attempts:
            lines.append(
                f"  the INVALID index {failure.left} it left could not be dropped: the next run "
                f"drops it first (or run DROP INDEX CONCURRENTLY {failure.left};)"
            )
        elif index == "(unnamed)":
            lines.append(
                "  a failed CREATE INDEX CONCURRENTLY leaves its index behind, INVALID, and an "
                "unnamed one cannot be found again by name, so it is not retried: drop it (SELECT "
                "indexrelid::regclass FROM pg_index WHERE NOT indisvalid) and name the index"
            )
        lines.append(
            "  what to do: fix the migration and re-run the gate; later migrations were not applied"
        )
        return "\n".join(lines)

    def _attempt_lines(self) -> list[str]:
        if not self.attempts:
            return []
        lines = [
            f"  gave up after {len(self.attempts)} attempt(s), each stopped by lock_timeout: "
            "another session held a lock the migration needed"
        ]
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
        return lines


def _applied_so_far(m: Migration, done: int) -> str:
    total = len(m.statements)
    how = f"the file runs statement by statement ({m.autocommit_reason})"
    if not done:
        return f"  {how}: none of its {total} statements is applied"
    ran = "statement 1 of {total} is" if done == 1 else f"statements 1-{done} of {total} are"
    them = "it" if done == 1 else "them"
    return (
        f"  {how}: {ran.format(total=total)} applied and recorded in {STATEMENTS_NAME}; the next "
        f"run resumes at statement {done + 1} and does not run {them} again (leave {them} as "
        f"{'it is' if done == 1 else 'they are'})"
    )


def _describe_stop(where: str, m: Migration, failure: Failure) -> str:
    """A failure that is not PostgreSQL refusing a statement: the tracking tables, an unknown
    outcome, a journal that does not fit, a lost session."""
    lines = [f"{where}: {failure.error}"]
    if failure.statement is not None:
        lines.append(f"    statement {failure.ordinal}: {failure.statement.excerpt()}")
    if failure.detail and failure.cause is not Cause.CLEANUP:
        lines.append(f"  {failure.detail}")
    if failure.cause is Cause.IN_DOUBT:
        assert failure.ordinal is not None
        took, did_not = resolution_sql(m.version, failure.ordinal)
        lines += [
            "  what to do: look on the database whether it took effect (the statement is above), "
            "then record what you found and re-run the deploy, which resumes there:",
            f"    it took effect:      {took}",
            f"    it did not (or you undid what it did): {did_not}",
        ]
    elif failure.cause is Cause.TRACKING:
        lines.append(
            f"  what to do: find the session in the way of {MIGRATIONS_NAME} / {STATEMENTS_NAME} "
            "(SELECT pid, state, query FROM pg_stat_activity WHERE pid IN (SELECT pid FROM "
            "pg_locks WHERE relation IN ('dbgate.migrations'::regclass, "
            "'dbgate.statements'::regclass))), let it finish, and re-run; nothing later was "
            "applied"
        )
    elif failure.cause is Cause.JOURNAL:
        lines.append(
            "  what to do: restore the statements an earlier run applied exactly as they were, "
            "and put any change in a new migration"
        )
    elif failure.cause is Cause.CLEANUP:
        lines.append(f"  what to do: {failure.detail}")
    elif failure.cause is Cause.CONNECTION:
        lines.append(
            "  what to do: re-run the deploy once the database is reachable; it reads the "
            "tracking tables and resumes after the last statement known applied"
        )
    if not m.transactional and failure.cause is not Cause.JOURNAL:
        lines.append(_applied_so_far(m, failure.statements_committed))
    lines.append("  later migrations were not applied")
    return "\n".join(lines)
