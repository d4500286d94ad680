"""Finding PostgreSQL's programs, and picking a client that can handle the server."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_dbgate.core.errors import ToolError
from pytest_dbgate.pg.binaries import PgBinaries, client_for, find_binaries


def test_finds_a_folder_with_every_program(binaries: PgBinaries) -> None:
    for program in ("pg_ctl", "pg_dump", "pg_restore"):
        assert binaries.has(program)
    assert binaries.major >= 14


def test_a_configured_folder_without_the_programs_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "pg_dump").write_text("#!/bin/sh\n")
    with pytest.raises(ToolError) as raised:
        find_binaries(tmp_path, ("pg_ctl", "pg_dump", "pg_restore"))
    message = str(raised.value)
    assert "(pg_ctl, pg_dump, pg_restore) were not found together in any of:" in message
    assert str(tmp_path) in message
    assert "apt-get install postgresql postgresql-contrib" in message


def test_client_must_be_at_least_the_server_version(binaries: PgBinaries) -> None:
    assert client_for(binaries.major, binaries) == binaries
    assert client_for(binaries.major - 1, binaries).major >= binaries.major - 1
    with pytest.raises(ToolError, match=f"pg_dump {binaries.major} cannot dump or restore"):
        client_for(binaries.major + 50, binaries)
