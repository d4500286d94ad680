"""Refresh at scale: the staging gate against the shell runbook it replaces.

Loads the demo "production" scaled up (`dbgate_demo.scale`) on one embedded server, starts a
second as staging, and times, alternating within each round:

* (A) the runbook: plain `pg_dump` to a file, `createdb`, `psql` restore, `psql -f` each
  migration, the two catalog queries (constraints validated, indexes valid and ready);
* (B) `pytest --dbgate=staging` cold (`--dbgate-refresh`: dump and restore), every criterion on;
* (C) the same warm: the cached snapshot is cloned, no dump and no restore;
* (D) bare `pg_restore --jobs` of a custom-format dump into an empty database: the floor for a
  restore;
* (E) the gate re-run after editing the last migration (a comment toggled at its end), the loop a
  team lives in: the restore point after the migration before it is cloned, and only the edited
  migration is applied and watched.

The gate runs in a copy of the repository's demo project (migrations/, demo/, pyproject.toml), so
the bench can edit a migration without touching the repository. Where a warm run's seconds go is
printed per stage, from the items' own durations (the rest is pytest starting and the servers).

Prints medians and the ratios B/A, C/A, the gate's restore / D, and the pytest process's peak
RSS (VmHWM, sampled) in cold runs at a small and at the full size.

Usage (from the repository root):  python bench/refresh_runbook.py --scale 4 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from tabulate import tabulate

from pytest_dbgate.pg.binaries import PgBinaries, find_binaries
from pytest_dbgate.pg.connections import Endpoint
from pytest_dbgate.pg.seed import load_seed, seed_files
from pytest_dbgate.pg.servers import embedded_server
from pytest_dbgate.refresh.restore import parallelism

REPO = Path(__file__).resolve().parents[1]
CATALOG_QUERIES = (
    "SELECT conrelid::regclass, conname FROM pg_constraint WHERE NOT convalidated",
    "SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid OR NOT indisready",
)


def url(e: Endpoint) -> str:
    return f"postgresql://{e.user}@{e.host}:{e.port}/{e.dbname}"


def run(argv: list[str]) -> None:
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        sys.exit(f"{Path(argv[0]).name} failed:\n{done.stderr.decode()[-2000:]}")


def recreate(server: Endpoint, dbname: str) -> None:
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def runbook(source: Endpoint, staging: Endpoint, bins: PgBinaries, work: Path) -> dict[str, float]:
    """(A): what the team's shell scripts do, timed end to end and by part."""
    recreate(staging, "runbook")
    dump = work / "prod.sql"
    target = staging.with_dbname("runbook")
    started = time.monotonic()
    run([bins.path("pg_dump"), f"--file={dump}", f"--dbname={source.conninfo()}"])
    dumped = time.monotonic()
    run([bins.path("createdb"), f"--maintenance-db={staging.conninfo()}", "runbook"])
    psql = [bins.path("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", f"--dbname={target.conninfo()}"]
    run([*psql, "-f", str(dump)])
    restored = time.monotonic()
    for migration in sorted((REPO / "migrations").glob("*.sql")):
        run([*psql, "-f", str(migration)])
    for query in CATALOG_QUERIES:
        run([*psql, "-c", query])
    done = time.monotonic()
    dump.unlink()
    recreate(staging, "runbook")
    return {
        "wall": done - started,
        "dump": dumped - started,
        "restore": restored - dumped,
        "migrate": done - restored,
    }


def bare_restore(custom: Path, staging: Endpoint, bins: PgBinaries) -> float:
    """(D): pg_restore --jobs of a custom dump into an empty database, nothing else."""
    recreate(staging, "floor")
    run([bins.path("createdb"), f"--maintenance-db={staging.conninfo()}", "floor"])
    started = time.monotonic()
    subprocess.run(
        [
            bins.path("pg_restore"),
            f"--jobs={parallelism()}",
            "--no-owner",
            f"--dbname={staging.with_dbname('floor').conninfo()}",
            str(custom),
        ],
        check=False,  # the plpgsql extension comment is not ours to restore
        capture_output=True,
    )
    seconds = time.monotonic() - started
    recreate(staging, "floor")
    return seconds


def demo_project(work: Path) -> Path:
    """A copy of the repository's demo project, whose migrations the bench may edit."""
    project = work / "project"
    for name in ("migrations", "demo"):
        shutil.copytree(REPO / name, project / name)
    for name in ("pyproject.toml", "conftest.py"):
        shutil.copy(REPO / name, project / name)
    return project


def edit_last(project: Path) -> None:
    """Change the last migration's checksum, not what it does: toggle a comment at its end."""
    last = sorted((project / "migrations").glob("*.sql"))[-1]
    text = last.read_text()
    marks = ("-- edited by the bench: a\n", "-- edited by the bench: b\n")
    if text.endswith(marks[0]):
        last.write_text(text[: -len(marks[0])] + marks[1])
    elif text.endswith(marks[1]):
        last.write_text(text[: -len(marks[1])] + marks[0])
    else:
        last.write_text(text + "\n" + marks[0])


def gate(env: dict[str, str], report: Path, *extra: str) -> dict[str, float]:
    """(B), (C) or (E): the staging gate; its wall time, restore time, peak RSS and seconds per
    stage."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "--dbgate=staging",
            f"--dbgate-report-dir={report}",
            "-p",
            "no:cacheprovider",
            "-q",
            *extra,
        ],
        cwd=env["DBGATE_BENCH_PROJECT"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    peak_kb = 0
    while proc.poll() is None:
        peak_kb = max(peak_kb, _hwm_kb(proc.pid))
        time.sleep(0.1)
    wall = time.monotonic() - started
    output = proc.stdout.read().decode() if proc.stdout else ""
    if proc.returncode != 0:
        sys.exit(f"the gate failed (exit {proc.returncode}):\n{output[-3000:]}")
    items = json.loads((report / "staging-results.json").read_text())["items"]
    restored = next(i for i in items if i["name"] == "snapshot_restored")["figures"]
    found = {
        "wall": wall,
        "dump": float(restored["dump_seconds"]),
        "restore": float(restored["restore_seconds"]),
        "rss_mb": peak_kb / 1024,
        "reused": float(bool(restored["reused_snapshot"])),
        "applied": float(output.count("[dbgate] applying ")),
    }
    for item in items:
        gate_item = item["nodeid"].startswith("dbgate::") or item["nodeid"].endswith("::lint")
        stage = item["stage"] if gate_item else f"project tests, {item['stage']}"
        found[f"stage:{stage}"] = found.get(f"stage:{stage}", 0.0) + float(item["duration_s"])
    found["stage:pytest, servers, collection"] = wall - sum(
        v for k, v in found.items() if k.startswith("stage:")
    )
    return found


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def load(server: Endpoint, scale: str, name: str) -> Endpoint:
    print(f"loading the demo production database at scale {scale} …", flush=True)
    seeded = load_seed(
        server.replace(options=f"-c dbgate_demo.scale={scale}"),
        name,
        seed_files([REPO / "demo" / "prod"]),
    )
    return server.with_dbname(seeded.dbname)


def size_mb(database: Endpoint) -> float:
    with psycopg.connect(database.conninfo()) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) / 2**20 if row else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="4", help="dbgate_demo.scale of the source (4: ~1 GB)")
    parser.add_argument("--small-scale", default="0.25", help="the smaller size for RSS")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of A, B, C, D (default 3)")
    args = parser.parse_args()

    bins = find_binaries(None, ("pg_ctl", "pg_dump", "pg_restore", "psql", "createdb"))
    with (
        embedded_server("bench-prod", bins) as prod,
        embedded_server("bench-staging", bins) as staging,
        tempfile.TemporaryDirectory(prefix="dbgate-bench-") as tmp,
    ):
        work = Path(tmp)
        os.chmod(work, 0o755)
        env = dict(os.environ)
        env.pop("PGOPTIONS", None)
        env["STAGING_DATABASE_URL"] = url(staging)
        project = demo_project(work)
        env["DBGATE_BENCH_PROJECT"] = str(project)

        small = load(prod, args.small_scale, "prod_small")
        small_mb = size_mb(small)
        small_rss = gate(
            {**env, "PROD_DATABASE_URL": url(small)}, work / "small", "--dbgate-refresh"
        )
        print(
            f"small ({small_mb:.0f} MB): cold gate {small_rss['wall']:.1f}s, "
            f"peak RSS {small_rss['rss_mb']:.0f} MB",
            flush=True,
        )

        source = load(prod, args.scale, "prod")
        env["PROD_DATABASE_URL"] = url(source)
        custom = work / "prod.dump"
        run(
            [
                bins.path("pg_dump"),
                "--format=custom",
                f"--file={custom}",
                f"--dbname={source.conninfo()}",
            ]
        )
        source_mb = size_mb(source)
        print(
            f"source: {source_mb:.0f} MB on disk; "
            f"custom dump {custom.stat().st_size / 2**20:.0f} MB",
            flush=True,
        )

        a: list[dict[str, float]] = []
        b: list[dict[str, float]] = []
        c: list[dict[str, float]] = []
        d: list[float] = []
        e: list[dict[str, float]] = []

        def edited() -> None:
            edit_last(project)
            e.append(gate(env, work / "e"))

        steps: list[tuple[str, Callable[[], object]]] = [
            ("A runbook", lambda: a.append(runbook(source, staging, bins, work))),
            ("B gate cold", lambda: b.append(gate(env, work / "b", "--dbgate-refresh"))),
            ("C gate warm", lambda: c.append(gate(env, work / "c"))),
            ("D pg_restore", lambda: d.append(bare_restore(custom, staging, bins))),
            ("E gate, last migration edited", edited),
        ]
        for n in range(args.rounds):
            # Rotate the order each round so drift in the machine's load hits all alike.
            for label, step in steps[n % 5 :] + steps[: n % 5]:
                started = time.monotonic()
                step()
                print(f"round {n + 1}: {label} {time.monotonic() - started:.1f}s", flush=True)
        if not all(r["reused"] for r in c) or any(r["reused"] for r in b):
            sys.exit("a warm run did not reuse the snapshot, or a cold one did")
        if any(r["applied"] != 1 for r in e):
            sys.exit("a run after editing the last migration applied more than that migration")

    med = statistics.median
    a_s, b_s, c_s, d_s, e_s = (
        med([r["wall"] for r in a]),
        med([r["wall"] for r in b]),
        med([r["wall"] for r in c]),
        med(d),
        med([r["wall"] for r in e]),
    )
    restore = med([r["restore"] for r in b])
    print()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"{platform.platform()}; PostgreSQL {bins.major}"
    )
    print(f"source: demo at scale {args.scale}, {source_mb:.0f} MB; {args.rounds} rounds, medians")
    print(
        tabulate(
            [
                (
                    "A runbook (pg_dump plain, createdb, psql, psql -f, 2 queries)",
                    f"{a_s:.1f}",
                    "",
                    "",
                ),
                ("- of which pg_dump", f"{med([r['dump'] for r in a]):.1f}", "", ""),
                (
                    "- of which createdb + psql restore",
                    f"{med([r['restore'] for r in a]):.1f}",
                    "",
                    "",
                ),
                (
                    "- of which migrations + 2 queries",
                    f"{med([r['migrate'] for r in a]):.1f}",
                    "",
                    "",
                ),
                ("B gate cold (--dbgate-refresh)", f"{b_s:.1f}", f"B/A {b_s / a_s:.2f}", "≤ 1.0"),
                ("- of which dump", f"{med([r['dump'] for r in b]):.1f}", "", ""),
                (
                    "- of which restore",
                    f"{restore:.1f}",
                    f"restore/D {restore / d_s:.2f}",
                    "≤ 1.15",
                ),
                (
                    "C gate warm, release unchanged (cached snapshot, restore points)",
                    f"{c_s:.1f}",
                    f"C/A {c_s / a_s:.2f}",
                    "≤ 0.6",
                ),
                ("- of which clone", f"{med([r['restore'] for r in c]):.1f}", "", ""),
                ("D pg_restore --jobs of a custom dump", f"{d_s:.1f}", "", ""),
                (
                    "E gate re-run after editing the last migration",
                    f"{e_s:.1f}",
                    f"E/A {e_s / a_s:.2f}",
                    "≤ 0.25",
                ),
            ],
            headers=("step", "seconds", "ratio", "goal"),
        )
    )
    print()
    names = sorted({k for r in (*b, *c, *e) for k in r if k.startswith("stage:")})
    print(
        tabulate(
            [
                (
                    name.removeprefix("stage:"),
                    *(f"{med([r.get(name, 0.0) for r in runs]):.1f}" for runs in (b, c, e)),
                )
                for name in names
            ],
            headers=("where the seconds go", "B cold", "C warm", "E last edited"),
        )
    )
    print()
    print(
        tabulate(
            [
                ("small", args.small_scale, f"{small_mb:.0f}", f"{small_rss['rss_mb']:.0f}"),
                ("full", args.scale, f"{source_mb:.0f}", f"{med([r['rss_mb'] for r in b]):.0f}"),
            ],
            headers=("size", "demo scale", "database MB", "pytest peak RSS MB (cold gate)"),
        )
    )


if __name__ == "__main__":
    main()
