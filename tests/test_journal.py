"""Exactly once, on a real server: the journal, resuming, in-doubt statements, tracking failures.

A crash is simulated in-process: the boundary callback raises at a chosen point, and the
session is dropped as a killed process's would be (the server rolls back what was open). The
real thing, a SIGKILL or SIGTERM of a whole production run, is in test_crash_matrix.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pytest_dbgate.migrations.apply import POINTS
from pytest_dbgate.migrations.history import PrismaHistory
from pytest_dbgate.migrations.holdbacks import Policy
from pytest_dbgate.migrations.outcomes import Cause, Outcome, Status
from pytest_dbgate.migrations.parse import Migration, discover
from pytest_dbgate.migrations.runner import Runner
from pytest_dbgate.migrations.tracking import resolution_sql
from pytest_dbgate.pg.connections import Endpoint, connect

Conn = psycopg.Connection[tuple[object, ...]]

SEED = """
CREATE TABLE accounts (id int PRIMARY KEY, visits int NOT NULL DEFAULT 0, n int NOT NULL DEFAULT 0);
INSERT INTO accounts (id) SELECT generate_series(1, 100);
CREATE TABLE applied (tag text NOT NULL);
"""

STEPWISE = """-- dbgate: no-transaction
INSERT INTO applied VALUES ('1');
UPDATE accounts SET visits = visits + 1;
CREATE INDEX CONCURRENTLY accounts_n_idx ON accounts (n);
BEGIN;
INSERT INTO applied VALUES ('5');
UPDATE accounts SET n = n + 1;
COMMIT;
INSERT INTO applied VALUES ('8');
"""


class Crash(BaseException):
    """The process dies here."""


@pytest.fixture
def db(scratch_db: Endpoint) -> Endpoint:
    with connect(scratch_db, "test", "test") as conn:
        conn.execute(SEED)
    return scratch_db


def session(db: Endpoint) -> Conn:
    return connect(db, "test", "test")


def release(folder: Path, files: dict[str, str]) -> list[Migration]:
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return discover(folder)


def run(
    db: Endpoint,
    migrations: list[Migration],
    crash_at: tuple[str, str, int | None] | None = None,
    policy: Policy | None = None,
) -> list[Outcome] | None:
    """Apply on a fresh session; ``None`` when it crashed at ``crash_at``."""

    def boundary(point: str, migration: Migration, ordinal: int | None) -> None:
        if (point, migration.id, ordinal) == crash_at:
            raise Crash

    conn = session(db)
    try:
        runner = Runner(conn, migrations, lambda _: None, "test", policy=policy, boundary=boundary)
        return runner.apply_all()
    except Crash:
        return None
    finally:
        conn.close()


def census(db: Endpoint, migrations: list[Migration]) -> list[tuple[str, str, int | None]]:
    """Every point a run of ``migrations`` passes, in order (on a throwaway copy)."""
    seen: list[tuple[str, str, int | None]] = []
    conn = session(db)
    try:
        Runner(
            conn,
            migrations,
            lambda _: None,
            "test",
            boundary=lambda p, m, o: seen.append((p, m.id, o)),
        ).apply_all()
    finally:
        conn.close()
    return seen


def query(db: Endpoint, text: str) -> list[tuple[object, ...]]:
    with session(db) as conn:
        return conn.execute(text).fetchall()  # type: ignore[arg-type]


def assert_applied_once(db: Endpoint) -> None:
    assert query(db, "SELECT DISTINCT visits, n FROM accounts") == [(1, 1)]
    assert sorted(r[0] for r in query(db, "SELECT tag FROM applied")) == ["1", "5", "8"]
    assert query(
        db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'accounts_n_idx'::regclass"
    ) == [(True,)]
    journal = query(db, "SELECT ordinal, state FROM dbgate.statements ORDER BY ordinal")
    assert journal == [(i, "applied") for i in range(1, 9)]
    assert query(db, "SELECT success, statements_applied FROM dbgate.migrations") == [(True, 8)]


# -- crashes at every point ------------------------------------------------------------------


def test_the_census_sees_every_kind_of_point(db: Endpoint, tmp_path: Path) -> None:
    migrations = release(tmp_path / "m", {"1_step.sql": STEPWISE})
    points = census(db, migrations)
    assert {p for p, _, _ in points} == set(POINTS) - {"migration:commit"}
    assert ("statement:marked", "1_step", 3) in points  # the concurrent index runs alone


def test_a_crash_at_any_point_then_a_rerun_applies_each_statement_once(
    db: Endpoint, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    migrations = release(tmp_path / "m", {"1_step.sql": STEPWISE})
    template = f"{db.dbname}_tpl"
    _copy(db, db.dbname, template)
    request.addfinalizer(lambda: _drop(db, template))
    scratch = db.with_dbname(f"{db.dbname}_census")
    _copy(db, template, scratch.dbname)
    points = census(scratch, migrations)
    _drop(db, scratch.dbname)
    assert len(points) >= 25
    for point in points:
        target = db.with_dbname(f"{db.dbname}_k")
        _copy(db, template, target.dbname)
        try:
            assert run(target, migrations, crash_at=point) is None, point
            outcomes = run(target, migrations)
            assert outcomes is not None, point
            assert outcomes[0].ok, (point, outcomes[0].describe_failure(str))
            assert_applied_once(target)
        finally:
            _drop(db, target.dbname)


def _copy(db: Endpoint, template: str, name: str) -> None:
    _drop(db, name)
    with connect(db.with_dbname("postgres"), "test", "test") as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )


def _drop(db: Endpoint, name: str) -> None:
    with connect(db.with_dbname("postgres"), "test", "test") as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def test_a_crash_inside_one_transaction_leaves_nothing_and_the_rerun_applies_it(
    db: Endpoint, tmp_path: Path
) -> None:
    migrations = release(
        tmp_path / "m",
        {"1_tx.sql": "UPDATE accounts SET visits = visits + 1;\nINSERT INTO applied VALUES ('x');"},
    )
    assert run(db, migrations, crash_at=("migration:commit", "1_tx", None)) is None
    assert query(db, "SELECT count(*) FROM applied") == [(0,)]
    assert query(db, "SELECT count(*) FROM dbgate.migrations") == [(0,)]
    assert run(db, migrations) is not None
    assert query(db, "SELECT DISTINCT visits FROM accounts") == [(1,)]


# -- in doubt --------------------------------------------------------------------------------

BACKFILL = """-- dbgate: no-transaction
INSERT INTO applied VALUES ('before');
DO $$ BEGIN
    INSERT INTO applied VALUES ('batch 1'); COMMIT; INSERT INTO applied VALUES ('batch 2');
END $$;
INSERT INTO applied VALUES ('after');
"""


@pytest.mark.parametrize(
    ("crash", "took_effect"), [("statement:marked", False), ("statement:done", True)]
)
def test_a_backfill_that_commits_as_it_goes_stops_in_doubt_until_a_person_settles_it(
    db: Endpoint, tmp_path: Path, crash: str, took_effect: bool
) -> None:
    migrations = release(tmp_path / "m", {"1_backfill.sql": BACKFILL})
    assert run(db, migrations, crash_at=(crash, "1_backfill", 2)) is None
    stopped = run(db, migrations)
    assert stopped is not None
    (outcome,) = stopped
    assert outcome.status is Status.FAILED and outcome.failure is not None
    assert outcome.failure.cause is Cause.IN_DOUBT
    message = outcome.describe_failure(lambda m: m.path.name)
    assert message.startswith(
        "1_backfill.sql:3: statement 2 (line 3) may or may not have taken effect"
    )
    assert "it COMMITs as it goes" in message
    took, did_not = resolution_sql("1", 2)
    assert took in message and did_not in message
    assert "statement 1 of 3 is applied and recorded in dbgate.statements" in message
    tags = sorted(r[0] for r in query(db, "SELECT tag FROM applied"))
    assert tags == (["batch 1", "batch 2", "before"] if took_effect else ["before"])
    # The person looks, finds what the crash left, and records it.
    with session(db) as conn:
        conn.execute(took if took_effect else did_not)
    assert run(db, migrations) is not None
    assert sorted(r[0] for r in query(db, "SELECT tag FROM applied")) == [
        "after",
        "batch 1",
        "batch 2",
        "before",
    ]


@pytest.mark.parametrize(
    ("leave", "settled"),
    [
        ("CREATE INDEX accounts_n_idx ON accounts (n)", "is there and valid: recorded as applied"),
        (None, "is not there: running it again"),
        ("invalid", "is there but INVALID"),
    ],
)
def test_an_index_left_in_doubt_is_settled_from_the_catalog(
    db: Endpoint, tmp_path: Path, leave: str | None, settled: str
) -> None:
    migrations = release(
        tmp_path / "m",
        {"1_idx.sql": "CREATE INDEX CONCURRENTLY accounts_n_idx ON accounts (n);\nSELECT 1;"},
    )
    assert run(db, migrations, crash_at=("statement:marked", "1_idx", 1)) is None
    with session(db) as conn:
        if leave == "invalid":  # what a build cut short leaves
            conn.execute("CREATE INDEX accounts_n_idx ON accounts (n)")
            conn.execute(
                "UPDATE pg_index SET indisvalid = false"
                " WHERE indexrelid = 'accounts_n_idx'::regclass"
            )
        elif leave:
            conn.execute(leave)
    outcomes = run(db, migrations)
    assert outcomes is not None
    (outcome,) = outcomes
    assert outcome.status is Status.APPLIED
    assert any(settled in note for note in outcome.notes), outcome.notes
    assert query(
        db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'accounts_n_idx'::regclass"
    ) == [(True,)]


# -- the journal against the file ------------------------------------------------------------


def test_statements_applied_earlier_must_not_change_but_the_rest_may(
    db: Endpoint, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    text = (
        "-- dbgate: no-transaction\n"
        "INSERT INTO applied VALUES ('1');\nINSERT INTO applied VALUES ('2');\n"
    )
    migrations = release(folder, {"1_two.sql": text})
    assert run(db, migrations, crash_at=("statement:start", "1_two", 2)) is None
    # Statement 2, not applied yet, may be fixed; statement 1 may not.
    fixed = release(folder, {"1_two.sql": text.replace("'2'", "'2 fixed'")})
    edited = release(tmp_path / "e", {"1_two.sql": text.replace("'1'", "'1 edited'")})
    stopped = run(db, edited)
    assert stopped is not None and stopped[0].failure is not None
    assert stopped[0].failure.cause is Cause.JOURNAL
    assert "an earlier run applied statement 1 of this file" in stopped[0].describe_failure(str)
    assert run(db, fixed) is not None
    assert sorted(r[0] for r in query(db, "SELECT tag FROM applied")) == ["1", "2 fixed"]


def test_a_file_that_ran_partly_cannot_turn_into_one_transaction(
    db: Endpoint, tmp_path: Path
) -> None:
    text = "INSERT INTO applied VALUES ('1');\nINSERT INTO applied VALUES ('2');\n"
    migrations = release(tmp_path / "a", {"1_two.sql": "-- dbgate: no-transaction\n" + text})
    assert run(db, migrations, crash_at=("statement:start", "1_two", 2)) is None
    stopped = run(db, release(tmp_path / "b", {"1_two.sql": "\n" + text}))
    assert stopped is not None and stopped[0].failure is not None
    assert stopped[0].failure.cause is Cause.JOURNAL
    assert "now runs in one transaction, which would run them again" in stopped[0].failure.error
    assert query(db, "SELECT count(*) FROM applied") == [(1,)]


# -- tracking failures and retries -----------------------------------------------------------


def hold(db: Endpoint, lock: str, seconds: float) -> Callable[[], None]:
    """Another session holds ``lock`` (a LOCK TABLE …) for ``seconds``; returns a joiner."""
    conn = session(db)
    conn.execute("BEGIN")
    conn.execute(lock)
    timer = threading.Timer(seconds, conn.close)
    timer.start()
    return timer.join


POLICY = Policy(lock_timeout_ms=100, retries=3, retry_wait_s=0.05)


@pytest.mark.parametrize(
    ("text", "table", "state"),
    [
        (
            "UPDATE accounts SET visits = visits + 1;\nINSERT INTO applied VALUES ('x');",
            "dbgate.migrations",
            "the migration was rolled back with its row: none of its statements is applied",
        ),
        (
            "-- dbgate: no-transaction\nUPDATE accounts SET visits = visits + 1;\n"
            "INSERT INTO applied VALUES ('x');",
            "dbgate.statements",
            "statement 1 was rolled back with its journal row: it is not applied",
        ),
    ],
)
def test_a_tracking_table_in_the_way_fails_on_its_own_and_applies_nothing(
    db: Endpoint, tmp_path: Path, text: str, table: str, state: str
) -> None:
    migrations = release(tmp_path / "m", {"1_m.sql": text, "2_later.sql": "SELECT 1;"})
    with session(db) as conn:
        Runner(conn, [], lambda _: None, "test").prepare()  # the tables exist, as on production
    done = hold(db, f"LOCK TABLE {table} IN SHARE MODE", 2.0)
    outcomes = run(db, migrations, policy=POLICY)
    done()
    assert outcomes is not None
    first, later = outcomes
    assert first.status is Status.FAILED and first.failure is not None
    assert first.failure.cause is Cause.TRACKING
    message = first.describe_failure(lambda m: m.path.name)
    assert f"could not write the tracking table {table}" in message
    assert "canceling statement due to lock timeout" in message
    assert state in message
    assert later.status is Status.NOT_APPLIED
    assert query(db, "SELECT DISTINCT visits FROM accounts") == [(0,)]
    assert run(db, migrations, policy=POLICY) is not None  # the lock gone, it applies once
    assert query(db, "SELECT DISTINCT visits FROM accounts") == [(1,)]


def test_a_lock_timeout_retries_only_the_refused_statement(db: Endpoint, tmp_path: Path) -> None:
    migrations = release(
        tmp_path / "m",
        {
            "1_m.sql": "-- dbgate: no-transaction\nUPDATE accounts SET visits = visits + 1;\n"
            "INSERT INTO applied VALUES ('x');"
        },
    )
    done = hold(db, "LOCK TABLE applied IN ACCESS EXCLUSIVE MODE", 0.4)
    outcomes = run(db, migrations, policy=Policy(lock_timeout_ms=100, retries=10, retry_wait_s=0.1))
    done()
    assert outcomes is not None and outcomes[0].status is Status.APPLIED
    assert outcomes[0].attempts  # it did time out, at least once
    assert query(db, "SELECT DISTINCT visits FROM accounts") == [(1,)]
    assert query(db, "SELECT count(*) FROM applied") == [(1,)]


def test_a_statement_that_refuses_a_transaction_block_runs_alone(
    db: Endpoint, tmp_path: Path
) -> None:
    # DISCARD ALL is not on the parser's list of statements that must run alone.
    migrations = release(
        tmp_path / "m",
        {"1_m.sql": "-- dbgate: no-transaction\nDISCARD ALL;\nINSERT INTO applied VALUES ('x');"},
    )
    outcomes = run(db, migrations)
    assert outcomes is not None and outcomes[0].status is Status.APPLIED
    assert query(db, "SELECT ordinal, state FROM dbgate.statements ORDER BY 1") == [
        (1, "applied"),
        (2, "applied"),
    ]


def test_a_rolled_back_savepoint_takes_its_journal_rows_with_it(
    db: Endpoint, tmp_path: Path
) -> None:
    migrations = release(
        tmp_path / "m",
        {
            "1_m.sql": "BEGIN;\nINSERT INTO applied VALUES ('kept');\nSAVEPOINT s;\n"
            "INSERT INTO applied VALUES ('undone');\nROLLBACK TO SAVEPOINT s;\nCOMMIT;\n"
            "INSERT INTO applied VALUES ('last');"
        },
    )
    assert run(db, migrations, crash_at=("statement:start", "1_m", 7)) is None
    # The block committed without the rows written after the savepoint (its own and statement
    # 4's, undone with them); the rerun goes on after the last row, at 7.
    journal = query(db, "SELECT ordinal FROM dbgate.statements ORDER BY 1")
    assert [r[0] for r in journal] == [1, 2, 5, 6]
    assert run(db, migrations) is not None
    assert sorted(r[0] for r in query(db, "SELECT tag FROM applied")) == ["kept", "last"]


def test_an_invalid_index_that_cannot_be_dropped_stops_with_the_drop_to_run(
    db: Endpoint, tmp_path: Path
) -> None:
    migrations = release(
        tmp_path / "m", {"1_idx.sql": "CREATE INDEX CONCURRENTLY accounts_n_idx ON accounts (n);"}
    )
    assert run(db, migrations, crash_at=("statement:marked", "1_idx", 1)) is None
    with session(db) as conn:  # what a build cut short leaves
        conn.execute("CREATE INDEX accounts_n_idx ON accounts (n)")
        conn.execute(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'accounts_n_idx'::regclass"
        )
    done = hold(db, "LOCK TABLE accounts IN ACCESS SHARE MODE", 2.0)  # a long report
    outcomes = run(db, migrations, policy=POLICY)
    done()
    assert outcomes is not None and outcomes[0].failure is not None
    assert outcomes[0].failure.cause is Cause.CLEANUP
    message = outcomes[0].describe_failure(lambda m: m.path.name)
    assert "left the index accounts_n_idx INVALID when an earlier run stopped" in message
    assert "what to do: run DROP INDEX CONCURRENTLY IF EXISTS" in message
    assert run(db, migrations) is not None  # nothing in the way now: dropped and built again
    assert query(
        db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'accounts_n_idx'::regclass"
    ) == [(True,)]


# -- what the break test found -----------------------------------------------------------------

PROCEDURE = """CREATE PROCEDURE batch(lo int, hi int) LANGUAGE plpgsql AS $$
BEGIN
    UPDATE accounts SET n = n + 1 WHERE id BETWEEN lo AND hi;
    COMMIT;
END $$;
"""


def test_a_backfill_that_calls_a_committing_procedure_is_never_retried_whole(
    db: Endpoint, tmp_path: Path
) -> None:
    with session(db) as conn:
        conn.execute(PROCEDURE)
    migrations = release(
        tmp_path / "m",
        {
            "1_backfill.sql": "-- dbgate: no-transaction\n"
            "DO $$ BEGIN FOR i IN 0..1 LOOP CALL batch(i * 50 + 1, i * 50 + 50); END LOOP; END $$;"
        },
    )
    assert migrations[0].statements[0].commits_itself
    done = hold(db, "SELECT * FROM accounts WHERE id = 75 FOR UPDATE", 1.5)  # in batch 2's way
    outcomes = run(db, migrations, policy=Policy(lock_timeout_ms=200, retries=5, retry_wait_s=1))
    done()
    assert outcomes is not None and outcomes[0].failure is not None
    assert outcomes[0].failure.cause is Cause.IN_DOUBT
    assert not outcomes[0].attempts  # not retried: batch 1 had committed
    assert query(db, "SELECT max(n) FROM accounts") == [(1,)]  # never twice


@pytest.mark.parametrize("crash", ["statement:recorded", "statement:start"])
def test_a_resumed_file_gets_back_the_session_its_earlier_statements_set(
    db: Endpoint, tmp_path: Path, crash: str
) -> None:
    with session(db) as conn:
        conn.execute("CREATE SCHEMA app; CREATE TABLE app.things (id int)")
    migrations = release(
        tmp_path / "m",
        {
            "1_app.sql": "-- dbgate: no-transaction\nSET search_path = app, public;\n"
            "CREATE TABLE widgets (id int);\n"
            "CREATE INDEX CONCURRENTLY things_id_idx ON things (id);\n"
            "INSERT INTO things VALUES (1);"
        },
    )
    at = 1 if crash == "statement:recorded" else 3
    assert run(db, migrations, crash_at=(crash, "1_app", at)) is None
    assert run(db, migrations) is not None
    assert query(db, "SELECT to_regclass('app.widgets') IS NOT NULL") == [(True,)]
    assert query(db, "SELECT to_regclass('public.widgets')") == [(None,)]
    assert query(db, "SELECT count(*) FROM app.things") == [(1,)]


def test_an_index_in_doubt_is_looked_up_with_the_files_search_path(
    db: Endpoint, tmp_path: Path
) -> None:
    with session(db) as conn:
        conn.execute("CREATE SCHEMA app; CREATE TABLE app.things (id int)")
    migrations = release(
        tmp_path / "m",
        {
            "1_app.sql": "-- dbgate: no-transaction\nSET search_path = app, public;\n"
            "CREATE INDEX CONCURRENTLY things_id_idx ON things (id);"
        },
    )
    assert run(db, migrations, crash_at=("statement:done", "1_app", 2)) is None
    outcomes = run(db, migrations)
    assert outcomes is not None and outcomes[0].ok, outcomes and outcomes[0].failure
    assert any("is there and valid: recorded as applied" in n for n in outcomes[0].notes)


def test_each_file_starts_from_the_session_the_gate_opened(db: Endpoint, tmp_path: Path) -> None:
    with session(db) as conn:
        conn.execute("CREATE SCHEMA app")
    migrations = release(
        tmp_path / "m",
        {
            "1_set.sql": "SET search_path = app, public;\nCREATE TABLE a1 (id int);",
            "2_plain.sql": "CREATE TABLE a2 (id int);",
        },
    )
    assert run(db, migrations) is not None  # the same with or without a crash in between
    placed = "SELECT to_regclass('app.a1') IS NOT NULL, to_regclass('public.a2') IS NOT NULL"
    assert query(db, placed) == [(True, True)]


@pytest.mark.parametrize(
    "first",
    [
        {"1_off.sql": "SET lock_timeout = 0;\nSELECT 1;"},
        {"1_off.sql": "-- dbgate: no-transaction\nRESET ALL;\nSELECT 1;"},
        {"1_off.sql": "-- dbgate: no-transaction\nDISCARD ALL;\nSELECT 1;"},
    ],
    ids=["set-0", "reset-all", "discard-all"],
)
def test_a_migration_cannot_switch_off_the_deploys_lock_timeout(
    db: Endpoint, tmp_path: Path, first: dict[str, str]
) -> None:
    migrations = release(
        tmp_path / "m", {**first, "2_alter.sql": "ALTER TABLE accounts ADD z int;"}
    )
    done = hold(db, "LOCK TABLE accounts IN ACCESS SHARE MODE", 3.0)
    started = time.monotonic()
    outcomes = run(db, migrations, policy=Policy(lock_timeout_ms=200, retries=0, retry_wait_s=0))
    waited = time.monotonic() - started
    done()
    assert outcomes is not None
    assert outcomes[1].failure is not None and outcomes[1].failure.sqlstate == "55P03"
    assert waited < 2.5, "the ALTER waited for the blocker instead of timing out"


def test_commit_and_chain_keeps_the_chained_statements_together_after_a_crash(
    db: Endpoint, tmp_path: Path
) -> None:
    migrations = release(
        tmp_path / "m",
        {
            "1_chain.sql": "BEGIN;\nINSERT INTO applied VALUES ('a');\nCOMMIT AND CHAIN;\n"
            "INSERT INTO applied VALUES ('b');\nINSERT INTO applied VALUES ('c');\nCOMMIT;"
        },
    )
    assert run(db, migrations, crash_at=("statement:start", "1_chain", 4)) is None
    assert run(db, migrations, crash_at=("statement:start", "1_chain", 5)) is None
    assert [r[0] for r in query(db, "SELECT tag FROM applied")] == ["a"]  # not 'b' on its own
    assert run(db, migrations) is not None
    assert sorted(r[0] for r in query(db, "SELECT tag FROM applied")) == ["a", "b", "c"]


def test_a_hold_back_whose_predecessors_the_gate_never_recorded_starts_counting_now(
    db: Endpoint, tmp_path: Path
) -> None:
    folder = tmp_path / "prisma"
    for name, text in {
        "20260101000000_old": "SELECT 1;",
        "20260101000100_cleanup": "-- dbgate: hold-back 7d\nDROP TABLE applied;",
    }.items():
        (folder / name).mkdir(parents=True)
        (folder / name / "migration.sql").write_text(text)
    migrations = discover(folder)
    with session(db) as conn:  # Prisma applied the first before the gate was adopted
        PrismaHistory().create(conn)
        conn.execute(
            "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name)"
            " VALUES ('x', %s, now() - interval '1 hour', '20260101000000_old')",
            (migrations[0].checksum,),
        )
    policy = Policy(
        lock_timeout_ms=500,
        retries=0,
        retry_wait_s=0,
        hold_backs={"20260101000100": timedelta(days=7)},
    )
    outcomes = run(db, migrations, policy=policy)
    assert outcomes is not None
    assert outcomes[0].status is Status.ALREADY_APPLIED
    assert outcomes[0].recorded_by == "_prisma_migrations"
    assert outcomes[1].status is Status.HELD_BACK  # not applied at once
    first = query(db, "SELECT since FROM dbgate.holds")
    again = run(db, migrations, policy=policy)
    assert again is not None and again[1].status is Status.HELD_BACK
    assert query(db, "SELECT since FROM dbgate.holds") == first  # the period is not restarted
    assert query(db, "SELECT to_regclass('applied') IS NOT NULL") == [(True,)]


def test_an_unnamed_concurrent_index_is_not_retried_into_a_second_one(
    db: Endpoint, tmp_path: Path
) -> None:
    migrations = release(
        tmp_path / "m", {"1_idx.sql": "CREATE INDEX CONCURRENTLY ON accounts (n);"}
    )
    done = hold(db, "LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE", 1.0)
    outcomes = run(db, migrations, policy=Policy(lock_timeout_ms=200, retries=5, retry_wait_s=0.5))
    done()
    assert outcomes is not None and outcomes[0].status is Status.FAILED
    message = outcomes[0].describe_failure(lambda m: m.path.name)
    assert "an unnamed one cannot be found again by name, so it is not retried" in message
    indexes = query(db, "SELECT count(*) FROM pg_index WHERE indrelid = 'accounts'::regclass")
    assert indexes[0][0] <= 2  # the primary key and at most the one INVALID build
