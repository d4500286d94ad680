"""Refreshing staging: ``pg_dump`` the source, ``pg_restore`` into the gate's staging database.

The dump runs on a snapshot exported from a read-only, repeatable-read transaction on the source,
and the source's row counts are taken in that same transaction, so "the restored tables have the
source's row counts" is an exact check even while production keeps writing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import IO

from psycopg import sql
from psycopg.rows import scalar_row

from pytest_dbgate.core.errors import RefreshError
from pytest_dbgate.core.results import Progress
from pytest_dbgate.pg.binaries import PgBinaries
from pytest_dbgate.pg.connections import Conn, Endpoint, connection
from pytest_dbgate.refresh.dumpfile import DumpFile, plain_chunks, size, tree_size

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
# A plain dump sets owners and grants to production's roles; staging may not have them.
PLAIN_TOLERATED = ('ERROR:  role "',)


@dataclass(frozen=True)
class TableCount:
    """A table's rows on the source and on staging; ``None`` where there is no count: the
    source of a dump file is not there to count, and a table missing on staging has none."""

    schema: str
    table: str
    source_rows: int | None
    staging_rows: int | None

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
    # Restored from a dump file the team gave (--dbgate-snapshot): no source rows to compare.
    from_file: str | None = None
    # What copying the cached snapshot into the staging database took: what a restore point,
    # a copy of the same size, costs.
    clone_seconds: float | None = None
    # What the cached snapshot stands for (the source's identity, or the dump file's checksum):
    # a restore point is of this snapshot only.
    cache_key: str | None = None

    @property
    def mismatched(self) -> tuple[TableCount, ...]:
        if self.cloned_by is not None or self.from_file is not None:
            return tuple(t for t in self.tables if t.staging_rows is None)
        return tuple(t for t in self.tables if t.source_rows != t.staging_rows)

    @property
    def source_rows(self) -> int | None:
        """Rows on the source, in all; ``None`` when the source was not counted."""
        counts = [t.source_rows for t in self.tables]
        return None if any(c is None for c in counts) else sum(c or 0 for c in counts)

    @property
    def staging_rows(self) -> int:
        return sum(t.staging_rows or 0 for t in self.tables)

    def rows(self) -> dict[tuple[str, str], int]:
        """Rows per (schema, table) as restored on staging: what the copy really holds."""
        return {(t.schema, t.table): t.staging_rows or 0 for t in self.tables}


def count_rows(conn: Conn) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for schema, table in conn.execute(USER_TABLES).fetchall():
        # Marked: on production (the source) the watch must not take it for the application's.
        query = sql.SQL("SELECT /* dbgate */ count(*) FROM {}.{}").format(
            sql.Identifier(str(schema)), sql.Identifier(str(table))
        )
        with conn.cursor(row_factory=scalar_row) as cur:
            counts[(str(schema), str(table))] = int(cur.execute(query).fetchone() or 0)
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
    dump_dir = workdir / "source"
    jobs = parallelism()
    with source_conn.transaction():
        source_conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = source_conn.execute("SELECT pg_export_snapshot()").fetchone()
        snapshot_id = str(row[0]) if row else ""
        taken_at = datetime.now(UTC)
        progress(
            f"dumping {source.display()} (pg_dump {client.major}, directory format, "
            f"{jobs} job{'s' if jobs > 1 else ''})"
        )
        started = time.monotonic()
        _run(
            [
                client.path("pg_dump"),
                "--format=directory",
                f"--jobs={jobs}",
                f"--compress={DUMP_COMPRESSION}",
                "--verbose",
                "--no-password",
                f"--snapshot={snapshot_id}",
                f"--file={dump_dir}",
                f"--dbname={source.conninfo_without_password()}",
            ],
            source,
            RefreshError.dump_failed,
            ticker=Ticker(progress, "dumping", "tables dumped", DUMPED, dump_dir),
        )
        dump_seconds = time.monotonic() - started
        source_counts = count_rows(source_conn)
    dump_bytes = tree_size(dump_dir)
    progress(
        f"dumped {size(dump_bytes)} in {dump_seconds:.1f}s; restoring into {staging.display()}"
    )
    restore_seconds, problems = restore_archive(dump_dir, staging, client, progress)
    shutil.rmtree(dump_dir, ignore_errors=True)
    staging_counts = settle(staging)
    progress(f"restored in {restore_seconds:.1f}s")
    tables = tuple(
        TableCount(schema, table, rows, staging_counts.get((schema, table)))
        for (schema, table), rows in source_counts.items()
    )
    return Snapshot(
        staging, tables, dump_bytes, dump_seconds, restore_seconds, problems, taken_at=taken_at
    )


def restore_file(
    dump: DumpFile, staging: Endpoint, client: PgBinaries, progress: Progress
) -> Snapshot:
    """Restore a dump file the team already has into the (empty) ``staging`` database.

    There is no source to count rows in: the tables are those the restore made, and the check
    is that it restored without errors.
    """
    progress(f"restoring {dump.display()} into {staging.display()}")
    if dump.archive:
        seconds, problems = restore_archive(
            dump.path, staging, client, progress, parallel=dump.format != "tar"
        )
    else:
        seconds, problems = restore_plain(dump, staging, client, progress)
    counts = settle(staging)
    progress(f"restored in {seconds:.1f}s")
    tables = tuple(TableCount(s, t, None, n) for (s, t), n in counts.items())
    return Snapshot(
        staging,
        tables,
        dump.size,
        0.0,
        seconds,
        problems,
        taken_at=dump.created_at,
        from_file=str(dump.path),
    )


def restore_archive(
    archive: Path,
    staging: Endpoint,
    client: PgBinaries,
    progress: Progress,
    parallel: bool = True,
) -> tuple[float, tuple[str, ...]]:
    """pg_restore an archive, one job per core (tar archives cannot be restored in parallel);
    return the seconds it took and the problems it tolerated."""
    jobs = parallelism() if parallel else 1
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
            str(archive),
        ],
        staging,
        RefreshError.restore_failed,
        tolerate=BENIGN_RESTORE_ERRORS,
        ticker=Ticker(progress, "restoring", "items restored", RESTORED),
    )
    problems = tuple(line for line in stderr.splitlines() if "error:" in line)
    return time.monotonic() - started, problems


def restore_plain(
    dump: DumpFile, staging: Endpoint, client: PgBinaries, progress: Progress
) -> tuple[float, tuple[str, ...]]:
    """Stream a plain SQL dump into psql, decompressing on the way, a megabyte at a time.

    psql goes on past an error, as pg_restore does; the errors a plain dump's ownership and
    grants raise on a server without the production roles are tolerated (pg_restore's
    --no-owner --no-privileges avoid them for archives), any other fails the restore.
    """
    ticker = Ticker(progress, "restoring", "", None, total=dump.size)
    started = time.monotonic()
    stderr = _run(
        [
            client.path("psql"),
            "--no-psqlrc",
            "--quiet",
            "--no-password",
            "--set=ON_ERROR_STOP=0",
            f"--dbname={staging.conninfo_without_password()}",
            "--file=-",
        ],
        staging,
        partial(RefreshError.restore_failed, program="psql"),
        tolerate=(*BENIGN_RESTORE_ERRORS, *PLAIN_TOLERATED),
        ticker=ticker,
        feed=plain_chunks(dump),
        errors_fail=True,
    )
    problems = tuple(line for line in stderr.splitlines() if "ERROR:" in line)
    return time.monotonic() - started, problems


def settle(staging: Endpoint) -> dict[tuple[str, str], int]:
    """Vacuum and analyse the restored copy and count its rows. A restore leaves no statistics
    and no page marked all-visible; production has both, and so must every copy measured
    (the cached snapshot is kept, and cloned, in this state)."""
    with connection(staging, "staging", "the staging database") as conn:
        conn.execute("VACUUM (ANALYZE)")
        return count_rows(conn)


# Verbose lines that mark one unit of work done: a table's data dumped, a TOC item restored.
DUMPED = re.compile(r"dumping contents of table")
RESTORED = re.compile(r"(processing item|finished item|processing data for table)")
PROGRESS_EVERY_S = 5.0
# The dump is a temporary file on the machine that restores it: compressing it would spend the
# CPU the parallel dump and restore need, to save disk that is given back minutes later.
DUMP_COMPRESSION = 0


def parallelism() -> int:
    """pg_dump and pg_restore jobs: one per core, as the core count bounds them."""
    return max(1, min(os.cpu_count() or 1, 8))


@dataclass
class Ticker:
    """Progress of a long dump or restore: the program's --verbose lines that mark a unit done,
    the size of the file it writes, or the bytes of SQL fed to it out of ``total``."""

    progress: Progress
    doing: str
    unit: str
    marks: re.Pattern[str] | None
    output: Path | None = None
    total: int | None = None
    done: int = 0
    fed: int = 0

    def line(self, text: str) -> None:
        if self.marks is not None and self.marks.search(text):
            self.done += 1

    def report(self) -> None:
        if self.total is not None:
            self.progress(f"{self.doing}: {size(self.fed)} of {size(self.total)} read")
            return
        written = ""
        if self.output is not None and self.output.exists():
            written = f", {size(tree_size(self.output))} written"
        self.progress(f"{self.doing}: {self.done} {self.unit}{written}")


def _run(
    argv: list[str],
    endpoint: Endpoint,
    failure: Callable[[str, str], RefreshError],
    tolerate: tuple[str, ...] = (),
    ticker: Ticker | None = None,
    feed: Iterator[bytes] | None = None,
    errors_fail: bool = False,
) -> str:
    """Run a client program with the password in its environment; return its problems.

    Its --verbose output is read as it comes, to report progress every few seconds; only the
    lines that say something went wrong are kept, so a huge schema costs no memory here. With
    ``feed``, its standard input is that stream of SQL. A program that exits 0 after errors
    (psql) fails on them with ``errors_fail``.
    """
    proc = subprocess.Popen(
        argv,
        env=endpoint.subprocess_env(),
        stdin=subprocess.PIPE if feed is not None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    kept: list[str] = []
    fed: list[BaseException] = []

    def read(stream: IO[bytes]) -> None:
        for raw in stream:
            text = raw.decode("utf-8", "replace")
            if ticker is not None:
                ticker.line(text)
            if "error" in text.lower() or "warning" in text.lower() or "fatal" in text.lower():
                kept.append(text)

    def write(stream: IO[bytes], chunks: Iterator[bytes]) -> None:
        try:
            for chunk in chunks:
                stream.write(chunk)
                if ticker is not None:
                    ticker.fed += len(chunk)
        except BrokenPipeError:
            pass  # the program stopped reading: its exit status and messages say why
        except RefreshError as exc:
            fed.append(exc)
        finally:
            with contextlib.suppress(BrokenPipeError):
                stream.close()

    threads = [threading.Thread(target=read, args=(proc.stderr,), daemon=True)]
    if feed is not None:
        assert proc.stdin is not None
        threads.append(threading.Thread(target=write, args=(proc.stdin, feed), daemon=True))
    for thread in threads:
        thread.start()
    while True:
        try:
            proc.wait(timeout=PROGRESS_EVERY_S)
            break
        except subprocess.TimeoutExpired:
            if ticker is not None:
                ticker.report()
    for thread in threads:
        thread.join()
    if fed:
        raise fed[0]
    stderr = endpoint.redact("".join(kept))
    errors = [
        line
        for line in stderr.splitlines()
        if ("error:" in line.lower()) and not any(t in line for t in tolerate)
    ]
    if proc.returncode != 0:
        if errors or "errors ignored on restore" not in stderr:
            raise failure(endpoint.display(), stderr or f"exit status {proc.returncode}")
    elif errors_fail and errors:
        raise failure(endpoint.display(), "\n".join(errors))
    return stderr
