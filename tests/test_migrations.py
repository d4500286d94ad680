"""Migration discovery and parsing: version order, directives, statements as PostgreSQL parses."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest

from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.migrations.parse import discover

from .conftest import REPO


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_versions_sort_numerically_not_by_name(tmp_path: Path) -> None:
    write(tmp_path, "10_later.sql", "SELECT 1;")
    write(tmp_path, "9_earlier.sql", "SELECT 1;")
    write(tmp_path, "README.md", "not a migration")
    assert [m.id for m in discover(tmp_path)] == ["9_earlier", "10_later"]


def test_demo_release_is_six_migrations_ending_with_the_held_back_cleanup() -> None:
    migrations = discover(REPO / "migrations")
    assert len(migrations) == 6
    last = migrations[-1]
    assert last.path.name == "20250115160002_fix_recipe_category_fields_cleanup.sql"
    assert last.hold_back == timedelta(days=7)
    assert [m.hold_back for m in migrations[:-1]] == [None] * 5
    index = next(m for m in migrations if m.name.endswith("_index"))
    assert not index.transactional
    assert "CREATE INDEX CONCURRENTLY" in (index.autocommit_reason or "")


def test_checksum_is_sha256_of_the_file_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, "1_a.sql", "CREATE TABLE a (id int);\n")
    (migration,) = discover(tmp_path)
    assert migration.checksum == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("add_things.sql", "is not a migration of the flat layout the folder uses"),
        ("v1_things.sql", "is not a migration of the flat layout the folder uses"),
    ],
)
def test_files_not_named_like_migrations_are_refused(
    tmp_path: Path, name: str, problem: str
) -> None:
    write(tmp_path, name, "SELECT 1;")
    with pytest.raises(ConfigError, match=problem):
        discover(tmp_path)


def test_duplicate_versions_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "1_a.sql", "SELECT 1;")
    write(tmp_path, "01_b.sql", "SELECT 1;")
    write(tmp_path, "1_c.sql", "SELECT 1;")
    with pytest.raises(ConfigError, match="version 1 is used by more than one file"):
        discover(tmp_path)


def test_missing_and_empty_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        discover(tmp_path / "nope")
    with pytest.raises(ConfigError, match="holds no migration files"):
        discover(tmp_path)


def test_a_file_that_does_not_parse_names_its_line(tmp_path: Path) -> None:
    write(tmp_path, "1_bad.sql", "-- header\nCREATE TABLE ok (id int);\n\nALTER TABLEX broken;\n")
    with pytest.raises(ConfigError) as raised:
        discover(tmp_path)
    assert "1_bad.sql:4: the migration does not parse: syntax error at or near" in str(raised.value)


def test_a_file_of_only_comments_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "1_empty.sql", "-- nothing here yet\n")
    with pytest.raises(ConfigError, match="holds no SQL statement"):
        discover(tmp_path)


def test_statements_follow_the_parser_not_semicolons(tmp_path: Path) -> None:
    write(
        tmp_path,
        "1_do.sql",
        "-- one\nCREATE TABLE t (note text DEFAULT 'a;b');\n"
        "DO $$\nBEGIN\n  RAISE NOTICE 'x; y';\nEND\n$$;\nSELECT 1",
    )
    (migration,) = discover(tmp_path)
    assert [(s.line, s.node) for s in migration.statements] == [
        (2, "CreateStmt"),
        (3, "DoStmt"),
        (8, "SelectStmt"),
    ]
    assert (
        migration.statements[1].text.startswith("DO $$")
        and "'x; y'" in migration.statements[1].text
    )
    assert migration.statements[1].line_of(len("DO $$\nBEGIN\n  R")) == 5


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("CREATE INDEX CONCURRENTLY i ON t (a);", "CREATE INDEX CONCURRENTLY"),
        ("DROP INDEX CONCURRENTLY i;", "DROP INDEX CONCURRENTLY"),
        ("REINDEX INDEX CONCURRENTLY i;", "REINDEX … CONCURRENTLY"),
        ("REINDEX (CONCURRENTLY) TABLE t;", "REINDEX … CONCURRENTLY"),
        ("VACUUM t;", "VACUUM"),
        ("ALTER TABLE p DETACH PARTITION c CONCURRENTLY;", "DETACH PARTITION CONCURRENTLY"),
        ("BEGIN; CREATE TABLE t (a int); COMMIT;", "manages its own transactions"),
        ("-- dbgate: no-transaction\nUPDATE t SET a = 1;", "-- dbgate: no-transaction"),
    ],
)
def test_files_that_cannot_run_in_one_transaction(tmp_path: Path, sql: str, reason: str) -> None:
    write(tmp_path, "1_x.sql", sql)
    (migration,) = discover(tmp_path)
    assert not migration.transactional
    assert reason in (migration.autocommit_reason or "")


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE t ADD COLUMN b int; CREATE INDEX i ON t (b);",
        "-- CREATE INDEX CONCURRENTLY i ON t (a);\nSELECT 1;",
        "INSERT INTO notes VALUES ('VACUUM; CREATE INDEX CONCURRENTLY');",
        "ANALYZE t;",
    ],
)
def test_files_that_run_in_one_transaction(tmp_path: Path, sql: str) -> None:
    write(tmp_path, "1_x.sql", sql)
    (migration,) = discover(tmp_path)
    assert migration.transactional, migration.autocommit_reason


def test_directives(tmp_path: Path) -> None:
    write(tmp_path, "1_a.sql", "--dbgate:  hold-back 2w\nSELECT 1;")
    write(tmp_path, "2_b.sql", "-- dbgate: hold-back 36h\nSELECT 1;")
    first, second = discover(tmp_path)
    assert first.hold_back == timedelta(weeks=2)
    assert second.hold_back == timedelta(hours=36)


@pytest.mark.parametrize("directive", ["-- dbgate: hold-back soon", "-- dbgate: no-transactions"])
def test_unknown_directives_are_refused_with_their_line(tmp_path: Path, directive: str) -> None:
    write(tmp_path, "1_a.sql", f"SELECT 1;\n{directive}\n")
    with pytest.raises(ConfigError) as raised:
        discover(tmp_path)
    assert "1_a.sql:2: unknown or malformed dbgate directive" in str(raised.value)
    assert "no-transaction" in raised.value.remedy


def test_extensions_a_migration_creates(tmp_path: Path) -> None:
    write(
        tmp_path,
        "1_ext.sql",
        'CREATE EXTENSION IF NOT EXISTS "uuid-ossp";\nCREATE EXTENSION pg_trgm;\nSELECT 1;',
    )
    (migration,) = discover(tmp_path)
    assert migration.extensions == ("uuid-ossp", "pg_trgm")


@pytest.mark.parametrize(
    "directive",
    [
        "-- DBGATE: hold-back 7d",
        "-- dbgate : hold-back 7d",
        "--dbgate:Hold-Back 7d",
        "-- DbGate: HOLD-BACK 7d",
    ],
)
def test_a_directive_is_read_however_it_is_spelt(tmp_path: Path, directive: str) -> None:
    write(tmp_path, "1_cleanup.sql", f"{directive}\nDROP TABLE old;")
    (migration,) = discover(tmp_path)
    assert migration.hold_back == timedelta(days=7)


def test_a_directive_in_a_block_comment_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "1_cleanup.sql", "/* dbgate: hold-back 7d */\nDROP TABLE old;")
    with pytest.raises(ConfigError, match=r"1_cleanup\.sql:1: unknown or malformed dbgate"):
        discover(tmp_path)


def test_a_dbmate_files_directives_above_migrate_up_count(tmp_path: Path) -> None:
    write(
        tmp_path,
        "1_cleanup.sql",
        "-- dbgate: hold-back 7d\n-- migrate:up\nDROP VIEW v;\n-- migrate:down\n"
        "-- dbgate: no-transaction\nCREATE VIEW v AS SELECT 1;\n",
    )
    (migration,) = discover(tmp_path)
    assert migration.layout == "dbmate"
    assert migration.hold_back == timedelta(days=7)
    assert migration.transactional, "a directive in the down section is not the up section's"


def test_passwords_never_show_in_a_statements_excerpt(tmp_path: Path) -> None:
    write(
        tmp_path,
        "1_role.sql",
        "CREATE ROLE app LOGIN PASSWORD 'hunter2';\n"
        "ALTER ROLE app WITH ENCRYPTED password 'it''s s3cret' VALID UNTIL 'infinity';",
    )
    create, alter = discover(tmp_path)[0].statements
    assert create.excerpt() == "CREATE ROLE app LOGIN PASSWORD '***'"
    assert "s3cret" not in alter.excerpt() and "VALID UNTIL 'infinity'" in alter.excerpt()
