"""Servers and databases the gate creates: embedded clusters, the seeded source, the staging DB.

Embedded servers run through pytest-postgresql's executor. PostgreSQL refuses to run as root and
CI containers run as root, so as root every ``pg_ctl`` call goes through a tiny wrapper that drops
to the unprivileged ``postgres`` account, in a private directory owned by that account.

Databases the gate creates carry a marker comment; the gate only ever drops a database that
carries it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from port_for import get_port
from psycopg import sql
from pytest_postgresql.executors import PostgreSQLExecutor

from pytest_dbgate.core.errors import ProvisioningError
from pytest_dbgate.pg.binaries import PgBinaries
from pytest_dbgate.pg.connections import Endpoint, connection
from pytest_dbgate.pg.janitor import temporary_folder

SERVER_ACCOUNT = "postgres"
SUPERUSER = "postgres"
EMBEDDED_SOURCE_DB = "prod"
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
        # Room for every statement of a long run (and a test suite's many runs) without
        # deallocating the entries a window is measuring.
        "pg_stat_statements.max=20000",
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


def as_account(account: pwd.struct_passwd | None, argv: list[str]) -> list[str]:
    """``argv`` run as the server account when we are root; setpriv keeps the environment."""
    if account is None:
        return argv
    return [
        "setpriv",
        f"--reuid={account.pw_uid}",
        f"--regid={account.pw_gid}",
        "--init-groups",
        "--",
        *argv,
    ]


def _wrapper(base: Path, pg_ctl: str, account: pwd.struct_passwd | None) -> str:
    """A pg_ctl for pytest-postgresql's executor to call: run as ``account``, in an environment
    with nothing of the gate's. A server inherits its starter's environment, and libpq inside
    it (dblink, postgres_fdw) would log in to other servers with the gate's ``$PGPASSWORD``,
    ``~/.pgpass`` or service file: a migration could reach the production source that way."""
    script = base / "pg_ctl"
    clean = [
        "env",
        "-i",
        'PATH="$PATH"',
        'LC_ALL="$LC_ALL"',
        'LC_CTYPE="$LC_CTYPE"',
        'LANG="$LANG"',
        "PGPASSFILE=/dev/null",
        "PGSERVICEFILE=/dev/null",
    ]
    script.write_text(
        "#!/bin/sh\n"
        'cd "$(dirname "$0")" || exit 1\n'
        f'exec {" ".join(clean)} {shlex.join(as_account(account, [pg_ctl]))} "$@"\n'
    )
    script.chmod(0o755)
    return str(script)


@contextmanager
def embedded_server(
    role: str,
    binaries: PgBinaries,
    password: str | None = None,
    server_options: str = SERVER_OPTIONS,
    datadir: Path | None = None,
) -> Iterator[Endpoint]:
    """Start an embedded cluster; yield its maintenance endpoint; stop it after.

    Without ``datadir`` the cluster is throwaway: made in a temporary folder, removed after. With
    it, the cluster lives there and is only stopped, so the next run starts it again with what
    it holds (the staging server's cached snapshot). With ``password`` the superuser needs it
    (password authentication), as on a real server.
    """
    account = server_account()
    # Sockets and the pg_ctl wrapper always go in a short temporary folder: a Unix socket's path
    # may not be longer than 107 bytes, and a kept cluster may live deep in a project.
    base = temporary_folder(f"dbgate-{role}-")
    try:
        if account is not None:
            os.chown(base, account.pw_uid, account.pw_gid)
        pg_ctl = _wrapper(base, binaries.path("pg_ctl"), account)
        kept = datadir is not None
        data = datadir if datadir is not None else base / "data"
        logfile = (data.parent if kept else base) / "server.log"
        port = get_port(None)
        assert port is not None  # get_port(None) always picks one
        executor = _Executor(
            executable=pg_ctl,
            host="127.0.0.1",
            port=port,
            datadir=str(data),
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
                endpoint = _require_password(endpoint, data, password)
            yield endpoint
        finally:
            _stop_quietly(executor)
    finally:
        shutil.rmtree(base, ignore_errors=True)


class _Executor(PostgreSQLExecutor):
    """pytest-postgresql's executor, but a data folder that already holds a cluster is started
    as it is, not wiped and made again: that is what keeps a kept server's cache."""

    def init_directory(self) -> None:
        if not (Path(self.datadir) / "PG_VERSION").is_file():
            super().init_directory()

    def clean_directory(self) -> None:
        """Never: the gate removes a throwaway cluster's folder itself and keeps a kept one.
        (The executor calls this when it is garbage-collected, too, which would wipe a kept
        cluster the moment the run lets go of it.)"""


@contextmanager
def staging_server(
    binaries: PgBinaries, directory: Path | None, progress: Callable[[str], None]
) -> Iterator[tuple[Endpoint, bool]]:
    """The embedded staging server: kept in ``directory`` between runs when it can be, so its
    cached snapshot serves the next run; a throwaway one otherwise, saying why. Yields the
    server and whether it is kept."""
    with kept_server("staging", binaries, directory, progress, "the snapshot cache") as (
        endpoint,
        folder,
    ):
        yield endpoint, folder is not None


@contextmanager
def kept_server(
    role: str,
    binaries: PgBinaries,
    directory: Path | None,
    progress: Callable[[str], None],
    keeps: str,
    key: str | None = None,
) -> Iterator[tuple[Endpoint, Path | None]]:
    """An embedded server kept in ``directory`` between runs when it can be (the staging
    server with its cached snapshot; the seeded source); a throwaway one otherwise, saying why.

    With ``key``, the kept cluster is one made for that key (see :func:`keep_made_for`); a
    cluster made for another, or never finished, is made afresh. Yields the server and the
    folder it is kept in (``None``: a throwaway server)."""
    with contextlib.ExitStack() as stack:
        throwaway = _why_throwaway(directory, stack, keeps)
        if throwaway is not None:
            progress(f"starting a throwaway embedded {role} server{throwaway}")
            yield stack.enter_context(embedded_server(role, binaries)), None
            return
        assert directory is not None  # no reason for a throwaway server: there is a folder
        data = directory / "data"
        if key is not None and made_for(directory) != key:
            shutil.rmtree(data, ignore_errors=True)
            (directory / KEY_FILE).unlink(missing_ok=True)
        _discard_unusable(role, data, binaries, progress)
        fresh = not (data / "PG_VERSION").is_file()
        progress(
            f"{'creating' if fresh else 'starting'} the embedded {role} server kept in {directory}"
        )
        try:
            endpoint = stack.enter_context(embedded_server(role, binaries, datadir=data))
        except ProvisioningError as exc:
            if fresh:
                raise
            # A cluster a crash left damaged is only a cache: make a new one.
            progress(f"the kept {role} server did not start ({exc.problem}); making it afresh")
            shutil.rmtree(data, ignore_errors=True)
            (directory / KEY_FILE).unlink(missing_ok=True)
            endpoint = stack.enter_context(embedded_server(role, binaries, datadir=data))
        yield endpoint, directory


KEY_FILE = "made-for"


def made_for(directory: Path) -> str | None:
    """The key a kept cluster was finished for, or ``None``."""
    try:
        return (directory / KEY_FILE).read_text().strip() or None
    except OSError:
        return None


def keep_made_for(directory: Path, key: str) -> None:
    """Say that the cluster in ``directory`` is complete for ``key`` (written last: a run killed
    while making it leaves no key, and the next run makes it afresh)."""
    (directory / KEY_FILE).write_text(key + "\n")


def _why_throwaway(directory: Path | None, stack: contextlib.ExitStack, keeps: str) -> str | None:
    """Why this run cannot keep its server in ``directory`` (the end of the progress line), or
    ``None`` when it can: then the folder's lock is held until ``stack`` closes."""
    if directory is None:
        return " (dbgate_staging_dir = off)"
    why_not = _prepare_kept(directory)
    if why_not is not None:
        return (
            f": {why_not}; {keeps} lasts this run only (point dbgate_staging_dir at a folder "
            "it can use)"
        )
    lock = stack.enter_context(open(directory / ".lock", "w"))  # noqa: SIM115 - the stack closes it
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return f": another run is using the server kept in {directory}"
    return None


def _prepare_kept(directory: Path) -> str | None:
    """Make ``directory`` for a kept cluster; why it cannot be used, or ``None`` when it can."""
    account = server_account()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if account is not None:
            os.chown(directory, account.pw_uid, account.pw_gid)
    except OSError as exc:
        return f"{directory} cannot be made ({exc.strerror})"
    if account is not None:
        blocked = _unreachable(directory, account)
        if blocked is not None:
            return f"the {account.pw_name} account the server runs as cannot enter {blocked}"
    return None


def _unreachable(path: Path, account: pwd.struct_passwd) -> Path | None:
    """The first folder on the way to ``path`` that ``account`` may not pass through."""
    groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    for folder in [*reversed(path.parents), path]:
        info = folder.stat()
        if info.st_uid == account.pw_uid:
            needed = stat.S_IXUSR
        elif info.st_gid in groups:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not info.st_mode & needed:
            return folder
    return None


def _discard_unusable(
    role: str, data: Path, binaries: PgBinaries, progress: Callable[[str], None]
) -> None:
    """Remove a kept cluster another major version made, and stop one a killed run left up."""
    version_file = data / "PG_VERSION"
    if not version_file.is_file():
        shutil.rmtree(data, ignore_errors=True)  # a half-made cluster
        return
    made_by = version_file.read_text().strip()
    if made_by != str(binaries.major):
        progress(
            f"the kept {role} server was made by PostgreSQL {made_by}, this run uses "
            f"{binaries.major}: making it afresh"
        )
        shutil.rmtree(data, ignore_errors=True)
        return
    if (data / "postmaster.pid").exists():
        # The lock is ours, so no live run owns this server: a run killed before it could
        # stop it left it up.
        argv = [binaries.path("pg_ctl"), "stop", "-D", str(data), "-m", "fast"]
        subprocess.run(
            as_account(server_account(), argv), capture_output=True, timeout=120, check=False
        )


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
