"""The databases the gate creates on a staging server: named after the source, marked as its own,
never anyone else's dropped."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.rows import args_row

from pytest_dbgate.core.errors import SafetyError
from pytest_dbgate.pg.servers import STATISTICS_TARGET, _first_line

MARKER = "created by pytest-dbgate"


@dataclass(frozen=True)
class ServerIdentity:
    """What tells two servers apart, even a primary from its physical replica."""

    system_identifier: str | None
    started: str
    version_num: int
    version: str

    @property
    def major(self) -> int:
        return self.version_num // 10000

    def same_server(self, other: ServerIdentity) -> bool:
        return self.system_identifier == other.system_identifier and self.started == other.started


def server_identity(conn: psycopg.Connection[tuple[object, ...]]) -> ServerIdentity:
    with conn.cursor(row_factory=args_row(_Started)) as cur:
        server = cur.execute(
            "SELECT pg_postmaster_start_time()::text, current_setting('server_version_num')::int,"
            " current_setting('server_version')"
        ).fetchone()
    assert server is not None  # one row of settings
    try:
        with conn.transaction():
            row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
        system_identifier = str(row[0]) if row else None
    except psycopg.Error:
        system_identifier = None
    return ServerIdentity(system_identifier, server.started, server.version_num, server.version)


@dataclass(frozen=True)
class _Started:
    started: str
    version_num: int
    version: str


def gate_database_name(source_dbname: str) -> str:
    return ("dbgate_" + source_dbname)[:63]


def drop_gate_database(
    conn: psycopg.Connection[tuple[object, ...]], dbname: str, where: str
) -> None:
    """Drop a database the gate made; refuse to touch one it did not make."""
    row = conn.execute(
        "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database"
        " WHERE datname = %s",
        (dbname,),
    ).fetchone()
    if row is None:
        return
    if not str(row[0]).startswith(MARKER):
        raise SafetyError.database_not_ours(dbname, where)
    conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))


def create_gate_database(
    conn: psycopg.Connection[tuple[object, ...]],
    dbname: str,
    where: str,
    encoding: str,
    template: str | None = None,
    comment: str = "disposable staging copy",
    file_copy: bool = False,
) -> None:
    """(Re)create the gate's own staging database, empty or as a copy of ``template``;
    ``file_copy``: copy the files whole (``STRATEGY FILE_COPY``, PostgreSQL 15 and later),
    quicker than writing every block to the WAL where a checkpoint costs little (the embedded
    servers, which run without fsync)."""
    drop_gate_database(conn, dbname, where)
    sweep_half_made(conn, regex_literal(dbname[:52]))
    # Made under a name of its own, marked, then renamed: a run killed while the server copies
    # (which it finishes even when the client is gone) leaves a database only that name can
    # belong to, which the next run sweeps; never one under the final name that carries no
    # mark, which the gate would have to refuse to touch.
    making = f"{dbname[:52]}{HALF_MADE}{secrets.token_hex(3)}"
    if template is None:
        create = sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {}").format(
            sql.Identifier(making), sql.Literal(encoding)
        )
    else:
        create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(making), sql.Identifier(template)
        )
        if file_copy and conn.info.server_version >= 150000:
            create += sql.SQL(" STRATEGY FILE_COPY")
    for attempt in range(50):
        try:
            conn.execute(create)
            break
        except psycopg.errors.InsufficientPrivilege as exc:
            raise SafetyError.cannot_create_database(where, _first_line(exc)) from None
        except psycopg.errors.ObjectInUse:
            # A template must have no sessions; an autovacuum worker may be passing through.
            if attempt == 49:
                raise
            time.sleep(0.1)
    conn.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(making), sql.Literal(f"{MARKER}: {comment}")
        )
    )
    # Every session there, autovacuum's included, analyses with the stable sample.
    conn.execute(
        sql.SQL("ALTER DATABASE {} SET default_statistics_target = {}").format(
            sql.Identifier(making), sql.Literal(STATISTICS_TARGET)
        )
    )
    conn.execute(
        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
            sql.Identifier(making), sql.Identifier(dbname)
        )
    )


# A database being made: <up to 52 characters of its final name>_tmp<6 hex digits>.
HALF_MADE = "_tmp"


def sweep_half_made(conn: psycopg.Connection[tuple[object, ...]], pattern: str) -> list[str]:
    """Drop the databases killed runs left half-made on their way to a name ``pattern`` (a
    regular expression, see :func:`regex_literal`) matches: their names, a gate database's name
    and a random suffix, are the gate's alone, and the gate lock keeps a live run of the same
    target from making one meanwhile."""
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE datname ~ %s",
        (f"^{pattern}{HALF_MADE}[0-9a-f]{{6}}$",),
    ).fetchall()
    names = [str(r[0]) for r in rows]
    for name in names:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    return names


def regex_literal(text: str) -> str:
    """``text`` as a PostgreSQL regular expression that matches it alone."""
    return "".join(c if c.isalnum() or c == "_" else "\\" + c for c in text)


# Transactions are numbered across the server; the next number is where "since" starts.
NEXT_XID = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
# Past this many transactions, counting which committed is not worth it: say "many".
XID_SCAN_LIMIT = 100_000


def next_xid(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """The number the server's next writing transaction will get (reading assigns none)."""
    row = conn.execute(NEXT_XID).fetchone()
    assert row is not None and isinstance(row[0], int)
    return row[0]


def committed_since(conn: psycopg.Connection[tuple[object, ...]], start: int) -> int | None:
    """How many transactions that wrote committed on the server since ``start`` (see
    :func:`next_xid`), anywhere on it; ``None`` when too many to count."""
    end = next_xid(conn)
    if end - start > XID_SCAN_LIMIT:
        return None
    row = conn.execute(
        "SELECT count(*) FROM generate_series(%s::bigint, %s::bigint - 1) AS x"
        " WHERE pg_xact_status(x::text::xid8) = 'committed'",
        (start, end),
    ).fetchone()
    return int(row[0]) if row and isinstance(row[0], int) else None
