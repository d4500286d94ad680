"""--dbgate=production: deploy only what staging passed, with lock timeouts, retries, hold-backs
and post-deploy checks, on real servers."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from psycopg import sql

from pytest_dbgate.pg.connections import Endpoint, connection

from .conftest import PROJECTS, STAGING_PASSWORD, Project, outcomes, seeded_database, url

RELEASE = [
    "20260101000000_add_events_note",
    "20260101000100_index_events_kind",
    "20260101000200_drop_events_at",
]


def deployed(nodeid_part: str) -> str:
    return f"dbgate::deploy::applied[{nodeid_part}]"


def query(endpoint: Endpoint, text: str) -> list[tuple[object, ...]]:
    with connection(endpoint, "test", "test") as conn:
        return conn.execute(text).fetchall()  # type: ignore[arg-type]


def columns(endpoint: Endpoint, table: str) -> list[str]:
    rows = query(
        endpoint,
        "SELECT attname FROM pg_attribute WHERE attrelid = "
        f"'{table}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    return [str(r[0]) for r in rows]


def applied_versions(endpoint: Endpoint) -> list[str]:
    if not query(endpoint, "SELECT to_regclass('dbgate.migrations')")[0][0]:
        return []
    return [
        str(r[0])
        for r in query(endpoint, "SELECT version FROM dbgate.migrations WHERE success ORDER BY 1")
    ]


def outcome_of(project: Project, nodeid: str, mode: str = "production") -> str:
    """PASSED / FAILED / SKIPPED / ERROR of one item of the last run, from its results file."""
    document = json.loads((project.path / ".dbgate" / f"{mode}-results.json").read_text())
    items = {i["nodeid"]: str(i["outcome"]).upper() for i in document["items"]}
    assert nodeid in items, f"{nodeid} not in {sorted(items)}"
    return items[nodeid]


def staging_passes(project: Project) -> dict[str, object]:
    result = project.run()
    assert result.ret == 0, result.stdout.str()
    record = project.path / ".dbgate" / "gate-record.json"
    assert record.is_file()
    document: dict[str, object] = json.loads(record.read_text())
    return document


def move_back(endpoint: Endpoint, days: int) -> None:
    """Move production's clock: as if every recorded migration was applied ``days`` earlier."""
    with connection(endpoint, "test", "test") as conn:
        conn.execute(
            sql.SQL("UPDATE dbgate.migrations SET applied_at = applied_at - {}").format(
                sql.Literal(timedelta(days=days))
            )
        )


# -- the whole workflow, on the demo ---------------------------------------------------------


def test_demo_staging_then_production_then_the_held_back_cleanup(
    demo: Project, demo_prod: Endpoint, staging_server: Endpoint
) -> None:
    prod = demo_prod
    # A team without the watch: the period alone releases the cleanup (tests/test_watch.py
    # tells the whole story with it).
    demo.ini(dbgate_max_regression="off", dbgate_holdback_requires="time").against(
        prod, staging_server
    )
    record = staging_passes(demo)
    assert [m["staging"] for m in record["migrations"]] == ["applied"] * 6  # type: ignore[index]
    assert record["migrations"][5]["hold_back"] == "7d"  # type: ignore[index]
    assert record["source"]["system_identifier"]  # type: ignore[index]
    assert query(prod, "SELECT to_regclass('dbgate.migrations')")[0][0] is None

    first = demo.deploy("-rA", "--junitxml=deploy.xml")
    assert first.ret == 0, first.stdout.str()
    outcomes(first, skipped=1)
    cleanup = "20250115160002_fix_recipe_category_fields_cleanup"
    skipped = next(line for line in first.stdout.lines if line.startswith("SKIPPED"))
    eligible = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%d")
    assert f"held back until {eligible}" in skipped and "7d after the migrations" in skipped
    assert applied_versions(prod) == [
        "20250115150000",
        "20250115150100",
        "20250115150200",
        "20250115160000",
        "20250115160001",
    ]
    assert "category" in columns(prod, "recipes")
    assert "category_id" in columns(prod, "recipes")
    assert (
        query(
            prod, "SELECT count(*) FROM recipes WHERE category IS NOT NULL AND category_id IS NULL"
        )[0][0]
        == 0
    )

    again = demo.deploy("-rA")
    assert again.ret == 0
    assert outcome_of(demo, deployed(cleanup)) == "SKIPPED"
    assert "already applied" in again.stdout.str()

    move_back(prod, 8)  # eight days later
    later = demo.deploy("-rA")
    assert later.ret == 0, later.stdout.str()
    outcomes(later)
    assert outcome_of(demo, deployed(cleanup)) == "PASSED"
    assert "category" not in columns(prod, "recipes")
    assert len(applied_versions(prod)) == 6


# -- refusals: the record ---------------------------------------------------------------------


def _nothing_applied(project: Project, result: pytest.RunResult, prod: Endpoint) -> None:
    assert result.ret == 1
    for migration in RELEASE:
        assert outcome_of(project, deployed(migration)) == "SKIPPED"
    assert applied_versions(prod) == []
    assert "note" not in columns(prod, "events")


def test_a_migration_edited_after_the_staging_pass_is_refused(
    deploy_project: Project, deploy_db: Endpoint
) -> None:
    staging_passes(deploy_project)
    edited = deploy_project.path / "migrations" / f"{RELEASE[0]}.sql"
    edited.write_text(edited.read_text() + "ALTER TABLE events ADD COLUMN oops int;\n")
    result = deploy_project.deploy("-rA")
    assert outcome_of(deploy_project, "dbgate::preflight::record_matches_migrations") == "FAILED"
    text = result.stdout.str()
    assert f"edited after the staging pass: migrations/{RELEASE[0]}.sql" in text
    assert "deploy exactly what staging passed" in text
    _nothing_applied(deploy_project, result, deploy_db)


def test_an_added_and_a_removed_file_are_named(
    deploy_project: Project, deploy_db: Endpoint
) -> None:
    staging_passes(deploy_project)
    folder = deploy_project.path / "migrations"
    (folder / f"{RELEASE[1]}.sql").unlink()
    (folder / "20260102000000_more.sql").write_text("SELECT 1;\n")
    result = deploy_project.deploy("-rA")
    text = result.stdout.str()
    assert "added after the staging pass: migrations/20260102000000_more.sql" in text
    assert f"removed after the staging pass: migrations/{RELEASE[1]}.sql" in text
    assert applied_versions(deploy_db) == []


def test_no_record_refuses_with_one_message(deploy_project: Project, deploy_db: Endpoint) -> None:
    result = deploy_project.deploy("-rA")
    assert outcome_of(deploy_project, "dbgate::preflight::record_valid") == "FAILED"
    assert "there is no gate record at" in result.stdout.str()
    assert "run `pytest --dbgate=staging` against this production database first" in (
        result.stdout.str()
    )
    # The checks that read the record point at the one that failed, they do not repeat it.
    assert "not run: dbgate::preflight::record_valid failed" in result.stdout.str()
    _nothing_applied(deploy_project, result, deploy_db)


def test_an_expired_record_is_refused(deploy_project: Project, deploy_db: Endpoint) -> None:
    staging_passes(deploy_project)
    path = deploy_project.path / ".dbgate" / "gate-record.json"
    document = json.loads(path.read_text())
    document["created_at"] = (datetime.now(UTC) - timedelta(days=4)).isoformat()
    path.write_text(json.dumps(document))
    result = deploy_project.deploy("-rA")
    assert outcome_of(deploy_project, "dbgate::preflight::record_fresh") == "FAILED"
    assert "the gate record is 4d old" in result.stdout.str()
    assert "older than dbgate_record_max_age (3d)" in result.stdout.str()
    _nothing_applied(deploy_project, result, deploy_db)
    # A longer allowance, said on the command line, lets it through.
    allowed = deploy_project.deploy("-rA", "--dbgate-record-max-age=5d")
    assert allowed.ret == 0, allowed.stdout.str()


def test_signatures(
    deploy_project: Project, deploy_db: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBGATE_SIGNING_KEY", "the-staging-key")
    record = staging_passes(deploy_project)
    assert isinstance(record["signature"], dict)
    assert record["signature"]["algorithm"] == "hmac-sha256"
    path = deploy_project.path / ".dbgate" / "gate-record.json"
    signed = path.read_text()

    monkeypatch.setenv("DBGATE_SIGNING_KEY", "another-key")
    wrong_key = deploy_project.deploy("-rA")
    assert "the gate record's signature does not match" in wrong_key.stdout.str()
    _nothing_applied(deploy_project, wrong_key, deploy_db)

    monkeypatch.setenv("DBGATE_SIGNING_KEY", "the-staging-key")
    document = json.loads(signed)
    document["migrations"][0]["checksum"] = "0" * 64  # "fix" the record instead of re-running
    path.write_text(json.dumps(document))
    tampered = deploy_project.deploy("-rA")
    assert "the gate record's signature does not match" in tampered.stdout.str()
    _nothing_applied(deploy_project, tampered, deploy_db)

    del document["signature"]
    path.write_text(json.dumps(document))
    unsigned = deploy_project.deploy("-rA")
    assert "the gate record is not signed, but DBGATE_SIGNING_KEY is set here" in (
        unsigned.stdout.str()
    )
    assert "the-staging-key" not in unsigned.stdout.str()

    path.write_text(signed)
    good = deploy_project.deploy("-rA")
    assert good.ret == 0, good.stdout.str()
    assert "signature valid" in good.stdout.str()


def test_a_record_made_against_another_database_is_refused(
    deploy_project: Project,
    deploy_db: Endpoint,
    source_server: Endpoint,
    request: pytest.FixtureRequest,
) -> None:
    staging_passes(deploy_project)
    seed = [PROJECTS / "deploy" / "seed.sql"]
    with seeded_database(source_server, request, seed, suffix="_2") as other:
        result = deploy_project.deploy("-rA", f"--dbgate-production-url={url(other)}")
        assert applied_versions(other) == []
    assert outcome_of(deploy_project, "dbgate::preflight::record_matches_target") == "FAILED"
    text = result.stdout.str()
    assert "not against this production database" in text
    assert f"database {deploy_db.dbname} in the record, {other.dbname} here" in text


def test_an_embedded_staging_record_does_not_deploy_anywhere(
    project: Project, deploy_db: Endpoint
) -> None:
    project.seed(PROJECTS / "deploy").migrations(PROJECTS / "deploy" / "release")
    project.ini(dbgate_seed="prod/seed.sql", dbgate_max_regression="off")
    shutil.copy(PROJECTS / "deploy" / "seed.sql", project.path / "prod" / "seed.sql")
    assert project.run().ret == 0
    project.monkeypatch.setenv("PROD_DATABASE_URL", url(deploy_db))
    result = project.deploy("-rA")
    assert outcome_of(project, "dbgate::preflight::record_matches_target") == "FAILED"
    assert "embedded source built from the seed" in result.stdout.str()
    assert applied_versions(deploy_db) == []


def test_a_failing_staging_run_leaves_no_record(deploy_project: Project) -> None:
    staging_passes(deploy_project)
    path = deploy_project.path / ".dbgate" / "gate-record.json"
    broken = deploy_project.path / "migrations" / f"{RELEASE[0]}.sql"
    broken.write_text("ALTER TABLE no_such_table ADD COLUMN x int;\n")
    result = deploy_project.run("-rA")
    assert result.ret == 1
    assert outcome_of(deploy_project, "dbgate::verdict::gate_record", "staging") == "SKIPPED"
    assert not path.exists()


def test_a_partial_staging_run_writes_no_record(deploy_project: Project) -> None:
    result = deploy_project.run("-rA", "-k", "not locks")
    assert result.ret == 0, "what ran passed"
    assert outcome_of(deploy_project, "dbgate::verdict::gate_record", "staging") == "SKIPPED"
    assert "dbgate::migrate::locks[20260101000000_add_events_note]: did not run" in (
        result.stdout.str()
    )
    assert not (deploy_project.path / ".dbgate" / "gate-record.json").exists()


# -- the deploy itself ----------------------------------------------------------------------


def test_deploy_applies_skips_the_hold_back_and_checks_production(
    deploy_project: Project, deploy_db: Endpoint
) -> None:
    staging_passes(deploy_project)
    result = deploy_project.deploy("-rA", "--junitxml=deploy.xml")
    assert result.ret == 0, result.stdout.str()
    assert outcome_of(deploy_project, deployed(RELEASE[0])) == "PASSED"
    assert outcome_of(deploy_project, deployed(RELEASE[1])) == "PASSED"
    assert outcome_of(deploy_project, deployed(RELEASE[2])) == "SKIPPED"
    assert outcome_of(deploy_project, "dbgate::postdeploy::constraints_validated") == "PASSED"
    assert outcome_of(deploy_project, "dbgate::postdeploy::indexes_valid_and_ready") == "PASSED"
    assert applied_versions(deploy_db) == [v.split("_")[0] for v in RELEASE[:2]]
    assert "at" in columns(deploy_db, "events")
    report = (deploy_project.path / ".dbgate" / "production-report.md").read_text()
    assert "production gate PASSED" in report
    assert "held back until" in report


def test_sessions_in_the_way_fail_the_preflight(
    deploy_project: Project, deploy_db: Endpoint
) -> None:
    staging_passes(deploy_project)
    with connection(deploy_db, "test", "test") as idle:
        idle.execute("BEGIN")
        idle.execute("SELECT count(*) FROM events")
        # Idle in transaction for any time at all counts with the limit at 0.
        result = deploy_project.deploy("-rA", "--dbgate-max-idle-in-transaction-ms=0")
        idle.execute("ROLLBACK")
    assert outcome_of(deploy_project, "dbgate::preflight::no_blocking_sessions") == "FAILED"
    assert "idle in transaction" in result.stdout.str()
    assert "pg_terminate_backend" in result.stdout.str()
    _nothing_applied(deploy_project, result, deploy_db)


def _blocker(project: Project, before: str, blocker_sql: str, hold_for: float = 0) -> None:
    shutil.copy(PROJECTS / "deploy" / "blocker.py", project.path / "conftest.py")
    env = project.monkeypatch
    env.setenv("BLOCK_BEFORE", deployed(before))
    env.setenv("BLOCK_URL", os.environ["PROD_DATABASE_URL"])
    env.setenv("BLOCK_SQL", blocker_sql)
    if hold_for:
        env.setenv("BLOCK_FOR", str(hold_for))


def test_a_lock_held_by_another_session_times_out_retries_and_stops_cleanly(
    deploy_project: Project, deploy_db: Endpoint
) -> None:
    staging_passes(deploy_project)
    _blocker(deploy_project, RELEASE[0], "BEGIN; SELECT count(*) FROM events")
    result = deploy_project.deploy(
        "-rA",
        "--dbgate-lock-timeout=200",
        "--dbgate-lock-retries=2",
        "--dbgate-lock-retry-wait=0.1",
        "--junitxml=deploy.xml",
    )
    assert result.ret == 1
    assert outcome_of(deploy_project, deployed(RELEASE[0])) == "FAILED"
    text = result.stdout.str()
    assert "canceling statement due to lock timeout [55P03]" in text
    assert "gave up after 3 attempt(s), each stopped by lock_timeout" in text
    assert "in the way: pid" in text and "nightly report" in text
    assert "none of its 2 statements is applied" in text
    assert text.count("retrying in") == 2
    # Nothing half-applied: neither the column nor the table of the one-transaction file.
    assert "note" not in columns(deploy_db, "events")
    assert query(deploy_db, "SELECT to_regclass('event_tags')")[0][0] is None
    assert query(deploy_db, "SELECT success, statements_applied FROM dbgate.migrations") == [
        (False, 0)
    ]
    assert outcome_of(deploy_project, deployed(RELEASE[1])) == "SKIPPED"


def test_a_lock_released_in_time_is_retried_past(
    deploy_project: Project, deploy_db: Endpoint
) -> None:
    staging_passes(deploy_project)
    _blocker(deploy_project, RELEASE[0], "BEGIN; SELECT count(*) FROM events", hold_for=0.5)
    result = deploy_project.deploy(
        "-rA",
        "--dbgate-lock-timeout=100",
        "--dbgate-lock-retries=5",
        "--dbgate-lock-retry-wait=0.3",
    )
    assert result.ret == 0, result.stdout.str()
    assert "after 1 lock timeout(s)" in result.stdout.str() or "after 2 lock timeout(s)" in (
        result.stdout.str()
    )
    assert "note" in columns(deploy_db, "events")


def test_a_concurrent_index_that_times_out_leaves_no_invalid_index(
    deploy_project: Project, deploy_db: Endpoint
) -> None:
    staging_passes(deploy_project)
    # A long report holding a snapshot: CREATE INDEX CONCURRENTLY waits for it, and times out.
    _blocker(
        deploy_project,
        RELEASE[1],
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM reports",
    )
    result = deploy_project.deploy(
        "-rA",
        "--dbgate-lock-timeout=300",
        "--dbgate-lock-retries=1",
        "--dbgate-lock-retry-wait=0.1",
    )
    assert outcome_of(deploy_project, deployed(RELEASE[0])) == "PASSED"
    assert outcome_of(deploy_project, deployed(RELEASE[1])) == "FAILED"
    text = result.stdout.str()
    assert "gave up after 2 attempt(s)" in text
    assert "INVALID index each failed CREATE INDEX CONCURRENTLY left was dropped" in text
    assert query(deploy_db, "SELECT to_regclass('events_kind_idx')")[0][0] is None
    assert outcome_of(deploy_project, "dbgate::postdeploy::indexes_valid_and_ready") == "PASSED"


def test_two_production_runs_do_not_interleave(
    deploy_project: Project, deploy_db: Endpoint
) -> None:
    staging_passes(deploy_project)
    with connection(deploy_db, "test", "test") as other_run:
        other_run.execute(
            "SELECT pg_advisory_lock(hashtext('pytest-dbgate'), hashtext(%s))",
            (f"production:{deploy_db.dbname}",),
        )
        result = deploy_project.deploy("-rA")
    assert outcome_of(deploy_project, "dbgate::preflight::production_reachable") == "FAILED"
    assert "another pytest-dbgate run holds the gate lock" in result.stdout.str()
    _nothing_applied(deploy_project, result, deploy_db)


def test_post_migrate_command_runs_against_production(
    deploy_project: Project, deploy_db: Endpoint
) -> None:
    deploy_project.ini(
        dbgate_post_migrate_command="python -c \"import os; print(os.environ['DATABASE_URL'])\""
    )
    staging_passes(deploy_project)
    result = deploy_project.deploy("-rA", "--junitxml=deploy.xml")
    assert result.ret == 0, result.stdout.str()
    assert outcome_of(deploy_project, "dbgate::deploy::post_migrate_command") == "PASSED"


def test_production_without_a_target_is_a_usage_error(project: Project) -> None:
    project.migrations(PROJECTS / "deploy" / "release")
    result = project.deploy()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--dbgate=production has no database to deploy to*"])


def test_no_password_in_any_output(
    project: Project,
    staging_server: Endpoint,
    source_server: Endpoint,
    request: pytest.FixtureRequest,
) -> None:
    """Production behind a password: the output, JUnit and the reports never show it."""
    with seeded_database(staging_server, request, [PROJECTS / "deploy" / "seed.sql"]) as prod:
        project.migrations(PROJECTS / "deploy" / "release").ini(dbgate_max_regression="off")
        project.against(prod, source_server)
        assert project.run("--junitxml=staging.xml").ret == 0
        _blocker(project, RELEASE[0], "BEGIN; SELECT count(*) FROM events")
        result = project.deploy(
            "-rA", "--dbgate-lock-timeout=100", "--dbgate-lock-retries=0", "--junitxml=deploy.xml"
        )
        assert result.ret == 1
        outputs = [result.stdout.str(), result.stderr.str()]
        outputs += [p.read_text() for p in project.path.glob("*.xml")]
        outputs += [p.read_text() for p in (project.path / ".dbgate").iterdir()]
        assert all(STAGING_PASSWORD not in text for text in outputs)
