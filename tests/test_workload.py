"""The workload file: labels, validation, reads told from writes, runs that leave staging as it
was."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.performance.timing import run_once
from pytest_dbgate.performance.workload import parse_workload
from pytest_dbgate.pg.connections import Endpoint, connect

from .conftest import REPO


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "workload.sql"
    path.write_text(text)
    return path


def test_the_demo_workload_names_its_queries() -> None:
    labels = [q.label for q in parse_workload(REPO / "demo" / "workload.sql")]
    assert labels == [
        "search_by_title",
        "recipes_of_a_cook",
        "latest_recipes",
        "recipe_page",
        "top_rated",
        "cook_profile",
        "recipe_cards",
        "edit_recipes",
    ]


def test_unnamed_queries_are_numbered(tmp_path: Path) -> None:
    path = write(tmp_path, "SELECT 1;\n-- name: second\nSELECT 2;\n-- a comment\nSELECT 3;")
    assert [(q.label, q.sql, q.line) for q in parse_workload(path)] == [
        ("1", "SELECT 1", 1),
        ("second", "SELECT 2", 3),
        ("3", "SELECT 3", 5),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SELECT 1;\nSELEC 2;", ":2: the workload is not usable: syntax error at or near"),
        ("SELECT 1;\nCREATE TABLE t (a int);", ":2: the workload is not usable: only data queries"),
        ("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;", "the name 'a' is used twice"),
        ("-- nothing\n", "holds no query"),
    ],
)
def test_unusable_workloads_say_where(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_workload(write(tmp_path, text))
    assert message in str(raised.value)


def test_a_missing_workload_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"the workload file .* does not exist"):
        parse_workload(tmp_path / "nope.sql")


def test_writes_are_told_from_reads(tmp_path: Path) -> None:
    queries = parse_workload(
        write(
            tmp_path,
            "SELECT 1;\n"
            "WITH x AS (SELECT 1) SELECT * FROM x;\n"
            "WITH d AS (UPDATE t SET a = 1 RETURNING a) SELECT count(*) FROM d;\n"
            "SELECT * FROM t FOR UPDATE;\n"
            "INSERT INTO t VALUES (1);\n"
            "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE;\n",
        )
    )
    assert [q.writes for q in queries] == [False, False, True, True, True, True]


def test_measured_runs_leave_staging_as_it_was(scratch_db: Endpoint, tmp_path: Path) -> None:
    queries = parse_workload(
        write(
            tmp_path,
            "INSERT INTO t VALUES (1);\n"
            "WITH d AS (UPDATE t SET a = 2 RETURNING a) SELECT count(*) FROM d;\n"
            "SELECT count(*) FROM t;",
        )
    )
    with connect(scratch_db, "staging", "t") as conn:
        conn.execute("CREATE TABLE t (a int)")
        conn.execute("INSERT INTO t VALUES (0)")
        for query in queries:
            for _ in range(3):
                assert run_once(conn, query.sql).ms >= 0
        assert conn.execute("SELECT array_agg(a) FROM t").fetchone() == ([0],)
