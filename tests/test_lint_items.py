"""The lint as pytest items: lint mode with no database, the staging gate judging findings with
the copy's table sizes and the lock watch, and what CI reads (GitHub annotations, SARIF)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from pytest_dbgate.pg.connections import Endpoint
from pytest_dbgate.pg.janitor import owner

from .conftest import REPO, Project


def mine() -> set[str]:
    """The temporary folders this process's runs made (pytester runs the gate in-process)."""
    return {p.name for p in Path("/tmp").glob("dbgate-*") if (owner(p) or (0,))[0] == os.getpid()}


def test_lint_mode_needs_no_database_and_fails_with_the_rule(project: Project) -> None:
    project.migrations(REPO / "examples" / "index_without_concurrently")
    before = mine()
    result = project.run("--dbgate-pg-bindir=/nonexistent", "-rA", mode="lint")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*migrations/20250116090000_index_recipe_descriptions.sql:*: "
            "[[]require-concurrent-index-creation] During normal index creation*",
            "*fix: CREATE INDEX CONCURRENTLY*",
            "FAILED migrations/20250116090000_index_recipe_descriptions.sql::lint*",
        ]
    )
    assert mine() == before, "no server started, nothing left behind"


def test_lint_mode_passes_the_demo_release(demo: Project) -> None:
    result = demo.run("--junitxml=lint.xml", mode="lint")
    assert result.ret == 0
    result.assert_outcomes(passed=6)
    junit = (demo.path / "lint.xml").read_text()
    assert 'classname="dbgate.lint"' in junit
    assert 'name="migrations/20250115160002_fix_recipe_category_fields_cleanup.sql::lint"' in junit


def test_a_bad_ignore_is_a_usage_error(project: Project) -> None:
    folder = project.path / "migrations"
    folder.mkdir()
    (folder / "1_a.sql").write_text(
        "-- dbgate: ignore renaming-table\nALTER TABLE t RENAME TO u;\n"
    )
    result = project.run(mode="lint")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*1_a.sql:1: `-- dbgate: ignore renaming-table` gives no reason*"])


def test_staging_reports_findings_on_small_tables_and_fails_on_big_ones(
    deploy_project: Project,
) -> None:
    folder = deploy_project.path / "migrations"
    shutil.rmtree(folder)
    folder.mkdir()
    (folder / "1_index_reports.sql").write_text("CREATE INDEX reports_title ON reports (title);\n")
    (folder / "2_index_events.sql").write_text("CREATE INDEX events_at ON events (at);\n")
    result = deploy_project.run("-rA", "-k", "lint")
    result.assert_outcomes(passed=1, failed=1, deselected=result.parseoutcomes()["deselected"])
    text = result.stdout.str()
    assert "PASSED migrations/1_index_reports.sql::lint" in text
    assert "FAILED migrations/2_index_events.sql::lint" in text
    assert "[require-concurrent-index-creation]" in text
    results = json.loads((deploy_project.path / ".dbgate" / "staging-results.json").read_text())
    (small,) = [i for i in results["items"] if i["nodeid"].endswith("1_index_reports.sql::lint")]
    assert "(reports has 2 rows, fewer than 10,000)" in small["figures"]["notes"]
    lint_only = deploy_project.run(mode="lint")
    lint_only.assert_outcomes(failed=2)


def test_staging_judges_a_table_as_the_migration_meets_it(deploy_project: Project) -> None:
    """reports has 2 rows in the snapshot, but the release grows it before indexing it."""
    folder = deploy_project.path / "migrations"
    shutil.rmtree(folder)
    folder.mkdir()
    (folder / "1_fill_reports.sql").write_text(
        "INSERT INTO reports SELECT n, 'report ' || n FROM generate_series(3, 30000) n;\n"
    )
    (folder / "2_index_reports.sql").write_text("CREATE INDEX reports_title ON reports (title);\n")
    result = deploy_project.run("-rA", "-k", "lint or applied")
    text = result.stdout.str()
    assert "FAILED migrations/2_index_reports.sql::lint" in text, text
    assert "[require-concurrent-index-creation]" in text
    # What the lock watch measured while that migration ran stands beside the finding.
    assert "    staging: the lock watch measured " in text
    # Without the migrations before it (lint alone), the snapshot's size is all there is.
    alone = deploy_project.run("-rA", "-k", "2_index_reports and lint")
    assert alone.ret == 0
    results = json.loads((deploy_project.path / ".dbgate" / "staging-results.json").read_text())
    (item,) = [i for i in results["items"] if i["nodeid"].endswith("2_index_reports.sql::lint")]
    assert "(reports has 2 rows, fewer than 10,000)" in item["figures"]["notes"]


SARIF_CORE = {
    # The part of the SARIF 2.1.0 schema (OASIS) GitHub code scanning reads; the full schema is
    # not available offline, so its required core is written out here.
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "runs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["tool", "results"],
                "properties": {
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name", "rules"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "rules": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["id", "shortDescription"],
                                        },
                                    },
                                },
                            }
                        },
                    },
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["ruleId", "level", "message", "locations"],
                            "properties": {
                                "level": {"enum": ["none", "note", "warning", "error"]},
                                "message": {"type": "object", "required": ["text"]},
                                "locations": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["physicalLocation"],
                                        "properties": {
                                            "physicalLocation": {
                                                "type": "object",
                                                "required": ["artifactLocation", "region"],
                                                "properties": {
                                                    "region": {
                                                        "type": "object",
                                                        "required": ["startLine"],
                                                        "properties": {
                                                            "startLine": {
                                                                "type": "integer",
                                                                "minimum": 1,
                                                            }
                                                        },
                                                    }
                                                },
                                            }
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_github_annotations_and_sarif_name_each_finding_where_it_is(project: Project) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    folder = project.path / "db" / "migrations"
    folder.mkdir(parents=True)
    (folder / "1_orders.sql").write_text(
        "-- dbgate: ignore renaming-table the app reads both names since release 41\n"
        'ALTER TABLE "Order Lines" RENAME TO "OrderLine";\n'
        "\n"
        'CREATE INDEX "OrderLine_sku" ON "OrderLine" ("SKU");\n'
        'ALTER TABLE "OrderLine" ADD COLUMN note text;\n'
    )
    project.ini(dbgate_migrations="db/migrations")
    project.monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = project.run("--dbgate-sarif=out/lint.sarif", mode="lint")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "::error file=db/migrations/1_orders.sql,line=4,col=1,"
            "title=require-concurrent-index-creation::During normal index creation*%0Afix: "
            "CREATE INDEX CONCURRENTLY*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "::warning file=db/migrations/1_orders.sql,line=2,*title=renaming-table::"
            "Renaming a table may break existing clients. (ignored: the app reads both names "
            "since release 41)",
        ]
    )
    log = json.loads((project.path / "out" / "lint.sarif").read_text())
    jsonschema.validate(log, SARIF_CORE)
    results = {r["ruleId"]: r for r in log["runs"][0]["results"]}
    index = results["require-concurrent-index-creation"]
    assert index["level"] == "error"
    assert index["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "db/migrations/1_orders.sql", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 4, "startColumn": 1},
    }
    renamed = results["renaming-table"]
    assert renamed["level"] == "warning"
    assert renamed["suppressions"] == [
        {"kind": "inSource", "justification": "the app reads both names since release 41"}
    ]
    assert {r["id"] for r in log["runs"][0]["tool"]["driver"]["rules"]} == set(results)


def test_no_annotations_outside_github_actions(project: Project) -> None:
    project.migrations(REPO / "examples" / "index_without_concurrently")
    project.monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    result = project.run(mode="lint")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "::error" not in result.stdout.str()


def test_lint_rules_and_pg_version_options_change_the_verdict(project: Project) -> None:
    folder = project.path / "migrations"
    folder.mkdir()
    (folder / "1_flag.sql").write_text("ALTER TABLE t ADD COLUMN flag boolean DEFAULT false;\n")
    (folder / "2_rename.sql").write_text("ALTER TABLE t RENAME COLUMN a TO b;\n")
    old = project.run("--dbgate-pg-version=10", "-rA", mode="lint")
    old.stdout.fnmatch_lines(["FAILED migrations/1_flag.sql::lint*", "FAILED migrations/2_*"])
    relaxed = project.run("--dbgate-lint-rules=renaming-column=report", mode="lint")
    relaxed.assert_outcomes(passed=2)
    bad = project.run("--dbgate-lint-rules=renaming-colum=off", mode="lint")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*did you mean renaming-column*"])


def test_staging_judges_quoted_mixed_case_tables_by_their_own_size(
    project: Project, mixed_case_db: Endpoint, staging_server: Endpoint
) -> None:
    """tests/projects/mixed_case: "Document" has 50,000 rows and an empty lower-case twin
    `document`; "My Table" 5,000; "Billing Ops"."Rechnungen-Ü" 3,000. An index built without
    CONCURRENTLY fails on the big table only, each judged by its own count, not its twin's."""
    source = mixed_case_db
    folder = project.path / "migrations"
    folder.mkdir()
    (folder / "1_index_document.sql").write_text(
        'CREATE INDEX "Document_Title_idx" ON "Document" ("Title");\n'
    )
    (folder / "2_index_twin.sql").write_text("CREATE INDEX document_title ON document (title);\n")
    (folder / "3_index_my_table.sql").write_text('CREATE INDEX "My Table_n" ON "My Table" (n);\n')
    (folder / "4_index_invoices.sql").write_text(
        'CREATE INDEX rechnungen_betrag ON "Billing Ops"."Rechnungen-Ü" ("Betrag €");\n'
    )
    project.ini(dbgate_max_regression="off")
    result = project.against(source, staging_server).run("-k", "lint or applied", "-rA")
    text = result.stdout.str()
    assert "FAILED migrations/1_index_document.sql::lint" in text, text
    for passing in ("2_index_twin", "3_index_my_table", "4_index_invoices"):
        assert f"PASSED migrations/{passing}.sql::lint" in text, passing
    results = json.loads((project.path / ".dbgate" / "staging-results.json").read_text())
    notes = {
        i["nodeid"].split("/")[-1]: i["figures"].get("notes", "")
        for i in results["items"]
        if i["nodeid"].endswith("::lint")
    }
    assert "document has 0 rows, fewer than 10,000" in notes["2_index_twin.sql::lint"]
    assert "My Table has 5,000 rows, fewer than 10,000" in notes["3_index_my_table.sql::lint"]
    assert (
        "Billing Ops.Rechnungen-Ü has 3,000 rows, fewer than 10,000"
        in notes["4_index_invoices.sql::lint"]
    )
