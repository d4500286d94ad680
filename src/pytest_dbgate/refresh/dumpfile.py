"""A dump the team already has (``--dbgate-snapshot``), restored in place of dumping the source.

pg_dump writes four formats: plain SQL (often gzipped), custom, directory and tar. The archive
formats go through ``pg_restore`` (in parallel, except tar); plain SQL is streamed into ``psql``.
Everything that can be checked without a database is checked when the run starts, so a wrong or
damaged file is one usage error before any server is touched: the format, the archive's table of
contents (``pg_restore --list``) and, for plain SQL, the line pg_dump writes last. A plain dump
cut short at a statement boundary restores without a single error; only that missing last line
gives it away.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BufferedReader
from pathlib import Path

from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.core.errors import RefreshError
from pytest_dbgate.pg.binaries import PgBinaries
from pytest_dbgate.pg.databases import ServerIdentity

PLAIN_HEADER = "-- PostgreSQL database dump"
CLUSTER_HEADER = "-- PostgreSQL database cluster dump"
PLAIN_TRAILER = b"-- PostgreSQL database dump complete"
CHUNK = 1 << 20
TAIL = 4096
HEAD = 1 << 16  # pg_dump writes CREATE EXTENSION before any table

VERSION = re.compile(r"Dumped from database version:?\s+(\d+)(?:\.(\d+))?")
ARCHIVE_CREATED = re.compile(r"^;\s+Archive created at (.+)$")
ARCHIVE_DBNAME = re.compile(r"^;\s+dbname: (.+)$")
# pg_dump's own fixed wording (its head may be cut mid-statement and holds psql meta-commands,
# so it is not parsed as SQL).
PLAIN_EXTENSION = re.compile(r'^CREATE EXTENSION IF NOT EXISTS "?([^\s";]+)"?', re.MULTILINE)
ARCHIVE_EXTENSION = re.compile(r"^\d+; \d+ \d+ EXTENSION - (\S+)")


@dataclass(frozen=True)
class DumpFile:
    """What a dump file is, read from its header without restoring it."""

    path: Path
    format: str  # plain, plain (gzip), custom, directory, tar
    size: int
    dbname: str  # the dumped database's name (archives), else the file's stem
    server_version: str | None  # "15.18": the server it was dumped from, when it says
    created_at: datetime  # the archive's own timestamp, else the file's modification time
    extensions: tuple[str, ...] = ()  # what it creates: the gate checks staging can have them
    checksum: str | None = None  # read when the run needs it: the whole file is read for it

    @property
    def archive(self) -> bool:
        """Restored by pg_restore (custom, directory, tar) rather than psql (plain SQL)."""
        return not self.format.startswith("plain")

    @property
    def gzipped(self) -> bool:
        return self.format == "plain (gzip)"

    @property
    def identity(self) -> ServerIdentity | None:
        """The dumped server's version, as far as the file tells it (for versions_match)."""
        if self.server_version is None:
            return None
        major, _, minor = self.server_version.partition(".")
        return ServerIdentity(None, "", int(major) * 10000 + int(minor or 0), self.server_version)

    def display(self) -> str:
        return f"{self.path} ({self.format}, {size(self.size)})"


def inspect(path: Path, binaries: PgBinaries) -> DumpFile:
    """Read ``path``'s format and header; raise a :class:`ConfigError` naming what is wrong."""
    if not path.exists():
        raise ConfigError.snapshot_missing(path)
    if path.is_dir():
        if not (path / "toc.dat").is_file():
            raise ConfigError.snapshot_unreadable(
                path, "it is a folder without toc.dat, so not a directory-format dump"
            )
        return _archive(path, "directory", tree_size(path), binaries)
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError as exc:
        raise ConfigError.snapshot_unreadable(path, exc.strerror or str(exc)) from None
    stat = path.stat()
    if head.startswith(b"PGDMP"):
        return _archive(path, "custom", stat.st_size, binaries)
    if head[257:262] == b"ustar":
        return _archive(path, "tar", stat.st_size, binaries)
    if head.startswith(b"\x1f\x8b"):
        return _plain(path, stat.st_size, gzipped=True)
    return _plain(path, stat.st_size, gzipped=False)


def _archive(path: Path, kind: str, nbytes: int, binaries: PgBinaries) -> DumpFile:
    """An archive pg_restore can list: its table of contents is whole and its version known."""
    proc = subprocess.Popen(
        [binaries.path("pg_restore"), "--list", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    assert proc.stdout is not None and proc.stderr is not None
    header: list[str] = []
    extensions: list[str] = []
    for line in proc.stdout:  # a big schema lists many thousands of lines: keep what is needed
        if len(header) < 20:
            header.append(line.rstrip("\n"))
        if match := ARCHIVE_EXTENSION.search(line):
            extensions.append(match.group(1))
    stderr = proc.stderr.read()
    if proc.wait() != 0:
        problem = stderr.strip().splitlines()[-1] if stderr.strip() else "pg_restore --list failed"
        raise ConfigError.snapshot_unreadable(path, problem.removeprefix("pg_restore: error: "))
    created = dbname = version = None
    for line in header:
        if match := ARCHIVE_CREATED.match(line):
            created = _timestamp(match.group(1))
        elif match := ARCHIVE_DBNAME.match(line):
            dbname = match.group(1).strip()
        elif match := VERSION.search(line):
            version = _version(match)
    return DumpFile(
        path,
        kind,
        nbytes,
        dbname or _stem(path),
        version,
        created or _mtime(path),
        tuple(extensions),
    )


def _plain(path: Path, nbytes: int, gzipped: bool) -> DumpFile:
    """A plain SQL dump: pg_dump's header at the top and its closing line at the bottom."""
    try:
        head = _plain_head(path, gzipped)
    except (OSError, EOFError, zlib.error) as exc:
        raise ConfigError.snapshot_unreadable(path, f"gzip: {exc}") from None
    if CLUSTER_HEADER in head:
        raise ConfigError.snapshot_is_cluster_dump(path)
    if PLAIN_HEADER not in head:
        raise ConfigError.snapshot_unreadable(
            path,
            "it is neither an archive pg_dump wrote (custom, directory, tar) nor a plain SQL dump "
            f"(no {PLAIN_HEADER!r} header)",
        )
    if not gzipped:
        with path.open("rb") as handle:
            handle.seek(max(0, nbytes - TAIL))
            if PLAIN_TRAILER not in handle.read():
                raise ConfigError.snapshot_truncated(path)
    match = VERSION.search(head)
    return DumpFile(
        path,
        "plain (gzip)" if gzipped else "plain",
        nbytes,
        _stem(path),
        _version(match) if match else None,
        _mtime(path),
        tuple(PLAIN_EXTENSION.findall(head)),
    )


def _plain_head(path: Path, gzipped: bool) -> str:
    with _open_plain(path, gzipped) as handle:
        return handle.read(HEAD).decode("utf-8", "replace")


def _open_plain(path: Path, gzipped: bool) -> gzip.GzipFile | BufferedReader:
    """A plain dump's bytes, decompressed if it is gzipped."""
    return gzip.open(path, "rb") if gzipped else path.open("rb")


def checksum(dump: DumpFile) -> str:
    """A digest of every byte of the dump (of a directory dump: every file's name and bytes):
    the cached snapshot's key. Read in chunks, so a dump of any size costs a megabyte of memory."""
    digest = hashlib.blake2b(digest_size=20)
    if dump.path.is_dir():
        files = sorted(p for p in dump.path.rglob("*") if p.is_file())
    else:
        files = [dump.path]
    for file in files:
        if file != dump.path:
            digest.update(str(file.relative_to(dump.path)).encode() + b"\0")
        with file.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def plain_chunks(dump: DumpFile) -> Iterator[bytes]:
    """The plain dump's SQL, decompressed, a megabyte at a time; a gzipped dump that is cut
    short or lacks pg_dump's closing line raises :class:`RefreshError` after its last chunk."""
    tail = b""
    try:
        with _open_plain(dump.path, dump.gzipped) as handle:
            while chunk := handle.read(CHUNK):
                tail = (tail + chunk)[-TAIL:]
                yield chunk
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise RefreshError.dump_file_damaged(str(dump.path), str(exc)) from None
    if PLAIN_TRAILER not in tail:
        raise RefreshError.dump_file_damaged(
            str(dump.path), f"it does not end with pg_dump's {PLAIN_TRAILER.decode()!r} line"
        )


def _version(match: re.Match[str]) -> str:
    return match.group(1) + (f".{match.group(2)}" if match.group(2) else "")


def _timestamp(text: str) -> datetime | None:
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S %Z").replace(tzinfo=UTC)
    except ValueError:
        return None


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".sql", ".dump", ".tar", ".backup"):
        name = name.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_").lower() or "snapshot"


def tree_size(path: Path) -> int:
    """Bytes in a file, or in every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def size(n: int) -> str:
    amount = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GB"
