"""Embedded servers and the databases the gate creates: as whom they run, what they refuse."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pytest_dbgate.core.errors import ProvisioningError, SafetyError
from pytest_dbgate.pg import servers as provisioning
from pytest_dbgate.pg.binaries import PgBinaries
from pytest_dbgate.pg.connections import Endpoint, connect, connection
from pytest_dbgate.pg.databases import create_gate_database, server_identity
from pytest_dbgate.pg.gatelock import take_gate_lock
from pytest_dbgate.pg.servers import embedded_server


def _process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def test_embedded_server_runs_unprivileged_with_pg_stat_statements(binaries: PgBinaries) -> None:
    with embedded_server("probe", binaries) as server, connect(server, "embedded", "test") as conn:
        row = conn.execute("SHOW shared_preload_libraries").fetchone()
        assert row is not None and "pg_stat_statements" in str(row[0])
        pid = int(str((conn.execute("SELECT pg_backend_pid()").fetchone() or (0,))[0]))
        datadir = str((conn.execute("SHOW data_directory").fetchone() or ("",))[0])
        if os.geteuid() == 0:  # while the session (and so its backend process) lives
            assert _process_uid(pid) == provisioning.pwd.getpwnam("postgres").pw_uid
    assert not Path(datadir).exists(), "the cluster's files are removed when it stops"
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.conninfo(), connect_timeout=2)


def test_an_embedded_server_cannot_log_in_elsewhere_with_the_gates_password(
    binaries: PgBinaries, staging_server: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dblink in a migration on the embedded staging server, aimed at a password-protected
    server, finds no password in the server's environment: the gate's $PGPASSWORD stays the
    gate's."""
    assert staging_server.password is not None
    monkeypatch.setenv("PGPASSWORD", staging_server.password)
    target = f"host={staging_server.host} port={staging_server.port} user=postgres dbname=postgres"
    with embedded_server("dblink", binaries) as server, connect(server, "embedded", "t") as conn:
        if (
            conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'dblink'").fetchone()
            is None
        ):
            pytest.skip("these PostgreSQL binaries come without dblink")
        conn.execute("CREATE EXTENSION dblink")
        with pytest.raises(psycopg.Error, match="password"):
            conn.execute("SELECT dblink_exec(%s, 'SELECT 1')", (target,))


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs an unprivileged account")
def test_a_missing_server_account_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provisioning, "SERVER_ACCOUNT", "dbgate-no-such-account")
    with pytest.raises(ProvisioningError) as raised:
        provisioning.check_can_run_servers()
    assert "no unprivileged account 'dbgate-no-such-account'" in str(raised.value)
    assert "useradd --system dbgate-no-such-account" in str(raised.value)


def test_gate_database_is_marked_and_replaced(staging_server: Endpoint) -> None:
    with connection(staging_server, "staging", "test") as conn:
        create_gate_database(conn, "dbgate_marked", "staging", "UTF8")
        conn.execute("SELECT 1")
        with connect(staging_server.with_dbname("dbgate_marked"), "staging", "t") as inside:
            inside.execute("CREATE TABLE leftover (id int)")
        create_gate_database(conn, "dbgate_marked", "staging", "UTF8")
        with connect(staging_server.with_dbname("dbgate_marked"), "staging", "t") as inside:
            assert inside.execute("SELECT to_regclass('leftover')").fetchone() == (None,)
        conn.execute("DROP DATABASE dbgate_marked")


def test_a_database_the_gate_did_not_create_is_never_dropped(staging_server: Endpoint) -> None:
    with connection(staging_server, "staging", "test") as conn:
        conn.execute("CREATE DATABASE dbgate_theirs")
        try:
            with pytest.raises(
                SafetyError, match=r"'dbgate_theirs' already exists .* not created by"
            ):
                create_gate_database(conn, "dbgate_theirs", "staging", "UTF8")
            row = conn.execute(
                "SELECT count(*) FROM pg_database WHERE datname = 'dbgate_theirs'"
            ).fetchone()
            assert row == (1,)
        finally:
            conn.execute(sql.SQL("DROP DATABASE dbgate_theirs"))


def test_two_gate_runs_cannot_hold_the_same_target(staging_server: Endpoint) -> None:
    with (
        connection(staging_server, "staging", "a") as first,
        connection(staging_server, "staging", "b") as second,
    ):
        take_gate_lock(first, "dbgate_shop", "staging")
        with pytest.raises(SafetyError, match="another pytest-dbgate run holds the gate lock"):
            take_gate_lock(second, "dbgate_shop", "staging")
        take_gate_lock(second, "dbgate_other", "staging")


def test_server_identity_tells_servers_apart(
    source_server: Endpoint, staging_server: Endpoint
) -> None:
    with (
        connection(source_server, "a", "a") as a,
        connection(source_server, "a", "a") as a_again,
        connection(staging_server, "b", "b") as b,
    ):
        first, again, other = server_identity(a), server_identity(a_again), server_identity(b)
    assert first.same_server(again)
    assert not first.same_server(other)
    assert first.major == other.major
