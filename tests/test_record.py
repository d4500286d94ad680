"""The gate record: written whole, signed, read back, compared with the migration files."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from pytest_dbgate.core.errors import RecordError
from pytest_dbgate.core.record import (
    GateRecord,
    RecordedMigration,
    RecordedServer,
    format_period,
    invalidate,
    load,
    now_utc,
    run_differences,
)
from pytest_dbgate.migrations.parse import discover

from .conftest import PROJECTS

SERVER = RecordedServer(
    where="app@db.internal:5432/prod",
    database="prod",
    server_version="15.18",
    version_num=150018,
    system_identifier="7311111111111111111",
    embedded=False,
)


def record_for(folder: Path, **changes: object) -> GateRecord:
    migrations = discover(folder)
    fields: dict[str, object] = {
        "created_at": now_utc().isoformat(timespec="seconds"),
        "plugin_version": "0.1.0",
        "source": SERVER,
        "staging": SERVER,
        "migrations": tuple(
            RecordedMigration(
                m.version,
                m.name,
                f"migrations/{m.path.name}",
                m.checksum,
                None,
                "applied",
                m.layout,
                m.transaction_mode,
                tuple(s.short_digest for s in m.statements),
            )
            for m in migrations
        ),
        "figures": {"criteria": 12},
    }
    fields.update(changes)
    return GateRecord(**fields)  # type: ignore[arg-type]


RELEASE = PROJECTS / "deploy" / "release"


def test_a_record_reads_back_as_written(tmp_path: Path) -> None:
    record = record_for(RELEASE)
    path = tmp_path / "gate-record.json"
    record.write(path)
    assert load(path) == record
    assert not list(tmp_path.glob("*.partial"))
    assert json.loads(path.read_text())["passed"] is True


def test_signature_round_trip_and_tampering(tmp_path: Path) -> None:
    path = tmp_path / "gate-record.json"
    record_for(RELEASE).signed("k1").write(path)
    loaded = load(path)
    assert loaded.verify("k1") == "signature valid"
    assert loaded.verify(None) == "signature not checked (DBGATE_SIGNING_KEY not set)"
    with pytest.raises(RecordError, match="signature does not match"):
        loaded.verify("k2")
    document = json.loads(path.read_text())
    document["figures"]["criteria"] = 13
    path.write_text(json.dumps(document))
    with pytest.raises(RecordError, match="signature does not match"):
        load(path).verify("k1")


def test_an_unsigned_record_is_refused_when_a_key_is_set(tmp_path: Path) -> None:
    path = tmp_path / "gate-record.json"
    record_for(RELEASE).write(path)
    assert load(path).verify(None) == "unsigned"
    with pytest.raises(RecordError, match="not signed, but DBGATE_SIGNING_KEY is set"):
        load(path).verify("k1")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json", "Expecting value"),
        ('{"kind": "something else", "format": 2}', "not a pytest-dbgate gate record"),
        ("[1, 2]", "not a pytest-dbgate gate record"),
        (
            '{"kind": "pytest-dbgate gate record", "format": 2, "passed": false}',
            "does not record a passing staging run",
        ),
        ('{"kind": "pytest-dbgate gate record", "format": 2, "passed": true}', "created_at"),
    ],
)
def test_unusable_records_say_why(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "gate-record.json"
    path.write_text(content)
    with pytest.raises(RecordError, match="is not a usable gate record") as raised:
        load(path)
    assert reason in str(raised.value)


def test_a_record_of_another_format_says_to_run_staging_again(tmp_path: Path) -> None:
    path = tmp_path / "gate-record.json"
    path.write_text('{"kind": "pytest-dbgate gate record", "format": 1, "passed": true}')
    with pytest.raises(RecordError) as raised:
        load(path)
    assert "is a gate record of format 1, written by another version of pytest-dbgate" in str(
        raised.value
    )
    assert "re-run `pytest --dbgate=staging` with this version" in str(raised.value)


def test_a_missing_record_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(RecordError) as raised:
        load(tmp_path / "gate-record.json")
    message = str(raised.value)
    assert "there is no gate record at" in message
    assert "run `pytest --dbgate=staging`" in message


def test_differences_name_each_file(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for path in RELEASE.glob("*.sql"):
        (folder / path.name).write_bytes(path.read_bytes())
    record = record_for(folder)
    first, second, third = sorted(folder.glob("*.sql"))
    first.write_text(first.read_text() + "-- edited\n")
    second.unlink()
    (folder / "20270101000000_new.sql").write_text("SELECT 1;\n")
    third.rename(folder / third.name.replace("drop_events_at", "drop_the_at_column"))
    migrations = discover(folder)
    rel = {m.version: f"migrations/{m.path.name}" for m in migrations}
    lines = record.differences(migrations, rel)
    assert lines == [
        f"edited after the staging pass: migrations/{first.name} (checksum "
        f"{record.migrations[0].checksum[:12]}… in the record, {migrations[0].checksum[:12]}… now)",
        f"removed after the staging pass: migrations/{second.name} (in the record, no such file "
        "now)",
        f"renamed after the staging pass: migrations/{third.name} is now "
        f"migrations/{third.name.replace('drop_events_at', 'drop_the_at_column')}",
        "added after the staging pass: migrations/20270101000000_new.sql (not in the record)",
    ]
    assert record_for(RELEASE).differences(discover(RELEASE), rel) == []


DBMATE = "-- migrate:up\nALTER TABLE t ADD COLUMN c int;\n-- migrate:down\nDROP TABLE t;\n"


def test_run_differences_name_what_would_run_otherwise(tmp_path: Path) -> None:
    dbmate = tmp_path / "dbmate"
    dbmate.mkdir()
    (dbmate / "1_add.sql").write_text(DBMATE)
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "2_two.sql").write_text("SELECT 1;\nSELECT 2;\n")
    (folder / "3_idx.sql").write_text("CREATE INDEX CONCURRENTLY i ON t (c);\nSELECT 3;\n")
    rel = {"1": "migrations/1_add.sql", "2": "migrations/2_two.sql", "3": "migrations/3_idx.sql"}
    read_as_dbmate = record_for(dbmate)
    assert run_differences(read_as_dbmate, discover(dbmate), rel, {}) == []
    assert run_differences(read_as_dbmate, discover(dbmate, "flat"), rel, {}) == [
        "migrations/1_add.sql: staging read the folder as dbmate, this run as flat "
        "(--dbgate-layout / dbgate_layout): it would run other statements than staging ran"
    ]
    # The same files, parsed another way (a parser upgrade, a hand-edited record).
    record = record_for(folder)
    assert run_differences(record, discover(folder), rel, {}) == []
    staged = {m.version: m for m in record.migrations}
    changed = record_for(
        folder,
        migrations=(
            replace(staged["2"], statements=(staged["2"].statements[0], "0" * 16)),
            replace(staged["3"], transaction="single"),
        ),
    )
    assert run_differences(changed, discover(folder), rel, {}) == [
        "migrations/2_two.sql: statement 2 (line 2) is not the one staging ran",
        "migrations/3_idx.sql: staging ran it in one transaction, this run would run it "
        "statement by statement",
    ]
    shorter = record_for(folder, migrations=(replace(staged["2"], statements=("x",)),))
    assert run_differences(shorter, discover(folder)[:1], rel, {}) == [
        "migrations/2_two.sql: staging ran 1 statement(s), this run reads 2 in the file"
    ]


def test_production_never_runs_statements_staging_found_applied(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "3_idx.sql").write_text("CREATE INDEX CONCURRENTLY i ON t (c);\nSELECT 3;\n")
    record = record_for(folder)
    resumed = record_for(folder, migrations=(replace(record.migrations[0], executed_from=2),))
    rel = {"3": "migrations/3_idx.sql"}
    assert run_differences(resumed, discover(folder), rel, {"3": 1}) == []
    assert run_differences(resumed, discover(folder), rel, {}) == [
        "migrations/3_idx.sql: production would run statements 1-1, which staging did not run "
        "(it found them applied and started at statement 2)"
    ]


def test_invalidate_removes_only_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "gate-record.json"
    assert invalidate(path) is False
    record_for(RELEASE).write(path)
    assert invalidate(path) is True
    assert not path.exists()


@pytest.mark.parametrize(
    ("period", "shown"),
    [
        (timedelta(days=7), "7d"),
        (timedelta(days=3, hours=4, minutes=5), "3d 4h"),
        (timedelta(hours=12), "12h"),
        (timedelta(minutes=25), "25 min"),
        (timedelta(seconds=3), "1 min"),
    ],
)
def test_format_period(period: timedelta, shown: str) -> None:
    assert format_period(period) == shown
