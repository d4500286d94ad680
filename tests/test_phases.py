"""The project's own tests [before] and [after] the migrations, in order, under any selection."""

from __future__ import annotations

import pytest

from .conftest import Project, example, outcomes

APP_TESTS = """
import pytest

def test_reads_titles(dbgate_db):
    assert dbgate_db.execute("SELECT count(title) FROM recipes").fetchone()[0] > 0

def test_phase_is_known(dbgate_phase):
    assert dbgate_phase in ("before", "after")

@pytest.mark.dbgate_phase("after")
def test_new_table(dbgate_db):
    assert dbgate_db.execute("SELECT count(*) FROM recipe_categories").fetchone()[0] > 0

@pytest.mark.dbgate_phase("before")
def test_old_column(dbgate_db):
    dbgate_db.execute("SELECT category FROM recipes LIMIT 1")

def test_plain():
    pass
"""


def _ran(result: pytest.RunResult) -> list[str]:
    return [line.split(" ")[0] for line in result.stdout.lines if line.endswith("%]")]


def test_database_tests_run_before_and_after_around_the_migrations(remote_demo: Project) -> None:
    remote_demo.pytester.makepyfile(test_app=APP_TESTS)
    result = remote_demo.run("-v", "-p", "no:randomly")
    outcomes(result)
    order = _ran(result)
    first_migration = next(i for i, n in enumerate(order) if n.startswith("dbgate::migrate::"))
    last_schema = max(i for i, n in enumerate(order) if n.startswith("dbgate::schema::"))
    before = [n for n in order if n.endswith("[before]")]
    after = [n for n in order if n.endswith("[after]")]
    assert before == [
        "test_app.py::test_reads_titles[before]",
        "test_app.py::test_phase_is_known[before]",
        "test_app.py::test_old_column[before]",
    ]
    assert after == [
        "test_app.py::test_reads_titles[after]",
        "test_app.py::test_phase_is_known[after]",
        "test_app.py::test_new_table[after]",
    ]
    assert all(order.index(n) < first_migration for n in before)
    assert all(order.index(n) > last_schema for n in after)
    assert order[-1] == "test_app.py::test_plain", "tests without the database run once, last"


def test_a_release_that_breaks_the_app_fails_the_after_test(remote_demo: Project) -> None:
    remote_demo.migrations(example("renamed_column")).pytester.makepyfile(test_app=APP_TESTS)
    result = remote_demo.run()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # The app's workload breaks too: each query that reads the renamed column fails its item.
    result.stdout.fnmatch_lines(
        ['workload query search_by_title fails after the migrations: column "title" does not exist']
    )
    assert result.parseoutcomes()["failed"] > 2
    result.stdout.fnmatch_lines(
        [
            "*_ test_reads_titles[[]after[]] _*",
            '*psycopg.errors.UndefinedColumn: column "title" does not exist*',
            "after * project tests * FAILED * 1 failed, 2 passed: test_reads_titles[[]after[]]",
            "FAILED test_app.py::test_reads_titles[[]after[]] - *",
        ]
    )


def test_selecting_after_tests_alone_still_migrates_first(remote_demo: Project) -> None:
    remote_demo.pytester.makepyfile(test_app=APP_TESTS)
    result = remote_demo.run("-k", "test_app and after")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*applying 20250115160002_fix_recipe_category_fields_cleanup*"])


def test_selecting_before_tests_alone_never_migrates(remote_demo: Project) -> None:
    remote_demo.pytester.makepyfile(test_app=APP_TESTS)
    result = remote_demo.run("-k", "before")
    outcomes(result)  # the before tests and the baseline capture
    # The workload is measured side by side after migrating: nothing of it runs before.
    assert "running the workload" not in result.stdout.str()
    assert "applying" not in result.stdout.str()


def test_exitfirst_stops_before_the_migrations(remote_demo: Project) -> None:
    remote_demo.pytester.makepyfile(
        test_app="def test_broken_before(dbgate_db):\n    assert False, 'app is broken'\n"
    )
    result = remote_demo.run("-x")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes(result, failed=1)  # after refresh and connect (lint comes later)
    assert "applying" not in result.stdout.str()


def test_a_failed_migration_skips_the_after_tests(remote_demo: Project) -> None:
    remote_demo.migrations(example("failing_migration")).pytester.makepyfile(
        test_app="def test_app(dbgate_db):\n    pass\n"
    )
    result = remote_demo.run("-rs")
    # The migration fails; the schema checks say they judged a partly migrated schema.
    outcomes(result, failed=1, skipped=result.parseoutcomes()["skipped"])
    result.stdout.fnmatch_lines(
        ["SKIPPED * not run: dbgate::migrate::applied[[]20250115150100_add_recipes_category_id[]]*"]
    )


def test_unknown_phase_in_the_marker_is_a_usage_error(remote_demo: Project) -> None:
    remote_demo.pytester.makepyfile(
        test_app="import pytest\n@pytest.mark.dbgate_phase('during')\n"
        "def test_x(dbgate_db):\n    pass\n"
    )
    result = remote_demo.run()
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*dbgate_phase takes 'before' and/or 'after', not 'during'*"])


def test_reordering_plugins_cannot_run_a_before_test_after_migrating(remote_demo: Project) -> None:
    remote_demo.pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(trylast=True)
        def pytest_collection_modifyitems(items):
            items.sort(key=lambda item: "[before]" in item.nodeid)  # before-tests last
        """
    )
    remote_demo.pytester.makepyfile(test_app="def test_app(dbgate_db):\n    pass\n")
    result = remote_demo.run("-rs")
    outcomes(result, skipped=1, errors=1)
    result.stdout.fnmatch_lines(["*this [[]before[]] test would run after the migrations started*"])
    # The verdict ran before that test: it had not run, so no record vouches for the release.
    result.stdout.fnmatch_lines(["*test_app.py::test_app[[]before[]]: did not run*"])
    assert not (remote_demo.path / ".dbgate" / "gate-record.json").exists()


def test_the_gate_runs_on_one_xdist_worker(remote_demo: Project) -> None:
    remote_demo.pytester.makepyfile(test_app=APP_TESTS)
    result = remote_demo.run("-n", "2")
    outcomes(result)
    result.stdout.fnmatch_lines(["*dbgate: staging gate PASSED: * passed*"])
    assert (remote_demo.path / ".dbgate" / "staging-report.md").exists()


@pytest.mark.parametrize("dist", ["loadscope", "each"])
def test_distributions_that_would_split_the_gate_are_refused(
    remote_demo: Project, dist: str
) -> None:
    result = remote_demo.run("-n", "2", f"--dist={dist}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --dbgate cannot run with pytest-xdist's --dist={dist}*"])
