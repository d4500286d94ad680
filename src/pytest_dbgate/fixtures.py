"""Fixtures for the project's own database tests: the staging database's URL and a connection.

Under ``--dbgate=staging`` they point at the gate's staging copy and the tests using them run
``[before]`` and ``[after]`` the migrations. Without it they point at the database named by
``dbgate_database_url`` (``$DATABASE_URL``), taken to be already migrated, so the same suite runs in
everyday development; with no database configured those tests are skipped, saying why.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

import pytest

if TYPE_CHECKING:
    import psycopg

    from pytest_dbgate.staging.gate import Gate


def _staging_gate(config: pytest.Config) -> Gate | None:
    """The staging gate of this run; ``None`` without ``--dbgate=staging``."""
    from pytest_dbgate.plugin import GATE_KEY

    run = config.stash.get(GATE_KEY, None)
    return cast("Gate", run) if run is not None and run.mode == "staging" else None


@pytest.fixture
def dbgate_phase(request: pytest.FixtureRequest) -> str | None:
    """``"before"`` or ``"after"`` under the gate; ``None`` in everyday runs."""
    from pytest_dbgate.staging.phases import phases_for
    from pytest_dbgate.staging.window import enter_phase

    gate = _staging_gate(request.config)
    phase: str | None = getattr(request, "param", None)
    if gate is None or phase is None:
        if phases_for(request.node) == ("before",):
            pytest.skip("runs only before migrating, under pytest --dbgate=staging")
        return None
    request.node.user_properties.append(("dbgate_phase", phase))
    enter_phase(gate, phase, request.node)
    return phase


@pytest.fixture
def dbgate_url(request: pytest.FixtureRequest, dbgate_phase: str | None) -> str:
    """URL of the database under test (password included), for the app's own connections."""
    from pytest_dbgate.config.model import development_url

    gate = _staging_gate(request.config)
    if gate is not None and dbgate_phase is not None:
        return gate.staging_url()
    url, setting = development_url(request.config)
    if url is None:
        pytest.skip(
            f"no database for dbgate_url: set {setting} (or dbgate_database_url), or run "
            "pytest --dbgate=staging"
        )
    return url


@pytest.fixture
def dbgate_db(dbgate_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A psycopg connection to the database under test; what it writes is rolled back."""
    import psycopg

    from pytest_dbgate.pg.connections import APPLICATION_NAME

    conn = psycopg.connect(dbgate_url, application_name=f"{APPLICATION_NAME} tests")
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()
