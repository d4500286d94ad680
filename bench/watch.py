"""How quick is `pytest --dbgate=watch` on a busy production? Thousands of pg_stat_statements
entries, one run.

Starts an embedded server (the machine's PostgreSQL), makes a "production" database with 50
tables and a workload of --queries distinct query shapes, each run a few times with driver
parameters, records a deploy the way production mode does (a reading of the counters before and
after, into dbgate.deploys), runs the workload again (the period since the deploy), then times,
in one run and side by side:

* the deploy's reading of production's counters (what `--dbgate=production` adds to a deploy);
* the watch's own work: reading the counters and judging every query and signal (the figure
  `seconds` of its deploy_found item);
* `pytest --dbgate=watch` end to end, against `pytest` on an empty project (pytest's own start).

Usage (from the repository root):
    python bench/watch.py --queries 5000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from pytest_dbgate.pg.binaries import find_binaries
from pytest_dbgate.pg.connections import Endpoint, connection
from pytest_dbgate.pg.servers import embedded_server
from pytest_dbgate.watch.deploys import record_deploy
from pytest_dbgate.watch.reading import read

TABLES = 50
COLUMNS = 10


def build(db: Endpoint) -> None:
    with connection(db, "production", "bench") as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        for t in range(TABLES):
            columns = ", ".join(f"c{c} int" for c in range(COLUMNS))
            conn.execute(f"CREATE TABLE t{t} ({columns})")
            values = ", ".join(f"(g + {c}) % 97" for c in range(COLUMNS))
            conn.execute(f"INSERT INTO t{t} SELECT {values} FROM generate_series(1, 500) AS g")
        conn.execute("ANALYZE")


def shapes(count: int) -> list[str]:
    """``count`` queries with distinct fingerprints: table, selected columns, filtered column."""
    found = []
    for i in range(count):
        t, rest = i % TABLES, i // TABLES
        a, w = rest % COLUMNS, (rest // COLUMNS) % COLUMNS
        extra = rest // (COLUMNS * COLUMNS)
        selected = ", ".join(f"c{(a + k) % COLUMNS}" for k in range(1 + extra))
        found.append(f"SELECT {selected} FROM t{t} WHERE c{w} = %s")
    return found


def traffic(db: Endpoint, queries: list[str], calls: int) -> None:
    with connection(db, "application", "bench") as conn:
        for _ in range(calls):
            for q in queries:
                conn.execute(q, (7,))  # type: ignore[arg-type]


def project(folder: Path) -> None:
    (folder / "migrations").mkdir()
    (folder / "migrations" / "1_first.sql").write_text("SELECT 1;\n")
    (folder / "pytest.ini").write_text("[pytest]\n")


def pytest_run(folder: Path, *args: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if args and done.returncode != 0:
        raise SystemExit(f"the watch failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    binaries = find_binaries(None, ("pg_ctl",))
    with embedded_server("bench-watch", binaries) as server, tempfile.TemporaryDirectory() as tmp:
        with connection(server, "production", "bench") as conn:
            conn.execute("CREATE DATABASE prod")
        db = server.with_dbname("prod")
        build(db)
        queries = shapes(args.queries)
        traffic(db, queries, 3)
        reading_s = []
        with connection(db, "production", "bench") as conn:
            for _ in range(args.rounds):
                started = time.perf_counter()
                before = read(conn)
                reading_s.append(time.perf_counter() - started)
            after = read(conn)
            record_deploy(conn, ["1"], "bench", "2026-11-30T00:00:00+00:00", before, after, ())
        traffic(db, queries, 2)
        folder = Path(tmp) / "project"
        folder.mkdir()
        project(folder)
        empty = Path(tmp) / "empty"
        empty.mkdir()
        (empty / "pytest.ini").write_text("[pytest]\n")
        env = {**os.environ, "PROD_DATABASE_URL": db.url()}
        env.pop("PYTEST_ADDOPTS", None)
        watch_s, judged_s, empty_s = [], [], []
        for _ in range(args.rounds):
            watch_s.append(pytest_run(folder, "--dbgate=watch", env=env))
            results = json.loads((folder / ".dbgate" / "watch-results.json").read_text())
            found = next(i for i in results["items"] if i["nodeid"].endswith("deploy_found"))
            judged_s.append(float(found["figures"]["seconds"]))
            entries = int(found["figures"]["statements_now"])
            empty_s.append(pytest_run(empty, env=env))
    print(
        f"\nproduction: {entries:,} pg_stat_statements entries (application queries), "
        f"{args.rounds} rounds, medians\n"
    )
    print(
        tabulate(
            [
                ("the deploy's reading of the counters", statistics.median(reading_s)),
                ("the watch: read and judge everything", statistics.median(judged_s)),
                ("pytest --dbgate=watch, end to end", statistics.median(watch_s)),
                ("pytest on an empty project (pytest's own start)", statistics.median(empty_s)),
            ],
            headers=("", "seconds"),
            floatfmt=".3f",
        )
    )


if __name__ == "__main__":
    main()
