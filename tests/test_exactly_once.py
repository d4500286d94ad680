"""Production deploys exactly what staging ran, exactly once (issue 13's seven observations).

Each test is a case that went wrong before: a statement applied twice after a crash or a failed
tracking write, SQL staging never ran, a hold-back shortened by configuration, an option that
half-applied a release, a selection that deployed part of one, an unhelpful message about a
killed run's session. Real servers, real pytest runs.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from pytest_dbgate.migrations.runner import Runner
from pytest_dbgate.pg.connections import Endpoint, connect, connection

from .conftest import PROJECTS, Project
from .test_production import RELEASE, applied_versions, columns, deployed, move_back, outcome_of

PLUS = "UPDATE accounts SET email = email || '+';\n"


def emails(prod: Endpoint) -> set[str]:
    """The suffixes the release appended to every account's e-mail (one distinct value)."""
    with connection(prod, "test", "test") as conn:
        rows = conn.execute("SELECT DISTINCT substring(email FROM '[+!]*$') FROM accounts")
        return {str(r[0]) for r in rows.fetchall()}


def release(project: Project, files: dict[str, str]) -> Project:
    folder = project.path / "migrations"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return project


def tracking_tables_exist(prod: Endpoint) -> None:
    """As on a production that has deployed with pytest-dbgate before."""
    with connect(prod, "test", "test") as conn:
        Runner(conn, [], lambda _: None, "test").prepare()


def staged(project: Project, *args: str) -> None:
    result = project.run(*args)
    assert result.ret == 0, result.stdout.str()


# -- 1. a crash mid-file --------------------------------------------------------------------


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_a_run_killed_during_a_statement_resumes_after_what_it_applied(
    deploy_project: Project, deploy_db: Endpoint, signal_name: str
) -> None:
    release(
        deploy_project,
        {"1_slow.sql": "-- dbgate: no-transaction\n" + PLUS + "SELECT pg_sleep(3);\n"},
    )
    shutil.copy(PROJECTS / "crash" / "conftest.py", deploy_project.path / "conftest.py")
    staged(deploy_project)
    # Killed half a second into the sleep, while the server runs it.
    ended = deploy_project.deploy_killed(signal_name, "statement:start 1_slow 2", delay=0.5)
    if signal_name == "SIGKILL":
        assert ended == 9
    else:  # the sleep is cancelled on the server, and the run stops as interrupted
        assert ended == -pytest.ExitCode.INTERRUPTED
    assert emails(deploy_db) == {"+"}
    again = deploy_project.deploy("-rA")
    assert again.ret == 0, again.stdout.str()
    assert "resumed after statement 1 (applied by an earlier run)" in again.stdout.str()
    assert emails(deploy_db) == {"+"}  # not "++"


def test_sigterm_during_a_statement_says_it_stopped_not_that_the_migration_failed(
    deploy_project: Project, deploy_db: Endpoint
) -> None:
    release(deploy_project, {"1_slow.sql": PLUS + "SELECT pg_sleep(3);\n"})
    shutil.copy(PROJECTS / "crash" / "conftest.py", deploy_project.path / "conftest.py")
    staged(deploy_project)
    deploy_project.monkeypatch.setenv("CRASH_AT", "statement:start 1_slow 2")
    deploy_project.monkeypatch.setenv("CRASH_SIGNAL", "SIGTERM")
    deploy_project.monkeypatch.setenv("CRASH_DELAY", "0.5")
    result = deploy_project.pytester.runpytest_subprocess(
        "--dbgate=production", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    text = result.stdout.str() + result.stderr.str()
    assert "SIGTERM received: cancelling the statement in flight, then stopping" in text
    assert "the deploy stopped in 1_slow, whose statement 2 was cancelled and rolled back" in text
    assert "fix the migration" not in text
    assert emails(deploy_db) == {""}  # one transaction: the cancelled file left nothing


# -- 2. a tracking-table write that fails ---------------------------------------------------


@pytest.mark.parametrize(
    ("table", "files"),
    [
        ("dbgate.migrations", {"1_plus.sql": PLUS}),
        ("dbgate.statements", {"1_plus.sql": "-- dbgate: no-transaction\n" + PLUS + "SELECT 1;\n"}),
    ],
)
def test_a_tracking_table_in_the_way_applies_nothing_twice(
    deploy_project: Project, deploy_db: Endpoint, table: str, files: dict[str, str]
) -> None:
    release(deploy_project, {**files, "2_later.sql": "ALTER TABLE events ADD COLUMN later int;\n"})
    staged(deploy_project)
    tracking_tables_exist(deploy_db)
    shutil.copy(PROJECTS / "deploy" / "blocker.py", deploy_project.path / "conftest.py")
    env = deploy_project.monkeypatch
    env.setenv("BLOCK_BEFORE", deployed("1_plus"))
    env.setenv("BLOCK_URL", os.environ["PROD_DATABASE_URL"])
    env.setenv("BLOCK_SQL", f"BEGIN; LOCK TABLE {table} IN SHARE MODE")
    env.setenv("BLOCK_FOR", "5")
    result = deploy_project.deploy(
        "-rA", "--dbgate-lock-timeout=200", "--dbgate-lock-retry-wait=0.1"
    )
    text = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert outcome_of(deploy_project, deployed("1_plus")) == "FAILED"
    assert f"could not write the tracking table {table}" in text
    assert "Traceback" not in text and "LockNotAvailable" not in text
    assert outcome_of(deploy_project, deployed("2_later")) == "SKIPPED"
    assert emails(deploy_db) == {""}  # rolled back with its record, never run again
    assert "later" not in columns(deploy_db, "events")
    env.delenv("BLOCK_BEFORE")
    again = deploy_project.deploy()
    assert again.ret == 0, again.stdout.str()
    assert emails(deploy_db) == {"+"}


# -- 3. what staging ran, not another reading of the files ------------------------------------

DBMATE = """-- migrate:up
ALTER TABLE events ADD COLUMN note text;

-- migrate:down
DROP TABLE reports;
"""


def test_a_layout_override_cannot_deploy_what_staging_never_ran(
    deploy_project: Project, deploy_db: Endpoint
) -> None:
    release(deploy_project, {"20260101000000_add_note.sql": DBMATE})
    staged(deploy_project)  # read as dbmate: only the up section
    record = json.loads((deploy_project.path / ".dbgate" / "gate-record.json").read_text())
    assert record["migrations"][0]["layout"] == "dbmate"
    assert len(record["migrations"][0]["statements"]) == 1
    result = deploy_project.deploy("-rA", "--dbgate-layout=flat")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert outcome_of(deploy_project, "dbgate::preflight::record_matches_migrations") == "FAILED"
    text = result.stdout.str()
    assert "staging read the folder as dbmate, this run as flat" in text
    assert "it would run other statements than staging ran" in text
    assert "reports" in {t for (t,) in _tables(deploy_db)}  # the down section never ran
    assert applied_versions(deploy_db) == []
    good = deploy_project.deploy()
    assert good.ret == 0, good.stdout.str()
    assert "note" in columns(deploy_db, "events") and "reports" in {
        t for (t,) in _tables(deploy_db)
    }


def test_a_statement_changed_without_changing_the_file_is_named(
    deploy_project: Project, deploy_db: Endpoint
) -> None:
    staged(deploy_project)
    path = deploy_project.path / ".dbgate" / "gate-record.json"
    document = json.loads(path.read_text())
    document["migrations"][0]["statements"][1] = "0" * 16  # as if another parser had read it
    path.write_text(json.dumps(document))
    result = deploy_project.deploy("-rA")
    assert f"migrations/{RELEASE[0]}.sql: statement 2 (line 2) is not the one staging ran" in (
        result.stdout.str()
    )
    assert applied_versions(deploy_db) == []


def _tables(prod: Endpoint) -> list[tuple[str]]:
    with connection(prod, "test", "test") as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return [(str(r[0]),) for r in rows.fetchall()]


# -- 4. hold-backs only ever lengthen --------------------------------------------------------

CLEANUP = RELEASE[2]
CLEANUP_VERSION = CLEANUP.split("_")[0]


@pytest.mark.parametrize("period", ["0h", "1h", "6d"])
def test_configuration_cannot_shorten_a_hold_back(
    deploy_project: Project, deploy_db: Endpoint, period: str
) -> None:
    staged(deploy_project)
    assert deploy_project.deploy().ret == 0  # the cleanup is held back 7d
    result = deploy_project.deploy(f"--dbgate-holdbacks={CLEANUP_VERSION}={period}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stderr.str()
    if period == "0h":
        assert "a period like 12h, 3d or 1w (hours, days, weeks) of 1h to" in text
    else:
        assert "holds itself back 7d: configuration may add or lengthen a hold-back" in text
        assert f"--dbgate-release-early={CLEANUP_VERSION}" in text
    assert "at" in columns(deploy_db, "events")


def test_a_longer_hold_back_from_configuration_holds_it_longer(
    deploy_project: Project, deploy_db: Endpoint
) -> None:
    staged(deploy_project)
    assert deploy_project.deploy().ret == 0
    move_back(deploy_db, 8)  # eight days later: the file's 7d are over, the configured 14d not
    result = deploy_project.deploy("-rA", f"--dbgate-holdbacks={CLEANUP_VERSION}=14d")
    assert result.ret == 0, result.stdout.str()
    assert outcome_of(deploy_project, deployed(CLEANUP)) == "SKIPPED"
    assert "14d after the migrations before it were applied" in result.stdout.str()
    assert "at" in columns(deploy_db, "events")


def test_releasing_a_hold_back_early_takes_an_option_that_says_so(
    deploy_project: Project, deploy_db: Endpoint
) -> None:
    staged(deploy_project)
    assert deploy_project.deploy().ret == 0
    result = deploy_project.deploy("-rA", f"--dbgate-release-early={CLEANUP}")
    assert result.ret == 0, result.stdout.str()
    text = result.stdout.str()
    assert "released early by --dbgate-release-early" in text
    assert "released early on purpose" in text
    assert "at" not in columns(deploy_db, "events")
    with connection(deploy_db, "test", "test") as conn:
        row = conn.execute(
            "SELECT applied_by FROM dbgate.migrations WHERE version = %s", (CLEANUP_VERSION,)
        ).fetchone()
    assert row is not None and "released early (--dbgate-release-early)" in str(row[0])
    results = json.loads((deploy_project.path / ".dbgate" / "production-results.json").read_text())
    item = next(i for i in results["items"] if i["nodeid"] == deployed(CLEANUP))
    assert item["figures"]["released_early"] is True


def test_release_early_must_name_a_held_back_migration(deploy_project: Project) -> None:
    result = deploy_project.deploy(f"--dbgate-release-early={RELEASE[0]}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"names {RELEASE[0]}, which is not held back" in result.stderr.str()
    staging = deploy_project.run(f"--dbgate-release-early={CLEANUP}")
    assert staging.ret == pytest.ExitCode.USAGE_ERROR
    assert "only means something to --dbgate=production" in staging.stderr.str()


# -- 5. options checked before anything starts -----------------------------------------------


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("--dbgate-lock-timeout=3000000000", "milliseconds from 1 to 86,400,000"),
        ("--dbgate-lock-timeout=inf", "milliseconds from 1 to 86,400,000"),
        ("--dbgate-lock-timeout=0", "milliseconds from 1 to 86,400,000"),
        ("--dbgate-lock-retries=1000", "retries from 0 to 100"),
        ("--dbgate-lock-retry-wait=nan", "seconds from 0 to 60"),
        ("--dbgate-record-max-age=0h", "of 1h to"),
    ],
)
def test_an_out_of_range_option_stops_before_anything_is_applied(
    deploy_project: Project, deploy_db: Endpoint, option: str, expected: str
) -> None:
    staged(deploy_project)
    result = deploy_project.deploy(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert expected in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    with connection(deploy_db, "test", "test") as conn:
        assert conn.execute("SELECT to_regclass('dbgate.migrations')").fetchone() == (None,)


def test_zero_workload_runs_is_refused_not_turned_into_one(deploy_project: Project) -> None:
    result = deploy_project.run("--dbgate-workload-runs=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "rounds from 3 to 10,000" in result.stderr.str()


# -- 6. all or nothing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "selection",
    [
        ("--deselect", deployed(RELEASE[1])),
        ("-k", "not postdeploy"),
        ("-m", "not dbgate"),
    ],
)
def test_production_refuses_a_selection_that_leaves_out_part_of_the_deploy(
    deploy_project: Project, deploy_db: Endpoint, selection: tuple[str, str]
) -> None:
    staged(deploy_project)
    result = deploy_project.deploy(*selection)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "runs all of its checklist or nothing, but this selection leaves out" in (
        result.stderr.str()
    )
    assert applied_versions(deploy_db) == []
    assert "note" not in columns(deploy_db, "events")


APP_TEST = """
def test_events_are_there(dbgate_db):
    assert dbgate_db.execute("SELECT count(*) FROM events").fetchone()[0] > 0

def test_accounts_are_there(dbgate_db):
    assert dbgate_db.execute("SELECT count(*) FROM accounts").fetchone()[0] > 0
"""


@pytest.mark.parametrize(
    ("selection", "said"),
    [
        (
            ("--deselect", "test_app.py::test_accounts_are_there[after]"),
            "test_app.py::test_accounts_are_there[after]: did not run",
        ),
        (("--ignore=test_app.py",), "test_app.py: not collected (--ignore for this run)"),
        (("-k", "not constraints"), "dbgate::schema::constraints_validated: did not run"),
    ],
)
def test_a_partial_staging_run_writes_no_record_and_says_why(
    deploy_project: Project, selection: tuple[str, ...], said: str
) -> None:
    deploy_project.pytester.makepyfile(test_app=APP_TEST)
    result = deploy_project.run("-rA", *selection)
    assert result.ret == 0, "what ran passed"
    assert outcome_of(deploy_project, "dbgate::verdict::gate_record", "staging") == "SKIPPED"
    assert said in result.stdout.str()
    assert not (deploy_project.path / ".dbgate" / "gate-record.json").exists()
    whole = deploy_project.run()
    assert whole.ret == 0, whole.stdout.str()
    assert (deploy_project.path / ".dbgate" / "gate-record.json").exists()


def test_an_ignore_the_project_configures_is_its_own_scope(deploy_project: Project) -> None:
    deploy_project.pytester.makepyfile(test_app=APP_TEST, test_slow_e2e="def test_x(): pass\n")
    deploy_project.ini(addopts="--ignore=test_slow_e2e.py")
    result = deploy_project.run()
    assert result.ret == 0, result.stdout.str()
    assert (deploy_project.path / ".dbgate" / "gate-record.json").exists()


# -- 7. a killed run's session ---------------------------------------------------------------


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("alive", [False, True])
def test_the_gate_lock_message_tells_a_killed_run_from_a_live_one(
    deploy_project: Project, deploy_db: Endpoint, alive: bool
) -> None:
    staged(deploy_project)
    pid = os.getpid() if alive else dead_pid()
    holder = connect(
        deploy_db, "test", "test", purpose=f"deploy, pid {pid} on {socket.gethostname()}"
    )
    try:
        holder.execute(
            "SELECT pg_advisory_lock(hashtext('pytest-dbgate'), hashtext(%s))",
            (f"production:{deploy_db.dbname}",),
        )
        server_pid = holder.info.backend_pid
        result = deploy_project.deploy("-rA")
    finally:
        holder.close()
    text = result.stdout.str()
    assert outcome_of(deploy_project, "dbgate::preflight::production_reachable") == "FAILED"
    assert "another pytest-dbgate run holds the gate lock on" in text
    assert f'server process {server_pid} ("pytest-dbgate deploy, pid {pid} on' in text
    if alive:
        assert f"process {pid} on this machine, is still running: that run is alive" in text
    else:
        assert f"process {pid} on this machine, is no longer running" in text
        assert "this session is what a killed run left behind" in text
    assert f"SELECT pg_terminate_backend({server_pid})" in text
    assert applied_versions(deploy_db) == []


# -- what the break test found -------------------------------------------------------------


@pytest.mark.parametrize("unlock", ["DISCARD ALL", "SELECT pg_advisory_unlock_all()"])
def test_a_migration_that_lets_go_of_its_locks_does_not_let_a_second_run_in(
    deploy_project: Project, deploy_db: Endpoint, unlock: str
) -> None:
    release(
        deploy_project,
        {
            "1_unlock.sql": f"-- dbgate: no-transaction\n{unlock};\n"
            + PLUS
            + "SELECT pg_sleep(3);\nUPDATE accounts SET email = email || '!';\n"
        },
    )
    shutil.copy(PROJECTS / "crash" / "conftest.py", deploy_project.path / "conftest.py")
    staged(deploy_project)
    pid = os.fork()
    if pid == 0:  # the first run, left alone
        status = 99
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            status = int(deploy_project.deploy().ret)
        finally:
            os._exit(status)
    # The second run starts while the first sleeps, after its statement let go of its locks.
    deadline = time.monotonic() + 10
    while emails(deploy_db) != {"+"} and time.monotonic() < deadline:
        time.sleep(0.1)
    second = deploy_project.deploy("-rA")
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    # The second run waited for the first's lock (up to 5 s) instead of joining in, then found
    # the migration applied; before, it resumed the first run's file beside it: "+!!".
    assert second.ret == 0, second.stdout.str()
    second.stdout.fnmatch_lines(["deploy *applied[[]1_unlock[]] *passed *already applied"])
    assert emails(deploy_db) == {"+!"}  # each statement once


def test_sigterm_during_a_waiting_concurrent_index_build_leaves_it_clean(
    deploy_project: Project, deploy_db: Endpoint
) -> None:
    index = "CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind);\n"
    release(deploy_project, {"1_idx.sql": index})
    shutil.copy(PROJECTS / "crash" / "conftest.py", deploy_project.path / "conftest.py")
    staged(deploy_project)
    deploy_project.monkeypatch.setenv("PYTEST_ADDOPTS", "--dbgate-lock-timeout=8000")
    writer = connect(deploy_db, "test", "test")  # the build waits for this transaction
    writer.execute("BEGIN")
    writer.execute("UPDATE events SET kind = kind WHERE id = 1")
    threading.Timer(2.0, writer.close).start()  # … which ends a second after the SIGTERM
    ended = deploy_project.deploy_killed("SIGTERM", "statement:marked 1_idx 1", delay=1.0)
    assert ended == -pytest.ExitCode.INTERRUPTED
    with connection(deploy_db, "test", "test") as conn:
        left = conn.execute("SELECT to_regclass('events_kind_idx')").fetchone()
    assert left == (None,)  # the cancelled build's INVALID index was dropped
    again = deploy_project.deploy()
    assert again.ret == 0, again.stdout.str()


DBMATE_HELD = """-- dbgate: hold-back 7d
-- The old application still reads old_events: drop it a week after the release.
-- migrate:up
DROP VIEW old_events;

-- migrate:down
CREATE VIEW old_events AS SELECT id, at FROM events;
"""


def test_a_dbmate_hold_back_above_migrate_up_is_the_files(
    deploy_project: Project, deploy_db: Endpoint
) -> None:
    with connection(deploy_db, "test", "test") as conn:
        conn.execute("CREATE VIEW old_events AS SELECT id, at FROM events")
    release(
        deploy_project,
        {
            "20260101000000_add_note.sql": DBMATE,
            "20260101000200_drop_old_events.sql": DBMATE_HELD,
        },
    )
    staged(deploy_project)
    record = json.loads((deploy_project.path / ".dbgate" / "gate-record.json").read_text())
    assert record["migrations"][1]["hold_back"] == "7d"
    assert deploy_project.deploy().ret == 0
    with connection(deploy_db, "test", "test") as conn:
        views = conn.execute("SELECT viewname FROM pg_views WHERE schemaname = 'public'")
        assert views.fetchall() == [("old_events",)]


def test_release_early_cannot_sit_in_the_ini_addopts(deploy_project: Project) -> None:
    staged(deploy_project)
    deploy_project.ini(addopts=f"--dbgate-release-early={CLEANUP}")
    result = deploy_project.deploy()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--dbgate-release-early is in the ini file's addopts" in result.stderr.str()


@pytest.mark.parametrize(
    "head",
    [
        "pytest.importorskip('no_such_driver')",
        "pytest.skip('no driver here', allow_module_level=True)",
    ],
)
def test_a_test_module_of_the_gate_skipped_whole_withholds_the_record(
    deploy_project: Project, head: str
) -> None:
    deploy_project.pytester.makepyfile(test_app=f"import pytest\n{head}\n{APP_TEST}")
    result = deploy_project.run("-rs")
    assert "test_app.py (skipped whole): not collected" in result.stdout.str()
    assert not (deploy_project.path / ".dbgate" / "gate-record.json").exists()


def test_a_skipped_phased_test_withholds_the_record(deploy_project: Project) -> None:
    deploy_project.pytester.makepyfile(
        test_app="import pytest\n\ndef test_later(dbgate_db):\n    pytest.skip('not yet')\n"
    )
    result = deploy_project.run("-rs")
    assert "test_app.py::test_later[before]: skipped" in result.stdout.str()
    assert not (deploy_project.path / ".dbgate" / "gate-record.json").exists()
