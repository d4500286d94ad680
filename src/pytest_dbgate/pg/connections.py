"""Where a database is and how to log in, without ever showing the password.

An :class:`Endpoint` is the only place a password lives. Everything shown to a user (messages,
progress lines, reports, JUnit properties) goes through :meth:`Endpoint.display` or
:meth:`Endpoint.redact`; subprocesses get the password through ``PGPASSWORD``, never their
command line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.core.errors import ConnectError
from pytest_dbgate.core.masking import mask

# The one connection type of the gate: rows as tuples, typed per query with row factories
# (psycopg.rows.class_row) where the values are read.
Conn = psycopg.Connection[tuple[object, ...]]
APPLICATION_NAME = "pytest-dbgate"
CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class Endpoint:
    """Connection parameters of one database; ``repr`` shows no password."""

    params: tuple[tuple[str, str], ...] = field(repr=False)

    @classmethod
    def from_url(cls, url: str, setting: str) -> Endpoint:
        try:
            parsed = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            # The parser's message may quote the URL: redact before anyone sees it.
            reason = mask(str(exc).splitlines()[0], url)
            raise ConfigError.bad_url(setting, reason) from None
        port = str(parsed.get("port") or "")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError.bad_url(setting, f"the port {port!r} is not a number from 1 to 65535")
        return cls.from_params({k: str(v) for k, v in parsed.items() if v is not None})

    @classmethod
    def from_params(cls, params: Mapping[str, str | int]) -> Endpoint:
        return cls(tuple(sorted((k, str(v)) for k, v in params.items())))

    def _get(self, key: str) -> str | None:
        return dict(self.params).get(key)

    @property
    def dbname(self) -> str:
        return self._get("dbname") or self.user

    @property
    def user(self) -> str:
        return self._get("user") or os.environ.get("PGUSER") or _os_user()

    @property
    def host(self) -> str:
        return self._get("host") or os.environ.get("PGHOST") or "localhost"

    @property
    def port(self) -> int:
        return int(self._get("port") or os.environ.get("PGPORT") or 5432)

    @property
    def password(self) -> str | None:
        return self._get("password")

    def with_dbname(self, dbname: str) -> Endpoint:
        return self.replace(dbname=dbname)

    def replace(self, **changes: str | int) -> Endpoint:
        params = dict(self.params)
        params.update({k: str(v) for k, v in changes.items()})
        return Endpoint.from_params(params)

    def conninfo(self) -> str:
        """The full libpq connection string, password included: only ever hand it to libpq."""
        return make_conninfo(**dict(self.params))

    def conninfo_without_password(self) -> str:
        return make_conninfo(**{k: v for k, v in self.params if k != "password"})

    def subprocess_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for pg_dump and friends: the password travels in PGPASSWORD."""
        env = dict(os.environ if base is None else base)
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def url(self) -> str:
        """A ``postgresql://`` URL, password included, for the application's own code."""
        from urllib.parse import quote, urlencode

        params = dict(self.params)
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        host = self.host
        if host.startswith("/"):
            host = quote(host, safe="")  # a Unix-socket folder
        elif ":" in host:
            host = f"[{host}]"  # an IPv6 address
        rest = {
            k: v
            for k, v in params.items()
            if k not in ("user", "password", "host", "port", "dbname")
        }
        query = f"?{urlencode(rest)}" if rest else ""
        return f"postgresql://{auth}@{host}:{self.port}/{quote(self.dbname, safe='')}{query}"

    def display(self) -> str:
        """``user@host:port/dbname``: safe to print."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"

    def redact(self, text: str) -> str:
        """``text`` with the password masked in every spelling (raw, URL-encoded, escaped)."""
        return mask(text, self.password)

    def __str__(self) -> str:
        return self.display()


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry
        return "postgres"


def connect(
    endpoint: Endpoint,
    role: str,
    setting: str,
    *,
    read_only: bool = False,
    autocommit: bool = True,
    purpose: str = "gate",
) -> psycopg.Connection[tuple[object, ...]]:
    """Open a connection, or raise a :class:`ConnectError` that names the fix.

    ``read_only`` makes every transaction of the session read only on the server side, which is
    how the gate guarantees it never writes to the source.
    """
    conninfo = endpoint.conninfo()
    if read_only:
        # Added to, not replacing, the URL's own options and $PGOPTIONS.
        options = _merge_options(endpoint, "-c default_transaction_read_only=on")
        conninfo = make_conninfo(conninfo, options=options)
    try:
        conn = psycopg.connect(
            conninfo,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=f"{APPLICATION_NAME} {purpose}",
        )
    except psycopg.Error as exc:
        raise ConnectError.unreachable(
            role, endpoint.display(), endpoint.redact(str(exc)), setting
        ) from None
    return conn


@contextmanager
def connection(
    endpoint: Endpoint,
    role: str,
    setting: str,
    *,
    read_only: bool = False,
    purpose: str = "gate",
) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    conn = connect(endpoint, role, setting, read_only=read_only, purpose=purpose)
    try:
        yield conn
    finally:
        conn.close()


def _merge_options(endpoint: Endpoint, extra: str) -> str:
    existing = dict(endpoint.params).get("options") or os.environ.get("PGOPTIONS", "")
    return " ".join(part for part in (existing, extra) if part)
