"""Refreshing staging with pg_dump/pg_restore: counts, quoting, failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_dbgate.core.errors import RefreshError
from pytest_dbgate.pg.binaries import PgBinaries
from pytest_dbgate.pg.connections import Endpoint, connect, connection
from pytest_dbgate.refresh.restore import refresh

from .conftest import PROJECTS, STAGING_PASSWORD, Project, fresh_database, url

SOURCE_SQL = """
CREATE SCHEMA "Sales Data";
CREATE TABLE "Sales Data"."Order Lines" (id int PRIMARY KEY, "Note" text);
INSERT INTO "Sales Data"."Order Lines" SELECT i, 'n' || i FROM generate_series(1, 1234) i;
CREATE TABLE plain (id int);
INSERT INTO plain SELECT generate_series(1, 10);
"""


@pytest.fixture
def source_db(source_server: Endpoint, request: pytest.FixtureRequest) -> Iterator[Endpoint]:
    with fresh_database(source_server, request) as endpoint:
        yield endpoint


def test_restored_tables_have_the_source_row_counts(
    source_db: Endpoint, scratch_db: Endpoint, binaries: PgBinaries, tmp_path: Path
) -> None:
    with connect(source_db, "source", "t") as conn:
        conn.execute(SOURCE_SQL)
    lines: list[str] = []
    with connect(source_db, "source", "t", read_only=True) as read_only:
        snap = refresh(read_only, source_db, scratch_db, binaries, tmp_path, lines.append)
    counts = {t.qualified: (t.source_rows, t.staging_rows) for t in snap.tables}
    assert counts == {"Sales Data.Order Lines": (1234, 1234), "public.plain": (10, 10)}
    assert snap.mismatched == ()
    assert snap.dump_bytes > 0
    assert any(line.startswith("dumping ") for line in lines)
    assert not list(tmp_path.iterdir()), "the dump file is removed after the restore"


def test_a_restore_that_loses_data_is_reported(
    source_db: Endpoint, scratch_db: Endpoint, binaries: PgBinaries, tmp_path: Path
) -> None:
    # A CHECK that depends on session state holds when the rows are written but not when
    # pg_restore copies them: a classic way a dump does not restore.
    with connect(source_db, "source", "t") as conn:
        conn.execute(
            """
            CREATE FUNCTION tenant_set() RETURNS boolean LANGUAGE sql STABLE
                AS $$ SELECT current_setting('app.tenant', true) IS NOT NULL
                             AND current_setting('app.tenant', true) <> '' $$;
            CREATE TABLE tenant_rows (id int, CHECK (tenant_set()));
            SET app.tenant = 'acme';
            INSERT INTO tenant_rows SELECT generate_series(1, 5);
            """
        )
    with (
        connect(source_db, "source", "t", read_only=True) as read_only,
        pytest.raises(RefreshError) as raised,
    ):
        refresh(read_only, source_db, scratch_db, binaries, tmp_path, lambda _: None)
    message = str(raised.value)
    assert message.startswith(f"pg_restore into {scratch_db.display()} failed:")
    assert "tenant_rows" in message and "violates check constraint" in message


def test_a_second_run_clones_the_cached_snapshot(remote_demo: Project) -> None:
    first = remote_demo.run("-k", "snapshot_restored", "--dbgate-refresh")
    first.assert_outcomes(passed=1, deselected=first.parseoutcomes()["deselected"])
    first.stdout.fnmatch_lines(["*taking a new snapshot (--dbgate-refresh)*", "*dumping*"])
    second = remote_demo.run("-k", "snapshot_restored", "-rA")
    second.assert_outcomes(passed=1, deselected=second.parseoutcomes()["deselected"])
    second.stdout.fnmatch_lines(
        ["*reusing the cached snapshot dbgate_prod_snapshot taken *: cloning it, no dump*"]
    )
    assert "dumping" not in second.stdout.str()
    results = json.loads((remote_demo.path / ".dbgate" / "staging-results.json").read_text())
    (item,) = results["items"]
    assert item["figures"]["reused_snapshot"] is True
    assert item["figures"]["rows_staging"] == item["figures"]["rows_source"] > 0


def test_a_schema_change_on_the_source_takes_a_new_snapshot(
    project: Project, deploy_db: Endpoint, staging_server: Endpoint
) -> None:
    project.migrations(PROJECTS / "deploy" / "release").ini(dbgate_max_regression="off")
    project.against(deploy_db, staging_server)
    assert project.run("-k", "snapshot_restored").ret == 0
    with connection(deploy_db, "test", "test") as conn:
        conn.execute("ALTER TABLE reports ADD COLUMN owner text")
    again = project.run("-k", "snapshot_restored")
    again.stdout.fnmatch_lines(
        ["*taking a new snapshot (the source's schema changed since the cached snapshot*"]
    )
    old = project.run("-k", "snapshot_restored", "--dbgate-snapshot-max-age=0h")
    old.stdout.fnmatch_lines(["*taking a new snapshot (the cached snapshot is older than*"])


@pytest.fixture
def clone_project(project: Project, deploy_db: Endpoint, staging_server: Endpoint) -> Project:
    """The deploy project with the stand-in clone service in tests/projects/clone."""
    for script in ("clone.py", "cleanup.py"):
        shutil.copy(PROJECTS / "clone" / script, project.path / script)
    project.migrations(PROJECTS / "deploy" / "release").ini(
        dbgate_max_regression="off",
        dbgate_clone_command=f"{sys.executable} clone.py",
        dbgate_clone_cleanup_command=f"{sys.executable} cleanup.py",
    )
    project.monkeypatch.setenv("PROD_DATABASE_URL", url(deploy_db))
    project.monkeypatch.setenv("CLONE_SERVER_URL", url(staging_server))
    return project


def _clones(server: Endpoint) -> list[str]:
    with connection(server, "test", "test") as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'clone\\_%'")
        return [str(r[0]) for r in rows.fetchall()]


def test_a_clone_command_provides_staging_and_is_cleaned_up(
    clone_project: Project, staging_server: Endpoint
) -> None:
    before = _clones(staging_server)
    result = clone_project.run("-rA", "--junitxml=gate.xml")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*provisioning the staging database: `*clone.py`*",
            "*staging is the clone postgres@127.0.0.1:*/clone_*",
        ]
    )
    assert "dumping" not in result.stdout.str()
    assert "[dbgate] removing the clone: `" in result.stdout.str()
    results = json.loads((clone_project.path / ".dbgate" / "staging-results.json").read_text())
    snapshot = next(i for i in results["items"] if i["name"] == "snapshot_restored")
    assert "provisioned by" in snapshot["figures"]["summary"]
    assert _clones(staging_server) == before, "the cleanup command removed the clone"
    everything = result.stdout.str() + (clone_project.path / "gate.xml").read_text()
    assert STAGING_PASSWORD not in everything


def test_a_clone_command_without_a_url_says_what_to_print(clone_project: Project) -> None:
    clone_project.ini(dbgate_clone_command=f"{sys.executable} -c \"print('cloning...')\"")
    result = clone_project.run("-rA")
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*the clone command `* -c *` did not print a database URL as its last line*",
            "*cloning...*",
        ]
    )


def test_long_dumps_and_restores_report_progress(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, staging_server: Endpoint
) -> None:
    from pytest_dbgate.refresh import restore as snapshot

    monkeypatch.setattr(snapshot, "PROGRESS_EVERY_S", 0.1)
    output = tmp_path / "out.dump"
    output.write_bytes(b"x" * 2048)
    script = (
        "echo 'pg_dump: dumping contents of table public.a' >&2; sleep 0.5; "
        "echo 'pg_dump: dumping contents of table public.b' >&2; sleep 0.5"
    )
    said: list[str] = []
    ticker = snapshot.Ticker(said.append, "dumping", "tables dumped", snapshot.DUMPED, output)
    snapshot._run(["sh", "-c", script], staging_server, RefreshError.dump_failed, ticker=ticker)
    assert "dumping: 1 tables dumped, 2.0 kB written" in said
    assert said[-1] == "dumping: 2 tables dumped, 2.0 kB written"


# -- a dump file the team already has (--dbgate-snapshot) ---------------------------------


def _dump(database: Endpoint, binaries: PgBinaries, path: Path, kind: str) -> Path:
    subprocess.run(
        [
            binaries.path("pg_dump"),
            f"--format={kind}",
            f"--file={path}",
            f"--dbname={database.conninfo()}",
        ],
        check=True,
    )
    return path


@pytest.fixture
def owned_deploy_db(deploy_db: Endpoint) -> Endpoint:
    """The deploy database with a table owned by a role staging does not have, as production's
    tables are: a plain dump then says ALTER TABLE … OWNER TO a role staging lacks."""
    with connection(deploy_db, "test", "test") as conn:
        conn.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_owner') "
            "THEN CREATE ROLE app_owner; END IF; END $$"
        )
        conn.execute("ALTER TABLE reports OWNER TO app_owner")
    return deploy_db


def _items(project: Project) -> dict[str, dict[str, object]]:
    results = json.loads((project.path / ".dbgate" / "staging-results.json").read_text())
    return {str(i["name"]): i for i in results["items"]}


def test_a_plain_dump_file_stands_in_for_the_source(
    deploy_project: Project, owned_deploy_db: Endpoint, binaries: PgBinaries
) -> None:
    project = deploy_project
    _dump(owned_deploy_db, binaries, project.path / "orders.sql", "plain")
    project.monkeypatch.delenv("PROD_DATABASE_URL")  # no source database at all
    first = project.run("--dbgate-snapshot=orders.sql", "-rA")
    assert first.ret == 0, first.stdout.str()
    first.stdout.fnmatch_lines(
        [
            "dbgate: source: none (data from the dump file orders.sql); staging: $STAGING_*",
            "*taking a new snapshot (no cached snapshot yet)*",
            "*restoring *orders.sql (plain, *) into *dbgate_orders_snapshot*",
        ]
    )
    assert "dumping" not in first.stdout.str()
    items = _items(project)
    assert "source_reachable" not in items
    dump_file = items["dump_file"]["figures"]
    assert isinstance(dump_file, dict) and dump_file["format"] == "plain"
    restored = items["snapshot_restored"]["figures"]
    assert isinstance(restored, dict)
    assert restored["summary"].startswith("22,002 rows in 3 tables; restored from orders.sql")
    assert items["versions_match"]["outcome"] == "passed"
    record = json.loads((project.path / ".dbgate" / "gate-record.json").read_text())
    assert record["source"]["dump_file"].startswith("orders.sql (")
    assert record["source"]["system_identifier"] is None

    second = project.run("--dbgate-snapshot=orders.sql", "-k", "snapshot_restored", "-rA")
    assert second.ret == 0, second.stdout.str()
    second.stdout.fnmatch_lines(["*reusing the cached snapshot dbgate_orders_snapshot*"])
    again = _items(project)["snapshot_restored"]["figures"]
    assert isinstance(again, dict)
    assert again["summary"].startswith("22,002 rows in 3 tables; cloned the cached snapshot of")


def test_a_custom_dump_file_with_the_source_checked_too(
    deploy_project: Project, deploy_db: Endpoint, binaries: PgBinaries
) -> None:
    project = deploy_project
    _dump(deploy_db, binaries, project.path / "prod.dump", "custom")
    result = project.run("--dbgate-snapshot=prod.dump", "--dbgate-refresh", "-rA")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*restoring *prod.dump (custom, *)*"])
    assert "dumping" not in result.stdout.str()
    items = _items(project)
    assert items["source_reachable"]["outcome"] == "passed"
    restored = items["snapshot_restored"]["figures"]
    assert isinstance(restored, dict) and restored["rows_staging"] == 22002
    record = json.loads((project.path / ".dbgate" / "gate-record.json").read_text())
    assert record["source"]["system_identifier"], "the source was checked, not only the file"


def test_damaged_dump_files_are_clear_errors_and_never_cached(
    deploy_project: Project, deploy_db: Endpoint, binaries: PgBinaries
) -> None:
    project = deploy_project
    project.monkeypatch.delenv("PROD_DATABASE_URL")
    plain = _dump(deploy_db, binaries, project.path / "prod.sql", "plain").read_bytes()
    (project.path / "cut.sql").write_bytes(plain[: len(plain) // 2])
    refused = project.run("--dbgate-snapshot=cut.sql")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*the plain SQL dump *cut.sql is truncated*", "*what to do:*"])

    # A custom archive cut in its data lists fine; its restore fails and is not kept.
    whole = _dump(deploy_db, binaries, project.path / "whole.dump", "custom").read_bytes()
    (project.path / "cut.dump").write_bytes(whole[: len(whole) * 3 // 4])
    failed = project.run("--dbgate-snapshot=cut.dump", "-k", "snapshot_restored")
    assert failed.ret == pytest.ExitCode.TESTS_FAILED
    failed.stdout.fnmatch_lines(["*pg_restore into *dbgate_*_snapshot failed:*"])
    # pg_restore's words depend on where the cut falls and which worker meets it: "could not
    # read from input file", "could not find block ID … possibly corrupt archive", "a worker
    # process died unexpectedly". The message shows them, whichever it is.
    assert "pg_restore: error: " in failed.stdout.str()
    whole_run = project.run("--dbgate-snapshot=whole.dump", "-k", "snapshot_restored")
    assert whole_run.ret == 0, whole_run.stdout.str()
    whole_run.stdout.fnmatch_lines(["*taking a new snapshot (no cached snapshot yet)*"])


# -- the embedded staging server kept between runs -----------------------------------------


def test_the_embedded_staging_server_keeps_its_snapshot_between_runs(
    demo: Project, kept_dir: Path
) -> None:
    demo.ini(dbgate_max_regression="off", dbgate_staging_dir=str(kept_dir))
    first = demo.run("-k", "snapshot_restored")
    assert first.ret == 0, first.stdout.str()
    first.stdout.fnmatch_lines(
        [
            f"*creating the embedded source server kept in {kept_dir / 'source'}*",
            "*loading the seed into the embedded source*",
            f"*creating the embedded staging server kept in {kept_dir}*",
            "*taking a new snapshot (no cached snapshot yet)*",
        ]
    )
    assert not (kept_dir / "data" / "postmaster.pid").exists(), "stopped after the run"
    assert not (kept_dir / "source" / "data" / "postmaster.pid").exists()

    second = demo.run("-k", "snapshot_restored", "-rA")
    assert second.ret == 0, second.stdout.str()
    second.stdout.fnmatch_lines(
        [
            f"*starting the embedded source server kept in {kept_dir / 'source'}*",
            "*the seed is unchanged since the kept source was loaded: not re-seeding*",
            f"*starting the embedded staging server kept in {kept_dir}*",
            "*reusing the cached snapshot dbgate_prod_snapshot taken *no dump and no restore*",
        ]
    )
    assert "dumping" not in second.stdout.str()
    assert "loading the seed" not in second.stdout.str()

    forced = demo.run("-k", "snapshot_restored", "--dbgate-refresh")
    assert forced.ret == 0, forced.stdout.str()
    forced.stdout.fnmatch_lines(["*taking a new snapshot (--dbgate-refresh)*", "*dumping *"])

    # The seed is what the kept source and the snapshot are copies of: a new file (or a changed
    # one) makes the source afresh, and a new snapshot of it.
    seed = demo.path / "prod" / "zz_more.sql"
    seed.write_text("CREATE TABLE extra (id int); INSERT INTO extra VALUES (1);\n")
    changed = demo.run("-k", "snapshot_restored")
    assert changed.ret == 0, changed.stdout.str()
    changed.stdout.fnmatch_lines(
        [
            f"*creating the embedded source server kept in {kept_dir / 'source'}*",
            "*loading the seed into the embedded source*",
            "*taking a new snapshot (the seed changed since the cached snapshot was taken)*",
        ]
    )
    # The demo's size is a session setting, not a file: it is part of what the seed loads.
    demo.monkeypatch.setenv("PGOPTIONS", "-c dbgate_demo.scale=0.005")
    rescaled = demo.run("-k", "snapshot_restored")
    assert rescaled.ret == 0, rescaled.stdout.str()
    rescaled.stdout.fnmatch_lines(
        [
            "*loading the seed into the embedded source*",
            "*taking a new snapshot (the seed changed since*",
        ]
    )
    # A seed killed half-way leaves no key: the next run makes the source afresh.
    (kept_dir / "source" / "made-for").unlink()
    half = demo.run("-k", "snapshot_restored")
    assert half.ret == 0, half.stdout.str()
    half.stdout.fnmatch_lines(["*creating the embedded source server kept in*"])


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another account")
def test_a_staging_dir_the_server_account_cannot_reach_falls_back_to_a_throwaway_server(
    demo: Project,
) -> None:
    # pytest's temporary folders are private to root: the postgres account cannot enter them.
    demo.ini(dbgate_max_regression="off")
    result = demo.run("-k", "snapshot_restored")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*starting a throwaway embedded staging server: the postgres account the server "
            "runs as cannot enter /tmp/pytest-of-root*; the snapshot cache lasts this run only*"
        ]
    )


def test_a_dump_file_judges_lint_findings_by_the_rows_it_restores(
    deploy_project: Project, deploy_db: Endpoint, binaries: PgBinaries
) -> None:
    """The same release fails the same lint item whether staging comes from the server or from
    its dump: sizes are counted on the copy, not taken from a source a dump file does not have."""
    project = deploy_project
    folder = project.path / "migrations"
    shutil.rmtree(folder)
    folder.mkdir()
    (folder / "20260101000000_index_kind.sql").write_text(
        "CREATE INDEX events_kind ON events (kind);\n"
    )
    lint = "migrations/20260101000000_index_kind.sql::lint"
    from_server = project.run("-k", "lint", "-rA")
    assert from_server.ret == pytest.ExitCode.TESTS_FAILED
    assert "require-concurrent-index-creation" in from_server.stdout.str()
    _dump(deploy_db, binaries, project.path / "prod.dump", "custom")
    project.monkeypatch.delenv("PROD_DATABASE_URL")
    from_file = project.run("--dbgate-snapshot=prod.dump", "-k", "lint or snapshot", "-rA")
    assert from_file.ret == pytest.ExitCode.TESTS_FAILED, from_file.stdout.str()
    items = _items(project)
    assert items[lint]["outcome"] == "failed"
    assert "-1 rows" not in from_file.stdout.str()
    restored = items["snapshot_restored"]["figures"]
    assert isinstance(restored, dict) and restored["rows_source"] == "not counted"


def test_restore_points_of_one_dump_file_do_not_serve_another_of_the_same_moment(
    deploy_project: Project, deploy_db: Endpoint, binaries: PgBinaries
) -> None:
    """Two dump files made in the same second (or copied keeping their time): the points of one
    are not the other's, whatever their dates say."""
    project = deploy_project.ini(dbgate_restore_points="every")
    first = _dump(deploy_db, binaries, project.path / "a.sql", "plain")
    second = project.path / "b.sql"
    second.write_text("-- another day's dump\n" + first.read_text())
    stamp = first.stat().st_mtime
    os.utime(second, (stamp, stamp))
    assert project.run("--dbgate-snapshot=a.sql").ret == 0
    other = project.run("--dbgate-snapshot=b.sql", "-s")
    assert other.ret == 0, other.stdout.str()
    other.stdout.fnmatch_lines(["*taking a new snapshot (the cached snapshot is of another dump*"])
    assert "resuming after" not in other.stdout.str()
