"""The static safety rules: each flags its unsafe case and stays quiet on the safe one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.lint.engine import lint
from pytest_dbgate.lint.rules import RULES
from pytest_dbgate.migrations.parse import discover

from .conftest import REPO, Project

# (rule, unsafe SQL, safe SQL): each in a release whose earlier migration created nothing, so
# `t`, `parent` and `d` are existing tables and a domain of the application.
CASES = [
    ("index-not-concurrent", "CREATE INDEX i ON t (a);", "CREATE INDEX CONCURRENTLY i ON t (a);"),
    ("index-not-concurrent", "DROP INDEX i;", "DROP INDEX CONCURRENTLY IF EXISTS i;"),
    ("index-not-concurrent", "REINDEX INDEX i;", "REINDEX INDEX CONCURRENTLY i;"),
    (
        "concurrently-in-transaction",
        "BEGIN;\nCREATE INDEX CONCURRENTLY i ON t (a);\nCOMMIT;",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);",
    ),
    (
        "constraint-not-valid",
        "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (p) REFERENCES parent (id);",
        "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (p) REFERENCES parent (id) NOT VALID;",
    ),
    (
        "constraint-not-valid",
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);",
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;",
    ),
    (
        "constraint-left-not-valid",
        "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (p) REFERENCES parent (id) NOT VALID;",
        "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (p) REFERENCES parent (id) NOT VALID;\n"
        "ALTER TABLE t VALIDATE CONSTRAINT f;",
    ),
    (
        "unique-constraint-directly",
        "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a);",
        "ALTER TABLE t ADD CONSTRAINT u UNIQUE USING INDEX t_a_key;",
    ),
    (
        "exclusion-constraint",
        "ALTER TABLE t ADD CONSTRAINT x EXCLUDE USING gist (r WITH &&);",
        "CREATE TABLE n (r int4range, EXCLUDE USING gist (r WITH &&));",
    ),
    (
        "volatile-default",
        "ALTER TABLE t ADD COLUMN token uuid DEFAULT gen_random_uuid();",
        "ALTER TABLE t ADD COLUMN created timestamptz DEFAULT now();",
    ),
    (
        "not-null-without-default",
        "ALTER TABLE t ADD COLUMN b int NOT NULL;",
        "ALTER TABLE t ADD COLUMN b int NOT NULL DEFAULT 0;",
    ),
    (
        "set-not-null",
        "ALTER TABLE t ALTER COLUMN a SET NOT NULL;",
        "ALTER TABLE t ADD CONSTRAINT t_a_not_null CHECK (a IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE t VALIDATE CONSTRAINT t_a_not_null;\n"
        "ALTER TABLE t ALTER COLUMN a SET NOT NULL;",
    ),
    (
        "type-change-rewrite",
        "ALTER TABLE t ALTER COLUMN a TYPE bigint;",
        "ALTER TABLE t ALTER COLUMN name TYPE text;",
    ),
    (
        "rewriting-column",
        "ALTER TABLE t ADD COLUMN id2 bigserial;",
        "ALTER TABLE t ADD COLUMN b int;",
    ),
    (
        "rewriting-column",
        "ALTER TABLE t ADD COLUMN g int GENERATED ALWAYS AS (a + 1) STORED;",
        "CREATE TABLE n (a int, g int GENERATED ALWAYS AS (a + 1) STORED);",
    ),
    (
        "rewriting-column",
        "ALTER TABLE t ADD COLUMN n int GENERATED ALWAYS AS IDENTITY;",
        "ALTER TABLE t ADD COLUMN n int;",
    ),
    ("rename", "ALTER TABLE t RENAME COLUMN a TO b;", "ALTER TABLE t ADD COLUMN b int;"),
    ("rename", "ALTER TABLE t RENAME TO u;", "CREATE VIEW u AS SELECT * FROM t;"),
    (
        "drop",
        "ALTER TABLE t DROP COLUMN a;",
        "-- dbgate: hold-back 7d\nALTER TABLE t DROP COLUMN a;",
    ),
    ("drop", "DROP TABLE t;", "-- dbgate: hold-back 7d\nDROP TABLE t;"),
    (
        "drop",
        "ALTER TABLE t ALTER COLUMN a DROP NOT NULL;",
        "ALTER TABLE t ALTER COLUMN a SET DEFAULT 0;",
    ),
    ("truncate-cascade", "TRUNCATE t CASCADE;", "DELETE FROM t WHERE a < 0;"),
    (
        "detach-not-concurrent",
        "ALTER TABLE t DETACH PARTITION t_2020;",
        "ALTER TABLE t DETACH PARTITION t_2020 CONCURRENTLY;",
    ),
    (
        "domain-constraint",
        "ALTER DOMAIN d ADD CONSTRAINT positive CHECK (VALUE > 0);",
        "ALTER DOMAIN d ADD CONSTRAINT positive CHECK (VALUE > 0) NOT VALID;",
    ),
    (
        "transaction-nesting",
        "BEGIN;\nBEGIN;\nSELECT 1;\nCOMMIT;\nCOMMIT;",
        "BEGIN;\nSELECT 1;\nCOMMIT;",
    ),
    ("transaction-nesting", "BEGIN;\nSELECT 1;", "SELECT 1;"),
    (
        "not-idempotent",
        "CREATE INDEX CONCURRENTLY i ON t (a);\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS j ON t (b);",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS j ON t (b);",
    ),
    ("outside-database", "DROP DATABASE IF EXISTS other;", "DROP TABLE IF EXISTS other;"),
    ("large-write", "UPDATE t SET a = 0;", "UPDATE t SET a = 0 WHERE id BETWEEN 1 AND 1000;"),
    ("large-write", "DELETE FROM t;", "DELETE FROM t WHERE id < 1000;"),
    (
        "large-write",
        'UPDATE "Account" SET "displayName" = lower("displayName");',
        'UPDATE "Account" SET "displayName" = lower("displayName") WHERE "id" < 1000;',
    ),
    (
        "outside-database",
        'DROP DATABASE IF EXISTS "Tenant Archive";',
        'DROP TABLE IF EXISTS "Tenant Archive";',
    ),
    ("outside-database", "CREATE DATABASE other;", "CREATE SCHEMA other;"),
    ("outside-database", "ALTER DATABASE app SET work_mem = '1GB';", "SET work_mem = '1GB';"),
    ("outside-database", "ALTER SYSTEM SET work_mem = '1GB';", "SET work_mem = '1GB';"),
    ("outside-database", "COPY t TO PROGRAM 'gzip > /tmp/t.gz';", "COPY t TO STDOUT;"),
    ("outside-database", "COPY t FROM '/etc/passwd';", "COPY t FROM STDIN;"),
    (
        "outside-database",
        "DO $$ BEGIN PERFORM dblink_exec('dbname=prod', 'DELETE FROM t'); END $$;",
        "DO $$ BEGIN DELETE FROM t WHERE false; END $$;",
    ),
    (
        "outside-database",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'x';",
        "SELECT pid FROM pg_stat_activity;",
    ),
    (
        "outside-database",
        "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'db');",
        "CREATE TABLE s (id int);",
    ),
    ("outside-database", "LOAD 'auto_explain';", "SET search_path = app;"),
]


def release(folder: Path, *files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for number, text in enumerate(files, start=1):
        (folder / f"{number}_m{number}.sql").write_text(text + "\n")
    return folder


def fired(folder: Path) -> dict[str, list[str]]:
    """Rule ids that fail each migration (reported-only findings left out)."""
    return {
        mid: [f.rule.id for f in findings if f.fails]
        for mid, findings in lint(discover(folder)).items()
    }


def seen(folder: Path) -> dict[str, list[str]]:
    """Rule ids of every finding, reported-only ones included."""
    return {mid: [f.rule.id for f in fs] for mid, fs in lint(discover(folder)).items()}


@pytest.mark.parametrize(("rule", "unsafe", "safe"), CASES)
def test_rule_flags_the_unsafe_statement(tmp_path: Path, rule: str, unsafe: str, safe: str) -> None:
    found = (fired if RULES[rule].severity == "fail" else seen)(release(tmp_path, unsafe))
    assert rule in found["1_m1"]


@pytest.mark.parametrize(("rule", "unsafe", "safe"), CASES)
def test_rule_stays_quiet_on_the_safe_statement(
    tmp_path: Path, rule: str, unsafe: str, safe: str
) -> None:
    found = (fired if RULES[rule].severity == "fail" else seen)(release(tmp_path, safe))
    assert rule not in found["1_m1"]


def test_every_rule_has_cases() -> None:
    covered = {rule for rule, _, _ in CASES} | {"no-lock-timeout"}
    assert covered == set(RULES)


def test_what_the_release_created_is_not_an_existing_table(tmp_path: Path) -> None:
    found = fired(
        release(
            tmp_path,
            "CREATE TABLE n (a int);",
            "CREATE INDEX n_a ON n (a);\nALTER TABLE n ADD CONSTRAINT c CHECK (a > 0);",
        )
    )
    assert found == {"1_m1": [], "2_m2": []}


def test_what_the_release_added_can_be_dropped_or_renamed_without_a_finding(
    tmp_path: Path,
) -> None:
    found = fired(
        release(
            tmp_path,
            "CREATE TABLE draft (a int);\nALTER TABLE t ADD COLUMN scratch int;",
            "CREATE INDEX draft_a ON draft (a);\nALTER TABLE draft RENAME TO final;",
            "DROP INDEX draft_a;\nALTER TABLE t DROP COLUMN scratch;\n"
            "CREATE INDEX final_a ON final (a);",
        )
    )
    assert found == {"1_m1": [], "2_m2": [], "3_m3": []}
    # What the old release used is still judged.
    kept = fired(release(tmp_path, "SELECT 1;", "SELECT 1;", "ALTER TABLE t DROP COLUMN a;"))
    assert kept["3_m3"] == ["drop"]


def test_no_lock_timeout_is_reported_not_failed(tmp_path: Path) -> None:
    (findings,) = lint(discover(release(tmp_path, "ALTER TABLE t ADD COLUMN b int;"))).values()
    assert [(f.rule.id, f.fails) for f in findings] == [("no-lock-timeout", False)]


def test_lock_timeout_in_the_file_satisfies_it(tmp_path: Path) -> None:
    folder = release(tmp_path, "SET lock_timeout = '500ms';\nALTER TABLE t ADD COLUMN b int;")
    (findings,) = lint(discover(folder)).values()
    assert findings == []


def test_a_held_back_drop_is_reported_not_failed(tmp_path: Path) -> None:
    folder = release(tmp_path, "-- dbgate: hold-back 7d\nALTER TABLE t DROP COLUMN a;")
    (findings,) = lint(discover(folder)).values()
    drop = next(f for f in findings if f.rule.id == "drop")
    assert drop.held_back and not drop.fails


def test_an_ignore_with_a_reason_silences_one_statement(tmp_path: Path) -> None:
    folder = release(
        tmp_path,
        "-- dbgate: ignore index-not-concurrent t has 12 rows, a lookup table\n"
        "CREATE INDEX i ON t (a);\n"
        "CREATE INDEX j ON t (b);",
    )
    (findings,) = lint(discover(folder)).values()
    index = [f for f in findings if f.rule.id == "index-not-concurrent"]
    assert [(f.statement.line, f.ignored) for f in index] == [
        (2, "t has 12 rows, a lookup table"),
        (3, None),
    ]


def test_an_ignore_before_the_first_statement_covers_the_file(tmp_path: Path) -> None:
    folder = release(
        tmp_path,
        "-- dbgate: ignore rename the app reads both names since release 41\n\n"
        "SELECT 1;\nALTER TABLE t RENAME COLUMN a TO b;",
    )
    assert fired(folder) == {"1_m1": []}


@pytest.mark.parametrize(
    ("directive", "message"),
    [
        ("-- dbgate: ignore no-such-rule because", "names no lint rule"),
        ("-- dbgate: ignore rename", "gives no reason"),
    ],
)
def test_bad_ignores_are_clear_errors(tmp_path: Path, directive: str, message: str) -> None:
    folder = release(tmp_path, f"{directive}\nALTER TABLE t RENAME COLUMN a TO b;")
    with pytest.raises(ConfigError, match=message) as raised:
        lint(discover(folder))
    assert "1_m1.sql:1" in str(raised.value)


def test_the_demo_release_has_no_failing_finding() -> None:
    found = lint(discover(REPO / "migrations"))
    assert [f.rule.id for fs in found.values() for f in fs if f.fails] == []
    cleanup = found["20250115160002_fix_recipe_category_fields_cleanup"]
    assert any(f.rule.id == "drop" and f.held_back for f in cleanup)


# -- as pytest items -----------------------------------------------------------------------


def test_lint_mode_needs_no_database_and_fails_with_the_rule(project: Project) -> None:
    project.migrations(REPO / "examples" / "index_without_concurrently")
    before = {p.name for p in Path("/tmp").glob("dbgate-*")}
    result = project.run("--dbgate-pg-bindir=/nonexistent", "-rA", mode="lint")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*migrations/20250116090000_index_recipe_descriptions.sql:*: [[]index-not-concurrent] "
            "CREATE INDEX on recipes without CONCURRENTLY",
            "*fix: add CONCURRENTLY*",
            "FAILED migrations/20250116090000_index_recipe_descriptions.sql::lint*",
        ]
    )
    assert {p.name for p in Path("/tmp").glob("dbgate-*")} == before, "no server started"


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
    (folder / "1_a.sql").write_text("-- dbgate: ignore rename\nALTER TABLE t RENAME TO u;\n")
    result = project.run(mode="lint")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*1_a.sql:1: `-- dbgate: ignore rename` gives no reason*"])


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
    assert "[index-not-concurrent]" in text
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
    assert "[index-not-concurrent]" in text
    # Without the migrations before it (lint alone), the snapshot's size is all there is.
    alone = deploy_project.run("-rA", "-k", "2_index_reports and lint")
    assert alone.ret == 0
    results = json.loads((deploy_project.path / ".dbgate" / "staging-results.json").read_text())
    (item,) = [i for i in results["items"] if i["nodeid"].endswith("2_index_reports.sql::lint")]
    assert "(reported: reports has 2 rows, fewer than 10,000)" in item["figures"]["notes"]


@pytest.mark.parametrize(
    ("example", "rule"),
    [
        ("index_without_concurrently", "index-not-concurrent"),
        ("volatile_default", "volatile-default"),
        ("fk_revalidated", "constraint-not-valid"),
        ("renamed_column", "rename"),
        ("unvalidated_fk", "constraint-left-not-valid"),
    ],
)
def test_the_unsafe_examples_fail_with_their_rule(example: str, rule: str) -> None:
    found = lint(discover(REPO / "examples" / example))
    assert rule in {f.rule.id for fs in found.values() for f in fs if f.fails}


def test_no_ignore_silences_a_statement_outside_the_database(tmp_path: Path) -> None:
    found = fired(
        release(
            tmp_path,
            "-- dbgate: ignore outside-database it is only staging\nDROP DATABASE IF EXISTS x;",
        )
    )
    assert "outside-database" in found["1_m1"]


def test_set_not_null_is_exempt_only_after_that_columns_check_was_validated(
    tmp_path: Path,
) -> None:
    check = "ALTER TABLE t ADD CONSTRAINT t_a_nn CHECK (a IS NOT NULL) NOT VALID;"
    other = "ALTER TABLE t ADD CONSTRAINT t_b_pos CHECK (b > 0) NOT VALID;"
    validated = fired(
        release(
            tmp_path / "a",
            check,
            "ALTER TABLE t VALIDATE CONSTRAINT t_a_nn;",
            "ALTER TABLE t ALTER COLUMN a SET NOT NULL;",
        )
    )
    assert "set-not-null" not in validated["3_m3"]
    # Another constraint validated on the same table, or the check of another column: the scan
    # still happens.
    for first, second in ((other, "t_b_pos"), (check.replace("(a ", "(c "), "t_a_nn")):
        folder = tmp_path / second / first[-20:].replace(" ", "_").replace(";", "")
        found = fired(
            release(
                folder,
                first,
                f"ALTER TABLE t VALIDATE CONSTRAINT {second};",
                "ALTER TABLE t ALTER COLUMN a SET NOT NULL;",
            )
        )
        assert "set-not-null" in found["3_m3"], first


def test_set_not_null_exemption_follows_quoted_mixed_case_names(tmp_path: Path) -> None:
    """Prisma-style names: the validated check of "Email" lets "Email" skip the scan, not
    "Name"."""
    check = (
        'ALTER TABLE "Account" ADD CONSTRAINT "Account_Email_nn" CHECK ("Email" IS NOT NULL) '
        "NOT VALID;"
    )
    validate = 'ALTER TABLE "Account" VALIDATE CONSTRAINT "Account_Email_nn";'
    same = fired(
        release(
            tmp_path / "same",
            check,
            validate,
            'ALTER TABLE "Account" ALTER COLUMN "Email" SET NOT NULL;',
        )
    )
    other = fired(
        release(
            tmp_path / "other",
            check,
            validate,
            'ALTER TABLE "Account" ALTER COLUMN "Name" SET NOT NULL;',
        )
    )
    assert "set-not-null" not in same["3_m3"]
    assert "set-not-null" in other["3_m3"]
