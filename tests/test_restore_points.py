"""Restore points: a re-run of the staging gate starts after the last unchanged migration, on
real servers (the demo, its staging server kept where the server account can reach it)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from pytest_dbgate.pg.connections import Endpoint, connection

from .conftest import PROJECTS, Project

CLEANUP = "20250115160002_fix_recipe_category_fields_cleanup"
ADD_COLUMN = "20250115150100_add_recipes_category_id"


def applied_in(result: pytest.RunResult) -> list[str]:
    """The migrations the run really applied (its progress lines), in order."""
    return re.findall(r"\[dbgate\] applying (\S+) \(", result.stdout.str())


def summaries(project: Project) -> dict[str, str]:
    document = json.loads((project.path / ".dbgate" / "staging-results.json").read_text())
    return {str(i["nodeid"]): str(i["figures"].get("summary", "")) for i in document["items"]}


def record_statuses(project: Project) -> list[str]:
    record = json.loads((project.path / ".dbgate" / "gate-record.json").read_text())
    return [str(m["staging"]) for m in record["migrations"]]


@pytest.fixture
def looping(demo: Project, kept_dir: Path) -> Project:
    """The demo with a kept staging server, where restore points live between runs."""
    demo.ini(
        dbgate_max_regression="off", dbgate_staging_dir=str(kept_dir), dbgate_restore_points="every"
    )
    return demo


def test_fixing_the_last_migration_reruns_only_it_and_editing_the_second_reruns_from_it(
    looping: Project,
) -> None:
    cleanup = looping.path / "migrations" / f"{CLEANUP}.sql"
    fixed = cleanup.read_text()
    cleanup.write_text(fixed + "\nSELECT no_such_column FROM recipes;\n")
    broken = looping.run("-s")
    assert broken.ret == 1
    assert len(applied_in(broken)) == 6  # the first run applies everything
    assert "restore points: 5 kept for the next run" in broken.stdout.str()

    cleanup.write_text(fixed)  # the fix
    rerun = looping.run("-s")
    assert rerun.ret == 0, rerun.stdout.str()
    assert applied_in(rerun) == [CLEANUP], "only the fixed migration is applied again"
    assert "resuming after 20250115160001_fix_recipe_category_fields_index" in rerun.stdout.str()
    found = summaries(looping)
    cached = [n for n, s in found.items() if s.startswith("cached from the run of ")]
    assert len(cached) == 10  # applied and locks of the five unchanged migrations
    assert not found[f"dbgate::migrate::applied[{CLEANUP}]"].startswith("cached")
    assert record_statuses(looping) == ["applied"] * 6, "the record vouches for all six"

    second = looping.path / "migrations" / f"{ADD_COLUMN}.sql"
    second.write_text(second.read_text() + "\n-- reviewed\n")  # a new checksum
    edited = looping.run("-s")
    assert edited.ret == 0, edited.stdout.str()
    assert len(applied_in(edited)) == 5 and applied_in(edited)[0] == ADD_COLUMN
    assert "resuming after 20250115150000_create_recipe_categories" in edited.stdout.str()

    unchanged = looping.run("-s")
    assert unchanged.ret == 0
    assert applied_in(unchanged) == []
    assert "nothing left to apply" in unchanged.stdout.str()
    assert record_statuses(looping) == ["applied"] * 6

    refreshed = looping.run("-s", "--dbgate-refresh")
    assert refreshed.ret == 0
    assert len(applied_in(refreshed)) == 6, "a new snapshot starts from scratch"
    assert "resuming" not in refreshed.stdout.str()


def test_an_option_that_judges_the_migrations_starts_from_scratch(looping: Project) -> None:
    assert looping.run().ret == 0
    stricter = looping.run("-s", "--dbgate-max-lock-ms=900")
    assert stricter.ret == 0, stricter.stdout.str()
    assert len(applied_in(stricter)) == 6
    off = looping.run("-s", "--dbgate-restore-points=off")
    assert off.ret == 0
    assert len(applied_in(off)) == 6
    assert "restore points:" not in off.stdout.str()


def test_an_unchanged_release_resumes_from_a_point_made_steady_for_the_after_phase(
    demo: Project, kept_dir: Path
) -> None:
    """The last point is made after the after phase's VACUUM ANALYZE and compaction: a re-run of
    the same release measures the same state without doing either again."""
    demo.ini(dbgate_staging_dir=str(kept_dir), dbgate_restore_points="on")
    first = demo.run("-s")
    assert first.ret == 0, first.stdout.str()
    assert "VACUUM ANALYZE on the 3 table(s) the release touched" in first.stdout.str()
    compacted = summaries(demo)["dbgate::after::after_captured"]
    assert "compacted first: public.recipes (" in compacted, "the backfill doubled recipes"

    again = demo.run("-s")
    assert again.ret == 0, again.stdout.str()
    out = again.stdout.str()
    assert applied_in(again) == []
    assert "the restore point is vacuumed, analysed and compacted as the run that made it" in out
    assert "VACUUM" not in out
    # The same tables, with the same figures, are said to be compacted: the state is the same.
    assert (
        summaries(demo)["dbgate::after::after_captured"].split("compacted first: ")[1]
        == (compacted.split("compacted first: ")[1])
    )


def test_a_half_made_point_is_swept_and_turning_points_off_gives_their_disk_back(
    perf_project: Project, staging_server: Endpoint
) -> None:
    perf_project.migrations(PROJECTS / "perf" / "safe").ini(dbgate_restore_points="on")
    with connection(staging_server, "test", "test") as conn:
        # What a run killed while copying leaves: the gate's database, but no point in it.
        conn.execute("DROP DATABASE IF EXISTS dbgate_perf_point0007")
        conn.execute("CREATE DATABASE dbgate_perf_point0007")
        conn.execute(
            "COMMENT ON DATABASE dbgate_perf_point0007 IS "
            "'created by pytest-dbgate: disposable staging copy'"
        )
        # And what one killed while the server copied leaves: a name of its own, no mark yet.
        conn.execute("DROP DATABASE IF EXISTS dbgate_perf_point0002_tmp0a1b2c")
        conn.execute("CREATE DATABASE dbgate_perf_point0002_tmp0a1b2c")
    assert perf_project.run().ret == 0
    assert points_on(staging_server) == ["dbgate_perf_point0001"]

    off = perf_project.ini(dbgate_restore_points="off").run("-s")
    assert off.ret == 0
    assert "dropped the 1 restore point(s) an earlier run kept (" in off.stdout.str()
    assert points_on(staging_server) == []


def points_on(server: Endpoint) -> list[str]:
    with connection(server, "test", "test") as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'dbgate\\_perf\\_point%' ORDER BY 1"
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_a_post_migrate_command_added_later_gets_the_after_phase_prepared_again(
    perf_project: Project,
) -> None:
    """The last point was prepared for the after phase by a run without the command; the command
    runs after the point and may change what it holds, so it is prepared again."""
    perf_project.migrations(PROJECTS / "perf" / "safe").ini(dbgate_restore_points="on")
    assert perf_project.run().ret == 0
    (perf_project.path / "touch.py").write_text(
        "import os, psycopg\n"
        "with psycopg.connect(os.environ['DATABASE_URL'], autocommit=True) as conn:\n"
        "    conn.execute('UPDATE events SET kind = kind')\n"
    )
    perf_project.ini(dbgate_post_migrate_command=f"{sys.executable} touch.py")
    again = perf_project.run("-s")
    assert again.ret == 0, again.stdout.str()
    out = again.stdout.str()
    assert "nothing left to apply" in out
    assert "as the run that made it left it: not again" not in out
    assert "VACUUM FULL on public.events" in out, "the command's update doubled the table"


def test_an_un_migrated_copy_that_cannot_be_made_fails_the_performance_stage_alone(
    perf_project: Project, staging_server: Endpoint
) -> None:
    """The copy is made while staging is prepared for the after phase; when it cannot be (here: a
    database of someone else holds its name), the after tests still run, the after capture says
    why, and the last point is not taken for one prepared (a re-run prepares it again)."""
    perf_project.migrations(PROJECTS / "perf" / "safe").ini(dbgate_restore_points="on")
    with connection(staging_server, "test", "test") as conn:
        conn.execute("DROP DATABASE IF EXISTS dbgate_perf_before WITH (FORCE)")
        conn.execute("CREATE DATABASE dbgate_perf_before")  # not the gate's: left alone
    full = perf_project.run("-rA", "--dbgate-refresh")  # no point of an earlier test to start from
    assert full.ret == pytest.ExitCode.TESTS_FAILED
    full.stdout.fnmatch_lines(["PASSED test_events.py::test_account_has_events[[]after[]]"])
    full.stdout.fnmatch_lines(["after *after_captured *FAILED *dbgate_perf_before*"])
    assert "During handling" not in full.stdout.str()
    with connection(staging_server, "test", "test") as conn:
        conn.execute("DROP DATABASE dbgate_perf_before")
    again = perf_project.run("-s")
    assert again.ret == 0, again.stdout.str()
    assert "as the run that made it left it: not again" not in again.stdout.str()
    assert "cloning the snapshot as dbgate_perf_before" in again.stdout.str()


def test_a_before_phase_that_commits_a_write_keeps_no_points(perf_project: Project) -> None:
    """What the before phase commits is on the copy the migrations meet; a point made by another
    run would not hold it, and one made now would hold it for runs whose before phase differs."""
    perf_project.migrations(PROJECTS / "perf" / "safe").ini(dbgate_restore_points="on")
    assert perf_project.run("--dbgate-refresh").ret == 0  # points of its own
    perf_project.pytester.makepyfile(
        test_old_writes=(
            "import psycopg, pytest\n\n"
            "@pytest.mark.dbgate_phase('before')\n"
            "def test_the_old_release_writes(dbgate_url):\n"
            "    with psycopg.connect(dbgate_url, autocommit=True) as conn:\n"
            "        conn.execute(\"INSERT INTO events VALUES (999999, 4999, 'view', 'old')\")\n"
        )
    )
    wrote = perf_project.run("-s")
    assert wrote.ret == 0, wrote.stdout.str()
    out = wrote.stdout.str()
    assert "no restore points in this run: 1 transaction(s) committed on the staging server" in out
    assert applied_in(wrote) == ["1_add_event_note"], "applied afresh, not resumed"


def test_a_migration_added_after_the_last_does_not_start_from_its_prepared_point(
    perf_project: Project,
) -> None:
    """The last point is vacuumed and compacted for the after phase; a migration appended to the
    release must meet the tables as the migrations left them, as on production."""
    perf_project.migrations(PROJECTS / "perf" / "safe").ini(dbgate_restore_points="on")
    assert perf_project.run("--dbgate-refresh").ret == 0
    (perf_project.path / "migrations" / "2_index_event_kind.sql").write_text(
        "CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind);\n"
    )
    appended = perf_project.run("-s")
    assert appended.ret == 0, appended.stdout.str()
    assert applied_in(appended) == ["1_add_event_note", "2_index_event_kind"]


def test_the_same_files_read_in_another_layout_start_from_scratch(
    perf_project: Project,
) -> None:
    """A dbmate file read as flat runs its down section too: other statements, other points."""
    folder = perf_project.path / "migrations"
    folder.mkdir(exist_ok=True)
    (folder / "20250101000000_add_note.sql").write_text(
        "-- migrate:up\nALTER TABLE events ADD COLUMN note text;\n\n"
        "-- migrate:down\nALTER TABLE events DROP COLUMN note;\n"
    )
    perf_project.ini(dbgate_restore_points="on", dbgate_max_regression="off")
    assert perf_project.run("--dbgate-refresh").ret == 0
    flat = perf_project.run("-s", "--dbgate-layout=flat")
    assert applied_in(flat) == ["20250101000000_add_note"], "not resumed from the dbmate run"
