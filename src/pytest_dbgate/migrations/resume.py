"""Resuming a file an earlier run left part-applied: where to start, what to replay, and when the
journal no longer fits the file."""

from __future__ import annotations

import dataclasses

import psycopg

from pytest_dbgate.core.results import Progress
from pytest_dbgate.migrations.apply import (
    Applier,
)
from pytest_dbgate.migrations.outcomes import Cause, Failure
from pytest_dbgate.migrations.parse import Migration
from pytest_dbgate.migrations.settle import settle
from pytest_dbgate.migrations.tracking import (
    APPLIED,
    IN_DOUBT,
    JournalEntry,
    Tracking,
)
from pytest_dbgate.pg.connections import Conn


class Resuming:
    """How the runner picks up a file an earlier run left part-applied: a mixin of
    :class:`~pytest_dbgate.migrations.runner.Runner`, which provides the session and the
    journal."""

    _conn: Conn
    _applier: Applier
    _tracking: Tracking
    _progress: Progress

    def _settings(self) -> None:
        raise NotImplementedError

    def _resume(self, migration: Migration) -> tuple[int, tuple[str, ...], Failure | None]:
        """How many statements an earlier run applied (the journal, checked against the file),
        with any in-doubt statement settled; or the failure that stops the run there."""
        entries = self._tracking.journal(migration.version).get(migration.version, [])
        if not entries:
            return 0, (), None
        statements = migration.statements
        applied = [e.ordinal for e in entries if e.state == APPLIED]
        through = max(applied, default=0)
        for entry in entries:
            if entry.ordinal > len(statements) or statements[entry.ordinal - 1].digest != (
                entry.digest
            ):
                return through, (), _misfit(migration, entry, through)
        if migration.transactional:
            return (
                through,
                (),
                Failure(
                    f"an earlier run applied statements of this file one by one (up to "
                    f"statement {max(e.ordinal for e in entries)}, recorded in dbgate.statements), "
                    "but the file now runs in one transaction, which would run them again",
                    None,
                    None,
                    None,
                    through,
                    Cause.JOURNAL,
                ),
            )
        replayed = self._replay(migration, [e.ordinal for e in entries if e.state == APPLIED])
        if replayed is not None:
            return through, (), _located(replayed, through)
        notes: list[str] = []
        for entry in entries:
            if entry.state != IN_DOUBT:
                continue
            statement = statements[entry.ordinal - 1]
            settled = settle(self._conn, self._tracking, entry, statement)
            if isinstance(settled, Failure):
                return through, tuple(notes), _located(settled, through)
            notes.append(
                f"statement {entry.ordinal} (line {statement.line}) was in doubt after an "
                f"earlier run stopped: {settled.reason}"
            )
            self._progress(f"{migration.id}: {notes[-1]}")
            if settled.applied:
                through = max(through, entry.ordinal)
        self._applier.known[migration.version] = through
        return through, tuple(notes), None

    def _replay(self, migration: Migration, applied: list[int]) -> Failure | None:
        """The session an earlier run had reached in this file: its applied ``SET``s (a
        search_path, a role) again, in order, so what follows, and the catalog lookups that
        settle an in-doubt statement, run as they did there."""
        for ordinal in sorted(applied):
            statement = migration.statements[ordinal - 1]
            if statement.session is None:
                continue
            try:
                self._conn.execute(statement.text)
            except psycopg.Error as exc:
                return Failure(
                    f"could not set the session up as the earlier run had it: statement "
                    f"{ordinal} (line {statement.line}) fails now: "
                    f"{exc.diag.message_primary or exc}",
                    exc.sqlstate,
                    statement,
                    statement.line,
                    0,
                    Cause.JOURNAL,
                    ordinal,
                )
            if statement.session == "reset":
                self._settings()
        return None


def _misfit(migration: Migration, entry: JournalEntry, through: int) -> Failure:
    statements = migration.statements
    when = f"{entry.started_at:%Y-%m-%d %H:%M %Z}"
    if entry.ordinal > len(statements):
        what = f"the file now has only {len(statements)} statements"
        statement = None
    else:
        statement = statements[entry.ordinal - 1]
        what = f"the file's statement {entry.ordinal} (line {statement.line}) is not that one"
    return Failure(
        f"an earlier run applied statement {entry.ordinal} of this file on {when} "
        f"(recorded in dbgate.statements), but {what}: the statements applied then must not "
        "change",
        None,
        statement,
        statement.line if statement else None,
        through,
        Cause.JOURNAL,
        entry.ordinal,
    )


def _located(failure: Failure, through: int) -> Failure:
    """An in-doubt failure from :func:`settle`, with what the file has applied so far."""
    return dataclasses.replace(failure, statements_committed=through)
