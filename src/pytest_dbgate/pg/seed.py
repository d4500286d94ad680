"""The loader: seed files run into an embedded source database, and what identifies the copy they
make."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import sql

from pytest_dbgate.core.errors import ProvisioningError
from pytest_dbgate.migrations.sqltext import read_sql
from pytest_dbgate.pg.connections import Endpoint, connection
from pytest_dbgate.pg.servers import _first_line


def seed_files(paths: Sequence[Path]) -> list[Path]:
    """The .sql files a seed names, folders expanded in name order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.glob("*.sql")))
        else:
            files.append(path)
    return files


def seed_digest(files: Sequence[Path]) -> str:
    """What an embedded source is a copy of: its seed files' names and bytes, and the session
    settings they were loaded with. The cluster is new every run, so its system identifier
    cannot key the cached snapshot; this does."""
    digest = hashlib.blake2b(digest_size=20)
    # Session settings change what a seed loads (the demo's dbgate_demo.scale, say).
    digest.update(os.environ.get("PGOPTIONS", "").encode() + b"\0")
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def load_seed(server: Endpoint, dbname: str, files: Sequence[Path]) -> Endpoint:
    """Create ``dbname`` on an embedded server and run the seed files into it, in one session."""
    with connection(server, "embedded source", "dbgate_seed") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    target = server.with_dbname(dbname)
    with connection(target, "embedded source", "dbgate_seed", purpose="seed") as conn:
        for path in files:
            text = read_sql(path, "seed file")
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
