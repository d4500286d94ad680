"""Applying migrations on a real server: transactions, partial runs, records, checksums."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pytest_dbgate.migrations.parse import discover
from pytest_dbgate.migrations.runner import Runner, Status
from pytest_dbgate.pg.connections import Endpoint, connect

Conn = psycopg.Connection[tuple[object, ...]]


@pytest.fixture
def conn(scratch_db: Endpoint) -> Iterator[Conn]:
    connection = connect(scratch_db, "staging", "test")
    yield connection
    connection.close()


def runner_for(conn: Conn, folder: Path, files: dict[str, str]) -> Runner:
    for name, text in files.items():
        (folder / name).write_text(text)
    progress: list[str] = []
    return Runner(conn, discover(folder), progress.append, "test")


def tables(conn: Conn) -> set[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {str(r[0]) for r in rows}


def tracking(conn: Conn) -> dict[str, tuple[object, ...]]:
    rows = conn.execute(
        "SELECT version, success, statements_applied, statements_total, checksum, error"
        " FROM dbgate.migrations"
    ).fetchall()
    return {str(r[0]): tuple(r[1:]) for r in rows}


def test_each_file_runs_in_one_transaction_and_is_recorded(conn: Conn, tmp_path: Path) -> None:
    runner = runner_for(
        conn,
        tmp_path,
        {
            "1_a.sql": "CREATE TABLE a (id int PRIMARY KEY);\nINSERT INTO a VALUES (1);",
            "2_b.sql": "CREATE TABLE b (id int REFERENCES a);",
        },
    )
    outcomes = runner.apply_all()
    assert [o.status for o in outcomes] == [Status.APPLIED, Status.APPLIED]
    assert tables(conn) == {"a", "b"}
    records = tracking(conn)
    assert records["1"][:3] == (True, 2, 2)
    assert records["2"][3] == outcomes[1].migration.checksum


def test_a_failing_file_is_rolled_back_and_stops_the_run(conn: Conn, tmp_path: Path) -> None:
    runner = runner_for(
        conn,
        tmp_path,
        {
            "1_ok.sql": "CREATE TABLE ok (id int);",
            "2_broken.sql": (
                "CREATE TABLE half (id int);\n\nALTER TABLE half\n  ADD COLUMN x nosuchtype;"
            ),
            "3_later.sql": "CREATE TABLE later (id int);",
        },
    )
    ok, broken, later = runner.apply_all()
    assert (ok.status, broken.status, later.status) == (
        Status.APPLIED,
        Status.FAILED,
        Status.NOT_APPLIED,
    )
    assert tables(conn) == {"ok"}  # "half" rolled back with its file, "later" never ran
    assert later.blocked_by is broken
    assert broken.failure is not None and broken.failure.line == 4
    message = broken.describe_failure(lambda m: m.path.name)
    assert message.startswith('2_broken.sql:4: ERROR: type "nosuchtype" does not exist [42704]')
    assert "rolled back: none of its 2 statements is applied" in message
    records = tracking(conn)
    assert records["2"][:3] == (False, 0, 2)
    assert "nosuchtype" in str(records["2"][4])
    assert "3" not in records


def test_statement_by_statement_failure_records_what_ran(conn: Conn, tmp_path: Path) -> None:
    runner = runner_for(
        conn,
        tmp_path,
        {
            "1_idx.sql": (
                "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1), (1);\n"
                "CREATE UNIQUE INDEX CONCURRENTLY t_id_key ON t (id);\n"
                "CREATE TABLE never (id int);"
            ),
        },
    )
    (outcome,) = runner.apply_all()
    assert outcome.status is Status.FAILED
    assert tables(conn) == {"t"}  # the statements before the failure stay committed
    assert tracking(conn)["1"][:3] == (False, 2, 4)
    message = outcome.describe_failure(lambda m: m.path.name)
    assert "statements 1-2 of 4 are applied and recorded in dbgate.statements" in message
    assert "the next run resumes at statement 3 and does not run them again" in message
    assert "the INVALID index the failed build left was dropped (t_id_key)" in message
    assert conn.execute("SELECT to_regclass('t_id_key')").fetchone() == (None,)


def test_a_file_with_its_own_transactions_runs_them(conn: Conn, tmp_path: Path) -> None:
    runner = runner_for(
        conn,
        tmp_path,
        {
            "1_own.sql": (
                "BEGIN;\nCREATE TABLE first (id int);\nCOMMIT;\n"
                "BEGIN;\nCREATE TABLE second (id int);\nCOMMIT;"
            ),
            "2_open.sql": "BEGIN;\nCREATE TABLE dangling (id int);",
        },
    )
    own, dangling = runner.apply_all()
    assert own.status is Status.APPLIED
    assert dangling.status is Status.FAILED
    assert dangling.failure is not None and "left a transaction open" in dangling.failure.error
    assert tables(conn) == {"first", "second"}


def test_applied_migrations_are_skipped_and_edited_ones_refused(conn: Conn, tmp_path: Path) -> None:
    first = runner_for(conn, tmp_path, {"1_a.sql": "CREATE TABLE a (id int);"})
    first.apply_all()

    again = runner_for(conn, tmp_path, {"2_b.sql": "CREATE TABLE b (id int);"})
    assert [o.status for o in again.apply_all()] == [Status.ALREADY_APPLIED, Status.APPLIED]

    (tmp_path / "1_a.sql").write_text("CREATE TABLE a (id bigint);")
    edited = runner_for(conn, tmp_path, {"3_c.sql": "CREATE TABLE c (id int);"})
    changed, b, c = edited.apply_all()
    assert changed.status is Status.CHECKSUM_CHANGED
    assert "an applied migration must never change" in changed.describe_failure(str)
    assert b.status is Status.ALREADY_APPLIED
    assert c.status is Status.NOT_APPLIED
    assert "c" not in tables(conn)


def test_outcomes_apply_lazily_up_to_the_one_asked_for(conn: Conn, tmp_path: Path) -> None:
    runner = runner_for(
        conn,
        tmp_path,
        {"1_a.sql": "CREATE TABLE a (id int);", "2_b.sql": "CREATE TABLE b (id int);"},
    )
    assert runner.outcome(0).status is Status.APPLIED
    assert tables(conn) == {"a"}
    assert runner.outcome(1).status is Status.APPLIED
    assert runner.outcome(0) is runner.apply_all()[0]  # applied once, remembered
