"""Endpoints: parsing URLs, connecting, and never showing a password."""

from __future__ import annotations

import pytest

from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.core.errors import ConnectError
from pytest_dbgate.pg.connections import Endpoint, connect

from .conftest import STAGING_PASSWORD


def test_display_and_repr_never_show_the_password() -> None:
    endpoint = Endpoint.from_url("postgresql://app:hunter2@db.example:6543/shop", "--x")
    assert endpoint.display() == "app@db.example:6543/shop"
    assert "hunter2" not in repr(endpoint)
    assert "hunter2" not in str(endpoint)
    assert "hunter2" not in endpoint.conninfo_without_password()
    assert endpoint.subprocess_env({})["PGPASSWORD"] == "hunter2"
    assert endpoint.redact("FATAL: hunter2 is wrong") == "FATAL: *** is wrong"


def test_key_value_connection_strings_work_too() -> None:
    endpoint = Endpoint.from_url("host=db port=5433 dbname=shop user=app", "--x")
    assert endpoint.display() == "app@db:5433/shop"
    assert endpoint.with_dbname("other").dbname == "other"


def test_a_malformed_url_names_the_setting_not_the_secret() -> None:
    with pytest.raises(ConfigError) as raised:
        Endpoint.from_url("postgresql://app:hunter2@db:notaport/x?bogus=1", "$PROD_DATABASE_URL")
    message = str(raised.value)
    assert "$PROD_DATABASE_URL is not a valid PostgreSQL connection URL" in message
    assert "hunter2" not in message


def test_unreachable_server_says_what_to_check() -> None:
    endpoint = Endpoint.from_url("postgresql://app:hunter2@127.0.0.1:1/shop", "--dbgate-source-url")
    with pytest.raises(ConnectError) as raised:
        connect(endpoint, "source", "--dbgate-source-url")
    message = str(raised.value)
    assert message.startswith("cannot connect to the source database app@127.0.0.1:1/shop")
    assert "check host and port in --dbgate-source-url" in message
    assert "hunter2" not in message


def test_wrong_password_says_so(staging_server: Endpoint) -> None:
    wrong = staging_server.replace(password="not-" + STAGING_PASSWORD)
    with pytest.raises(ConnectError) as raised:
        connect(wrong, "staging", "$STAGING_DATABASE_URL")
    message = str(raised.value)
    assert "password authentication failed" in message
    assert "check the user and password of $STAGING_DATABASE_URL" in message
    assert STAGING_PASSWORD not in message


def test_read_only_sessions_refuse_writes(staging_server: Endpoint) -> None:
    import psycopg

    with (
        connect(staging_server, "staging", "x", read_only=True) as conn,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        conn.execute("CREATE TABLE must_not_exist (id int)")
