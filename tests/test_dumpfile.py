"""Dump files given with --dbgate-snapshot: formats, headers, damage, checksums."""

from __future__ import annotations

import gzip
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.core.errors import RefreshError
from pytest_dbgate.pg.binaries import PgBinaries
from pytest_dbgate.pg.connections import Endpoint, connection
from pytest_dbgate.refresh.dumpfile import checksum, inspect, plain_chunks

DUMPED_SQL = """
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TABLE notes (id int PRIMARY KEY, body citext);
INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 20000) i;
"""


@pytest.fixture(scope="module")
def dumps(
    source_server: Endpoint, binaries: PgBinaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Path]]:
    """One small database dumped in every format pg_dump writes, and a gzipped plain one."""
    folder = tmp_path_factory.mktemp("dumps")
    with connection(source_server, "test", "test") as conn:
        conn.execute("DROP DATABASE IF EXISTS dumpsrc WITH (FORCE)")
        conn.execute("CREATE DATABASE dumpsrc")
    database = source_server.with_dbname("dumpsrc")
    with connection(database, "test", "test") as conn:
        conn.execute(DUMPED_SQL)
    files = {
        "plain": folder / "prod.sql",
        "custom": folder / "prod.dump",
        "directory": folder / "prod.dir",
        "tar": folder / "prod.tar",
    }
    for kind, path in files.items():
        subprocess.run(
            [
                binaries.path("pg_dump"),
                f"--format={kind}",
                f"--file={path}",
                f"--dbname={database.conninfo()}",
            ],
            check=True,
        )
    files["plain (gzip)"] = folder / "prod.sql.gz"
    files["plain (gzip)"].write_bytes(gzip.compress(files["plain"].read_bytes()))
    yield files
    with connection(source_server, "test", "test") as conn:
        conn.execute("DROP DATABASE dumpsrc WITH (FORCE)")


@pytest.mark.parametrize("kind", ["plain", "plain (gzip)", "custom", "directory", "tar"])
def test_each_format_is_recognised_with_its_header(
    dumps: dict[str, Path], binaries: PgBinaries, kind: str
) -> None:
    dump = inspect(dumps[kind], binaries)
    assert dump.format == kind
    assert dump.archive == (not kind.startswith("plain"))
    assert dump.server_version is not None
    assert dump.server_version.split(".")[0] == str(binaries.major)
    assert dump.identity is not None and dump.identity.major == binaries.major
    assert dump.extensions == ("citext",)
    # An archive names the database it was dumped from; plain SQL does not, the file does.
    assert dump.dbname == ("prod" if kind.startswith("plain") else "dumpsrc")
    assert dump.size > 0


def test_a_plain_dump_cut_short_is_refused_before_anything_runs(
    dumps: dict[str, Path], binaries: PgBinaries, tmp_path: Path
) -> None:
    whole = dumps["plain"].read_bytes()
    cut = tmp_path / "cut.sql"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(ConfigError) as raised:
        inspect(cut, binaries)
    message = str(raised.value)
    assert message.startswith(f"the plain SQL dump {cut} is truncated")
    assert "take the dump again" in message


def test_a_gzipped_plain_dump_cut_short_fails_its_restore(
    dumps: dict[str, Path], binaries: PgBinaries, tmp_path: Path
) -> None:
    whole = dumps["plain (gzip)"].read_bytes()
    cut = tmp_path / "cut.sql.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    dump = inspect(cut, binaries)  # the header is readable; the damage is further on
    with pytest.raises(RefreshError) as raised:
        for _ in plain_chunks(dump):
            pass
    assert f"the dump file {cut} is damaged or truncated" in str(raised.value)


def test_damaged_and_foreign_files_are_refused(
    dumps: dict[str, Path], binaries: PgBinaries, tmp_path: Path
) -> None:
    stub = tmp_path / "stub.dump"
    stub.write_bytes(dumps["custom"].read_bytes()[:100])
    with pytest.raises(ConfigError, match=r"stub.dump cannot be restored: .*end of file"):
        inspect(stub, binaries)
    text = tmp_path / "notes.txt"
    text.write_text("just some notes\n")
    with pytest.raises(ConfigError, match="neither an archive pg_dump wrote"):
        inspect(text, binaries)
    cluster = tmp_path / "all.sql"
    cluster.write_text("--\n-- PostgreSQL database cluster dump\n--\n")
    with pytest.raises(ConfigError, match="a pg_dumpall dump of a whole cluster"):
        inspect(cluster, binaries)
    folder = tmp_path / "empty.dir"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"a folder without toc\.dat"):
        inspect(folder, binaries)
    with pytest.raises(ConfigError, match="does not exist"):
        inspect(tmp_path / "nowhere.dump", binaries)


def test_the_checksum_follows_every_byte(
    dumps: dict[str, Path], binaries: PgBinaries, tmp_path: Path
) -> None:
    original = inspect(dumps["custom"], binaries)
    copy = tmp_path / "copy.dump"
    copy.write_bytes(dumps["custom"].read_bytes())
    assert checksum(inspect(copy, binaries)) == checksum(original)
    changed = bytearray(copy.read_bytes())
    changed[-1] ^= 0xFF
    copy.write_bytes(bytes(changed))
    assert checksum(inspect(copy, binaries)) != checksum(original)
    assert len(checksum(inspect(dumps["directory"], binaries))) == 40
