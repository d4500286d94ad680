"""Servers and databases the gate creates: embedded clusters, the seeded source, the staging DB.

Embedded servers run through pytest-postgresql's executor. PostgreSQL refuses to run as root and
CI containers run as root, so as root every ``pg_ctl`` call goes through a tiny wrapper that drops
to the unprivileged ``postgres`` account, in a private directory owned by that account.

Databases the gate creates carry a marker comment; the gate only ever drops a database that
carries it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from pytest_dbgate.binaries import PgBinaries
from pytest_dbgate.connections import Endpoint, connection
from pytest_dbgate.exceptions import ProvisioningError, SafetyError

SERVER_ACCOUNT = "postgres"
SUPERUSER = "postgres"
EMBEDDED_SOURCE_DB = "prod"
MARKER = "created by pytest-dbgate"
# ANALYZE samples 300 rows per unit of statistics target. 1,000 samples 300,000 rows: whole tables
# up to that size, so the staging copy's statistics, and the plans built on them, do not change
# from one ANALYZE to the next; and a large, stable sample beyond that. With the default (100,
# 30,000 rows) two near-equal plans swap at random between the before and after captures.
STATISTICS_TARGET = 1000

# Throwaway clusters: durability buys nothing, so trade it for speed. pg_stat_statements is
# preloaded because the performance gate reads it. Autovacuum is off: an autovacuum that happens
# to start on a table a migration then locks makes the migration wait up to deadlock_timeout
# (1 s) with application traffic queued behind it, so the lock verdict would depend on timing;
# the gate analyses the restored copy, and vacuums before the after phase, itself.
SERVER_OPTIONS = " ".join(
    f"-c {setting}"
    for setting in (
        "shared_preload_libraries=pg_stat_statements",
        "pg_stat_statements.track=all",
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
        "max_wal_size=2GB",
        "autovacuum=off",
    )
)


def server_account() -> pwd.struct_passwd | None:
    """The account embedded servers run as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        raise ProvisioningError.no_server_user(SERVER_ACCOUNT) from None


def check_can_run_servers() -> None:
    """Fail early, before any work, when embedded servers cannot be started as this user."""
    server_account()


def _wrapper(base: Path, pg_ctl: str, account: pwd.struct_passwd) -> str:
    """A pg_ctl that runs as ``account``; setpriv keeps the environment the executor sets."""
    script = base / "pg_ctl"
    script.write_text(
        "#!/bin/sh\n"
        'cd "$(dirname "$0")" || exit 1\n'
        f"exec setpriv --reuid={account.pw_uid} --regid={account.pw_gid} --init-groups "
        f'-- {pg_ctl} "$@"\n'
    )
    script.chmod(0o755)
    return str(script)


@contextmanager
def embedded_server(
    role: str,
    binaries: PgBinaries,
    password: str | None = None,
    server_options: str = SERVER_OPTIONS,
) -> Iterator[Endpoint]:
    """Start a throwaway cluster; yield its maintenance endpoint; stop and remove it after.

    With ``password`` the superuser needs it (password authentication), as on a real server.
    """
    from port_for import get_port
    from pytest_postgresql.executors import PostgreSQLExecutor

    account = server_account()
    base = Path(tempfile.mkdtemp(prefix=f"dbgate-{role}-"))
    try:
        pg_ctl = binaries.path("pg_ctl")
        if account is not None:
            os.chown(base, account.pw_uid, account.pw_gid)
            pg_ctl = _wrapper(base, pg_ctl, account)
        port = get_port(None)
        assert port is not None  # get_port(None) always picks one
        logfile = base / "server.log"
        executor = PostgreSQLExecutor(
            executable=pg_ctl,
            host="127.0.0.1",
            port=port,
            datadir=str(base / "data"),
            unixsocketdir=str(base),
            logfile=str(logfile),
            startparams="-w",
            dbname=SUPERUSER,
            user=SUPERUSER,
            postgres_options=server_options,
            timeout=120,
        )
        try:
            executor.start()
        except Exception as exc:
            _stop_quietly(executor)
            raise ProvisioningError.cluster_failed(role, _first_line(exc), _tail(logfile)) from None
        try:
            endpoint = Endpoint.from_params(
                {"host": "127.0.0.1", "port": port, "user": SUPERUSER, "dbname": "postgres"}
            )
            _accepting(endpoint, role, logfile)
            if password:
                endpoint = _require_password(endpoint, base / "data", password)
            yield endpoint
        finally:
            _stop_quietly(executor)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _accepting(endpoint: Endpoint, role: str, logfile: Path, timeout_s: float = 60) -> None:
    """Wait until the server accepts sessions: on a loaded machine ``pg_ctl -w`` can return while
    the server still answers "the database system is starting up"."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            psycopg.connect(endpoint.conninfo(), connect_timeout=5).close()
            return
        except psycopg.OperationalError as exc:
            if "starting up" not in str(exc) or time.monotonic() > deadline:
                raise ProvisioningError.cluster_failed(
                    role, _first_line(exc), _tail(logfile)
                ) from None
            time.sleep(0.1)


def _require_password(endpoint: Endpoint, datadir: Path, password: str) -> Endpoint:
    """Switch a trust-authenticated cluster to SCRAM passwords, as a real server has them."""
    with connection(endpoint, "embedded", "password setup") as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(SUPERUSER), sql.Literal(password)
            )
        )
        hba = datadir / "pg_hba.conf"
        hba.write_text(
            "local all all scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n"
        )
        conn.execute("SELECT pg_reload_conf()")
    return endpoint.replace(password=password)


def _stop_quietly(executor: object) -> None:
    with contextlib.suppress(Exception):
        executor.stop()  # type: ignore[attr-defined]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _tail(logfile: Path, lines: int = 15) -> str:
    try:
        content = logfile.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in content[-lines:])


def seed_files(paths: Sequence[Path]) -> list[Path]:
    """The .sql files a seed names, folders expanded in name order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.glob("*.sql")))
        else:
            files.append(path)
    return files


def load_seed(server: Endpoint, dbname: str, files: Sequence[Path]) -> Endpoint:
    """Create ``dbname`` on an embedded server and run the seed files into it, in one session."""
    with connection(server, "embedded source", "dbgate_seed") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    target = server.with_dbname(dbname)
    with connection(target, "embedded source", "dbgate_seed", purpose="seed") as conn:
        for path in files:
            text = path.read_text()
            try:
                conn.execute(text)
            except psycopg.Error as exc:
                line = _error_line(text, exc)
                raise ProvisioningError.seed_failed(path, line, _first_line(exc)) from None
    return target


def _error_line(text: str, exc: psycopg.Error) -> int | None:
    position = exc.diag.statement_position
    if not position or not position.isdigit():
        return None
    return text.count("\n", 0, int(position) - 1) + 1


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
    started, version_num, version = conn.execute(
        "SELECT pg_postmaster_start_time()::text, current_setting('server_version_num')::int,"
        " current_setting('server_version')"
    ).fetchone() or ("", 0, "")
    try:
        with conn.transaction():
            row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
        system_identifier = str(row[0]) if row else None
    except psycopg.Error:
        system_identifier = None
    return ServerIdentity(system_identifier, str(started), int(str(version_num)), str(version))


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
) -> None:
    """(Re)create the gate's own staging database, empty or as a copy of ``template``."""
    drop_gate_database(conn, dbname, where)
    if template is None:
        create = sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {}").format(
            sql.Identifier(dbname), sql.Literal(encoding)
        )
    else:
        create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(dbname), sql.Identifier(template)
        )
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
            sql.Identifier(dbname), sql.Literal(f"{MARKER}: {comment}")
        )
    )
    # Every session there, autovacuum's included, analyses with the stable sample.
    conn.execute(
        sql.SQL("ALTER DATABASE {} SET default_statistics_target = {}").format(
            sql.Identifier(dbname), sql.Literal(STATISTICS_TARGET)
        )
    )


GATE_LOCK_WAIT_S = 5.0


def take_gate_lock(
    conn: psycopg.Connection[tuple[object, ...]],
    dbname: str,
    where: str,
    wait_s: float = GATE_LOCK_WAIT_S,
) -> None:
    """Hold a session advisory lock for the run, so two gate runs never interleave on a target.

    A run that has just ended may hold it for a moment more (its server process is still
    exiting), so wait a few seconds before calling the target busy.
    """
    deadline = time.monotonic() + wait_s
    while True:
        row = conn.execute(
            "SELECT pg_try_advisory_lock(hashtext('pytest-dbgate'), hashtext(%s))", (dbname,)
        ).fetchone()
        if row and row[0]:
            return
        if time.monotonic() >= deadline:
            raise SafetyError.gate_running(where)
        time.sleep(0.1)
