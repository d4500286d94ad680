"""Finding PostgreSQL's own programs: pg_ctl for the embedded servers, pg_dump and pg_restore.

Debian and Ubuntu keep the server programs in ``/usr/lib/postgresql/<major>/bin``, off ``PATH``,
and ``pg_dump`` refuses to dump a server newer than itself, so the gate looks in the places a
PostgreSQL install actually uses and picks the client whose major version fits the server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pytest_dbgate.core.errors import ToolError

DEBIAN_ROOT = Path("/usr/lib/postgresql")
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class PgBinaries:
    """One folder of PostgreSQL programs, all of the same major version."""

    bindir: Path
    major: int

    def path(self, program: str) -> str:
        return str(self.bindir / program)

    def has(self, program: str) -> bool:
        return _runnable(self.bindir / program)


def _runnable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def program_major(path: Path) -> int | None:
    """The major version a PostgreSQL program reports with ``--version``."""
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except OSError:
        return None
    match = _VERSION.search(out)
    return int(match.group(1)) if match else None


def _candidate_dirs(configured: Path | None) -> list[Path]:
    if configured is not None:
        return [configured]
    found: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=False
            ).stdout.strip()
        except OSError:
            out = ""
        if out:
            found.append(Path(out))
    for program in ("pg_ctl", "pg_dump"):
        on_path = shutil.which(program)
        if on_path:
            found.append(Path(on_path).resolve().parent)
    if DEBIAN_ROOT.is_dir():
        versions = sorted(
            (p for p in DEBIAN_ROOT.iterdir() if p.name.isdigit()),
            key=lambda p: int(p.name),
            reverse=True,
        )
        found.extend(p / "bin" for p in versions)
    found.append(Path("/usr/local/pgsql/bin"))
    return list(dict.fromkeys(found))


def find_binaries(configured: Path | None, programs: tuple[str, ...]) -> PgBinaries:
    """The first folder that holds every program in ``programs``."""
    tried: list[str] = []
    for bindir in _candidate_dirs(configured):
        tried.append(str(bindir))
        if not all(_runnable(bindir / p) for p in programs):
            continue
        major = program_major(bindir / programs[0])
        if major is not None:
            return PgBinaries(bindir, major)
    raise ToolError.binary_missing(", ".join(programs), tried)


def client_for(server_major: int, default: PgBinaries) -> PgBinaries:
    """pg_dump/pg_restore able to handle a server of ``server_major``.

    Prefers the exact major version (Debian installs several side by side); any newer client
    works too, an older one cannot read the server's catalog.
    """
    exact = DEBIAN_ROOT / str(server_major) / "bin"
    if default.major == server_major:
        return default
    if (exact / "pg_dump").is_file() and (exact / "pg_restore").is_file():
        return PgBinaries(exact, server_major)
    if default.major >= server_major:
        return default
    raise ToolError.client_too_old("pg_dump", default.major, server_major)
