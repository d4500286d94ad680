"""The gate's output on a long, real-shaped migration history: lines printed, report size.

Generates a Prisma-style project (PascalCase models, quoted identifiers, enums, indexes) with
--migrations migration folders, the first --applied of them already applied on the embedded
source (their SQL run and recorded in _prisma_migrations, as `prisma migrate deploy` leaves
them), and runs `pytest --dbgate=staging` on it in a subprocess. Prints the terminal output's
line count against the goal (at most 2 lines per item + 20), the markdown report's size, the
run's time, and whether the gate passed.

Usage (from the repository root):  python bench/history_output.py [--migrations 150]
    [--applied 120] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

PRISMA_TABLE = """CREATE TABLE "_prisma_migrations" (
    "id" VARCHAR(36) PRIMARY KEY NOT NULL, "checksum" VARCHAR(64) NOT NULL,
    "finished_at" TIMESTAMPTZ, "migration_name" VARCHAR(255) NOT NULL, "logs" TEXT,
    "rolled_back_at" TIMESTAMPTZ, "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count" INTEGER NOT NULL DEFAULT 0
);
"""


def migration(index: int) -> tuple[str, str]:
    """The ``index``-th migration of the history: its folder name and SQL, as Prisma writes."""
    model = f"Model{index // 5}"
    version = f"2025{1 + index // 28:02d}{1 + index % 28:02d}120000"
    kind = index % 5
    if kind == 0:
        name = f"create_{model.lower()}"
        sql = (
            f"-- CreateEnum\nCREATE TYPE \"{model}Status\" AS ENUM ('DRAFT', 'LIVE');\n\n"
            f'-- CreateTable\nCREATE TABLE "{model}" (\n    "id" SERIAL NOT NULL,\n'
            f'    "title" TEXT NOT NULL,\n'
            f'    "status" "{model}Status" NOT NULL DEFAULT \'DRAFT\',\n'
            f'    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,\n\n'
            f'    CONSTRAINT "{model}_pkey" PRIMARY KEY ("id")\n);\n'
        )
    elif kind == 1:
        name = f"add_{model.lower()}_owner"
        sql = f'-- AlterTable\nALTER TABLE "{model}" ADD COLUMN "ownerId" INTEGER;\n'
    elif kind == 2:
        name = f"index_{model.lower()}_title"
        sql = f'-- CreateIndex\nCREATE INDEX "{model}_title_idx" ON "{model}"("title");\n'
    elif kind == 3:
        name = f"add_{model.lower()}_note"
        sql = f'-- AlterTable\nALTER TABLE "{model}" ADD COLUMN "note" TEXT;\n'
    else:
        name = f"seed_{model.lower()}"
        sql = (
            f'-- Data\nINSERT INTO "{model}" ("title") SELECT \'row \' || n '
            "FROM generate_series(1, 200) n;\n"
        )
    return f"{version}_{name}", sql


def generate(root: Path, count: int, applied: int) -> None:
    folder = root / "prisma" / "migrations"
    folder.mkdir(parents=True)
    (folder / "migration_lock.toml").write_text('provider = "postgresql"\n')
    seed = [PRISMA_TABLE]
    for index in range(count):
        name, sql = migration(index)
        (folder / name).mkdir()
        (folder / name / "migration.sql").write_text(sql)
        if index < applied:
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            seed.append(sql)
            seed.append(
                "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name,"
                f" applied_steps_count) VALUES ('{index}', '{checksum}', now(), '{name}', 1);\n"
            )
    (root / "seed.sql").write_text("\n".join(seed))
    (root / "pytest.ini").write_text(
        "[pytest]\ndbgate_seed = seed.sql\ndbgate_migrations = prisma/migrations\n"
        "dbgate_max_regression = off\ndbgate_staging_dir = off\n"
    )


def run(root: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--dbgate=staging", "-p", "no:cacheprovider"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    results = json.loads((root / ".dbgate" / "staging-results.json").read_text())
    items = len(results["items"])
    lines = done.stdout.splitlines()
    return {
        "exit": done.returncode,
        "items": items,
        "lines": len(lines),
        "goal": 2 * items + 20,
        "blank": sum(1 for line in lines if not line.strip()),
        # The gate's own lines (pytest's header lists other plugins, as long as they like).
        "widest": max(
            (len(line) for line in lines if not line.startswith(("plugins:", "benchmark:"))),
            default=0,
        ),
        "report_kb": (root / ".dbgate" / "staging-report.md").stat().st_size / 1024,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--migrations", type=int, default=150)
    parser.add_argument("--applied", type=int, default=120)
    parser.add_argument("--keep", type=Path, help="generate the project here and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="dbgate-history-"))
    if root.exists() and any(root.iterdir()):
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    generate(root, args.migrations, args.applied)
    figures = run(root)
    print(
        f"pytest-dbgate on a {args.migrations}-migration Prisma history, {args.applied} applied "
        f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()})"
    )
    print(
        tabulate(
            [
                ["gate exit status", figures["exit"]],
                ["items (criteria and tests)", figures["items"]],
                ["terminal lines", figures["lines"]],
                ["goal: 2 x items + 20", figures["goal"]],
                ["blank lines", figures["blank"]],
                ["widest line (characters, goal ≤ 160)", figures["widest"]],
                ["markdown report (KB)", f"{figures['report_kb']:.1f}"],
                ["run (s)", f"{figures['seconds']:.1f}"],
            ],
            headers=["figure", "value"],
        )
    )
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
