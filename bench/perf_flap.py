"""Does the performance verdict flap, and does it catch what it must? A/A and injected runs.

Runs `pytest --dbgate=staging` on the demo repeatedly, against one demo "production" loaded once
and one staging server (both embedded, started here), and prints, in one run:

* A/A: the unchanged demo release (migrations/): performance items failed per run (goal 0);
* injected regressions, each the demo release plus one migration: examples/dropped_index (a plan
  change: query[search_by_title]), examples/slow_trigger (CPU in a BEFORE UPDATE trigger:
  query[edit_recipes]) and examples/slowed_function (CPU in a function the workload calls:
  query[recipe_cards]): how often the expected item failed (goal: every run) and how often any
  *other* performance item failed (goal: never);
* the time the performance stage takes (its captures' own seconds) and the gate's wall time,
  against the stage off and, with --today <git ref>, against that version of the plugin (run
  from a git worktree, on the same workload and data);
* the time budget at work: the demo workload plus a query of about 0.5 s, with a small budget,
  against what that query cost at a fixed 33 runs per phase.

Usage (from the repository root):
    python bench/perf_flap.py --runs 20 --off-runs 5 --today <ref of the version to compare>
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
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate
from worktrees import worktree

from pytest_dbgate.pg.binaries import find_binaries
from pytest_dbgate.pg.connections import Endpoint
from pytest_dbgate.pg.seed import load_seed, seed_files
from pytest_dbgate.pg.servers import embedded_server

REPO = Path(__file__).resolve().parents[1]
WORKLOAD = REPO / "demo" / "workload.sql"
CAPTURES = ("dbgate::before::baseline_captured", "dbgate::after::after_captured")
HALF_SECOND = "\n-- name: half_second\nSELECT count(*) FROM recipes, pg_sleep(0.5);\n"


@dataclass(frozen=True)
class Release:
    label: str
    migrations: str
    expected: str | None  # the performance item that must fail, if any
    extra: tuple[str, ...] = ()
    today: bool = False  # run the --today version of the plugin


@dataclass
class Outcome:
    exit: int
    wall: float
    perf_failed: list[str]
    other_failed: list[str]
    capture_s: float
    items: dict[str, dict[str, object]] = field(default_factory=dict)


def url(e: Endpoint) -> str:
    return f"postgresql://{e.user}@{e.host}:{e.port}/{e.dbname}"


def gate_run(
    release: Release, env: dict[str, str], report: Path, cwd: Path, workload: Path
) -> Outcome:
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--dbgate=staging",
            f"--dbgate-migrations={release.migrations}",
            f"--dbgate-report-dir={report}",
            f"--dbgate-workload={workload}",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "-q",
            *release.extra,
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - started
    results_file = report / "staging-results.json"
    if not results_file.exists():
        sys.exit(f"{release.label}: no results ({proc.returncode}):\n{proc.stdout[-3000:]}")
    items = {i["nodeid"]: i for i in json.loads(results_file.read_text())["items"]}
    perf = [i for i in items.values() if i["stage"] == "performance"]
    return Outcome(
        exit=proc.returncode,
        wall=wall,
        perf_failed=[str(i["name"]) for i in perf if i["outcome"] != "passed"],
        other_failed=[
            str(i["nodeid"])
            for i in items.values()
            if i["stage"] != "performance" and i["outcome"] in ("failed", "error")
        ],
        capture_s=sum(float(items[n]["figures"].get("seconds", 0)) for n in CAPTURES if n in items),
        items=items,
    )


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per release (default 20)")
    parser.add_argument("--off-runs", type=int, default=5, help="A/A runs with the stage off")
    parser.add_argument("--scale", default="1", help="dbgate_demo.scale of the demo data")
    parser.add_argument("--today", help="git ref of the version to compare the stage's time with")
    parser.add_argument("--budget", type=float, default=10, help="budget of the 0.5 s demo")
    args = parser.parse_args()

    releases = [
        Release("A/A (unchanged release)", "migrations", None),
        Release("dropped index", "examples/dropped_index", "query[search_by_title]"),
        Release("CPU-burning trigger", "examples/slow_trigger", "query[edit_recipes]"),
        Release("slowed function", "examples/slowed_function", "query[recipe_cards]"),
    ]
    plan = [r for r in releases for _ in range(args.runs)]
    off = Release("A/A, stage off", "migrations", None, ("--dbgate-max-regression=off",))
    plan += [off] * args.off_runs
    today = Release(f"A/A, {args.today}", "migrations", None, today=True)
    if args.today:
        plan += [today] * args.off_runs
    # Interleave the releases so that drift in the machine's load hits all of them alike.
    order = sorted(range(len(plan)), key=lambda i: (i % args.runs, i))

    binaries = find_binaries(None, ("pg_ctl", "pg_dump", "pg_restore"))
    runs: dict[str, list[Outcome]] = {}
    with (
        embedded_server("bench-prod", binaries) as prod,
        embedded_server("bench-staging", binaries) as staging,
        worktree(args.today) as old,
        tempfile.TemporaryDirectory(prefix="dbgate-bench-") as tmp,
    ):
        print(f"loading the demo production database (scale {args.scale}) …", flush=True)
        seeded = load_seed(
            prod.replace(options=f"-c dbgate_demo.scale={args.scale}"),
            "prod",
            seed_files([REPO / "demo" / "prod"]),
        )
        env = dict(os.environ)
        env.update(PROD_DATABASE_URL=url(prod.with_dbname(seeded.dbname)))
        env["STAGING_DATABASE_URL"] = url(staging)
        env.pop("PGOPTIONS", None)
        old_env = dict(env, PYTHONPATH=f"{old}/src") if old else env
        for n, index in enumerate(order, start=1):
            release = plan[index]
            cwd, run_env = (old, old_env) if release.today and old else (REPO, env)
            result = gate_run(release, run_env, Path(tmp) / f"run{index}", cwd, WORKLOAD)
            runs.setdefault(release.label, []).append(result)
            print(
                f"[{n}/{len(plan)}] {release.label}: exit {result.exit}, {result.wall:.1f}s, "
                f"performance failures {result.perf_failed}"
                + (f", other failures {result.other_failed}" if result.other_failed else ""),
                flush=True,
            )
        slow_workload = Path(tmp) / "workload_half_second.sql"
        slow_workload.write_text(WORKLOAD.read_text() + HALF_SECOND)
        budget = gate_run(
            Release("budget", "migrations", None, (f"--dbgate-perf-budget={args.budget:g}",)),
            env,
            Path(tmp) / "budget",
            REPO,
            slow_workload,
        )
        measured = json.loads((Path(tmp) / "budget" / "after_perf.json").read_text())
        budget_today = (
            gate_run(
                Release("budget, today", "migrations", None, today=True),
                old_env,
                Path(tmp) / "budget-today",
                old,
                slow_workload,
            )
            if old
            else None
        )

    rows = []
    for release in [*releases, off, *([today] if args.today else [])]:
        results = runs.get(release.label, [])
        caught = (
            f"{sum(1 for r in results if release.expected in r.perf_failed)}/{len(results)}"
            if release.expected
            else "-"
        )
        others = sum(1 for r in results for name in r.perf_failed if name != release.expected)
        rows.append(
            (
                release.label,
                len(results),
                release.expected or "-",
                caught,
                others,
                median([r.capture_s for r in results]),
                median([r.wall for r in results]),
            )
        )
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"demo scale {args.scale}; workload {WORKLOAD.relative_to(REPO)}")
    print(
        tabulate(
            rows,
            headers=(
                "release",
                "runs",
                "must fail",
                "caught",
                "other perf items failed",
                "stage s (median)",
                "gate wall s (median)",
            ),
        )
    )
    half = measured["workload"]["half_second"]
    per_run = statistics.median(half["after"]["ms"]) / 1000
    budget_rows = [
        (
            "this version (side by side, after phase only)",
            f"{args.budget:g}",
            half["rounds"],
            f"{half['seconds']:.1f}",
            f"{budget.capture_s:.1f}",
            f"{budget.wall:.1f}",
        )
    ]
    if budget_today is not None:
        budget_rows.append(
            (
                f"{args.today} (33 runs in each phase)",
                "-",
                "33 + 33",
                "-",
                f"{budget_today.capture_s:.1f}",
                f"{budget_today.wall:.1f}",
            )
        )
    print()
    print(f"the time budget: the demo workload plus a {per_run:.2f} s query")
    print(
        tabulate(
            budget_rows,
            headers=(
                "version",
                "budget s",
                "rounds of it",
                "its seconds",
                "stage s (both phases)",
                "gate wall s",
            ),
        )
    )


if __name__ == "__main__":
    main()
