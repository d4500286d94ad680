"""Command mode: a project that migrates with its own tool (alembic here), watched by the gate."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from pytest_dbgate.pg.connections import Endpoint, connection
from pytest_dbgate.pg.seed import load_seed

from .conftest import PROJECTS, Project

ALEMBIC = PROJECTS / "alembic"


@pytest.fixture(scope="session")
def alembic_source(source_server: Endpoint) -> Endpoint:
    """The source, already at alembic revision 0001 (never changed by a gate run)."""
    return load_seed(source_server, "alembic_shop", [ALEMBIC / "seed.sql"])


@pytest.fixture
def alembic_project(
    project: Project, alembic_source: Endpoint, staging_server: Endpoint
) -> Project:
    source = alembic_source
    for name in ("alembic.ini", "alembic"):
        target = project.path / name
        if (ALEMBIC / name).is_dir():
            shutil.copytree(ALEMBIC / name, target)
        else:
            shutil.copy(ALEMBIC / name, target)
    project.ini(
        dbgate_migrate_command=f"{sys.executable} -m alembic upgrade head",
        dbgate_max_regression="off",
    )
    return project.against(source, staging_server)


def items(project: Project) -> dict[str, dict[str, object]]:
    results = json.loads((project.path / ".dbgate" / "staging-results.json").read_text())
    return {str(i["nodeid"]): i for i in results["items"]}


def test_the_tools_migrations_run_under_the_lock_watch(alembic_project: Project) -> None:
    result = alembic_project.run("-rA")
    text = result.stdout.str()
    assert "dbgate: staging gate of the migrate command" in text
    assert "running the migrate command" in text
    found = items(alembic_project)
    command = found["dbgate::migrate::command"]
    assert command["outcome"] == "passed"
    figures = command["figures"]
    assert isinstance(figures, dict)
    assert figures["history_table"] == "alembic_version"
    assert figures["applied"] == "0003"  # alembic keeps its head: 0001 before, 0003 after
    # The index build without CONCURRENTLY held SHARE on orders, with writes waiting behind it.
    locks = found["dbgate::migrate::locks[command]"]
    assert locks["outcome"] == "failed"
    assert "held SHARE on orders for" in str(locks["message"])
    assert found["dbgate::schema::indexes_valid_and_ready"]["outcome"] == "passed"
    assert "dbgate::schema::migrations_recorded" not in found  # alembic keeps its own record
    assert found["dbgate::verdict::gate_record"]["outcome"] == "skipped"
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_safe_release_passes_and_its_record_names_the_command(alembic_project: Project) -> None:
    (alembic_project.path / "alembic" / "versions" / "0003_index_orders_total.py").unlink()
    result = alembic_project.run()
    assert result.ret == 0, result.stdout.str()
    record = json.loads((alembic_project.path / ".dbgate" / "gate-record.json").read_text())
    assert record["figures"]["migrate_command"].endswith("-m alembic upgrade head")
    assert record["figures"]["applied_by_command"] == "0002"


def test_a_failing_command_fails_its_item_with_the_tools_output(
    alembic_project: Project,
) -> None:
    broken = alembic_project.path / "alembic" / "versions" / "0002_add_orders_note.py"
    broken.write_text(broken.read_text().replace('"orders"', '"no_such_table"'))
    result = alembic_project.run("-rA")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str()
    assert "the migrate command" in text and "exited with status 1" in text
    assert 'relation "no_such_table" does not exist' in text
    assert items(alembic_project)["dbgate::migrate::command"]["outcome"] == "failed"


def test_production_refuses_command_mode(alembic_project: Project) -> None:
    result = alembic_project.deploy()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "deploy with the tool itself once the staging gate passed" in result.stderr.str()


def test_the_staging_copy_is_migrated_by_the_tool(
    alembic_project: Project, staging_server: Endpoint
) -> None:
    alembic_project.run()
    copy = staging_server.with_dbname("dbgate_alembic_shop")
    with connection(copy, "test", "test") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0003",)]
        assert conn.execute("SELECT to_regclass('orders_total_idx')").fetchone() is not None
