"""The performance stage on real servers: capture, matching, verdict, plan change, report."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from junitparser import JUnitXml

from pytest_dbgate.binaries import PgBinaries
from pytest_dbgate.connections import Endpoint
from pytest_dbgate.provisioning import embedded_server

from .conftest import PROJECTS, Project, url
from .test_plugin import properties

PERF_ITEMS = [
    "dbgate::performance::query[events_of_an_account]",
    "dbgate::performance::query[latest_events]",
    "dbgate::performance::test_queries",
]


def test_an_unchanged_release_passes_the_performance_items(perf_project: Project) -> None:
    perf_project.migrations(PROJECTS / "perf" / "safe")
    for _ in range(2):
        result = perf_project.run("-v")
        assert result.ret == 0
        for nodeid in PERF_ITEMS:
            result.stdout.fnmatch_lines([f"{nodeid.replace('[', '[[]')} PASSED*"])
    folder = perf_project.path / ".dbgate"
    baseline = json.loads((folder / "baseline_perf.json").read_text())
    query = baseline["workload"]["events_of_an_account"]
    assert query["calls"] == 30
    assert query["sql"].startswith("SELECT id, kind FROM events WHERE account_id = 4242")
    assert query["plan"] == [
        "Bitmap Heap Scan on events",
        "Bitmap Index Scan using events_account_idx",
    ]
    for key in (
        "mean_ms",
        "stddev_ms",
        "rows_per_call",
        "blocks_hit_per_call",
        "blocks_read_per_call",
    ):
        assert key in query
    assert query["rows_per_call"] == 40
    tests = baseline["tests"]
    assert [t["text"] for t in tests] == ["SELECT count(*) FROM events WHERE account_id = $1"]
    assert tests[0]["calls"] == 3
    assert (folder / "after_perf.json").exists()


def test_a_dropped_index_fails_the_query_that_needs_it(perf_project: Project) -> None:
    result = perf_project.migrations(PROJECTS / "perf" / "unsafe").run("--junitxml=gate.xml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*_ performance: query[[]events_of_an_account[]] _*",
            "workload query events_of_an_account is slower after the migrations: * ms (+* %), "
            "* → * blocks per call",
            "    SELECT id, kind FROM events WHERE account_id = 4242 ORDER BY id",
            "  plan: Bitmap Heap Scan on events, Bitmap Index Scan using events_account_idx → "
            "Seq Scan on events",
            "*_ performance: test_queries _*",
            "a query of the project's tests (called 3 times after) is slower after the "
            "migrations:*",
            "    SELECT count(*) FROM events WHERE account_id = $1",
            "  plan: * using events_account_idx* → Seq Scan on events",
        ]
    )
    result.stdout.fnmatch_lines(["*query[[]latest_events[]] * passed *"])
    xml = JUnitXml.fromfile(str(perf_project.path / "gate.xml"))
    case = next(c for s in xml for c in s if c.name == "query[events_of_an_account]")
    props = properties(case)
    assert float(props["ratio"]) > 1.2
    assert float(props["after_mean_ms"]) > float(props["before_mean_ms"])
    assert float(props["after_blocks_per_call"]) > 10 * float(props["before_blocks_per_call"])
    assert props["plan_change"].endswith("→ Seq Scan on events")
    report = (perf_project.path / ".dbgate" / "perf_report.md").read_text()
    assert "| workload | events_of_an_account" in report
    assert "REGRESSED" in report
    assert "## Plan changes of the regressed queries" in report


def test_the_performance_stage_can_be_turned_off(perf_project: Project) -> None:
    perf_project.migrations(PROJECTS / "perf" / "unsafe").ini(dbgate_max_regression="off")
    result = perf_project.run()
    assert result.ret == 0
    result.assert_outcomes(passed=14)
    assert "dbgate::performance" not in result.stdout.str()
    assert "captured" not in result.stdout.str()


def test_a_broken_workload_file_is_a_usage_error(perf_project: Project) -> None:
    perf_project.migrations(PROJECTS / "perf" / "safe")
    (perf_project.path / "workload.sql").write_text(
        "-- name: ok\nSELECT 1;\n\n-- name: broken\nSELEC id FROM events;\n"
    )
    result = perf_project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ['ERROR: */workload.sql:5: the workload is not usable: syntax error at or near "SELEC"']
    )


@pytest.fixture(scope="module")
def staging_without_pgss(binaries: PgBinaries) -> Iterator[Endpoint]:
    with embedded_server("no-pgss", binaries, server_options="-c fsync=off") as server:
        yield server


def test_a_staging_server_without_pg_stat_statements_says_how_to_preload_it(
    perf_project: Project, perf_db: Endpoint, staging_without_pgss: Endpoint
) -> None:
    perf_project.migrations(PROJECTS / "perf" / "safe")
    perf_project.monkeypatch.setenv("STAGING_DATABASE_URL", url(staging_without_pgss))
    result = perf_project.run("-rs")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1, passed=13, skipped=5)
    result.stdout.fnmatch_lines(
        [
            "*_ before: baseline_captured _*",
            "pg_stat_statements is not loaded on the staging server, so query times cannot be "
            "measured",
            "  what to do: add it to shared_preload_libraries *",
            "SKIPPED * not run: dbgate::before::baseline_captured failed",
        ]
    )
    assert "Traceback" not in result.stdout.str()
