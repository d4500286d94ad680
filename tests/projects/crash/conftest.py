"""Kill this run at one boundary of applying the release, as a crash or a cancelled job would.

CRASH_AT: ``<point> <migration> <statement>``; CRASH_SIGNAL: SIGKILL or SIGTERM; CRASH_DELAY:
seconds after that boundary (while the statement runs on the server), default 0; CRASH_LOG: a
file every boundary passed is appended to.
"""

import os
import signal
import threading


def pytest_dbgate_boundary(mode: str, point: str, migration: str, statement: int | None) -> None:
    where = f"{point} {migration} {statement}"
    log = os.environ.get("CRASH_LOG")
    if log and mode == "production":
        with open(log, "a") as file:
            file.write(where + "\n")
    if mode == "production" and where == os.environ.get("CRASH_AT"):
        sig = getattr(signal, os.environ["CRASH_SIGNAL"])
        delay = float(os.environ.get("CRASH_DELAY", "0"))
        if delay:
            threading.Timer(delay, os.kill, (os.getpid(), sig)).start()
        else:
            os.kill(os.getpid(), sig)
