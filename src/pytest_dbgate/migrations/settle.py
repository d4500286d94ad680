"""Settling a statement left *in doubt*: did it take effect before the run that ran it stopped?

Only statements that commit on their own can be in doubt
(see :mod:`pytest_dbgate.migrations.commits`).
The run that left one is gone: the next run holds the gate lock, which the old session held
until it ended, so nothing is still running it. Where the catalog can tell (an index that is
there and valid was built), the journal is settled and the deploy goes on; where it cannot (a
``DO`` block that commits in batches), the deploy stops and names the statement.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from pytest_dbgate.migrations.outcomes import Cause, Failure
from pytest_dbgate.migrations.parse import Statement
from pytest_dbgate.migrations.tracking import JournalEntry, Tracking
from pytest_dbgate.pg.connections import Conn

# An index on a table, by the table (as regclass reads it) and the index's name.
INDEX_ON_TABLE = """
SELECT n.nspname, ic.relname, i.indisvalid AND i.indisready, ic.oid::regclass::text
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = ic.relnamespace
WHERE i.indrelid = to_regclass(%s) AND ic.relname = %s
"""


@dataclass(frozen=True)
class Settled:
    """What the catalog said: whether it took effect (else it runs again), and how we know."""

    applied: bool
    reason: str


def settle(
    conn: Conn, tracking: Tracking, entry: JournalEntry, statement: Statement
) -> Settled | Failure:
    """Settle ``entry`` from the catalog, recording the result; or the failure that stops."""
    check = statement.recheck
    version, ordinal = entry.version, entry.ordinal
    if check is None:
        why = (
            "it COMMITs as it goes (a DO block that commits, or a CALL), so none, part or all of "
            "it may be applied"
            if statement.commits_itself
            else "it commits on its own, and the catalog cannot tell whether it ran"
        )
        return Failure(
            f"statement {ordinal} (line {statement.line}) may or may not have taken effect: a "
            f"run started it at {entry.started_at:%Y-%m-%d %H:%M:%S %Z} (server process "
            f"{entry.backend_pid}) and stopped before recording how it ended",
            None,
            statement,
            statement.line,
            0,
            Cause.IN_DOUBT,
            ordinal,
            why,
        )
    if check.kind == "repeatable":
        tracking.forget(version, ordinal)
        return Settled(False, "running it again does what running it once does: running it")
    if check.kind == "index dropped":
        left = [name for name in check.names if _exists(conn, name)]
        if not left:
            tracking.settle(version, ordinal, "settled: the index is gone")
            return Settled(True, "the index it drops is gone: recorded as applied")
        tracking.forget(version, ordinal)
        return Settled(False, "the index it drops is still there: running it again")
    found = _index(conn, check.table, check.names[0][-1])
    if found is None:
        tracking.forget(version, ordinal)
        return Settled(False, "the index it builds is not there: running it again")
    schema, name, valid, _ = found
    if valid:
        tracking.settle(version, ordinal, "settled: the index is there and valid")
        return Settled(True, f"the index {name} is there and valid: recorded as applied")
    drop = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, name))
    try:
        conn.execute(drop)
    except psycopg.Error as exc:
        return Failure(
            f"statement {ordinal} (line {statement.line}) left the index {name} INVALID when an "
            f"earlier run stopped, and dropping it failed: {exc.diag.message_primary or exc}",
            exc.sqlstate,
            statement,
            statement.line,
            0,
            Cause.CLEANUP,
            ordinal,
            f"run {drop.as_string(conn)}; once nothing is in its way, then re-run: the deploy "
            "builds the index again",
        )
    tracking.forget(version, ordinal)
    return Settled(
        False,
        f"the index {name} is there but INVALID (its build was cut short): dropped it, "
        "running the statement again",
    )


def drop_invalid_index(conn: Conn, statement: Statement) -> tuple[str | None, str | None]:
    """A failed ``CREATE INDEX CONCURRENTLY`` leaves its index INVALID: drop it before a retry
    (only if it is there and invalid: never an index someone else built). Returns (dropped,
    left behind)."""
    check = statement.recheck
    if check is None or check.kind != "index created":
        return None, None
    found = _index(conn, check.table, check.names[0][-1])
    if found is None or found[2]:
        return None, None
    schema, name, _, shown = found
    try:
        conn.execute(
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, name))
        )
    except psycopg.Error:
        return None, shown
    return shown, None


def _index(conn: Conn, table: tuple[str, ...], name: str) -> tuple[str, str, bool, str] | None:
    """(schema, name, valid and ready, the name as messages show it) of an index on a table."""
    row = conn.execute(INDEX_ON_TABLE, (sql.Identifier(*table).as_string(conn), name)).fetchone()
    if row is None:
        return None
    schema, index, valid, shown = row
    return str(schema), str(index), bool(valid), str(shown)


def _exists(conn: Conn, name: tuple[str, ...]) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", (sql.Identifier(*name).as_string(conn),))
    found = row.fetchone()
    return found is not None and found[0] is not None
