"""Restore points: a re-run of the staging gate starts after the last unchanged migration, on
real servers (the demo, its staging server kept where the server account can reach it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import Project

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
