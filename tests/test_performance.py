"""The performance stage on real servers: a release that leaves the queries alone passes; one that
slows a query fails it, whether through a plan (a dropped index) or through CPU alone (a trigger,
a function), with the message that says which."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from junitparser import JUnitXml

from pytest_dbgate.pg.binaries import PgBinaries
from pytest_dbgate.pg.connections import Endpoint, connection
from pytest_dbgate.pg.servers import embedded_server

from .conftest import PROJECTS, Project, url
from .test_plugin import properties

WORKLOAD = ["events_of_an_account", "latest_events", "event_labels", "edit_events"]
PERF_ITEMS = [f"dbgate::performance::query[{label}]" for label in WORKLOAD] + [
    "dbgate::performance::test_queries"
]


def passed(result: pytest.RunResult, label: str) -> None:
    result.stdout.fnmatch_lines([f"*query[[]{label}[]] * passed *"])


def databases(server: Endpoint) -> list[str]:
    with connection(server, "test", "test") as conn:
        return [str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()]


def test_an_unchanged_release_passes_the_performance_items(
    perf_project: Project, staging_server: Endpoint
) -> None:
    perf_project.migrations(PROJECTS / "perf" / "safe").ini(dbgate_restore_points="on")
    for first in (True, False):  # the first from a snapshot of its own: no earlier test's points
        result = perf_project.run("-v", *(["--dbgate-refresh"] if first else []))
        assert result.ret == 0, result.stdout.str()
        for nodeid in PERF_ITEMS:
            result.stdout.fnmatch_lines([f"{nodeid.replace('[', '[[]')} PASSED*"])
    # The second run starts from the restore point the first made after the after phase's
    # VACUUM ANALYZE and compaction, and does neither again.
    result.stdout.fnmatch_lines(
        [
            "*nothing left to apply*",
            "*the restore point is vacuumed, analysed and compacted as the run that made it left "
            "it: not again*",
            "*running the workload side by side (dbgate_perf, migrated, and dbgate_perf_before, "
            "its un-migrated copy; 4 queries, budget 60s, at most 30 rounds each)*",
            "*after_captured * 1 test queries; 4 workload queries side by side, 30 rounds each *",
        ]
    )
    folder = perf_project.path / ".dbgate"
    after = json.loads((folder / "after_perf.json").read_text())
    assert after["workload_method"] == "side by side"
    query = after["workload"]["events_of_an_account"]
    assert query["sql"].startswith("SELECT id, kind FROM events WHERE account_id = 4242")
    assert query["rounds"] == len(query["before"]["ms"]) == len(query["after"]["ms"]) == 30
    assert (
        query["before"]["plan"]
        == query["after"]["plan"]
        == [
            "Bitmap Heap Scan on events",
            "Bitmap Index Scan using events_account_idx",
        ]
    )
    baseline = json.loads((folder / "baseline_perf.json").read_text())
    assert baseline["workload"] == {}, "side by side: nothing of the workload runs before"
    (test_query,) = baseline["tests"]
    assert test_query["text"] == "SELECT count(*) FROM events WHERE account_id = $1"
    assert test_query["calls"] == 6
    results = json.loads((folder / "staging-results.json").read_text())
    tests_item = next(i for i in results["items"] if i["name"] == "test_queries")
    assert tests_item["figures"]["judged"] == 1
    assert "dbgate_perf_before" not in databases(staging_server), "the copy is dropped after"


def test_a_dropped_index_fails_the_query_that_needs_it(perf_project: Project) -> None:
    perf_project.migrations(PROJECTS / "perf" / "unsafe").ini(dbgate_restore_points="on")
    result = perf_project.run("--junitxml=gate.xml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*_ performance: query[[]events_of_an_account[]] _*",
            "workload query events_of_an_account is slower after the migrations: * → * ms "
            "(+* %, at least +* % with 95 % confidence; 30 rounds side by side); plan: "
            "Bitmap Heap Scan on events, Bitmap Index Scan using events_account_idx → Seq Scan "
            "on events (* → * blocks per call); confirmed by a second measurement (the first: *)",
            "    SELECT id, kind FROM events WHERE account_id = 4242 ORDER BY id",
            "  plan: Bitmap Heap Scan on events, Bitmap Index Scan using events_account_idx → "
            "Seq Scan on events",
            "  fix: the release removed an index this query needs *",
            "*_ performance: test_queries _*",
            "a query of the project's tests (called 6 times after) is slower after the "
            "migrations: * ms mean (+* %, at least +* % with 95 % confidence; 6 and 6 calls)*",
            "    SELECT count(*) FROM events WHERE account_id = $1",
        ]
    )
    passed(result, "latest_events")
    xml = JUnitXml.fromfile(str(perf_project.path / "gate.xml"))
    case = next(c for s in xml for c in s if c.name == "query[events_of_an_account]")
    props = properties(case)
    assert float(props["ratio_lower_bound"]) > 1.2
    assert float(props["ratio"]) >= float(props["ratio_lower_bound"])
    assert float(props["after_blocks_per_call"]) > 10 * float(props["before_blocks_per_call"])
    assert props["plan_change"].endswith("→ Seq Scan on events")
    assert props["method"] == "side by side"
    report = (perf_project.path / ".dbgate" / "perf_report.md").read_text()
    assert "| workload | events_of_an_account" in report
    assert "REGRESSED" in report
    assert "## Why the failing queries are slower" in report
    # Run again, unchanged: it starts from the point after the migration, made steady; the
    # regression is caught all the same.
    again = perf_project.run()
    assert again.ret == pytest.ExitCode.TESTS_FAILED
    again.stdout.fnmatch_lines(
        [
            "*nothing left to apply*",
            "*the restore point is vacuumed, analysed and compacted as the run that made it left "
            "it: not again*",
            "*_ performance: query[[]events_of_an_account[]] _*",
            "workload query events_of_an_account is slower after the migrations: * → * ms *",
        ]
    )


def test_a_cpu_heavy_trigger_fails_the_write_it_slows(perf_project: Project) -> None:
    result = perf_project.migrations(PROJECTS / "perf" / "trigger").run()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*_ performance: query[[]edit_events[]] _*",
            "workload query edit_events is slower after the migrations: * → * ms (+* %, at "
            "least +* % with 95 % confidence; * rounds side by side); same plan, same blocks: "
            "slower per call (CPU: triggers, functions, casts); confirmed by a second measurement*",
            "    UPDATE events SET kind = kind WHERE id BETWEEN 1000 AND 1019",
            "  trigger events_checksum on events: new, * ms per run",
            "  plan (unchanged): ModifyTable on events; Index Scan using events_pkey on events",
            "  fix: look at what the release put on this query's path: triggers on the tables *",
        ]
    )
    for label in ("events_of_an_account", "latest_events", "event_labels"):
        passed(result, label)


def test_a_slowed_function_fails_the_query_that_calls_it(perf_project: Project) -> None:
    result = perf_project.migrations(PROJECTS / "perf" / "function").run()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*_ performance: query[[]event_labels[]] _*",
            "workload query event_labels is slower after the migrations: * same plan, same "
            "blocks: slower per call (CPU: triggers, functions, casts); confirmed by a second "
            "measurement*",
            "  function public.event_label: * → * ms per run",
        ]
    )
    for label in ("events_of_an_account", "latest_events", "edit_events"):
        passed(result, label)


def test_a_query_the_release_breaks_fails_its_item(perf_project: Project, tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    (release / "1_drop_payload.sql").write_text("ALTER TABLE events DROP COLUMN payload;\n")
    result = perf_project.migrations(release).run()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*_ performance: query[[]event_labels[]] _*",
            'workload query event_labels fails after the migrations: column "payload" does '
            "not exist",
        ]
    )
    passed(result, "events_of_an_account")


def test_a_writing_cte_in_the_workload_leaves_staging_unchanged(
    perf_project: Project, staging_server: Endpoint, tmp_path: Path
) -> None:
    # A read by its first word, a write by what it does: neither the measurement nor the lock
    # watch's simulated readers (busy on events for the second and a half the release takes)
    # may keep its change.
    with (perf_project.path / "workload.sql").open("a") as workload:
        workload.write(
            "\n-- name: mark_seen\nWITH d AS (UPDATE events SET kind = 'seen' WHERE id = 7 "
            "RETURNING id) SELECT 1;\n"
        )
    release = tmp_path / "release"
    release.mkdir()
    (release / "1_touch_events.sql").write_text(
        "UPDATE events SET payload = payload WHERE id < 0;\nSELECT pg_sleep(1.5);\n"
    )
    result = perf_project.migrations(release).run()
    assert result.ret == 0, result.stdout.str()
    passed(result, "mark_seen")
    with connection(staging_server.with_dbname("dbgate_perf"), "test", "test") as conn:
        assert conn.execute("SELECT kind FROM events WHERE id = 7").fetchone() == ("view",)


def test_without_an_unmigrated_copy_the_workload_is_measured_one_phase_after_the_other(
    perf_project: Project, perf_db: Endpoint, staging_server: Endpoint
) -> None:
    # A clone command gives one copy: nothing to measure beside it.
    for script in ("clone.py", "cleanup.py"):
        shutil.copy(PROJECTS / "clone" / script, perf_project.path / script)
    perf_project.monkeypatch.delenv("STAGING_DATABASE_URL")
    perf_project.monkeypatch.setenv("CLONE_SERVER_URL", url(staging_server))
    perf_project.ini(
        dbgate_clone_command=f"{sys.executable} clone.py",
        dbgate_clone_cleanup_command=f"{sys.executable} cleanup.py",
    )
    result = perf_project.migrations(PROJECTS / "perf" / "unsafe").run()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*running the workload on staging (clone_* before migrating; staging is the clone "
            "command's one copy; 4 queries, *",
            "*running the workload on staging (clone_* after migrating; *",
            "workload query events_of_an_account is slower after the migrations: * 30 rounds "
            "one phase after the other); plan: *",
        ]
    )
    passed(result, "latest_events")


def test_the_performance_stage_can_be_turned_off(perf_project: Project) -> None:
    perf_project.migrations(PROJECTS / "perf" / "unsafe").ini(dbgate_max_regression="off")
    result = perf_project.run()
    assert result.ret == 0
    assert "dbgate::performance" not in result.stdout.str()
    assert "captured" not in result.stdout.str()
    assert "running the workload" not in result.stdout.str()


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
    assert result.parseoutcomes()["failed"] == 1
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


@pytest.fixture
def mixed_case_perf(project: Project, mixed_case_db: Endpoint, staging_server: Endpoint) -> Project:
    """tests/projects/mixed_case with its workload, restore points on; add a release."""
    shutil.copy(PROJECTS / "mixed_case" / "perf" / "workload.sql", project.path / "workload.sql")
    project.ini(dbgate_workload="workload.sql", dbgate_restore_points="on")
    return project.against(mixed_case_db, staging_server)


def test_a_backfill_of_a_quoted_table_is_compacted_and_passes_again_from_its_point(
    mixed_case_perf: Project,
) -> None:
    mixed_case_perf.migrations(PROJECTS / "mixed_case" / "perf" / "backfill")
    first = mixed_case_perf.run("-s", "--dbgate-refresh")
    assert first.ret == 0, first.stdout.str()
    assert "VACUUM FULL on public.Document: " in first.stdout.str()
    again = mixed_case_perf.run("-s")
    assert again.ret == 0, again.stdout.str()
    out = again.stdout.str()
    assert "nothing left to apply" in out
    assert "as the run that made it left it: not again" in out
    assert "VACUUM" not in out
    passed(again, "a_document")


def test_a_dropped_key_of_a_quoted_table_fails_again_from_its_point(
    mixed_case_perf: Project,
) -> None:
    mixed_case_perf.migrations(PROJECTS / "mixed_case" / "perf" / "dropped_key")
    for args in (("--dbgate-refresh",), ()):
        result = mixed_case_perf.run("-s", *args)
        assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
        result.stdout.fnmatch_lines(
            [
                "*_ performance: query[[]a_document[]] _*",
                "workload query a_document is slower after the migrations: * → * ms *",
            ]
        )
        passed(result, "a_row_of_my_table")
    assert "nothing left to apply" in result.stdout.str()
