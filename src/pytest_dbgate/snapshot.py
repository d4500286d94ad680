"""Refreshing staging: ``pg_dump`` the source, ``pg_restore`` into the gate's staging database.

The dump runs on a snapshot exported from a read-only, repeatable-read transaction on the source,
and the source's row counts are taken in that same transaction, so "the restored tables have the
source's row counts" is an exact check even while production keeps writing.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

import psycopg
from psycopg import sql

from pytest_dbgate.binaries import PgBinaries
from pytest_dbgate.connections import Endpoint, connection
from pytest_dbgate.exceptions import RefreshError

# Leaf tables the user owns: what pg_dump dumps data for and what the row counts compare.
USER_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (
      SELECT 1 FROM pg_depend d
      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""

# pg_restore complains about objects a non-superuser may not own (the plpgsql comment, say);
# they do not change the restored schema or data.
BENIGN_RESTORE_ERRORS = ("must be owner of extension", "must be owner of schema public")

Progress = Callable[[str], None]
Conn = psycopg.Connection[tuple[object, ...]]


@dataclass(frozen=True)
class TableCount:
    schema: str
    table: str
    source_rows: int
    staging_rows: int

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass(frozen=True)
class Snapshot:
    """A restored copy of the source on staging, with what it took to make it."""

    staging: Endpoint
    tables: tuple[TableCount, ...]
    dump_bytes: int
    dump_seconds: float
    restore_seconds: float
    restore_warnings: tuple[str, ...]
    reused: bool = False  # cloned from the cached snapshot, no dump or restore
    taken_at: datetime | None = None
    # A clone service copies production at its own moment: its row counts are shown, and only
    # a missing table is a mismatch.
    cloned_by: str | None = None

    @property
    def mismatched(self) -> tuple[TableCount, ...]:
        if self.cloned_by is not None:
            return tuple(t for t in self.tables if t.staging_rows < 0)
        return tuple(t for t in self.tables if t.source_rows != t.staging_rows)

    @property
    def source_rows(self) -> int:
        return sum(t.source_rows for t in self.tables)

    @property
    def staging_rows(self) -> int:
        return sum(t.staging_rows for t in self.tables)


def count_rows(conn: Conn) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for schema, table in conn.execute(USER_TABLES).fetchall():
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(str(schema)), sql.Identifier(str(table))
        )
        row = conn.execute(query).fetchone()
        counts[(str(schema), str(table))] = int(str(row[0])) if row else 0
    return counts


def refresh(
    source_conn: Conn,
    source: Endpoint,
    staging: Endpoint,
    client: PgBinaries,
    workdir: Path,
    progress: Progress,
) -> Snapshot:
    """Dump ``source`` and restore into the (empty) ``staging`` database.

    ``source_conn`` must be a read-only session: it holds the exported snapshot the dump reads
    and the row counts are taken from.
    """
    dump_file = workdir / "source.dump"
    with source_conn.transaction():
        source_conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = source_conn.execute("SELECT pg_export_snapshot()").fetchone()
        snapshot_id = str(row[0]) if row else ""
        taken_at = datetime.now(timezone.utc)
        progress(f"dumping {source.display()} (pg_dump {client.major}, custom format)")
        started = time.monotonic()
        _run(
            [
                client.path("pg_dump"),
                "--format=custom",
                "--verbose",
                "--no-password",
                f"--snapshot={snapshot_id}",
                f"--file={dump_file}",
                f"--dbname={source.conninfo_without_password()}",
            ],
            source,
            RefreshError.dump_failed,
            ticker=Ticker(progress, "dumping", "tables dumped", DUMPED, dump_file),
        )
        dump_seconds = time.monotonic() - started
        source_counts = count_rows(source_conn)
    dump_bytes = dump_file.stat().st_size
    progress(
        f"dumped {_size(dump_bytes)} in {dump_seconds:.1f}s; restoring into {staging.display()}"
    )
    jobs = max(1, min(os.cpu_count() or 1, 8))
    started = time.monotonic()
    stderr = _run(
        [
            client.path("pg_restore"),
            "--verbose",
            "--no-owner",
            "--no-privileges",
            "--no-password",
            f"--jobs={jobs}",
            f"--dbname={staging.conninfo_without_password()}",
            str(dump_file),
        ],
        staging,
        RefreshError.restore_failed,
        tolerate=BENIGN_RESTORE_ERRORS,
        ticker=Ticker(progress, "restoring", "items restored", RESTORED),
    )
    restore_seconds = time.monotonic() - started
    dump_file.unlink(missing_ok=True)
    with connection(staging, "staging", "the staging database") as conn:
        conn.execute("ANALYZE")
        staging_counts = count_rows(conn)
    progress(f"restored in {restore_seconds:.1f}s")
    tables = tuple(
        TableCount(schema, table, rows, staging_counts.get((schema, table), -1))
        for (schema, table), rows in source_counts.items()
    )
    warnings = tuple(line for line in stderr.splitlines() if "error:" in line)
    return Snapshot(
        staging, tables, dump_bytes, dump_seconds, restore_seconds, warnings, taken_at=taken_at
    )


# Verbose lines that mark one unit of work done: a table's data dumped, a TOC item restored.
DUMPED = re.compile(r"dumping contents of table")
RESTORED = re.compile(r"(processing item|finished item|processing data for table)")
PROGRESS_EVERY_S = 5.0


@dataclass
class Ticker:
    """Progress of a long pg_dump or pg_restore, from its --verbose lines and the file's size."""

    progress: Progress
    doing: str
    unit: str
    marks: re.Pattern[str]
    output: Path | None = None
    done: int = 0

    def line(self, text: str) -> None:
        if self.marks.search(text):
            self.done += 1

    def report(self) -> None:
        written = ""
        if self.output is not None and self.output.exists():
            written = f", {_size(self.output.stat().st_size)} written"
        self.progress(f"{self.doing}: {self.done} {self.unit}{written}")


def _run(
    argv: list[str],
    endpoint: Endpoint,
    failure: Callable[[str, str], RefreshError],
    tolerate: tuple[str, ...] = (),
    ticker: Ticker | None = None,
) -> str:
    """Run a client program with the password in its environment; return its problems.

    Its --verbose output is read as it comes, to report progress every few seconds; only the
    lines that say something went wrong are kept, so a huge schema costs no memory here.
    """
    proc = subprocess.Popen(
        argv,
        env=endpoint.subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    assert proc.stderr is not None
    kept: list[str] = []

    def read(stream: IO[str]) -> None:
        for text in stream:
            if ticker is not None:
                ticker.line(text)
            if "error" in text.lower() or "warning" in text.lower() or "fatal" in text.lower():
                kept.append(text)

    reader = threading.Thread(target=read, args=(proc.stderr,), daemon=True)
    reader.start()
    while True:
        try:
            proc.wait(timeout=PROGRESS_EVERY_S)
            break
        except subprocess.TimeoutExpired:
            if ticker is not None:
                ticker.report()
    reader.join()
    stderr = endpoint.redact("".join(kept))
    if proc.returncode != 0:
        errors = [
            line
            for line in stderr.splitlines()
            if "error:" in line and not any(t in line for t in tolerate)
        ]
        if errors or "errors ignored on restore" not in stderr:
            raise failure(endpoint.display(), stderr or f"exit status {proc.returncode}")
    return stderr


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
