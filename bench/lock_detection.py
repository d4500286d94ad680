"""How short a blocking episode does the lock gate catch, and what does watching cost?

1. Detection: a migration takes SHARE on a table with rows (blocking writes) for a set time,
   under the gate's simulated traffic at its default rate; for each duration, how many of the
   trials recorded a blocked write, and what the gate measured.
2. Overhead: a heavy migration (an UPDATE of every row of a 1,000,000-row table, in one
   transaction) timed alternately without the monitor, with the monitor alone (no traffic), and
   with the monitor and the traffic; medians and the overhead against no monitor.

Usage (from the repository root):  python bench/lock_detection.py --trials 10
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg
from tabulate import tabulate

from pytest_dbgate.config.settings import SETTING
from pytest_dbgate.migrations.apply import StatementLog
from pytest_dbgate.migrations.parse import Migration, discover
from pytest_dbgate.migrations.runner import Runner
from pytest_dbgate.observe.locks import watching
from pytest_dbgate.observe.timeline import LockReport
from pytest_dbgate.pg.binaries import find_binaries
from pytest_dbgate.pg.connections import Endpoint, connect
from pytest_dbgate.pg.servers import embedded_server

TRAFFIC_RATE = SETTING["traffic_rate"].number()  # the defaults, as the gate uses them
MAX_BLOCK_MS = SETTING["max_block_ms"].number()

Conn = psycopg.Connection[tuple[object, ...]]


def migration(folder: Path, name: str, sql: str) -> Migration:
    for old in folder.glob("*.sql"):
        old.unlink()
    (folder / f"1_{name}.sql").write_text(sql)
    return discover(folder)[0]


def run(db: Endpoint, m: Migration, rate: float | None) -> tuple[float, LockReport | None]:
    """Apply one migration (rate None: unwatched); its duration in seconds and lock report."""
    reports: list[LockReport] = []

    def session() -> Conn:
        return connect(db, "staging", "bench", purpose="watch")

    @contextmanager
    def watch(mig: Migration, conn: Conn) -> Iterator[StatementLog]:
        assert rate is not None
        with watching(session, mig, conn, {}, rate) as (report, timeline):
            reports.append(report)
            yield timeline

    with connect(db, "staging", "bench", purpose="migrate") as conn:
        conn.execute("DROP SCHEMA IF EXISTS dbgate CASCADE")
        chosen: Callable[[Migration, Conn], AbstractContextManager[StatementLog]] | None = (
            watch if rate is not None else None
        )
        runner = Runner(conn, [m], lambda _: None, "bench", watch=chosen)
        started = time.monotonic()
        (outcome,) = runner.apply_all()
        elapsed = time.monotonic() - started
        assert outcome.ok, outcome.failure
    return elapsed, (reports[0] if reports else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--holds", default="50,100,200,300,500,1000", help="milliseconds")
    parser.add_argument("--overhead-trials", type=int, default=7)
    args = parser.parse_args()
    holds = [int(h) for h in args.holds.split(",")]
    binaries = find_binaries(None, ("pg_ctl", "pg_dump", "pg_restore"))
    with embedded_server("bench-locks", binaries) as server, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with connect(server, "staging", "bench") as conn:
            conn.execute("CREATE DATABASE bench")
        db = server.with_dbname("bench")
        with connect(db, "staging", "bench") as conn:
            conn.execute("CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL)")
            conn.execute("INSERT INTO accounts SELECT i, i FROM generate_series(1, 1000000) i")
            conn.execute("VACUUM ANALYZE accounts")

        rows = []
        for hold in holds:
            m = migration(
                folder,
                "hold",
                f"LOCK TABLE accounts IN SHARE MODE;\nSELECT pg_sleep({hold / 1000});\n",
            )
            caught, blocked, held = 0, [], []
            for _ in range(args.trials):
                _, report = run(db, m, TRAFFIC_RATE)
                assert report is not None
                if report.blocked:
                    caught += 1
                    blocked.append(report.max_blocked_ms)
                held.append(max((lock.held_ms for lock in report.locks), default=0.0))
            rows.append(
                (
                    hold,
                    f"{caught}/{args.trials}",
                    f"{statistics.median(blocked):.0f}" if blocked else "-",
                    f"{statistics.median(held):.0f}",
                )
            )
            print(f"hold {hold} ms: {caught}/{args.trials} detected", flush=True)

        heavy = migration(folder, "update", "UPDATE accounts SET balance = balance + 1;\n")
        times: dict[str, list[float]] = {"no monitor": [], "monitor": [], "monitor + traffic": []}
        for _ in range(2):  # warm-up: the first rewrites settle the table's free space
            run(db, heavy, None)
            with connect(db, "staging", "bench") as conn:
                conn.execute("VACUUM accounts")
        for _ in range(args.overhead_trials):
            for label, rate in (
                ("no monitor", None),
                ("monitor", 0.0),
                ("monitor + traffic", TRAFFIC_RATE),
            ):
                elapsed, _ = run(db, heavy, rate)
                times[label].append(elapsed)
                with connect(db, "staging", "bench") as conn:
                    conn.execute("VACUUM accounts")
            print(
                f"overhead round done: { {k: round(v[-1], 2) for k, v in times.items()} }",
                flush=True,
            )

    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(
        f"detection: SHARE held on a 1,000,000-row table, traffic at {TRAFFIC_RATE} "
        f"queries/s per session, {args.trials} trials each"
    )
    print(
        tabulate(
            rows,
            headers=("lock held ms", "episodes detected", "measured block ms", "measured hold ms"),
        )
    )
    base = statistics.median(times["no monitor"])
    print()
    print(f"overhead: UPDATE of 1,000,000 rows in one transaction, {args.overhead_trials} rounds")
    print(
        tabulate(
            [
                (
                    label,
                    f"{statistics.median(v):.3f}",
                    f"{(statistics.median(v) / base - 1) * 100:+.1f} %",
                )
                for label, v in times.items()
            ],
            headers=("configuration", "median s", "vs no monitor"),
        )
    )
    print(f"\n(max_block_ms default {MAX_BLOCK_MS} ms)")


if __name__ == "__main__":
    main()
