"""The cached snapshot: a restored copy kept on the staging server as a template database.

The first run restores into ``dbgate_<source>_snapshot`` and clones the working database from it
(``CREATE DATABASE … TEMPLATE``, a file copy on the server); later runs clone again instead of
dumping and restoring. The template's comment records what it is a copy of: the source's system
identifier and database, a fingerprint of its schema, when the snapshot was taken and the row
counts taken with it. It is reused only while all of that still holds: a deploy that changed
production's schema, another source, or an age past ``dbgate_snapshot_max_age`` makes the next
run dump afresh. Data that changed without a schema change is bounded by that age.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from psycopg import sql

from pytest_dbgate.pg.connections import Conn
from pytest_dbgate.pg.databases import MARKER

PREFIX = f"{MARKER}: cached snapshot "

# Tables, columns and types, constraints and indexes of the user's schemas: what a deploy changes.
FINGERPRINT = """
SELECT md5(coalesce(string_agg(item, E'\\n' ORDER BY item), ''))
FROM (
    SELECT format('%s.%s.%s %s', n.nspname, c.relname, a.attname,
                  format_type(a.atttypid, a.atttypmod)) AS item
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
    UNION ALL
    SELECT format('%s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
    FROM pg_constraint
    WHERE connamespace NOT IN (SELECT oid FROM pg_namespace
                               WHERE nspname IN ('pg_catalog', 'information_schema'))
    UNION ALL
    SELECT indexdef FROM pg_indexes
    WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
) items
"""


def cache_name(gate_database: str) -> str:
    return (gate_database[:54] + "_snapshot")[:63]


@dataclass(frozen=True)
class Key:
    """What a cached snapshot is a copy of."""

    system_identifier: str | None
    database: str
    schema: str

    @property
    def identity(self) -> str:
        """The key as one string, for what depends on exactly this snapshot."""
        return f"{self.system_identifier}\0{self.database}\0{self.schema}"

    @classmethod
    def of(cls, source: Conn, system_identifier: str | None, database: str) -> Key:
        row = source.execute(FINGERPRINT).fetchone()
        return cls(system_identifier, database, str(row[0]) if row else "")


@dataclass(frozen=True)
class Cached:
    key: Key
    taken_at: datetime
    counts: dict[tuple[str, str], int]
    dump_bytes: int
    # Vacuumed and analysed before it was sealed: a clone of it is ready to be measured.
    analyzed: bool = False

    def age(self) -> timedelta:
        return datetime.now(UTC) - self.taken_at

    def describe(self) -> str:
        return json.dumps(
            {
                "system_identifier": self.key.system_identifier,
                "database": self.key.database,
                "schema": self.key.schema,
                "taken_at": self.taken_at.isoformat(timespec="seconds"),
                "dump_bytes": self.dump_bytes,
                "analyzed": self.analyzed,
                "counts": [[s, t, n] for (s, t), n in sorted(self.counts.items())],
            },
            separators=(",", ":"),
        )


def find(conn: Conn, name: str) -> Cached | None:
    """The cached snapshot called ``name``, if there is a complete one the gate made."""
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        (name,),
    ).fetchone()
    comment = str(row[0]) if row and row[0] else ""
    if not comment.startswith(PREFIX):
        return None  # absent, not ours, or left unfinished by an interrupted restore
    try:
        data = json.loads(comment[len(PREFIX) :])
        return Cached(
            Key(data["system_identifier"], data["database"], data["schema"]),
            datetime.fromisoformat(data["taken_at"]),
            {(str(s), str(t)): int(n) for s, t, n in data["counts"]},
            int(data["dump_bytes"]),
            bool(data.get("analyzed", False)),
        )
    except (ValueError, KeyError, TypeError):
        return None


def usable(conn: Conn, name: str) -> bool:
    """Whether this role may keep and clone a snapshot under ``name``: it is absent, or this role
    owns it (or is a superuser). A cache another role made is left alone."""
    row = conn.execute(
        "SELECT d.datdba = r.oid OR r.rolsuper FROM pg_database d, pg_roles r"
        " WHERE d.datname = %s AND r.rolname = current_user",
        (name,),
    ).fetchone()
    return row is None or bool(row[0])


def why_not(cached: Cached | None, key: Key, max_age: timedelta | None) -> str | None:
    """Why ``cached`` cannot stand in for a fresh snapshot, or ``None`` when it can."""
    if cached is None:
        return "no cached snapshot yet"
    if (cached.key.system_identifier, cached.key.database) != (key.system_identifier, key.database):
        was, now = str(cached.key.system_identifier), str(key.system_identifier)
        if was.startswith("seed ") and now.startswith("seed "):
            return "the seed changed since the cached snapshot was taken"
        if now.startswith("dump file "):
            return "the cached snapshot is of another dump file"
        return "the cached snapshot is of another source"
    if cached.key.schema != key.schema:
        return "the source's schema changed since the cached snapshot was taken"
    if max_age is not None and cached.age() > max_age:
        return "the cached snapshot is older than dbgate_snapshot_max_age"
    return None


def seal(conn: Conn, name: str, cached: Cached) -> None:
    """Mark a finished restore as a reusable template (no sessions may enter it from now on)."""
    conn.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(name), sql.Literal(PREFIX + cached.describe())
        )
    )
    conn.execute(
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name))
    )
