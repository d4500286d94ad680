"""A reading of production's own counters: pg_stat_statements and pg_stat_database.

PostgreSQL keeps both as running totals since their last reset, and the deploy role may not
reset them. So nothing is reset: a deploy reads them just before applying (the end of the
*baseline window*, which runs from the last reset) and just after (the start of the *period*
the watch judges), and the watch subtracts the second reading from its own. Queries are keyed by
the parser's fingerprint (:func:`~pytest_dbgate.performance.stats.query_key`), because a
migration that recreates a table gives its queries new query ids, and the staging gate ran
them with literal constants where the application sends parameters.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from pytest_dbgate.performance.stats import (
    MARKER,
    Counter,
    is_application_query,
    query_key,
    read_entries,
)
from pytest_dbgate.pg.connections import Conn

# The gate's own checks on production (its tracking tables, the catalog reads of the schema
# checks) and monitoring tools' catalog reads are not the application's queries.
CATALOG = re.compile(
    r"\bdbgate\.|\"dbgate\"\.|\binformation_schema\.|\bto_regclass\("
    # a read of the system catalogs or statistics views (a function like pg_try_advisory_lock
    # is the application's own business)
    r"|\b(?:from|join)\s+(?:pg_catalog\.)?\"?pg_[a-z_]+"
    # pg_dump reading each sequence, when staging dumps production
    r"|^\s*select\s+last_value\s*,\s*is_called\s+from\b",
    re.I,
)
# A query that reads no table and calls only PostgreSQL's own functions is a session's
# housekeeping (a driver's set_config, pg_dump's pg_export_snapshot, a health check's now()), not
# the application's work: there is no release of it to slow down.
NO_TABLE = re.compile(r"\b(?:from|into|update|join|table)\b", re.I)
CALLED = re.compile(r"([a-z_][a-z0-9_$]*)\s*\(", re.I)
BUILTINS = """
SELECT /* dbgate */ DISTINCT proname FROM pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace
"""
# Words followed by a parenthesis that are SQL, not function calls.
SQL_WORDS = frozenset({"select", "values", "in", "and", "or", "not", "exists", "any", "all"})


def housekeeping(text: str, builtins: frozenset[str]) -> bool:
    """Whether a query only calls PostgreSQL's functions and reads no table."""
    if NO_TABLE.search(text):
        return False
    called = {name.lower() for name in CALLED.findall(text)} - SQL_WORDS
    return called <= builtins


EXTENSION_SCHEMA = """
SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_stat_statements'
"""

DATABASE_QUERY = """
SELECT /* dbgate */ xact_commit, xact_rollback, deadlocks, temp_files, temp_bytes,
       stats_reset::text AS stats_reset
FROM pg_stat_database WHERE datname = current_database()
"""


@dataclass(frozen=True)
class DatabaseCounters:
    """pg_stat_database's running totals for production's database."""

    xact_commit: int
    xact_rollback: int
    deadlocks: int
    temp_files: int
    temp_bytes: int
    stats_reset: str | None  # when they last started from zero; None: never reset

    @property
    def transactions(self) -> int:
        return self.xact_commit + self.xact_rollback

    def minus(self, earlier: DatabaseCounters) -> DatabaseCounters:
        """What happened since ``earlier``; everything counted, if they were reset between."""
        if self.stats_reset != earlier.stats_reset or self.transactions < earlier.transactions:
            return self
        return DatabaseCounters(
            self.xact_commit - earlier.xact_commit,
            self.xact_rollback - earlier.xact_rollback,
            self.deadlocks - earlier.deadlocks,
            self.temp_files - earlier.temp_files,
            self.temp_bytes - earlier.temp_bytes,
            self.stats_reset,
        )


@dataclass(frozen=True)
class Entry:
    """One pg_stat_statements entry (a user's query): its key and running totals."""

    userid: int
    queryid: int
    key: str
    counter: Counter
    since: str | None = None  # when the entry was made (PostgreSQL 17 and later), ISO


@dataclass(frozen=True)
class Statements:
    """What pg_stat_statements says of itself (PostgreSQL 14 and later)."""

    reset: str | None  # when all its counters last started from zero
    dealloc: int  # entries evicted since then (pg_stat_statements.max was reached)
    hidden: int  # entries of other roles whose text and id this role may not see


@dataclass(frozen=True)
class Reading:
    """Production's counters at one moment."""

    taken_at: str  # ISO time, by the server's clock
    database: DatabaseCounters
    entries: tuple[Entry, ...]
    # Why there are no entries, when there are none to read: pg_stat_statements missing.
    no_statements: str = ""
    statements: Statements | None = None

    def by_id(self) -> dict[tuple[int, int], Entry]:
        return {(e.userid, e.queryid): e for e in self.entries}

    @property
    def taken(self) -> datetime:
        return datetime.fromisoformat(self.taken_at)

    # -- stored in dbgate.deploys as JSON ----------------------------------------------------

    def document(self) -> dict[str, object]:
        d = self.database
        return {
            "taken_at": self.taken_at,
            "database": [
                d.xact_commit,
                d.xact_rollback,
                d.deadlocks,
                d.temp_files,
                d.temp_bytes,
                d.stats_reset,
            ],
            "no_statements": self.no_statements,
            "statements": list(asdict(self.statements).values()) if self.statements else None,
            # Compact rows, not objects: a busy server has thousands of entries. Texts stay
            # in pg_stat_statements; the watch reads them from there.
            "entries": [
                [
                    e.userid,
                    e.queryid,
                    e.key,
                    e.counter.calls,
                    e.counter.total_ms,
                    e.counter.sumsq_ms,
                    e.counter.rows,
                    e.counter.hit,
                    e.counter.read,
                ]
                for e in self.entries
            ],
        }

    @classmethod
    def from_document(cls, document: dict[str, object]) -> Reading:
        """The reading a deploy stored; ``ValueError`` when it is not one."""
        try:
            db = document["database"]
            assert isinstance(db, list)
            rows = document["entries"]
            assert isinstance(rows, list)
            database = DatabaseCounters(
                int(db[0]), int(db[1]), int(db[2]), int(db[3]), int(db[4]), db[5]
            )
            entries = tuple(
                Entry(
                    int(r[0]),
                    int(r[1]),
                    str(r[2]),
                    Counter(
                        "", int(r[3]), float(r[4]), float(r[5]), int(r[6]), int(r[7]), int(r[8])
                    ),
                )
                for r in rows
            )
            info = document.get("statements")
            statements = (
                Statements(None if info[0] is None else str(info[0]), int(info[1]), int(info[2]))
                if isinstance(info, list)
                else None
            )
            return cls(
                str(document["taken_at"]),
                database,
                entries,
                str(document.get("no_statements", "")),
                statements,
            )
        except (KeyError, IndexError, TypeError, ValueError, AssertionError) as exc:
            raise ValueError(f"not a reading of production's counters ({exc})") from None


def read(conn: Conn) -> Reading:
    """Production's counters now (one consistent moment per view, read only)."""
    with conn.cursor(row_factory=class_row(DatabaseCounters)) as cur:
        database = cur.execute(DATABASE_QUERY).fetchone()
    row = conn.execute(f"SELECT {MARKER} now()").fetchone()
    # To the microsecond: an entry PostgreSQL 17 says was made after this moment holds only
    # what ran since.
    taken_at = row[0].isoformat() if row and isinstance(row[0], datetime) else ""
    assert database is not None, "pg_stat_database has a row for every database"
    extension = conn.execute(EXTENSION_SCHEMA).fetchone()
    if extension is None:
        return Reading(taken_at, database, (), NO_EXTENSION)
    schema = str(extension[0])
    try:
        with conn.transaction():
            found = read_entries(conn, schema)
            statements = _statements(conn, schema, found.hidden)
    except psycopg.errors.ObjectNotInPrerequisiteState:
        return Reading(taken_at, database, (), NOT_LOADED)
    builtins = frozenset(str(r[0]) for r in conn.execute(BUILTINS).fetchall())
    made = {key: when.isoformat() for key, when in found.made.items()}
    entries = tuple(
        Entry(userid, queryid, query_key(counter.text), counter, made.get((userid, queryid)))
        for (userid, queryid), counter in found.counters.items()
        if is_application_query(counter.text)
        and not CATALOG.search(counter.text)
        and not housekeeping(counter.text, builtins)
    )
    return Reading(taken_at, database, entries, statements=statements)


def _statements(conn: Conn, schema: str, hidden: int) -> Statements | None:
    if conn.info.server_version < 140000:
        return Statements(None, 0, hidden)
    row = conn.execute(
        sql.SQL("SELECT /* dbgate */ stats_reset, dealloc FROM {}").format(
            sql.Identifier(schema, "pg_stat_statements_info")
        )
    ).fetchone()
    if row is None:
        return Statements(None, 0, hidden)
    reset = row[0].isoformat() if isinstance(row[0], datetime) else None
    return Statements(reset, int(str(row[1])), hidden)


NO_EXTENSION = (
    "pg_stat_statements is not installed in production's database, so no query can be "
    "compared (CREATE EXTENSION pg_stat_statements; it needs shared_preload_libraries)"
)
NOT_LOADED = (
    "pg_stat_statements is installed but not loaded (add it to shared_preload_libraries and "
    "restart production), so no query can be compared"
)
