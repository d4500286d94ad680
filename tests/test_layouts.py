"""The migration layouts teams already have, detected and read the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.migrations.layouts import detect, find, version_key
from pytest_dbgate.migrations.parse import discover


def files(folder: Path, contents: dict[str, str]) -> Path:
    for name, text in contents.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def test_flat(tmp_path: Path) -> None:
    files(tmp_path, {"2_b.sql": "SELECT 2;", "10_c.sql": "SELECT 3;", "1_a.sql": "SELECT 1;"})
    layout, sources = find(tmp_path)
    assert layout == "flat"
    assert [(s.version, s.name) for s in sources] == [("1", "a"), ("2", "b"), ("10", "c")]


def test_prisma(tmp_path: Path) -> None:
    files(
        tmp_path,
        {
            "20250102000000_add_index/migration.sql": "CREATE INDEX i ON t (a);",
            "20250101000000_init/migration.sql": "CREATE TABLE t (a int);",
            "migration_lock.toml": 'provider = "postgresql"\n',
        },
    )
    assert detect(tmp_path) == "prisma"
    migrations = discover(tmp_path)
    assert [m.id for m in migrations] == ["20250101000000_init", "20250102000000_add_index"]
    assert migrations[0].path == tmp_path / "20250101000000_init" / "migration.sql"


def test_flyway_versions_are_dotted_and_undo_files_ignored(tmp_path: Path) -> None:
    files(
        tmp_path,
        {
            "V1__init.sql": "CREATE TABLE t (a int);",
            "V1_10__later.sql": "SELECT 2;",
            "V1_9__earlier.sql": "SELECT 1;",
            "U1_9__earlier.sql": "SELECT 0;",
        },
    )
    assert detect(tmp_path) == "flyway"
    assert [m.version for m in discover(tmp_path)] == ["1", "1.9", "1.10"]


def test_flyway_repeatable_migrations_are_refused(tmp_path: Path) -> None:
    files(tmp_path, {"V1__init.sql": "SELECT 1;", "R__views.sql": "SELECT 1;"})
    with pytest.raises(ConfigError, match=r"R__views\.sql is not a migration of the flyway layout"):
        discover(tmp_path)


def test_golang_migrate_applies_the_up_files(tmp_path: Path) -> None:
    files(
        tmp_path,
        {
            "1_init.up.sql": "CREATE TABLE t (a int);",
            "1_init.down.sql": "DROP TABLE t;",
            "2_more.up.sql": "ALTER TABLE t ADD COLUMN b int;",
            "2_more.down.sql": "ALTER TABLE t DROP COLUMN b;",
        },
    )
    assert detect(tmp_path) == "golang-migrate"
    migrations = discover(tmp_path)
    assert [m.id for m in migrations] == ["1_init", "2_more"]
    assert [s.text for m in migrations for s in m.statements] == [
        "CREATE TABLE t (a int)",
        "ALTER TABLE t ADD COLUMN b int",
    ]


def test_dbmate_applies_the_up_section_with_file_line_numbers(tmp_path: Path) -> None:
    files(
        tmp_path,
        {
            "20250101000000_init.sql": "-- migrate:up\nCREATE TABLE t (a int);\n\n"
            "CREATE TABLE u (b int);\n\n-- migrate:down\nDROP TABLE u;\nDROP TABLE t;\n",
            "20250102000000_index.sql": "-- migrate:up transaction:false\n"
            "CREATE INDEX CONCURRENTLY i ON t (a);\n-- migrate:down\nDROP INDEX i;\n",
        },
    )
    assert detect(tmp_path) == "dbmate"
    init, index = discover(tmp_path)
    assert [(s.text, s.line) for s in init.statements] == [
        ("CREATE TABLE t (a int)", 2),
        ("CREATE TABLE u (b int)", 4),
    ]
    assert init.transactional
    assert index.no_transaction and len(index.statements) == 1


def test_the_layout_can_be_named(tmp_path: Path) -> None:
    files(tmp_path, {"1_init.up.sql": "SELECT 1;"})
    with pytest.raises(
        ConfigError, match=r"1_init\.up\.sql is not a migration of the dbmate layout"
    ):
        discover(tmp_path, "dbmate")


def test_mixed_layouts_are_refused(tmp_path: Path) -> None:
    files(tmp_path, {"V1__init.sql": "SELECT 1;", "2_more.up.sql": "SELECT 2;"})
    with pytest.raises(ConfigError, match="mixes layouts: flyway, golang-migrate"):
        discover(tmp_path)


def test_version_key_orders_numerically() -> None:
    versions = ["10", "9", "1.10", "1.9", "20250115150000"]
    assert sorted(versions, key=version_key) == ["1.9", "1.10", "9", "10", "20250115150000"]
