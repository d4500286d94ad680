"""The lint against the eugene linter's corpus, and its speed on 500 migration files.

Corpus: ../shared/data/lint-corpus/eugene/ (beside the repository; not needed by the suite).
Each case is a sequence of steps (`-- 1.sql`, `-- 2.sql`, …); cases.tsv says, per step, which
eugene rules should fire. Each step is linted as the release, the steps before it standing for
what production already has (so their tables are existing tables), which is how eugene judges a
step too. Eugene's rule ids map to this linter's rules by what they are about (below); a family
with no rule here shows its recall as 0: a gap, not hidden.

Prints, per eugene rule family: steps that should fire and how many did (recall), steps that
should not and how many did anyway (false alarms). A worked example's steps list every rule that
should fire, so any other counts as a false alarm; a unit-test case names the rules it checks and
those that must not fire, so only the latter count. The corpus's own `-- eugene: ignore E6`
comments are honoured, as this linter's `-- dbgate: ignore` would be. E10 is left out: eugene
reports it only when tracing a real run, never from the text. Then the time to discover and lint
500 files.

Usage (from the repository root):  python bench/lint_corpus.py [--corpus PATH] [--files 500]
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from pytest_dbgate.lint.engine import lint
from pytest_dbgate.migrations.parse import discover

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "data" / "lint-corpus" / "eugene"

# Eugene's rule → the rules here that flag the same hazard.
FAMILIES: dict[str, set[str]] = {
    "E1": {"constraint-not-valid"},
    "E2": {"set-not-null"},  # (not-null-without-default is a hazard eugene does not flag)
    "E3": set(),  # json (not jsonb) columns: no rule here
    "E4": set(),  # more statements after an ACCESS EXCLUSIVE lock: no rule here
    "E5": {"type-change-rewrite"},
    "E6": {"index-not-concurrent"},
    "E7": {"unique-constraint-directly"},
    "E8": {"exclusion-constraint"},
    "E9": {"no-lock-timeout"},
    "E11": {"rewriting-column"},
    "W12": set(),  # several ALTER TABLE where one would do: no rule here
    "W13": set(),  # enums: no rule here
    "W14": set(),  # primary key USING INDEX: the safe way here, not flagged
    "E15": set(),  # foreign key without an index: no rule here
}
STEP = re.compile(r"^--\s*(\d+)\.sql\s*$", re.MULTILINE)
EUGENE_IGNORE = re.compile(r"--\s*eugene:\s*ignore\s+([A-Z0-9, ]+)")


def steps(text: str) -> list[str]:
    parts = STEP.split(text)
    return [parts[i + 1] for i in range(1, len(parts) - 1, 2)]


def lint_step(history: list[str], step: str, workdir: Path) -> set[str]:
    """Rule ids fired by ``step``, with the tables of ``history`` existing already."""
    folder = Path(tempfile.mkdtemp(dir=workdir))
    (folder / "1_step.sql").write_text(step if step.strip() else "SELECT 1;\n")
    try:
        (findings,) = lint(discover(folder)).values()
    except Exception as exc:  # a step our parser or discovery refuses
        return {f"error: {exc}"}
    return {f.rule.id for f in findings}


def corpus_table(corpus: Path) -> tuple[list[list[object]], list[str]]:
    cases = [line.split("\t") for line in (corpus / "cases.tsv").read_text().splitlines()[1:]]
    expected_steps = 0
    tally = {family: [0, 0, 0, 0] for family in FAMILIES}  # should, did, should not, did anyway
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for row in cases:
            name, whole, must_not, per_step = row[0], row[1], row[3], row[5]
            text = (corpus / name).read_text()
            texts = steps(text)
            if per_step:
                expectations = dict(part.split(":", 1) for part in per_step.split(";") if part)
            else:  # a single migration: the case's expected rules are the file's
                texts = [text]
                expectations = {"1.sql": whole.replace(",", "+") or "-"}
            for index, text in enumerate(texts, start=1):
                wanted = expectations.get(f"{index}.sql", "-")
                should = set() if wanted == "-" else set(wanted.split("+"))
                fired = lint_step(texts[: index - 1], text, workdir)
                ignored = {
                    rule.strip()
                    for found in EUGENE_IGNORE.findall(text)
                    for rule in found.split(",")
                }
                fired -= {ours for family in ignored for ours in FAMILIES.get(family, set())}
                # Unit-test cases only say what must not fire; worked examples say it all.
                judged = set(FAMILIES) if per_step else set(must_not.split(",")) - {""}
                problems += [f"{name} step {index}: {f}" for f in fired if f.startswith("error")]
                expected_steps += 1
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


def timing(files: int) -> tuple[float, float]:
    """Seconds to discover and lint ``files`` migrations (median and best of 5)."""
    statements = [
        "CREATE TABLE t{n} (id bigint PRIMARY KEY, a int, b text);",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS t{n}_a ON t{n} (a);",
        "ALTER TABLE t{n} ADD COLUMN c uuid DEFAULT gen_random_uuid();",
        "ALTER TABLE t{n} ADD CONSTRAINT t{n}_fk FOREIGN KEY (a) REFERENCES t0 (id) NOT VALID;",
        "UPDATE t{n} SET b = 'x' WHERE id < 100;\nALTER TABLE t{n} RENAME COLUMN b TO d;",
        "DO $$ BEGIN PERFORM 1; END $$;\nALTER TABLE t{n} ALTER COLUMN a TYPE bigint;",
    ]
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in range(files):
            body = "\n".join(s.format(n=n) for s in statements[: 1 + n % len(statements)])
            (folder / f"{n + 1:06d}_m{n}.sql").write_text(body + "\n")
        for _ in range(5):
            started = time.perf_counter()
            findings = lint(discover(folder))
            seconds.append(time.perf_counter() - started)
        assert len(findings) == files
    return statistics.median(seconds), min(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--files", type=int, default=500)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    if args.corpus.is_dir():
        rows, problems = corpus_table(args.corpus)
        print(f"\neugene corpus ({args.corpus}): per rule family, each step linted as a release")
        print(
            tabulate(
                rows,
                headers=("eugene", "rules here", "flagged when it should", "false alarms"),
            )
        )
        for problem in problems:
            print(f"  {problem}")
    else:
        print(f"(no corpus at {args.corpus}: skipping the recall table)")
    median, best = timing(args.files)
    print(f"\nlint time for {args.files} migration files (discover + parse + lint, 5 runs)")
    print(
        tabulate(
            [[args.files, f"{median:.2f}", f"{best:.2f}", "2.00"]],
            headers=("files", "median s", "best s", "goal s"),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
