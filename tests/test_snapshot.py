"""Refreshing staging with pg_dump/pg_restore: counts, quoting, failures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_dbgate.binaries import PgBinaries
from pytest_dbgate.connections import Endpoint, connect
from pytest_dbgate.exceptions import RefreshError
from pytest_dbgate.snapshot import refresh

from .conftest import fresh_database

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
