"""The migration tool's own history: what the project's tool has applied, and its rows written
the way the tool writes them.

A team that migrates with Prisma, golang-migrate, dbmate or Flyway already has the answer to
"which migrations are pending" in its database: ``_prisma_migrations``, ``schema_migrations``,
``flyway_schema_history``. The gate reads it (a migration the tool recorded is already applied,
whatever ``dbgate.migrations`` says), and when it applies a migration it writes the tool's row
too, in the same transaction as its own, so ``prisma migrate status``, ``migrate version``,
``dbmate status`` and ``flyway info`` stay right after a deploy by the gate. A history the tool
itself would refuse to go on from (a failed or dirty migration) is an error that names the tool's
own command for it. ``dbgate.migrations`` stays the gate's audit log.
"""

from __future__ import annotations

import re
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

from pytest_dbgate.core.errors import HistoryError
from pytest_dbgate.migrations.layouts import version_key
from pytest_dbgate.migrations.parse import Migration
from pytest_dbgate.pg.connections import Conn


@dataclass(frozen=True)
class Applied:
    """What a tool's history says about a release: the versions it applied."""

    table: str
    versions: frozenset[str]


class History:
    """One tool's history table, found through the session's search_path, as the tool finds it."""

    layout = ""
    table = ""
    columns: tuple[str, ...] = ()  # what the gate reads and writes: the table must have them

    def exists(self, conn: Conn) -> bool:
        """Whether the table is there, and is this tool's (another tool may use the name)."""
        row = conn.execute(
            "SELECT array_agg(attname::text) FROM pg_attribute"
            " WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
            (_quoted(self.table),),
        ).fetchone()
        have = row[0] if row else None
        if not isinstance(have, list):
            return False
        missing = [c for c in self.columns if c not in have]
        if missing:
            raise HistoryError.not_the_tools(self.table, self.layout, missing)
        return True

    def read(self, conn: Conn, migrations: list[Migration]) -> Applied:
        """What the tool has applied of ``migrations`` (nothing when it has no table yet)."""
        if not self.exists(conn):
            return Applied(self.table, frozenset())
        return self.applied(conn, migrations)

    def applied(self, conn: Conn, migrations: list[Migration]) -> Applied:
        """The versions of ``migrations`` the tool has applied; :class:`HistoryError` when its
        history has a failed or unfinished migration the tool itself would stop at."""
        raise NotImplementedError

    def create(self, conn: Conn) -> None:
        """Create the table as the tool does on its first run."""
        raise NotImplementedError

    def record(self, conn: Conn, migration: Migration, duration_ms: float) -> None:
        """Write the row the tool writes for an applied migration."""
        raise NotImplementedError

    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.table)


class PrismaHistory(History):
    layout = "prisma"
    table = "_prisma_migrations"
    columns = ("id", "checksum", "finished_at", "migration_name", "rolled_back_at", "started_at")

    def applied(self, conn: Conn, migrations: list[Migration]) -> Applied:
        rows = conn.execute(
            sql.SQL(
                "SELECT migration_name, finished_at IS NOT NULL, rolled_back_at IS NOT NULL"
                " FROM {} ORDER BY started_at"
            ).format(self.ident())
        ).fetchall()
        done: set[str] = set()
        for name, finished, rolled_back in rows:
            if rolled_back:
                continue  # `prisma migrate resolve --rolled-back`: to be applied again
            if not finished:
                raise HistoryError.unfinished(
                    self.table,
                    str(name),
                    f"`npx prisma migrate resolve --rolled-back {name}` (or `--applied {name}` "
                    "if it did complete)",
                )
            done.add(str(name))
        return Applied(self.table, frozenset(m.version for m in migrations if m.id in done))

    def create(self, conn: Conn) -> None:
        conn.execute(
            sql.SQL(
                """
                CREATE TABLE IF NOT EXISTS {} (
                    id                  varchar(36) PRIMARY KEY NOT NULL,
                    checksum            varchar(64) NOT NULL,
                    finished_at         timestamptz,
                    migration_name      varchar(255) NOT NULL,
                    logs                text,
                    rolled_back_at      timestamptz,
                    started_at          timestamptz NOT NULL DEFAULT now(),
                    applied_steps_count integer NOT NULL DEFAULT 0
                )
                """
            ).format(self.ident())
        )

    def record(self, conn: Conn, migration: Migration, duration_ms: float) -> None:
        # Prisma's checksum is the SHA-256 of migration.sql, as the gate's own is.
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (id, checksum, finished_at, migration_name, started_at,"
                " applied_steps_count)"
                " VALUES (%s, %s, clock_timestamp(), %s,"
                " clock_timestamp() - %s * interval '1 millisecond', 1)"
            ).format(self.ident()),
            (str(uuid.uuid4()), migration.checksum, migration.id, duration_ms),
        )


class GolangMigrateHistory(History):
    """golang-migrate keeps one row: the last version applied, and whether it is dirty."""

    layout = "golang-migrate"
    table = "schema_migrations"
    columns = ("version", "dirty")

    def applied(self, conn: Conn, migrations: list[Migration]) -> Applied:
        row = conn.execute(
            sql.SQL("SELECT version, dirty FROM {} ORDER BY version DESC LIMIT 1").format(
                self.ident()
            )
        ).fetchone()
        if row is None:
            return Applied(self.table, frozenset())
        version, dirty = str(row[0]), bool(row[1])
        if dirty:
            before = [
                m.version for m in migrations if version_key(m.version) < version_key(version)
            ]
            forced = before[-1] if before else "<the version before it>"
            raise HistoryError.unfinished(
                self.table,
                f"version {version} (dirty)",
                f"check what migration {version} left, then `migrate force {forced}` (not applied) "
                f"or `migrate force {version}` (applied)",
            )
        return Applied(
            self.table,
            frozenset(
                m.version for m in migrations if version_key(m.version) <= version_key(version)
            ),
        )

    def create(self, conn: Conn) -> None:
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version bigint NOT NULL PRIMARY KEY,"
                " dirty boolean NOT NULL)"
            ).format(self.ident())
        )

    def record(self, conn: Conn, migration: Migration, duration_ms: float) -> None:
        conn.execute(sql.SQL("DELETE FROM {}").format(self.ident()))
        conn.execute(
            sql.SQL("INSERT INTO {} (version, dirty) VALUES (%s, false)").format(self.ident()),
            (int(migration.version),),
        )


class DbmateHistory(History):
    layout = "dbmate"
    table = "schema_migrations"
    columns = ("version",)

    def applied(self, conn: Conn, migrations: list[Migration]) -> Applied:
        rows = conn.execute(sql.SQL("SELECT version FROM {}").format(self.ident())).fetchall()
        done = {str(r[0]) for r in rows}
        return Applied(self.table, frozenset(m.version for m in migrations if m.version in done))

    def create(self, conn: Conn) -> None:
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (version varchar(128) PRIMARY KEY)").format(
                self.ident()
            )
        )

    def record(self, conn: Conn, migration: Migration, duration_ms: float) -> None:
        conn.execute(
            sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(self.ident()),
            (migration.version,),
        )


class FlywayHistory(History):
    layout = "flyway"
    table = "flyway_schema_history"
    columns = ("installed_rank", "version", "type", "script", "checksum", "success")

    def applied(self, conn: Conn, migrations: list[Migration]) -> Applied:
        rows = conn.execute(
            sql.SQL(
                "SELECT version, type, success FROM {} WHERE version IS NOT NULL"
                " ORDER BY installed_rank"
            ).format(self.ident())
        ).fetchall()
        done: set[str] = set()
        baseline: tuple[int, ...] | None = None
        for version, kind, success in rows:
            if not success:
                raise HistoryError.unfinished(
                    self.table,
                    f"version {version} (failed)",
                    "fix the database by hand, then `flyway repair` removes the failed row",
                )
            if str(kind) == "BASELINE":
                baseline = version_key(str(version))
            done.add(_dotted(str(version)))
        return Applied(
            self.table,
            frozenset(
                m.version
                for m in migrations
                if _dotted(m.version) in done
                or (baseline is not None and version_key(m.version) <= baseline)
            ),
        )

    def create(self, conn: Conn) -> None:
        table = self.ident()
        conn.execute(
            sql.SQL(
                """
                CREATE TABLE IF NOT EXISTS {table} (
                    installed_rank integer NOT NULL,
                    version        varchar(50),
                    description    varchar(200) NOT NULL,
                    type           varchar(20) NOT NULL,
                    script         varchar(1000) NOT NULL,
                    checksum       integer,
                    installed_by   varchar(100) NOT NULL,
                    installed_on   timestamp NOT NULL DEFAULT now(),
                    execution_time integer NOT NULL,
                    success        boolean NOT NULL,
                    CONSTRAINT {pk} PRIMARY KEY (installed_rank)
                );
                CREATE INDEX IF NOT EXISTS {index} ON {table} (success);
                """
            ).format(
                table=table,
                pk=sql.Identifier(f"{self.table}_pk"),
                index=sql.Identifier(f"{self.table}_s_idx"),
            )
        )

    def record(self, conn: Conn, migration: Migration, duration_ms: float) -> None:
        conn.execute(
            sql.SQL(
                "INSERT INTO {table} (installed_rank, version, description, type, script,"
                " checksum, installed_by, execution_time, success)"
                " SELECT coalesce(max(installed_rank), 0) + 1, %s, %s, 'SQL', %s, %s,"
                " current_user, %s, true FROM {table}"
            ).format(table=self.ident()),
            (
                migration.version,
                migration.name.replace("_", " "),
                migration.path.name,
                flyway_checksum(migration.path.read_bytes()),
                round(duration_ms),
            ),
        )


HISTORIES: dict[str, History] = {
    history.layout: history
    for history in (PrismaHistory(), GolangMigrateHistory(), DbmateHistory(), FlywayHistory())
}


def history_for(layout: str) -> History | None:
    """The tool history a layout comes with (none for a flat folder)."""
    return HISTORIES.get(layout)


def flyway_checksum(raw: bytes) -> int:
    """Flyway's checksum of a script: CRC32 over its lines without their line endings (a byte
    order mark dropped), as a signed 32-bit integer."""
    text = raw.decode("utf-8-sig")
    lines = re.split(r"\r\n|\r|\n", text)
    crc = 0
    for line in lines:
        crc = zlib.crc32(line.encode(), crc)
    return crc - (1 << 32) if crc >= (1 << 31) else crc


def _dotted(version: str) -> str:
    """Flyway's versions compare by their numbers: 1.01 is 1.1."""
    return ".".join(str(part) for part in version_key(version))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def layout_note(migrations: Sequence[Migration]) -> str:
    """`` (layout prisma, history _prisma_migrations)``: how the folder is read, and which
    table says what is applied; for the header."""
    layouts = {m.layout for m in migrations}
    if len(layouts) != 1:
        return ""
    layout = layouts.pop()
    history = history_for(layout)
    return f" (layout {layout}" + (f", history {history.table})" if history else ")")
