"""The tracking tables: what a database has applied, migration by migration and statement by
statement.

``dbgate.migrations`` has one row per migration (checksum, success, when, by whom). For a file that
runs in one transaction, its row is written in that transaction: both commit or neither does.

``dbgate.statements`` is the journal of a file that runs statement by statement: one row per
statement that took effect, written in the statement's own transaction where it can share one.
A statement that must commit on its own (``CREATE INDEX CONCURRENTLY``, a ``DO`` block that
``COMMIT``s) gets its row first, marked ``in doubt``, and ``applied`` once it has run; a row left
``in doubt`` means a run stopped in between, and the next run must settle it before going on.
So a re-run resumes after the last statement known applied and never runs a committed one again.

``dbgate.holds`` keeps when a held-back migration's period started, where the tables above
cannot say (the migrations before it were applied before the gate was adopted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from psycopg import sql
from psycopg.rows import class_row

from pytest_dbgate.migrations.history import History, history_for
from pytest_dbgate.migrations.layouts import version_key
from pytest_dbgate.migrations.parse import Migration, Statement
from pytest_dbgate.pg.connections import Conn

SCHEMA = "dbgate"
MIGRATIONS = sql.Identifier(SCHEMA, "migrations")
STATEMENTS = sql.Identifier(SCHEMA, "statements")
HOLDS = sql.Identifier(SCHEMA, "holds")
MIGRATIONS_NAME = f"{SCHEMA}.migrations"
STATEMENTS_NAME = f"{SCHEMA}.statements"

APPLIED = "applied"
IN_DOUBT = "in doubt"

CREATE = sql.SQL(
    """
    CREATE SCHEMA IF NOT EXISTS {schema};
    CREATE TABLE IF NOT EXISTS {migrations} (
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
    );
    CREATE TABLE IF NOT EXISTS {statements} (
        version     text NOT NULL,
        ordinal     integer NOT NULL,
        line        integer NOT NULL,
        digest      text NOT NULL,
        state       text NOT NULL CHECK (state IN ('applied', 'in doubt')),
        started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
        finished_at timestamptz,
        backend_pid integer NOT NULL DEFAULT pg_backend_pid(),
        applied_by  text NOT NULL,
        note        text,
        PRIMARY KEY (version, ordinal)
    );
    CREATE TABLE IF NOT EXISTS {holds} (
        version text PRIMARY KEY,
        since   timestamptz NOT NULL DEFAULT now()
    );
    """
).format(schema=sql.Identifier(SCHEMA), migrations=MIGRATIONS, statements=STATEMENTS, holds=HOLDS)

WRITE_MIGRATION = sql.SQL(
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
).format(table=MIGRATIONS)

WRITE_STATEMENT = sql.SQL(
    """
    INSERT INTO {table} (version, ordinal, line, digest, state, applied_by, note, finished_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s,
            CASE WHEN %s = 'applied' THEN clock_timestamp() END)
    ON CONFLICT (version, ordinal) DO UPDATE SET
        line = excluded.line, digest = excluded.digest, state = excluded.state,
        started_at = clock_timestamp(), finished_at = excluded.finished_at,
        backend_pid = pg_backend_pid(), applied_by = excluded.applied_by, note = excluded.note
    """
).format(table=STATEMENTS)


@dataclass(frozen=True)
class TrackedMigration:
    """A row of ``dbgate.migrations``."""

    version: str
    checksum: str
    success: bool
    applied_at: datetime


@dataclass(frozen=True)
class JournalEntry:
    """A row of ``dbgate.statements``: one statement of a statement-by-statement file."""

    version: str
    ordinal: int  # 1-based position in the file
    line: int
    digest: str
    state: str
    started_at: datetime
    finished_at: datetime | None
    backend_pid: int
    applied_by: str
    note: str | None

    @property
    def applied(self) -> bool:
        return self.state == APPLIED


class Tracking:
    """Reads and writes the tracking tables on one session (the migrating one, so a write can
    share the transaction of what it records), and the migration tool's history with them."""

    def __init__(self, conn: Conn, history: History | None = None) -> None:
        self._conn = conn
        self.history = history

    def rebind(self, conn: Conn) -> None:
        """Go on in a new session (the runner's, after a restore point was taken)."""
        self._conn = conn

    def exists(self) -> bool:
        row = self._conn.execute("SELECT to_regclass(%s) IS NOT NULL", (MIGRATIONS_NAME,))
        found = row.fetchone()
        return bool(found and found[0])

    def create(self) -> None:
        self._conn.execute(CREATE)
        if self.history is not None:
            self.history.create(self._conn)

    def migrations(self) -> dict[str, TrackedMigration]:
        """Every migration row, by version (none when the table is not there)."""
        if not self.exists():
            return {}
        with self._conn.cursor(row_factory=class_row(TrackedMigration)) as cur:
            cur.execute(
                sql.SQL("SELECT version, checksum, success, applied_at FROM {}").format(MIGRATIONS)
            )
            return {row.version: row for row in cur.fetchall()}

    def journal(self, version: str | None = None) -> dict[str, list[JournalEntry]]:
        """Journal rows by version, in statement order (of one version, or of all)."""
        row = self._conn.execute("SELECT to_regclass(%s) IS NOT NULL", (STATEMENTS_NAME,))
        found = row.fetchone()
        if not (found and found[0]):
            return {}
        query = sql.SQL(
            "SELECT version, ordinal, line, digest, state, started_at, finished_at, backend_pid,"
            " applied_by, note FROM {} {} ORDER BY version, ordinal"
        ).format(STATEMENTS, sql.SQL("WHERE version = %s" if version is not None else ""))
        entries: dict[str, list[JournalEntry]] = {}
        with self._conn.cursor(row_factory=class_row(JournalEntry)) as cur:
            cur.execute(query, (version,) if version is not None else ())
            for entry in cur.fetchall():
                entries.setdefault(entry.version, []).append(entry)
        return entries

    def write_statement(
        self,
        migration: Migration,
        ordinal: int,
        statement: Statement,
        state: str,
        applied_by: str,
        note: str | None = None,
    ) -> None:
        self._conn.execute(
            WRITE_STATEMENT,
            (
                migration.version,
                ordinal,
                statement.line,
                statement.digest,
                state,
                applied_by,
                note,
                state,
            ),
        )

    def held_since(self, version: str) -> datetime:
        """When production first held ``version`` back, recorded the first time it is asked:
        the start of a hold-back whose earlier migrations the gate never recorded applying
        (they were applied before the gate was adopted, or by another tool)."""
        self._conn.execute(
            sql.SQL("INSERT INTO {} (version) VALUES (%s) ON CONFLICT DO NOTHING").format(HOLDS),
            (version,),
        )
        row = self._conn.execute(
            sql.SQL("SELECT since FROM {} WHERE version = %s").format(HOLDS), (version,)
        ).fetchone()
        assert row is not None and isinstance(row[0], datetime)
        return row[0]

    def settle(self, version: str, ordinal: int, note: str) -> None:
        """An in-doubt statement is known to have taken effect."""
        self._conn.execute(
            sql.SQL(
                "UPDATE {} SET state = %s, finished_at = clock_timestamp(), note = %s"
                " WHERE version = %s AND ordinal = %s"
            ).format(STATEMENTS),
            (APPLIED, note, version, ordinal),
        )

    def forget(self, version: str, ordinal: int) -> None:
        """An in-doubt statement is known not to have taken effect: it will run (again)."""
        self._conn.execute(
            sql.SQL("DELETE FROM {} WHERE version = %s AND ordinal = %s AND state = %s").format(
                STATEMENTS
            ),
            (version, ordinal, IN_DOUBT),
        )

    def write_migration(
        self,
        migration: Migration,
        *,
        success: bool,
        duration_ms: float,
        applied: int,
        error: str | None,
        applied_by: str,
    ) -> None:
        """The migration's row; once applied, the tool's row too, in the same transaction."""
        with self._conn.transaction():
            self._conn.execute(
                WRITE_MIGRATION,
                (
                    migration.version,
                    migration.name,
                    migration.checksum,
                    success,
                    duration_ms,
                    applied,
                    len(migration.statements),
                    error,
                    applied_by,
                ),
            )
            if success and self.history is not None:
                self.history.record(self._conn, migration, duration_ms)


def applied_versions(conn: Conn, migrations: list[Migration]) -> dict[str, str]:
    """The versions of ``migrations`` a database has applied, and which table says so: the
    gate's ``dbgate.migrations``, or the migration tool's own history (nothing is created)."""
    found = {
        version: MIGRATIONS_NAME
        for version, row in Tracking(conn).migrations().items()
        if row.success
    }
    layouts = {m.layout for m in migrations}
    history = history_for(layouts.pop()) if len(layouts) == 1 else None
    if history is not None:
        tool = history.read(conn, migrations)
        for version in tool.versions:
            found.setdefault(version, tool.table)
    return found


def resolution_sql(version: str, ordinal: int) -> tuple[str, str]:
    """What a person runs to settle an in-doubt statement: (it took effect, it did not)."""
    where = f"version = '{_literal(version)}' AND ordinal = {ordinal}"
    return (
        f"UPDATE {STATEMENTS_NAME} SET state = '{APPLIED}', note = 'checked by hand' "
        f"WHERE {where};",
        f"DELETE FROM {STATEMENTS_NAME} WHERE {where} AND state = '{IN_DOUBT}';",
    )


def _literal(text: str) -> str:
    return text.replace("'", "''")


def applied_before(recorded: Mapping[str, TrackedMigration], version: str) -> datetime | None:
    """When the migrations before ``version`` were last applied, as ``dbgate.migrations``
    says: where a hold-back's period starts. ``None``: none of them is recorded."""
    key = version_key(version)
    return max(
        (row.applied_at for v, row in recorded.items() if row.success and version_key(v) < key),
        default=None,
    )
