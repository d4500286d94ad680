"""What a killed run leaves behind: its throwaway servers and dump folders, found and removed.

A run stops its embedded servers and removes its temporary folders when it ends, however it
ends, except when it is killed outright (``kill -9``, an out-of-memory kill, a CI runner that
vanishes). Then an embedded server keeps running with nobody to stop it, and a dump folder of the
production copy stays on disk. Every temporary folder a run makes is marked with its owner
(process id and start time, so a reused process id is not mistaken for it); the next run stops
the servers and removes the folders whose owner is gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

OWNER = "dbgate-owner"
PREFIX = "dbgate-"


def temporary_folder(prefix: str) -> Path:
    """A new folder in the temporary directory, marked as this process's."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    (folder / OWNER).write_text(f"{os.getpid()} {_started(os.getpid())}\n")
    return folder


def sweep() -> list[str]:
    """Stop and remove what runs that are gone left; what was removed, to say so."""
    removed = []
    for folder in sorted(Path(tempfile.gettempdir()).glob(PREFIX + "*")):
        made_by = owner(folder)
        if made_by is None:
            continue  # not a folder of ours, or one being made right now
        if _alive(*made_by):
            continue
        stopped = _stop_server(folder / "data")
        size = _size(folder)
        shutil.rmtree(folder, ignore_errors=True)
        what = "an embedded server (stopped) and its data" if stopped else "a folder"
        removed.append(f"{folder} ({what}, {size / 1e6:.1f} MB)")
    return removed


def owner(folder: Path) -> tuple[int, str] | None:
    """The process that made ``folder`` (its id and start time), or ``None`` if not a run."""
    try:
        pid_text, started = (folder / OWNER).read_text().split()
        return int(pid_text), started
    except (OSError, ValueError):
        return None


def _started(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), or ``-`` where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "-"
    # The command name (field 2) may hold spaces and parentheses: count from the last ")".
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, started: str) -> bool:
    if not _running(pid):
        return False
    return started == "-" or _started(pid) in (started, "-")


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie nobody reaped (a container's init may not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _stop_server(data: Path) -> bool:
    """Stop the postmaster of a cluster in ``data``, if one still runs there (immediate shutdown:
    it is a throwaway copy)."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return False
    if b"postgres" not in command and b"postmaster" not in command:
        return False  # the process id was reused by something else
    try:
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 30
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _running(pid):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def _size(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
        except OSError:
            continue
    return total
