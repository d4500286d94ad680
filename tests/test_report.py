"""What the gate reports: the terminal table, the markdown report, JUnit grouped by stage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from junitparser import JUnitXml

from pytest_dbgate.core.results import Results

from .conftest import Project, example

APP = """
def test_search(dbgate_db):
    assert dbgate_db.execute("SELECT count(*) FROM recipes WHERE title ILIKE '%lentil%'").fetchone()
"""


def test_terminal_table_and_markdown_report(
    remote_demo: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    remote_demo.pytester.makepyfile(test_app=APP)
    result = remote_demo.run()
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*= dbgate: staging gate PASSED: * passed =*",
            "stage * criterion * verdict * key figure",
            "refresh * snapshot_restored * passed * * rows in 5 tables; *",
            "before * project tests * passed * 1 passed",
            "migrate * applied[[]20250115150200_backfill_recipes_category_id[]] * passed * "
            "applied in *s, statement by statement",
            "schema * migrations_recorded * passed * 6 of 6 recorded with their checksums *",
            "after * project tests * passed * 1 passed",
            "dbgate: report written to .dbgate/staging-report.md",
        ]
    )
    report = (remote_demo.path / ".dbgate" / "staging-report.md").read_text()
    assert re.match(r"# pytest-dbgate: staging gate PASSED: \d+ passed\n", report)
    assert re.search(r"^\| refresh +\| source_reachable +\| passed", report, re.M)
    assert "## Migrations" in report
    assert "`migrations/20250115160001_fix_recipe_category_fields_index.sql`" in report
    assert summary.read_text() == "earlier step\n" + report + "\n"
    results = json.loads((remote_demo.path / ".dbgate" / "staging-results.json").read_text())
    assert results["passed"] is True
    assert [i["name"] for i in results["items"] if i["stage"] == "before"] == [
        "test_app.py::test_search[before]",
        "baseline_captured",
    ]


def test_failures_are_in_the_markdown_report(remote_demo: Project) -> None:
    result = remote_demo.migrations(example("unvalidated_fk")).run()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*= dbgate: staging gate FAILED: 1 failed, * passed, 1 skipped =*",
            "schema * constraints_validated * FAILED * 1 constraint(s) are NOT VALID*",
        ]
    )
    report = (remote_demo.path / ".dbgate" / "staging-report.md").read_text()
    assert "## Failures" in report
    assert "### dbgate::schema::constraints_validated" in report
    assert "ALTER TABLE recipes VALIDATE CONSTRAINT recipes_category_id_fkey;" in report


def test_junit_groups_the_project_tests_by_phase(remote_demo: Project) -> None:
    remote_demo.pytester.makepyfile(test_app=APP)
    result = remote_demo.run("--junitxml=gate.xml")
    assert result.ret == 0
    xml = JUnitXml.fromfile(str(remote_demo.path / "gate.xml"))
    cases = [(case.classname, case.name) for suite in xml for case in suite]
    assert list(dict.fromkeys(c for c, _ in cases)) == [
        "dbgate.refresh",
        "dbgate.connect",
        "dbgate.before",
        "dbgate.migrate",
        "dbgate.lint",
        "dbgate.schema",
        "dbgate.after",
        "dbgate.performance",
        "dbgate.verdict",
    ]
    assert ("dbgate.before", "test_app.py::test_search[before]") in cases
    assert ("dbgate.after", "test_app.py::test_search[after]") in cases


def test_a_partial_selection_says_so(remote_demo: Project) -> None:
    result = remote_demo.run("-k", "refresh")
    headline = re.search(
        r"staging gate PASSED: (\d+) passed; only (\d+) of the \d+ criteria ran",
        result.stdout.str(),
    )
    assert headline and headline.group(1) == headline.group(2), result.stdout.str()


def _history_results(applied: int, pending: int) -> Results:
    results = Results("staging")
    for n in range(applied + pending):
        migration = f"2025{n:04d}120000_step_{n}"
        lint = f"prisma/migrations/{migration}/migration.sql::lint"
        summary = "already applied (_prisma_migrations)" if n < applied else "applied in 0.1s"
        for nodeid, figure in (
            (lint, summary + (": not part of this release" if n < applied else "")),
            (f"dbgate::migrate::applied[{migration}]", summary),
            (
                f"dbgate::migrate::locks[{migration}]",
                summary + ": not part of this release"
                if n < applied
                else "no lock blocking reads or writes on a table with rows; traffic blocked "
                "at most 0 ms (0 of 12 probes), and then some more words to be cut" + "." * 80,
            ),
        ):
            results.record(nodeid, "call", "passed", "", [("summary", figure)], 0.01)
    return results


def test_a_long_history_is_folded_and_the_table_stays_narrow() -> None:
    results = _history_results(applied=120, pending=3)
    rows = results.rows()
    assert (
        "lint",
        "lint[120 applied before: 20250000120000 … 20250119120000]",
        "passed",
        "already applied (_prisma_migrations): not part of this release",
    ) in rows
    assert sum(1 for r in rows if "applied before" in r[1]) == 3  # lint, applied, locks
    assert len(rows) == 3 + 3 * 3
    assert ("lint", "lint[20250120120000_step_120]", "passed", "applied in 0.1s") in rows
    table = results.table()
    assert max(len(line) for line in table.splitlines()) <= 160
    assert "…" in table  # the long key figure was cut to fit


def test_two_migrations_applied_before_are_not_folded() -> None:
    rows = _history_results(applied=2, pending=1).rows()
    assert [r[1] for r in rows if r[0] == "lint"] == [
        "lint[20250000120000_step_0]",
        "lint[20250001120000_step_1]",
        "lint[20250002120000_step_2]",
    ]
