"""Command mode: the project migrates with its own tool, and the gate watches it.

A project on alembic, Django or ``prisma migrate deploy`` names its command
(``dbgate_migrate_command``) instead of a folder of SQL files the gate runs itself. The gate runs
it once, against the staging copy (``DATABASE_URL``), under the same lock watch and simulated
traffic as its own migrations: every session the watch did not open is the tool's. What the tool
applied is read from its own history table before and after (``alembic_version``,
``django_migrations``, ``_prisma_migrations``, ``schema_migrations``, ``flyway_schema_history``),
and the schema checks, the project's tests and the performance stage run after it as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from pytest_dbgate.core.commands import CommandResult, run_command
from pytest_dbgate.migrations.parse import Migration
from pytest_dbgate.observe.locks import watching
from pytest_dbgate.observe.timeline import LockReport
from pytest_dbgate.pg.connections import Conn, Endpoint, connect

# Each tool's history: the table, and the query listing what it has applied (one name a row).
HISTORIES: dict[str, str] = {
    "alembic_version": "SELECT version_num FROM alembic_version",
    "django_migrations": "SELECT app || '.' || name FROM django_migrations",
    "_prisma_migrations": (
        "SELECT migration_name FROM _prisma_migrations"
        " WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL"
    ),
    "schema_migrations": "SELECT version::text FROM schema_migrations",
    "flyway_schema_history": "SELECT version FROM flyway_schema_history WHERE success",
}


@dataclass(frozen=True)
class CommandMigration:
    """What the migrate command did: its run, what the tool's history gained, its locks."""

    result: CommandResult
    history: str | None  # the tool's table, when one was found
    before: tuple[str, ...]
    applied: tuple[str, ...]  # what the history gained (for alembic: the new head)
    report: LockReport


def as_migration(command: str, rootdir: Path) -> Migration:
    """The command, as the one migration the lock watch and its messages speak of."""
    return Migration("command", command, rootdir, "", (), True, None, layout="command")


def read_history(conn: Conn) -> tuple[str | None, tuple[str, ...]]:
    """The first tool history found, and what it lists."""
    for table, query in HISTORIES.items():
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        if not (row and row[0]):
            continue
        try:
            rows = conn.execute(sql.SQL(query)).fetchall()  # type: ignore[arg-type,unused-ignore]
        except psycopg.Error:
            continue  # a table of that name that is not this tool's
        return table, tuple(str(r[0]) for r in rows)
    return None, ()


def run_migrate_command(
    command: str,
    staging: Endpoint,
    rootdir: Path,
    setting: str,
    reads: dict[str, list[str]],
    rate: float,
) -> CommandMigration:
    """Run the project's migrate command on staging under the lock watch."""

    def session() -> Conn:
        return connect(staging, "staging", setting, purpose="watch")

    with connect(staging, "staging", setting, purpose="read") as conn:
        table, before = read_history(conn)
    migration = as_migration(command, rootdir)
    with watching(session, migration, None, reads, rate) as (report, _):
        result = run_command(command, staging, rootdir)
    with connect(staging, "staging", setting, purpose="read") as conn:
        after_table, after = read_history(conn)
    table = table or after_table
    gained = tuple(name for name in after if name not in before)
    return CommandMigration(result, table, before, gained, report)
