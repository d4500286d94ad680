"""The crash matrix: a production run killed at every boundary, then run again to completion.

A real pytest run of ``--dbgate=production`` (pytester, in a forked child so a signal kills only
it) is killed with SIGKILL, or sent SIGTERM, at each point of tests/projects/crash's release
where a run can stop (see ``pytest_dbgate_boundary``). Then production runs again; where it
stops on a statement in doubt, the test does what its message says: looks at the database and
records what it found. At the end every statement's effect must be there exactly once, and the
tracking tables must say so.
"""

from __future__ import annotations

import re
import shutil
import signal
from collections.abc import Iterator

import pytest
from psycopg import sql

from pytest_dbgate.pg.connections import Endpoint, connection

from .conftest import PROJECTS, Project

CRASH = PROJECTS / "crash"
TAGS = ["1.2", "2.1", "2.2 batch 1", "2.2 batch 2", "2.5"]


def query(endpoint: Endpoint, text: str) -> list[tuple[object, ...]]:
    with connection(endpoint, "test", "test") as conn:
        return conn.execute(text).fetchall()  # type: ignore[arg-type]


def recreate(server: Endpoint, name: str, template: str) -> None:
    with connection(server, "test", "test") as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )


@pytest.fixture
def crash_prod(source_server: Endpoint) -> Iterator[tuple[Endpoint, str]]:
    """Production for the matrix, and the template each position starts from."""
    name, template = "crash_prod", "crash_prod_template"
    with connection(source_server, "test", "test") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(template)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(template)))
    with connection(source_server.with_dbname(template), "test", "test") as conn:
        conn.execute((CRASH / "seed.sql").read_text())
    recreate(source_server, name, template)
    yield source_server.with_dbname(name), template
    with connection(source_server, "test", "test") as conn:
        for db in (name, template):
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db))
            )


@pytest.fixture
def crash_project(
    project: Project, crash_prod: tuple[Endpoint, str], staging_server: Endpoint
) -> Project:
    """The crash release, validated by staging once; its record serves every position."""
    prod, _ = crash_prod
    project.migrations(CRASH / "release")
    shutil.copy(CRASH / "conftest.py", project.path / "conftest.py")
    project.ini(dbgate_max_regression="off", dbgate_traffic_rate="0")
    project.against(prod, staging_server)
    staged = project.run()
    assert staged.ret == 0, staged.stdout.str()
    return project


def census(project: Project, prod: Endpoint, template: str) -> list[str]:
    """Every boundary a whole production run passes, in order."""
    log = project.path / "census.log"
    project.monkeypatch.setenv("CRASH_LOG", str(log))
    try:
        result = project.deploy()
        assert result.ret == 0, result.stdout.str()
    finally:
        project.monkeypatch.delenv("CRASH_LOG")
    recreate(
        Endpoint.from_params({**dict(prod.params), "dbname": "postgres"}), prod.dbname, template
    )
    return log.read_text().splitlines()


def complete(project: Project, prod: Endpoint) -> list[str]:
    """Run production until it has applied everything, settling in-doubt statements as its
    message says; what was done to get there."""
    steps: list[str] = []
    for _ in range(3):
        result = project.deploy()
        if result.ret == 0:
            if "was in doubt after an earlier run stopped" in result.stdout.str():
                steps.append("settled from the catalog")
            return steps
        text = result.stdout.str()
        if "was in doubt after an earlier run stopped" in text:
            steps.append("settled from the catalog")
        assert "may or may not have taken effect" in text, text
        took = re.search(r"it took effect: +(UPDATE dbgate\.statements .*;)", text)
        did_not = re.search(r"it did not \(or you undid what it did\): (DELETE .*;)", text)
        assert took and did_not, text
        batches = query(prod, "SELECT count(*) FROM applied WHERE tag LIKE '2.2 batch%'")[0][0]
        assert batches in (0, 2), "a kill at a boundary cannot cut the backfill in half"
        resolution = took.group(1) if batches == 2 else did_not.group(1)
        with connection(prod, "test", "test") as conn:
            conn.execute(resolution)
        steps.append("settled by hand: " + ("took effect" if batches == 2 else "did not"))
    pytest.fail("production did not complete after settling the statements in doubt")


def assert_exactly_once(prod: Endpoint) -> None:
    tags = sorted(str(r[0]) for r in query(prod, "SELECT tag FROM applied"))
    assert tags == TAGS
    visits = query(
        prod, "SELECT id <= 10, visits, n, count(*) FROM accounts GROUP BY 1, 2, 3 ORDER BY 1"
    )
    assert visits == [(False, 1, 1, 190), (True, 11, 1, 10)]
    valid = query(
        prod, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'accounts_n_idx'::regclass"
    )
    assert valid == [(True,)]
    tracked = query(prod, "SELECT version, success FROM dbgate.migrations ORDER BY 1")
    assert tracked == [("1", True), ("2", True), ("3", True)]
    journal = query(prod, "SELECT version, ordinal, state FROM dbgate.statements ORDER BY 1, 2")
    assert journal == [("2", i, "applied") for i in range(1, 7)] + [("3", 1, "applied")]


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_a_deploy_killed_at_any_boundary_applies_every_statement_exactly_once(
    crash_project: Project,
    crash_prod: tuple[Endpoint, str],
    signal_name: str,
) -> None:
    prod, template = crash_prod
    server = Endpoint.from_params({**dict(prod.params), "dbname": "postgres"})
    points = census(crash_project, prod, template)
    assert len(points) >= 30
    expected = getattr(signal, signal_name)
    table: list[tuple[str, str, str]] = []
    for at in points:
        recreate(server, prod.dbname, template)
        ended = crash_project.deploy_killed(signal_name, at)
        if signal_name == "SIGKILL":
            assert ended == expected, f"{at}: the run was not killed ({ended})"
        else:  # stopped at the next recorded point, as an interrupted run (exit status 2)
            assert ended == -pytest.ExitCode.INTERRUPTED, f"{at}: {ended}"
        steps = complete(crash_project, prod)
        assert_exactly_once(prod)
        how = "killed" if ended == expected else f"stopped, exit {-ended}"
        table.append((at, how, "; ".join(steps) or "resumed"))
    # The table the README promises: `pytest tests/test_crash_matrix.py -s` shows it.
    print(f"\ncrash matrix, {signal_name}: {len(table)} positions")
    for at, ended, steps in table:
        print(f"  {at:<45} {ended:<16} then {steps}, exactly once")
