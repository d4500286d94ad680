"""The lock gate on real servers: inventory, blocked traffic, blockers, verdicts, cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from pytest_dbgate.migrations.parse import discover
from pytest_dbgate.observe.lockmodes import blocks, sql_mode
from pytest_dbgate.observe.relations import touched_relations
from pytest_dbgate.observe.remeasure import Measure, median
from pytest_dbgate.observe.timeline import HeldLock, LockReport
from pytest_dbgate.pg.connections import Endpoint, connection
from pytest_dbgate.pg.janitor import owner

from .conftest import PROJECTS, REPO, Project, example, outcomes, url

LOCKS = PROJECTS / "locks"


@pytest.mark.parametrize(
    ("mode", "blocked"),
    [
        ("AccessShareLock", "nothing"),
        ("RowShareLock", "nothing"),
        ("RowExclusiveLock", "nothing"),
        ("ShareUpdateExclusiveLock", "nothing"),
        ("ShareLock", "writes"),
        ("ShareRowExclusiveLock", "writes"),
        ("ExclusiveLock", "writes"),
        ("AccessExclusiveLock", "reads and writes"),
    ],
)
def test_each_mode_is_classified_by_what_it_blocks(mode: str, blocked: str) -> None:
    assert blocks(mode) == blocked


def test_modes_are_spelt_as_sql() -> None:
    assert sql_mode("ShareRowExclusiveLock") == "SHARE ROW EXCLUSIVE"
    assert sql_mode("AccessExclusiveLock") == "ACCESS EXCLUSIVE"


def test_touched_tables_include_what_do_blocks_and_references_name() -> None:
    by_name = {m.name: m for m in discover(REPO / "migrations")}
    assert touched_relations(by_name["backfill_recipes_category_id"]) == [
        '"recipe_categories"',
        '"recipes"',
    ]
    fk = touched_relations(by_name["fix_recipe_category_fields_fk"])
    assert '"recipes"' in fk and '"recipe_categories"' in fk


def test_touched_tables_are_named_as_the_sql_spells_them(tmp_path: Path) -> None:
    (tmp_path / "1_m.sql").write_text(
        'ALTER TABLE "Document" ADD COLUMN "Title2" text;\n'
        'UPDATE app."My Table" SET n = 1;\n'
        'INSERT INTO document SELECT * FROM "Qu""ote";\n'
    )
    (migration,) = discover(tmp_path)
    assert touched_relations(migration) == [
        '"Document"',
        '"app"."My Table"',
        '"document"',
        '"Qu""ote"',
    ]


def test_a_long_lock_that_blocks_writes_fails_with_table_mode_and_duration(
    locks_project: Project,
) -> None:
    result = locks_project.migrations(LOCKS / "held").run("--junitxml=gate.xml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes(result, failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*_ migrate: locks[[]1_hold_share[]] _*",
            "migrations/1_hold_share.sql blocked the application for up to 1* ms (limit 500 ms) "
            "and held SHARE on accounts for 1* ms (limit 1000 ms)",
            "  line 2: LOCK TABLE accounts IN SHARE MODE",
            "    held SHARE on accounts 1* ms",
            "    fix: the locks are held until the file's transaction commits*",
            "  traffic that waited: accounts (1 write, longest 1* ms)",
        ]
    )
    xml = (locks_project.path / "gate.xml").read_text()
    assert 'name="locks" value="accounts SHARE 1' in xml
    assert 'name="blocked_probes" value="1"' in xml


@pytest.mark.parametrize(
    "release",
    [
        "brief",  # ACCESS EXCLUSIVE, but for 0.1 s
        "empty_table",  # 1.2 s, on a table nobody has rows in
        "share_update",  # 1.2 s, in a mode that blocks neither reads nor writes
    ],
)
def test_harmless_locks_pass(locks_project: Project, release: str) -> None:
    result = locks_project.migrations(LOCKS / release).run()
    assert result.ret == 0, result.stdout.str()


def test_traffic_blocked_on_row_locks_fails_and_says_batches(locks_project: Project) -> None:
    result = locks_project.migrations(LOCKS / "row_locks").run()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "migrations/1_update_everything.sql blocked the application for up to * ms*",
            "  traffic that waited: accounts (* write*, longest * ms)",
            "    they waited on row locks; fix: do it in batches, each committed on its own*",
        ]
    )


LEAKY_TEST = """
import threading

import psycopg
import pytest

@pytest.mark.dbgate_phase("before")
def test_leaves_a_transaction_open(dbgate_url):
    conn = psycopg.connect(dbgate_url, application_name="leaky app")
    conn.execute("SELECT count(*) FROM accounts")  # and never commits: idle in transaction
    threading.Timer(2.5, conn.close).start()
"""


def test_a_session_that_blocks_the_migration_is_named(locks_project: Project) -> None:
    locks_project.pytester.makepyfile(test_leaky=LEAKY_TEST)
    result = locks_project.migrations(LOCKS / "blocked_by_session").run("--junitxml=gate.xml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "migrations/1_add_note.sql * and waited * ms for another session",
            "  the migration waited * ms for session * (leaky app, idle in transaction): "
            "SELECT count(*) FROM accounts",
            "    fix: end such sessions (idle in transaction, long transactions) before migrating*",
        ]
    )
    xml = (locks_project.path / "gate.xml").read_text()
    assert "blockers_before" in xml
    assert "leaky app, idle in transaction" in xml


def test_nothing_outlives_a_failed_migration(
    locks_project: Project, staging_server: Endpoint
) -> None:
    before = {t.name for t in threading.enumerate()}
    result = locks_project.migrations(LOCKS / "failing").run()
    result.stdout.fnmatch_lines(["*ERROR: division by zero*"])
    lingering = [t.name for t in threading.enumerate() if t.name.startswith("dbgate-")]
    assert not lingering, lingering
    assert {t.name for t in threading.enumerate()} <= before
    assert _gate_sessions(staging_server) == [], "every session the gate opened is closed"


def _gate_sessions(server: Endpoint) -> list[str]:
    """The gate's sessions still on a server, given a moment to finish disconnecting."""
    deadline = time.monotonic() + 3
    with connection(server, "staging", "test") as conn:
        while True:
            rows = conn.execute(
                "SELECT application_name FROM pg_stat_activity"
                " WHERE application_name LIKE 'pytest-dbgate%' AND pid <> pg_backend_pid()"
            ).fetchall()
            if not rows or time.monotonic() > deadline:
                return [str(r[0]) for r in rows]
            time.sleep(0.1)


def test_a_staging_role_without_superuser_is_enough(
    locks_project: Project, staging_server: Endpoint, locks_db: Endpoint
) -> None:
    with connection(staging_server, "staging", "test") as conn:
        for database in ("dbgate_locks", "dbgate_locks_snapshot"):  # made by superuser runs
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        conn.execute("DROP ROLE IF EXISTS gate_runner")
        conn.execute(
            "CREATE ROLE gate_runner LOGIN CREATEDB PASSWORD 'runner-pw' IN ROLE pg_monitor"
        )
    try:
        runner = staging_server.replace(user="gate_runner", password="runner-pw")
        locks_project.monkeypatch.setenv("STAGING_DATABASE_URL", url(runner))
        result = locks_project.migrations(LOCKS / "held").run()
        outcomes(result, failed=1, skipped=1)
        result.stdout.fnmatch_lines(["*held SHARE on accounts for 1* ms (limit 1000 ms)"])
        assert "runner-pw" not in result.stdout.str()
    finally:
        with connection(staging_server, "staging", "test") as conn:
            for database in ("dbgate_locks", "dbgate_locks_snapshot"):
                conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            conn.execute("DROP ROLE IF EXISTS gate_runner")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "index_without_concurrently",
            [
                "*20250116090000_index_recipe_descriptions.sql blocked the application for up "
                "to * ms (limit 150 ms) and held SHARE on recipes for * ms (limit 250 ms)",
                "  line 5: CREATE INDEX recipes_description_trgm ON recipes USING gin*",
                "    fix: CREATE INDEX CONCURRENTLY, in a file of its own*",
            ],
        ),
        (
            "volatile_default",
            [
                "*20250116090000_add_recipe_share_token.sql blocked the application for up to "
                "* ms (limit 150 ms) and held ACCESS EXCLUSIVE on recipes for * ms*",
                "  line 6: ALTER TABLE recipes ADD COLUMN share_token uuid NOT NULL DEFAULT*",
                "    fix: add the column without a default (or with a constant one)*",
            ],
        ),
        (
            "fk_revalidated",
            [
                "*20250116090000_restrict_deletes.sql blocked the application for up to * ms "
                "(limit 150 ms)*",
                "  line *: ALTER TABLE recipe_ingredients DROP CONSTRAINT*",
                "    held ACCESS EXCLUSIVE on *recipes * ms*",
                "    fix: ADD CONSTRAINT … FOREIGN KEY … NOT VALID, then VALIDATE CONSTRAINT*",
                "  traffic that waited: *recipes (* reads and writes, longest * ms)*",
            ],
        ),
    ],
)
def test_each_unsafe_example_fails_its_lock_item_at_full_size(
    project: Project,
    full_demo_db: Endpoint,
    staging_server: Endpoint,
    name: str,
    expected: list[str],
) -> None:
    project.monkeypatch.delenv("PGOPTIONS")
    # Limits well under what each example holds on the demo data at full size, and well over
    # what the safe versions hold: how long an unsafe statement takes depends on the machine
    # (on a fast one, revalidating the five keys blocks for about 350 ms, under the default 500).
    project.migrations(example(name)).ini(
        dbgate_max_regression="off", dbgate_max_lock_ms="250", dbgate_max_block_ms="150"
    )
    result = project.against(full_demo_db, staging_server).run("-k", "migrate")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1, passed=1, deselected=result.parseoutcomes()["deselected"])
    result.stdout.fnmatch_lines(["*_ migrate: locks[[]*[]] _*", *expected])


def _postgres_dirs() -> set[str]:
    return {p.name for p in Path("/tmp").glob("dbgate-*")}


def _owner(name: str) -> int | None:
    made_by = owner(Path(tempfile.gettempdir()) / name)
    return made_by[0] if made_by else None


def test_sigterm_stops_everything_the_gate_started(pytester: pytest.Pytester) -> None:
    """A cancelled CI job: the run ends, and no server, thread or session is left behind."""
    (pytester.path / "migrations").mkdir()
    (pytester.path / "migrations" / "1_slow.sql").write_text(
        "LOCK TABLE accounts IN SHARE MODE;\nSELECT pg_sleep(60);\n"
    )
    pytester.makeini(f"[pytest]\ndbgate_seed = {LOCKS / 'seed.sql'}\ndbgate_max_regression = off\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PROD_DATABASE_URL", "STAGING_DATABASE_URL")
    }
    before = _postgres_dirs()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--dbgate=staging", "-p", "no:cacheprovider"],
        cwd=pytester.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "applying 1_slow" in line:
            break
    # This run's own folders: other runs on the machine (another xdist worker) come and go.
    started = {name for name in _postgres_dirs() - before if _owner(name) == proc.pid}
    servers = {name for name in started if name.startswith(("dbgate-source-", "dbgate-staging-"))}
    assert len(servers) == 2, "the run's two embedded servers are up"
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, "".join(seen) + output
    assert not (_postgres_dirs() & started), "the servers' and the dump's folders are removed"
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not any(name in processes for name in servers), "no server process is left"
    assert "Traceback" not in output


MIXED = PROJECTS / "mixed_case"


def test_traffic_goes_to_the_table_the_migration_names_whatever_its_case(
    project: Project, mixed_case_db: Endpoint, staging_server: Endpoint
) -> None:
    source = mixed_case_db
    project.migrations(MIXED / "release").ini(dbgate_max_regression="off")
    result = project.against(source, staging_server).run("-k", "migrate", "--junitxml=gate.xml")
    assert "InvalidName" not in result.stdout.str()
    results = json.loads((project.path / ".dbgate" / "staging-results.json").read_text())
    figures = {i["nodeid"]: i["figures"] for i in results["items"]}
    document = figures["dbgate::migrate::locks[20260101000000_index_document_title]"]
    assert document["traffic_tables"] == '"Document"'  # not the empty lower-case twin
    assert int(document["probes"]) > 0
    spaced = figures["dbgate::migrate::locks[20260101000100_note_on_my_table]"]
    assert spaced["traffic_tables"] == '"My Table"'
    assert int(spaced["probes"]) > 0
    invoices = figures["dbgate::migrate::locks[20260101000200_note_on_invoices]"]
    assert invoices["traffic_tables"] == '"Billing Ops"."Rechnungen-Ü"'
    assert int(invoices["probes"]) > 0
    outcomes = {i["nodeid"]: i["outcome"] for i in results["items"]}
    assert outcomes["dbgate::migrate::applied[20260101000100_note_on_my_table]"] == "passed"


def test_a_verdict_near_the_limit_is_measured_three_times_and_does_not_flap(
    locks_project: Project,
) -> None:
    """Five identical runs of a release that sits near the limits: the same verdict each time,
    from the middle of three measurements taken on fresh copies."""
    locks_project.migrations(LOCKS / "near").ini(
        dbgate_max_lock_ms="1000", dbgate_max_block_ms="1000"
    )
    verdicts = []
    for _ in range(5):
        result = locks_project.run("-k", "migrate", "-rA")
        results = json.loads((locks_project.path / ".dbgate" / "staging-results.json").read_text())
        item = next(i for i in results["items"] if i["name"].startswith("locks["))
        measurements = str(item["figures"]["measurements"])
        assert measurements.startswith("lock/blocked ms: ") and measurements.count(",") == 2
        verdicts.append((result.ret, item["outcome"]))
    assert verdicts == [(0, "passed")] * 5, verdicts


@pytest.mark.parametrize(
    ("held", "decides"),
    [((900, 1100, 1200), 1100), ((900, 950, 1100), 950), ((1300, 600, 700), 700)],
)
def test_the_middle_of_three_measurements_decides(
    tmp_path: Path, held: tuple[int, int, int], decides: int
) -> None:
    (tmp_path / "1_m.sql").write_text("LOCK TABLE accounts IN SHARE MODE;")
    (migration,) = discover(tmp_path)
    reports = []
    for ms in held:
        report = LockReport(migration)
        report.locks.append(HeldLock('"accounts"', "ShareLock", ms, None, True))
        reports.append(report)
    chosen, measures = median(reports, max_lock_ms=1000, max_block_ms=500)
    assert [m.lock_ms for m in measures] == list(held)
    assert chosen.locks[0].held_ms == decides
    assert Measure.of(reports[0], 1000, 500).near()  # 900 of 1,000: measured again
    far = LockReport(migration)
    far.locks.append(HeldLock('"accounts"', "ShareLock", 200, None, True))
    assert not Measure.of(far, 1000, 500).near()


def test_lock_modes_are_ranked_as_postgresql_numbers_them() -> None:
    from pytest_dbgate.observe.lockmodes import CONFLICTS, strength

    assert strength("AccessShareLock") == 1 and strength("AccessExclusiveLock") == 8
    assert strength("ShareLock") > strength("ShareUpdateExclusiveLock")
    assert strength("AdvisoryLock") == 0
    # A stronger mode conflicts with at least what a weaker one does.
    ranked = sorted(CONFLICTS, key=strength)
    assert [len(CONFLICTS[m]) for m in ranked] == sorted(len(CONFLICTS[m]) for m in ranked)
