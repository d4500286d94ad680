"""Another session in the deploy's way, opened just before the deploy item BLOCK_BEFORE runs.

BLOCK_URL: where; BLOCK_SQL: what it runs in its transaction (left open); BLOCK_FOR: seconds
before it ends its transaction (unset: at the end of the run).
"""

import os
import threading

import psycopg
import pytest

HELD: dict[str, psycopg.Connection] = {}
TIMERS: list[threading.Timer] = []


def _release(conn: psycopg.Connection) -> None:
    if not conn.closed:
        conn.rollback()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    target = os.environ.get("BLOCK_BEFORE")
    if not target or target not in item.nodeid or "conn" in HELD:
        return
    conn = psycopg.connect(os.environ["BLOCK_URL"], application_name="nightly report")
    conn.execute(os.environ["BLOCK_SQL"])
    HELD["conn"] = conn
    hold_for = float(os.environ.get("BLOCK_FOR", "0"))
    if hold_for:
        timer = threading.Timer(hold_for, _release, (conn,))
        TIMERS.append(timer)
        timer.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    for timer in TIMERS:
        timer.cancel()
    conn = HELD.pop("conn", None)
    if conn is not None:
        conn.close()
