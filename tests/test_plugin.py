"""The plugin end to end: the demo gate on embedded servers, and every kind of bad input."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from junitparser import JUnitXml, Properties, TestCase

from pytest_dbgate.pg.connections import Endpoint
from pytest_dbgate.pg.janitor import owner

from .conftest import REPO, STAGING_PASSWORD, Project, url

DEMO_ITEMS = [
    "dbgate::refresh::source_reachable",
    "dbgate::refresh::snapshot_restored",
    "dbgate::refresh::versions_match",
    "dbgate::refresh::extension[citext]",
    "dbgate::refresh::extension[pg_trgm]",
    "dbgate::connect::staging_reachable",
    "dbgate::connect::pool_headroom",
    "dbgate::before::baseline_captured",
    "dbgate::migrate::applied[20250115150000_create_recipe_categories]",
    "dbgate::migrate::locks[20250115150000_create_recipe_categories]",
    "dbgate::migrate::applied[20250115150100_add_recipes_category_id]",
    "dbgate::migrate::locks[20250115150100_add_recipes_category_id]",
    "dbgate::migrate::applied[20250115150200_backfill_recipes_category_id]",
    "dbgate::migrate::locks[20250115150200_backfill_recipes_category_id]",
    "dbgate::migrate::applied[20250115160000_fix_recipe_category_fields_fk]",
    "dbgate::migrate::locks[20250115160000_fix_recipe_category_fields_fk]",
    "dbgate::migrate::applied[20250115160001_fix_recipe_category_fields_index]",
    "dbgate::migrate::locks[20250115160001_fix_recipe_category_fields_index]",
    "dbgate::migrate::applied[20250115160002_fix_recipe_category_fields_cleanup]",
    "dbgate::migrate::locks[20250115160002_fix_recipe_category_fields_cleanup]",
    "dbgate::schema::constraints_validated",
    "dbgate::schema::indexes_valid_and_ready",
    "dbgate::schema::migrations_recorded",
    "dbgate::after::after_captured",
    "dbgate::performance::query[search_by_title]",
    "dbgate::performance::query[recipes_of_a_cook]",
    "dbgate::performance::query[latest_recipes]",
    "dbgate::performance::query[recipe_page]",
    "dbgate::performance::query[top_rated]",
    "dbgate::performance::query[cook_profile]",
    "dbgate::performance::query[recipe_cards]",
    "dbgate::performance::query[edit_recipes]",
    "dbgate::performance::test_queries",
    "dbgate::verdict::gate_record",
]


def properties(case: TestCase) -> dict[str, str]:
    """A JUnit test case's <property> elements, as a CI dashboard would read them."""
    found = case.child(Properties)
    return {p.name: p.value for p in found} if found is not None else {}


def _embedded_dirs() -> set[str]:
    """The server and dump folders this process made (other runs on the machine come and go)."""
    return {
        path.name
        for path in Path(tempfile.gettempdir()).glob("dbgate-*")
        if (owner(path) or (0,))[0] == os.getpid()
    }


def test_without_dbgate_the_users_suite_runs_unchanged(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_app():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=1)
    assert not [line for line in result.stdout.lines if line.startswith(("dbgate", "[dbgate]"))]
    assert not (pytester.path / ".dbgate").exists()


def test_demo_release_passes_on_embedded_servers(demo: Project) -> None:
    demo.app_tests()
    before = _embedded_dirs()
    result = demo.run("-v", "--junitxml=gate.xml")
    result.assert_outcomes(passed=len(DEMO_ITEMS) + 6 + 13)
    assert result.ret == 0
    ran = [
        line.split(" PASSED")[0]
        for line in result.stdout.lines
        if line.endswith("%]") and " PASSED" in line
    ]
    gate = [name for name in ran if name.startswith("dbgate::")]
    assert gate == DEMO_ITEMS, "the checklist runs in order"
    app = "tests/test_recipes.py::"
    first = ran.index("dbgate::connect::pool_headroom") + 1
    assert ran[first : first + 7] == [
        f"{app}test_title_search_finds_recipes_by_fragment[before]",
        f"{app}test_search_is_case_insensitive[before]",
        f"{app}test_a_cooks_recipes_newest_first[before]",
        f"{app}test_recipe_ingredients_come_in_order[before]",
        f"{app}test_top_rated_recipes[before]",
        f"{app}test_old_release_lists_a_category_from_free_text[before]",
        "dbgate::before::baseline_captured",
    ], "the app's tests run before the first migration, then the baseline"
    after_capture = ran.index("dbgate::after::after_captured")
    assert ran[after_capture - 7 : after_capture + 1] == [
        f"{app}test_title_search_finds_recipes_by_fragment[after]",
        f"{app}test_search_is_case_insensitive[after]",
        f"{app}test_a_cooks_recipes_newest_first[after]",
        f"{app}test_recipe_ingredients_come_in_order[after]",
        f"{app}test_top_rated_recipes[after]",
        f"{app}test_new_release_lists_a_category_from_its_table[after]",
        f"{app}test_every_categorised_recipe_got_its_category[after]",
        "dbgate::after::after_captured",
    ], "and again after the schema checks, then the after capture"
    result.stdout.fnmatch_lines(
        [
            "dbgate: staging gate of 6 migration(s) in migrations (layout flat)",
            "dbgate: source: embedded server seeded from prod; staging: embedded server*",
            "*[[]dbgate[]] dumping postgres@127.0.0.1:*/prod*",
            "*[[]dbgate[]] applying 20250115160001_fix_recipe_category_fields_index "
            "(1 statement, statement by statement)",
            f"*= dbgate: staging gate PASSED: {len(DEMO_ITEMS) + 6 + 13} passed =*",
            "before * project tests * passed * 6 passed",
            "after * project tests * passed * 7 passed",
        ]
    )
    assert _embedded_dirs() <= before, "embedded servers are stopped and removed"

    xml = JUnitXml.fromfile(str(demo.path / "gate.xml"))
    cases = {f"{c.classname}::{c.name}": c for suite in xml for c in suite}
    assert "dbgate.migrate::applied[20250115160002_fix_recipe_category_fields_cleanup]" in cases
    snapshot = cases["dbgate.refresh::snapshot_restored"]
    props = properties(snapshot)
    assert int(props["rows_source"]) == int(props["rows_staging"]) > 1000
    assert props["tables"] == "5"
    backfill = cases["dbgate.migrate::applied[20250115150200_backfill_recipes_category_id]"]
    props = properties(backfill)
    assert props["status"] == "applied" and props["transaction"] == "per statement"
    assert float(props["duration_ms"]) > 0
    assert sorted(c for c in cases if c.startswith("dbgate.refresh::extension[")) == [
        "dbgate.refresh::extension[citext]",
        "dbgate.refresh::extension[pg_trgm]",
    ]

    assert len([c for c in cases if c.startswith("dbgate.after::")]) == 7 + 1  # and after_captured
    results = json.loads((demo.path / ".dbgate" / "staging-results.json").read_text())
    assert results["passed"] is True
    assert [i["nodeid"] for i in results["items"] if i["nodeid"].startswith("dbgate::")] == (
        DEMO_ITEMS
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--dbgate-migrations=empty",),
            "ERROR: the migrations folder */empty holds no migration*",
        ),
        (("--dbgate-migrations=nowhere",), "ERROR: the migrations folder */nowhere does not exist"),
        (("--dbgate-pg-bindir=empty",), "ERROR: the PostgreSQL programs the gate needs *"),
        (
            ("--dbgate-migrations=broken",),
            "ERROR: */broken/2_b.sql:3: the migration does not parse*",
        ),
    ],
)
def test_bad_input_stops_before_anything_starts(
    demo: Project, args: tuple[str, ...], message: str
) -> None:
    (demo.path / "empty").mkdir()
    (demo.path / "broken").mkdir()
    (demo.path / "broken" / "1_a.sql").write_text("CREATE TABLE a (id int);")
    (demo.path / "broken" / "2_b.sql").write_text("-- oops\n\nCREATE TABEL b (id int);")
    before = _embedded_dirs()
    result = demo.run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message, "  what to do: *"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    # Nothing new was started; other runs on the machine may end theirs meanwhile.
    assert not _embedded_dirs() - before


def test_an_unknown_mode(demo: Project) -> None:
    result = demo.pytester.runpytest("--dbgate=stagin")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*argument --dbgate: invalid choice: 'stagin' (choose from *staging*"]
    )


def test_staging_url_equal_to_the_source_url_is_refused(
    demo: Project, monkeypatch: pytest.MonkeyPatch, prod_db: Endpoint
) -> None:
    secret_url = url(prod_db.replace(password="s3cret-pw"))
    monkeypatch.setenv("PROD_DATABASE_URL", secret_url)
    monkeypatch.setenv("STAGING_DATABASE_URL", secret_url)
    result = demo.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: the staging URL is the same as the source*"])
    assert "s3cret-pw" not in result.stdout.str() + result.stderr.str()


def test_unreachable_source_fails_one_item_and_skips_the_rest(
    demo: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROD_DATABASE_URL", "postgresql://app:s3cret-pw@127.0.0.1:1/prod")
    result = demo.run("--junitxml=gate.xml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1 and outcomes["skipped"] >= 8
    result.stdout.fnmatch_lines(
        [
            "*_ refresh: source_reachable _*",
            "cannot connect to the source database app@127.0.0.1:1/prod: *Connection refused",
            "  what to do: check host and port in $PROD_DATABASE_URL*",
        ]
    )
    everything = result.stdout.str() + result.stderr.str() + (demo.path / "gate.xml").read_text()
    assert "s3cret-pw" not in everything
    assert "Traceback" not in everything


def test_wrong_staging_password_names_the_fix_and_never_the_password(
    remote_demo: Project, monkeypatch: pytest.MonkeyPatch, staging_server: Endpoint
) -> None:
    monkeypatch.setenv("STAGING_DATABASE_URL", url(staging_server.replace(password="wr0ng-pw")))
    result = remote_demo.run("--junitxml=gate.xml", "-rs")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*_ connect: staging_reachable _*",
            "cannot connect to the staging database postgres@127.0.0.1:*/postgres: *password "
            'authentication failed for user "postgres"',
            "  what to do: check the user and password of $STAGING_DATABASE_URL*",
        ]
    )
    result.stdout.fnmatch_lines(["*SKIPPED*not run: dbgate::connect::staging_reachable failed*"])
    everything = (
        result.stdout.str()
        + result.stderr.str()
        + (remote_demo.path / "gate.xml").read_text()
        + "".join(p.read_text() for p in (remote_demo.path / ".dbgate").glob("*"))
    )
    for secret in ("wr0ng-pw", STAGING_PASSWORD):
        assert secret not in everything


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs an unprivileged account")
def test_missing_server_account_as_root(demo: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_dbgate.pg import servers as provisioning

    monkeypatch.setattr(provisioning, "SERVER_ACCOUNT", "dbgate-no-such-account")
    result = demo.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: PostgreSQL refuses to run as root and there is no*"])


def test_readme_starts_with_the_two_commands() -> None:
    head = (REPO / "README.md").read_text().splitlines()[:15]
    text = "\n".join(head)
    assert "bash setup.sh && pytest --dbgate=staging" in text
    assert "pytest tests -n auto" in text
    assert "pytest tests -n auto" in (REPO / ".ci" / "run").read_text()
    setup = (REPO / "setup.sh").read_text()
    assert "apt-get install -y -q postgresql postgresql-contrib" in setup
    assert "pip install -q -e '.[test]'" in setup
    assert "bash setup.sh" in (REPO / ".ci" / "run").read_text()
