"""The generated items: ids, JUnit grouping, and coherent behaviour under selection."""

from __future__ import annotations

import pytest
from junitparser import JUnitXml

from .conftest import Project, example


def test_junit_groups_items_by_stage(remote_demo: Project) -> None:
    result = remote_demo.run("--junitxml=gate.xml")
    assert result.ret == 0
    xml = JUnitXml.fromfile(str(remote_demo.path / "gate.xml"))
    classes = [case.classname for suite in xml for case in suite]
    assert list(dict.fromkeys(classes)) == [
        "dbgate.refresh",
        "dbgate.connect",
        "dbgate.before",
        "dbgate.migrate",
        "dbgate.lint",
        "dbgate.schema",
        "dbgate.after",
        "dbgate.performance",
        "dbgate.verdict",
    ]


def test_selecting_a_schema_check_alone_still_applies_the_migrations(remote_demo: Project) -> None:
    result = remote_demo.run("-k", "migrations_recorded", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*applying 20250115160002_fix_recipe_category_fields_cleanup*"])


def test_a_deselected_failing_migration_is_not_silently_skipped(remote_demo: Project) -> None:
    remote_demo.migrations(example("failing_migration"))
    result = remote_demo.run("-k", "constraints_validated")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of schema: constraints_validated*",
            'migrations/20250115150100_add_recipes_category_id.sql:4: ERROR: relation "recipe"*',
        ]
    )


def test_a_deselected_prerequisite_errors_with_its_own_message(
    demo: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROD_DATABASE_URL", "postgresql://app@127.0.0.1:1/prod")
    result = demo.run("-k", "applied")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=6)
    result.stdout.fnmatch_lines(["cannot connect to the source database app@127.0.0.1:1/prod*"])


def test_the_dbgate_marker_selects_the_gate(remote_demo: Project) -> None:
    remote_demo.pytester.makepyfile(test_app="def test_app():\n    pass\n")
    only_app = remote_demo.run("-m", "not dbgate")
    only_app.assert_outcomes(passed=1)
    assert "[dbgate]" not in only_app.stdout.str(), "deselected gate items cost nothing"
