"""The lint (squawk and the gate's own rules) on two corpora, and its speed against squawk alone.

1. The eugene linter's corpus (../shared/data/lint-corpus/eugene/, beside the repository; not
   needed by the suite): each case is a sequence of steps (`-- 1.sql`, …); cases.tsv says, per
   step, which eugene rules should fire. Each step is linted as the release, the steps before it
   standing for what production already has, which is how eugene judges a step too. Eugene's
   rule ids map to the rules here by what they are about (below); a family with no rule here
   shows its recall as 0: a gap, not hidden. A worked example's steps list every rule that
   should fire, so any other counts as a false alarm; a unit-test case names the rules it
   checks and those that must not fire, so only the latter count. The corpus's own
   `-- eugene: ignore E6` comments are honoured. E10 is left out: eugene reports it only when
   tracing a real run, never from the text.
2. A generated history of 150 migration files written for this benchmark: per family, files
   with the hazard (on an existing table, mixed-case quoted names among them), files with the
   safe way, and files with the hazard on a table the history itself created (which must not
   fail). Recall counts hazard files whose family fails; false alarms count safe and new-table
   files where a rule of the family fails.
3. Time, in one run: squawk alone on N files, `pytest --dbgate=lint` end to end on the same
   files, and pytest itself with nothing to run (its start-up and this environment's plugins),
   so the plugin's own share (lint minus pytest) reads beside squawk's.

Usage (from the repository root):  python bench/lint_corpus.py [--corpus PATH] [--files 356]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tabulate import tabulate

from pytest_dbgate.lint.engine import Lint
from pytest_dbgate.lint.judge import judge
from pytest_dbgate.lint.squawk import SquawkConfig, binary
from pytest_dbgate.migrations.parse import discover

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "data" / "lint-corpus" / "eugene"

# Eugene's rule → the rules here that flag the same hazard.
FAMILIES: dict[str, set[str]] = {
    "E1": {"constraint-missing-not-valid", "adding-foreign-key-constraint", "column-constraint"},
    "E2": {"adding-not-nullable-field"},
    "E3": set(),  # json (not jsonb) columns: no rule here
    "E4": set(),  # more statements after an ACCESS EXCLUSIVE lock: no rule here
    "E5": {"changing-column-type"},
    "E6": {"require-concurrent-index-creation"},
    "E7": {"disallowed-unique-constraint", "adding-serial-primary-key-field"},
    "E8": {"exclusion-constraint"},
    "E9": {"require-lock-timeout", "require-timeout-settings"},
    "E11": {"adding-serial-column", "adding-field-with-default"},
    "W12": set(),  # several ALTER TABLE where one would do: no rule here
    "W13": set(),  # enums: no rule here
    "W14": set(),  # primary key USING INDEX: the safe way here, not flagged
    "E15": set(),  # foreign key without an index: no rule here
}
STEP = re.compile(r"^--\s*(\d+)\.sql\s*$", re.MULTILINE)
EUGENE_IGNORE = re.compile(r"--\s*eugene:\s*ignore\s+([A-Z0-9, ]+)")
NO_CONFIG = SquawkConfig(None)


def steps(text: str) -> list[str]:
    parts = STEP.split(text)
    return [parts[i + 1] for i in range(1, len(parts) - 1, 2)]


def lint_folder(folder: Path) -> dict[str, list[tuple[str, bool]]]:
    """(rule, fires) of every finding, by migration id, judged as lint mode judges it: a
    finding fires when it fails, or when its rule only ever reports (reported by default);
    one the release's context excuses (a table it created) does not."""
    found = Lint.read(discover(folder), NO_CONFIG).findings("18")
    judged: dict[str, list[tuple[str, bool]]] = {}
    for migration, findings in found.items():
        verdicts = [j for j in (judge(f, {}, None, 10_000) for f in findings) if j is not None]
        judged[migration] = [
            (j.finding.rule.id, j.fails or j.because == "reported by default") for j in verdicts
        ]
    return judged


def lint_step(step: str, workdir: Path) -> set[str]:
    """Rule ids fired (failing or reported) by ``step``, its tables existing already."""
    folder = Path(tempfile.mkdtemp(dir=workdir))
    (folder / "1_step.sql").write_text(step if step.strip() else "SELECT 1;\n")
    try:
        (fired,) = lint_folder(folder).values()
    except Exception as exc:  # a step the parser or discovery refuses
        return {f"error: {exc}"}
    return {rule for rule, fires in fired if fires}


def corpus_table(corpus: Path) -> tuple[list[list[object]], list[str]]:
    cases = [line.split("\t") for line in (corpus / "cases.tsv").read_text().splitlines()[1:]]
    tally = {family: [0, 0, 0, 0] for family in FAMILIES}  # should, did, should not, did anyway
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for row in cases:
            name, whole, must_not, per_step = row[0], row[1], row[3], row[5]
            text = (corpus / name).read_text()
            texts = steps(text)
            if per_step:
                expectations = dict(part.split(":", 1) for part in per_step.split(";") if part)
            else:  # a single migration: the case's expected rules are the file's
                texts = [text]
                expectations = {"1.sql": whole.replace(",", "+") or "-"}
            for index, step in enumerate(texts, start=1):
                wanted = expectations.get(f"{index}.sql", "-")
                should = set() if wanted == "-" else set(wanted.split("+"))
                fired = lint_step(step, Path(tmp))
                ignored = {
                    r.strip() for found in EUGENE_IGNORE.findall(step) for r in found.split(",")
                }
                fired -= {ours for family in ignored for ours in FAMILIES.get(family, set())}
                judged = set(FAMILIES) if per_step else set(must_not.split(",")) - {""}
                problems += [f"{name} step {index}: {f}" for f in fired if f.startswith("error")]
                for family, ours in FAMILIES.items():
                    hit = bool(fired & ours)
                    if family in should:
                        tally[family][0] += 1
                        tally[family][1] += hit
                    elif family in judged:
                        tally[family][2] += 1
                        tally[family][3] += hit
    rows: list[list[object]] = []
    for family, (should, did, should_not, anyway) in tally.items():
        ours = ", ".join(sorted(FAMILIES[family])) or "(no rule)"
        recall = f"{did}/{should}" + (f" ({did / should:.0%})" if should else "")
        rows.append([family, ours, recall, f"{anyway}/{should_not}"])
    return rows, problems


# family → (rules that must fail, hazard, safe way); {t} is the table, {T} a quoted mixed-case
# table. Written for this benchmark.
HISTORY: dict[str, tuple[set[str], str, str]] = {
    "index": (
        {"require-concurrent-index-creation"},
        "CREATE INDEX {t}_a ON {t} (a);",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {t}_a ON {t} (a);",
    ),
    "drop index": (
        {"require-concurrent-index-deletion"},
        "DROP INDEX {t}_old;",
        "DROP INDEX CONCURRENTLY IF EXISTS {t}_old;",
    ),
    "foreign key": (
        {"adding-foreign-key-constraint"},
        "ALTER TABLE {T} ADD CONSTRAINT {t}_fk FOREIGN KEY (a) REFERENCES t0 (id);",
        "ALTER TABLE {T} ADD CONSTRAINT {t}_fk FOREIGN KEY (a) REFERENCES t0 (id) NOT VALID;\n"
        "-- next release validates it\nALTER TABLE {T} VALIDATE CONSTRAINT {t}_fk;",
    ),
    "check": (
        {"constraint-missing-not-valid"},
        "ALTER TABLE {t} ADD CONSTRAINT {t}_pos CHECK (a > 0);",
        "ALTER TABLE {t} ADD CONSTRAINT {t}_pos CHECK (a > 0) NOT VALID;",
    ),
    "set not null": (
        {"adding-not-nullable-field"},
        "ALTER TABLE {t} ALTER COLUMN a SET NOT NULL;",
        "ALTER TABLE {t} ADD CONSTRAINT {t}_a_nn CHECK (a IS NOT NULL) NOT VALID;",
    ),
    "type change": (
        {"changing-column-type"},
        "ALTER TABLE {T} ALTER COLUMN b TYPE text USING b::text;",
        "ALTER TABLE {T} ADD COLUMN b_text text;",
    ),
    "volatile default": (
        {"adding-field-with-default"},
        "ALTER TABLE {t} ADD COLUMN token uuid DEFAULT gen_random_uuid();",
        "ALTER TABLE {t} ADD COLUMN created timestamptz DEFAULT now();",
    ),
    "serial": (
        {"adding-serial-column"},
        "ALTER TABLE {t} ADD COLUMN n bigserial;",
        "ALTER TABLE {t} ADD COLUMN n bigint;",
    ),
    "unique": (
        {"disallowed-unique-constraint"},
        "ALTER TABLE {t} ADD CONSTRAINT {t}_u UNIQUE (a);",
        "ALTER TABLE {t} ADD CONSTRAINT {t}_u UNIQUE USING INDEX {t}_a_key;",
    ),
    "rewrite": ({"rewrite-command"}, "VACUUM FULL {t};", "VACUUM ANALYZE {t};"),
    "rename": (
        {"renaming-column"},
        "ALTER TABLE {T} RENAME COLUMN b TO c;",
        "ALTER TABLE {T} ADD COLUMN c bigint;",
    ),
    "drop": (
        {"ban-drop-column"},
        "ALTER TABLE {t} DROP COLUMN b;",
        "-- dbgate: hold-back 7d\nALTER TABLE {t} DROP COLUMN b;",
    ),
    "nesting": (
        {"transaction-nesting"},
        "BEGIN;\nBEGIN;\nUPDATE {t} SET a = 1 WHERE id = 1;\nCOMMIT;\nCOMMIT;",
        "BEGIN;\nUPDATE {t} SET a = 1 WHERE id = 1;\nCOMMIT;",
    ),
    "reindex off": (
        {"concurrently-false"},
        "REINDEX (CONCURRENTLY false) TABLE {t};",
        "REINDEX (CONCURRENTLY) TABLE {t};",
    ),
}
NEW_TABLE_EXEMPT = {"nesting"}  # a broken transaction is broken on any table


def history(folder: Path, files: int = 150) -> list[tuple[str, str, str]]:
    """Write the history; (file id, family, what the file is: hazard, safe or new). A "new"
    file's table is created by the file before it, as a release that adds a table and then
    indexes it does: nobody else uses that table yet."""
    written: list[tuple[str, str, str]] = []
    families = list(HISTORY)
    for n in range(files):
        family = families[n % len(families)]
        kind = ("hazard", "safe", "new")[(n // len(families)) % 3]
        if kind == "new" and family in NEW_TABLE_EXEMPT:
            kind = "hazard"
        _, hazard, safe = HISTORY[family]
        table = f"t{n}"
        quoted = f'"Tenant Table {n}"' if n % 2 else table
        version = (n + 1) * 10
        if kind == "new":
            tables = "".join(
                f"CREATE TABLE {name} (id bigint PRIMARY KEY, a bigint, b bigint);\n"
                for name in sorted({table, quoted})
            )
            index = f"CREATE INDEX {table}_old ON {table} (a);\n"
            (folder / f"{version - 1:07d}_create_{n}.sql").write_text(tables + index)
        body = (safe if kind == "safe" else hazard).format(t=table, T=quoted)
        name = f"{version:07d}_{family.replace(' ', '_')}_{kind}"
        (folder / f"{name}.sql").write_text(body + "\n")
        written.append((name, family, kind))
    return written


def history_table(files: int) -> list[list[object]]:
    with tempfile.TemporaryDirectory() as tmp:
        written = history(Path(tmp), files)
        found = lint_folder(Path(tmp))
    tally: dict[str, list[int]] = {
        f: [0, 0, 0, 0] for f in HISTORY
    }  # hazards, caught, others, alarms
    for name, family, kind in written:
        rules = HISTORY[family][0]
        failing = {rule for rule, fails in found[name] if fails}
        if kind == "hazard":
            tally[family][0] += 1
            tally[family][1] += bool(failing & rules)
        else:
            tally[family][2] += 1
            tally[family][3] += bool(failing & rules)
    rows: list[list[object]] = []
    for family, (hazards, caught, others, alarms) in tally.items():
        rows.append(
            [
                family,
                ", ".join(sorted(HISTORY[family][0])),
                f"{caught}/{hazards}",
                f"{alarms}/{others}",
            ]
        )
    return rows


def timing(files: int, rounds: int) -> list[list[object]]:
    """Median and best seconds of squawk alone, pytest --dbgate=lint, and pytest with nothing."""
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        folder = project / "migrations"
        folder.mkdir()
        history(folder, files)
        (project / "pytest.ini").write_text("[pytest]\n")
        empty = project / "empty"
        empty.mkdir()
        (empty / "pytest.ini").write_text("[pytest]\n")
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        names = sorted(p.name for p in folder.iterdir())
        pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        runs: dict[str, Callable[[], object]] = {
            "squawk alone (json reporter)": lambda: subprocess.run(
                [binary(), "--reporter", "json", *names],
                cwd=folder,
                capture_output=True,
                check=False,
            ),
            "pytest --dbgate=lint (end to end)": lambda: subprocess.run(
                [*pytest, "--dbgate=lint"], cwd=project, env=env, capture_output=True, check=False
            ),
            "pytest with nothing to run": lambda: subprocess.run(
                pytest, cwd=empty, env=env, capture_output=True, check=False
            ),
        }
        seconds: dict[str, list[float]] = {label: [] for label in runs}
        for _ in range(rounds):
            for label, run in runs.items():
                started = time.perf_counter()
                run()
                seconds[label].append(time.perf_counter() - started)
    squawk_s = statistics.median(seconds["squawk alone (json reporter)"])
    lint_s = statistics.median(seconds["pytest --dbgate=lint (end to end)"])
    floor_s = statistics.median(seconds["pytest with nothing to run"])
    rows: list[list[object]] = [
        [label, f"{statistics.median(s):.3f}", f"{min(s):.3f}"] for label, s in seconds.items()
    ]
    rows.append(["the plugin's share (lint minus pytest)", f"{lint_s - floor_s:.3f}", ""])
    rows.append(["  goal: within 2x squawk alone", f"{2 * squawk_s:.3f}", ""])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--files", type=int, default=356)
    parser.add_argument("--history", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    squawk_version = subprocess.run([binary(), "--version"], capture_output=True, text=True)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {squawk_version.stdout.strip()}"
    )
    if args.corpus.is_dir():
        rows, problems = corpus_table(args.corpus)
        print(f"\neugene corpus ({args.corpus}): per rule family, each step linted as a release")
        print(
            tabulate(
                rows, headers=("eugene", "rules here", "flagged when it should", "false alarms")
            )
        )
        for problem in problems:
            print(f"  {problem}")
    else:
        print(f"(no corpus at {args.corpus}: skipping the eugene table)")
    print(f"\ngenerated history of {args.history} files: failing verdicts in lint mode per family")
    print(
        tabulate(
            history_table(args.history),
            headers=("family", "rules", "hazards failed", "false alarms (safe or new table)"),
        )
    )
    print(f"\ntime on {args.files} migration files ({args.rounds} rounds, seconds)")
    print(tabulate(timing(args.files, args.rounds), headers=("", "median", "best")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
