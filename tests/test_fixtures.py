"""The fixtures outside the gate: the same suite runs in everyday development."""

from __future__ import annotations

import psycopg
import pytest

from pytest_dbgate.pg.connections import Endpoint

from .conftest import url

TESTS = """
import pytest

def test_counts(dbgate_db, dbgate_phase):
    assert dbgate_phase is None
    assert dbgate_db.execute("SELECT count(*) FROM recipes").fetchone()[0] > 0

def test_url(dbgate_url):
    assert dbgate_url.startswith("postgresql://")

@pytest.mark.dbgate_phase("before")
def test_only_before(dbgate_db):
    pass

@pytest.mark.dbgate_phase("after")
def test_only_after(dbgate_db):
    dbgate_db.execute("CREATE TABLE written_by_a_test (id int)")
"""


def test_without_a_database_the_database_tests_are_skipped_saying_why(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines(
        ["SKIPPED * no database for dbgate_url: set $DATABASE_URL (or dbgate_database_url), *"]
    )


def test_with_database_url_they_run_once_against_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prod_db: Endpoint
) -> None:
    monkeypatch.setenv("DATABASE_URL", url(prod_db))
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("-v", "-rs")
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_counts PASSED*",
            "SKIPPED * runs only before migrating, under pytest --dbgate=staging",
        ]
    )
    assert "[before]" not in result.stdout.str()
    with psycopg.connect(prod_db.conninfo()) as conn:
        row = conn.execute("SELECT to_regclass('written_by_a_test')").fetchone()
    assert row == (None,), "what a test writes through dbgate_db is rolled back"


def test_the_ini_can_name_the_everyday_database(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, prod_db: Endpoint
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    pytester.makeini(f"[pytest]\ndbgate_database_url = {url(prod_db)}\n")
    pytester.makepyfile(TESTS)
    pytester.runpytest().assert_outcomes(passed=3, skipped=1)
