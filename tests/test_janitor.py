"""What a killed run left: its embedded server stopped, its folders removed, by the next run."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import psycopg
import pytest

from pytest_dbgate.pg.binaries import PgBinaries
from pytest_dbgate.pg.janitor import OWNER, sweep, temporary_folder
from pytest_dbgate.pg.servers import embedded_server


def _accepts(port: int) -> bool:
    try:
        psycopg.connect(host="127.0.0.1", port=port, user="postgres", connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


def test_a_killed_runs_server_and_dump_folder_are_removed(binaries: PgBinaries) -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the run that gets killed: a server up, a dump folder written
        try:
            os.close(read)
            with embedded_server("janitor", binaries) as server:
                dump = temporary_folder("dbgate-dump-")
                (dump / "toc.dat").write_bytes(b"production rows" * 1000)
                os.write(write, f"{server.port} {dump}\n".encode())
                os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    os.close(write)
    port_text, dump_text = os.read(read, 4096).decode().split()
    os.close(read)
    os.waitpid(pid, 0)
    port, dump = int(port_text), Path(dump_text)
    servers = list(Path(tempfile.gettempdir()).glob("dbgate-janitor-*"))
    assert _accepts(port) and dump.is_dir() and servers  # what kill -9 leaves

    removed = sweep()

    assert not _accepts(port)
    assert not dump.exists()
    assert not [p for p in servers if p.exists()]
    said = "\n".join(removed)
    assert str(dump) in said and "a folder" in said
    assert "an embedded server (stopped)" in said


def test_a_live_runs_folders_are_left_alone() -> None:
    mine = temporary_folder("dbgate-dump-")
    try:
        sweep()
        assert mine.is_dir()
    finally:
        for path in mine.iterdir():
            path.unlink()
        mine.rmdir()


@pytest.mark.parametrize("owner", ["999999999 1", "{pid} 1", "not an owner"])
def test_folders_of_gone_owners_go_and_others_stay(owner: str) -> None:
    """A process id that no longer runs, or that runs but started at another time (reused),
    owned a folder of a killed run; a folder without a readable owner is not ours to remove."""
    folder = Path(tempfile.mkdtemp(prefix="dbgate-dump-"))
    (folder / OWNER).write_text(owner.format(pid=os.getpid()))
    try:
        sweep()
        assert folder.exists() is (owner == "not an owner")
    finally:
        if folder.exists():
            (folder / OWNER).unlink()
            folder.rmdir()
