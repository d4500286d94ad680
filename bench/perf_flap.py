"""Does the performance verdict flap? A/A and injected-regression runs of the demo gate.

Runs `pytest --dbgate=staging` on the demo repeatedly, against one demo "production" loaded once
and one staging server (both embedded, started here), and prints a table:

* A/A: the unchanged demo release (migrations/): performance items failed per run (goal 0);
* injected: examples/dropped_index (the demo release plus dropping recipes_title_trgm): how
  often query[search_by_title] failed (goal: every run);
* the time the performance stage adds: the captures' own seconds, and the wall-time difference
  against runs with the stage off (dbgate_max_regression = off).

Usage (from the repository root):  python bench/perf_flap.py --runs 20 --off-runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from pytest_dbgate.binaries import find_binaries
from pytest_dbgate.provisioning import embedded_server, load_seed, seed_files

REPO = Path(__file__).resolve().parents[1]


def url(endpoint: object) -> str:
    e = endpoint  # an Endpoint
    return f"postgresql://{e.user}@{e.host}:{e.port}/{e.dbname}"  # type: ignore[attr-defined]


def gate_run(migrations: str, env: dict[str, str], report: Path, *extra: str) -> dict[str, object]:
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--dbgate=staging",
            f"--dbgate-migrations={migrations}",
            f"--dbgate-report-dir={report}",
            "-p",
            "no:cacheprovider",
            "-q",
            *extra,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - started
    results = json.loads((report / "staging-results.json").read_text())
    items = {i["nodeid"]: i for i in results["items"]}
    perf = [i for i in items.values() if i["stage"] == "performance"]
    capture = sum(
        float(items[n]["figures"].get("seconds", 0))
        for n in ("dbgate::before::baseline_captured", "dbgate::after::after_captured")
        if n in items
    )
    return {
        "exit": proc.returncode,
        "wall": wall,
        "perf_failed": [i["name"] for i in perf if i["outcome"] != "passed"],
        "other_failed": [
            i["nodeid"]
            for i in items.values()
            if i["stage"] != "performance" and i["outcome"] in ("failed", "error")
        ],
        "capture_s": capture,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per release (default 20)")
    parser.add_argument("--off-runs", type=int, default=5, help="A/A runs with the stage off")
    parser.add_argument("--scale", default="1", help="dbgate_demo.scale of the demo data")
    args = parser.parse_args()

    binaries = find_binaries(None, ("pg_ctl", "pg_dump", "pg_restore"))
    with (
        embedded_server("bench-prod", binaries) as prod,
        embedded_server("bench-staging", binaries) as staging,
    ):
        print(f"loading the demo production database (scale {args.scale}) …", flush=True)
        seeded = load_seed(
            prod.replace(options=f"-c dbgate_demo.scale={args.scale}"),
            "prod",
            seed_files([REPO / "demo" / "prod"]),
        )
        source = prod.with_dbname(seeded.dbname)
        env = dict(os.environ)
        env.update(PROD_DATABASE_URL=url(source), STAGING_DATABASE_URL=url(staging))
        env.pop("PGOPTIONS", None)
        runs: dict[str, list[dict[str, object]]] = {"A/A": [], "injected": [], "A/A, stage off": []}
        plan = (
            [("A/A", "migrations", ())] * args.runs
            + [("injected", "examples/dropped_index", ())] * args.runs
            + [("A/A, stage off", "migrations", ("--dbgate-max-regression=off",))] * (args.off_runs)
        )
        # Interleave the releases so that drift in the machine's load hits all of them alike.
        order = sorted(range(len(plan)), key=lambda i: (i % args.runs, i))
        with tempfile.TemporaryDirectory(prefix="dbgate-bench-") as tmp:
            for n, index in enumerate(order, start=1):
                label, migrations, extra = plan[index]
                result = gate_run(migrations, env, Path(tmp) / f"run{index}", *extra)
                runs[label].append(result)
                print(
                    f"[{n}/{len(plan)}] {label}: exit {result['exit']}, "
                    f"{result['wall']:.1f}s, performance failures {result['perf_failed']}"
                    + (
                        f", other failures {result['other_failed']}"
                        if result["other_failed"]
                        else ""
                    ),
                    flush=True,
                )

    def median(values: list[float]) -> str:
        return f"{statistics.median(values):.1f}" if values else "-"

    rows = []
    for label, results in runs.items():
        rows.append(
            (
                label,
                len(results),
                sum(1 for r in results if r["perf_failed"]),
                sum(len(r["perf_failed"]) for r in results),  # type: ignore[arg-type]
                sum(1 for r in results if "query[search_by_title]" in r["perf_failed"]),  # type: ignore[operator]
                median([float(r["capture_s"]) for r in results]),  # type: ignore[arg-type]
                median([float(r["wall"]) for r in results]),  # type: ignore[arg-type]
            )
        )
    on = [float(r["wall"]) for r in runs["A/A"]]  # type: ignore[arg-type]
    off = [float(r["wall"]) for r in runs["A/A, stage off"]]  # type: ignore[arg-type]
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(
        tabulate(
            rows,
            headers=(
                "release",
                "runs",
                "runs with a perf failure",
                "perf items failed",
                "search_by_title caught",
                "capture s (median)",
                "gate wall s (median)",
            ),
        )
    )
    if on and off:
        print(
            f"\nthe performance stage adds {statistics.median(on) - statistics.median(off):.1f}s "
            f"to a gate run (median wall with it {statistics.median(on):.1f}s, "
            f"without {statistics.median(off):.1f}s)"
        )


if __name__ == "__main__":
    main()
