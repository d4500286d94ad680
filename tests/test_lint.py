"""The lint: squawk's rules and the gate's own, each family firing on its unsafe statement and
quiet on the safe one, judged with the context only the gate has (what the release created,
how big a table is, what the project configured). No server: squawk is a local program."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.lint import squawk
from pytest_dbgate.lint.catalog import RULES
from pytest_dbgate.lint.engine import Finding, Lint
from pytest_dbgate.lint.judge import Judged, judge
from pytest_dbgate.lint.rules import OWN_RULES
from pytest_dbgate.lint.squawk import SquawkFailed
from pytest_dbgate.migrations.parse import discover

from .conftest import REPO

# (family, rule, unsafe SQL, safe SQL), written for this suite. Each runs as the last migration
# of a release whose earlier files created nothing: `t`, `parent`, `p` and `d` are existing
# objects of the application. The safe statement is what the rule's fix says to write.
FAMILIES = [
    ("index", "require-concurrent-index-creation", "CREATE INDEX t_a ON t (a);",
     "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);"),
    ("index", "require-concurrent-index-deletion", "DROP INDEX t_a;",
     "DROP INDEX CONCURRENTLY IF EXISTS t_a;"),
    ("index", "require-concurrent-reindex", "REINDEX INDEX t_a;",
     "REINDEX INDEX CONCURRENTLY t_a;"),
    ("index", "concurrently-false", "REINDEX (CONCURRENTLY false) TABLE t;",
     "REINDEX (CONCURRENTLY) TABLE t;"),
    ("constraint", "constraint-missing-not-valid", "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);",
     "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;"),
    ("constraint", "adding-foreign-key-constraint",
     "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (p) REFERENCES parent (id);",
     "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (p) REFERENCES parent (id) NOT VALID;"),
    ("constraint", "disallowed-unique-constraint", "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a);",
     "ALTER TABLE t ADD CONSTRAINT u UNIQUE USING INDEX t_a_key;"),
    ("constraint", "adding-serial-primary-key-field", "ALTER TABLE t ADD PRIMARY KEY (a);",
     "ALTER TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY USING INDEX t_a_key;"),
    ("constraint", "exclusion-constraint",
     "ALTER TABLE t ADD CONSTRAINT x EXCLUDE USING gist (r WITH &&);",
     "CREATE TABLE booking (r int4range, EXCLUDE USING gist (r WITH &&));"),
    ("constraint", "adding-not-nullable-field", "ALTER TABLE t ALTER COLUMN a SET NOT NULL;",
     "ALTER TABLE t ADD CONSTRAINT t_a_nn CHECK (a IS NOT NULL) NOT VALID;"),
    ("constraint", "ban-alter-domain-with-add-constraint",
     "ALTER DOMAIN d ADD CONSTRAINT positive CHECK (VALUE > 0);",
     "ALTER TABLE t ADD CONSTRAINT positive CHECK (a > 0) NOT VALID;"),
    ("rewrite", "adding-field-with-default",
     "ALTER TABLE t ADD COLUMN token uuid DEFAULT gen_random_uuid();",
     "ALTER TABLE t ADD COLUMN created timestamptz DEFAULT now();"),
    ("rewrite", "adding-field-with-default",
     "ALTER TABLE t ADD COLUMN g bigint GENERATED ALWAYS AS (a * 2) STORED;",
     "ALTER TABLE t ADD COLUMN g bigint;"),
    ("rewrite", "adding-serial-column", "ALTER TABLE t ADD COLUMN n bigserial;",
     "ALTER TABLE t ADD COLUMN n bigint;"),
    ("rewrite", "changing-column-type", "ALTER TABLE t ALTER COLUMN a TYPE text USING a::text;",
     "ALTER TABLE t ADD COLUMN a_text text;"),
    ("rewrite", "rewrite-command", "VACUUM FULL t;", "VACUUM ANALYZE t;"),
    ("rewrite", "rewrite-command", "CLUSTER t USING t_pkey;", "ANALYZE t;"),
    ("partition", "require-concurrent-partition-detach",
     "ALTER TABLE p DETACH PARTITION p_2020;",
     "ALTER TABLE p DETACH PARTITION p_2020 CONCURRENTLY;"),
    ("compat", "renaming-column", "ALTER TABLE t RENAME COLUMN a TO b;",
     "ALTER TABLE t ADD COLUMN b bigint;"),
    ("compat", "renaming-table", "ALTER TABLE t RENAME TO u;",
     "CREATE VIEW u AS SELECT * FROM t;"),
    ("compat", "ban-drop-column", "ALTER TABLE t DROP COLUMN a;",
     "-- dbgate: hold-back 7d\nALTER TABLE t DROP COLUMN a;"),
    ("compat", "ban-drop-table", "DROP TABLE t;", "-- dbgate: hold-back 7d\nDROP TABLE t;"),
    ("compat", "ban-drop-not-null", "ALTER TABLE t ALTER COLUMN a DROP NOT NULL;",
     "ALTER TABLE t ALTER COLUMN a SET DEFAULT 0;"),
    ("compat", "adding-required-field", "ALTER TABLE t ADD COLUMN b bigint NOT NULL;",
     "ALTER TABLE t ADD COLUMN b bigint NOT NULL DEFAULT 0;"),
    ("compat", "ban-truncate-cascade", "TRUNCATE t CASCADE;", "DELETE FROM t WHERE a < 0;"),
    ("compat", "ban-drop-view", "DROP VIEW report;",
     "-- dbgate: hold-back 7d\nDROP VIEW report;"),
    ("transaction", "transaction-nesting", "BEGIN;\nBEGIN;\nSELECT 1;\nCOMMIT;\nCOMMIT;",
     "BEGIN;\nSELECT 1;\nCOMMIT;"),
    ("transaction", "ban-uncommitted-transaction", "BEGIN;\nSELECT 1;", "SELECT 1;"),
    ("transaction", "ban-concurrent-index-creation-in-transaction",
     "BEGIN;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);\nCOMMIT;",
     "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);"),
    ("transaction", "concurrently-in-transaction",
     "BEGIN;\nDROP INDEX CONCURRENTLY IF EXISTS t_a;\nCOMMIT;",
     "DROP INDEX CONCURRENTLY IF EXISTS t_a;"),
    ("write", "large-write", "UPDATE t SET a = 0;",
     "UPDATE t SET a = 0 WHERE id BETWEEN 1 AND 1000;"),
    ("release", "constraint-left-not-valid",
     "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (p) REFERENCES parent (id) NOT VALID;",
     "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (p) REFERENCES parent (id) NOT VALID;\n"
     "ALTER TABLE t VALIDATE CONSTRAINT f;"),
    ("outside", "outside-database", "DROP DATABASE IF EXISTS archive;",
     "DROP TABLE IF EXISTS archive;"),
    ("style", "prefer-robust-stmts",
     "CREATE INDEX CONCURRENTLY t_b ON t (b);",
     "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_b ON t (b);"),
    ("style", "prefer-bigint-over-int", "CREATE TABLE n (id int PRIMARY KEY);",
     "CREATE TABLE n (id bigint PRIMARY KEY);"),
]  # fmt: skip


def release(folder: Path, *files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for number, text in enumerate(files, start=1):
        (folder / f"{number}_m{number}.sql").write_text(text + "\n")
    return folder


def findings(folder: Path, pg_version: str = "15", rootdir: Path | None = None) -> list[Finding]:
    """The last migration's findings."""
    config = squawk.read_config(rootdir or folder, folder)
    found = Lint.read(discover(folder), config).findings(pg_version)
    return list(found.values())[-1]


def verdicts(folder: Path, **severities: str) -> dict[str, Judged]:
    """Rule id → the lint-mode verdict on the last migration (no table sizes known)."""
    judged = (judge(f, dict(severities), None, 10_000) for f in findings(folder))  # type: ignore[arg-type]
    return {j.finding.rule.id: j for j in judged if j is not None}


@pytest.mark.parametrize(("family", "rule", "unsafe", "safe"), FAMILIES)
def test_the_rule_judges_the_unsafe_statement_by_its_severity(
    tmp_path: Path, family: str, rule: str, unsafe: str, safe: str
) -> None:
    found = verdicts(release(tmp_path, "SELECT 1;", unsafe))
    assert rule in found, f"{family}: {rule} did not fire on {unsafe!r}: {sorted(found)}"
    assert found[rule].fails == (RULES[rule].severity == "fail")


@pytest.mark.parametrize(("family", "rule", "unsafe", "safe"), FAMILIES)
def test_the_rule_stays_quiet_on_the_safe_statement(
    tmp_path: Path, family: str, rule: str, unsafe: str, safe: str
) -> None:
    found = verdicts(release(tmp_path, "SELECT 1;", safe))
    assert rule not in found or not found[rule].fails, f"{family}: {found[rule].line('x')}"


@pytest.mark.parametrize(
    ("module", "case"),
    [(m, c) for m in OWN_RULES for c in m.CASES],
    ids=lambda value: getattr(value, "__name__", "").rsplit(".", 1)[-1] or None,
)
def test_each_own_rule_fires_on_its_cases(tmp_path: Path, module: object, case: object) -> None:
    rule_id = module.RULE.id  # type: ignore[attr-defined]
    fired = {f.rule.id for f in findings(release(tmp_path, "SELECT 1;", case.sql))}  # type: ignore[attr-defined]
    assert (rule_id in fired) == case.fires, case  # type: ignore[attr-defined]


def test_every_catalog_rule_of_squawk_is_a_rule_squawk_knows(tmp_path: Path) -> None:
    """squawk refuses an unknown name in --include: the catalog's ids are squawk's own."""
    ids = [r.id for r in RULES.values() if r.source == "squawk" and r.id != "unused-ignore"]
    (tmp_path / "ok.sql").write_text("SELECT 1;\n")
    done = subprocess.run(
        [squawk.binary(), f"--include={','.join(ids)}", "ok.sql"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_every_own_rule_is_in_the_catalog_and_has_both_kinds_of_case() -> None:
    for module in OWN_RULES:
        assert RULES[module.RULE.id] is module.RULE
        assert {case.fires for case in module.CASES} == {True, False}, module.__name__


# -- the context squawk cannot have ----------------------------------------------------------


def test_what_the_release_created_is_reported_not_failed(tmp_path: Path) -> None:
    found = verdicts(
        release(
            tmp_path,
            'CREATE TABLE "Draft Orders" (id bigint PRIMARY KEY, a bigint);',
            'CREATE INDEX draft_a ON "Draft Orders" (a);\n'
            'ALTER TABLE "Draft Orders" ADD CONSTRAINT c CHECK (a > 0);',
        )
    )
    index = found["require-concurrent-index-creation"]
    assert not index.fails and index.because == "new in this release: nothing else uses it yet"
    assert index.finding.table == "Draft Orders"
    assert not found["constraint-missing-not-valid"].fails


def test_what_the_release_added_can_be_dropped_or_renamed(tmp_path: Path) -> None:
    folder = release(
        tmp_path,
        "ALTER TABLE t ADD COLUMN scratch bigint;\nCREATE TABLE draft (a bigint);",
        "CREATE INDEX draft_a ON draft (a);\nALTER TABLE draft RENAME TO final;",
        "DROP INDEX draft_a;\nALTER TABLE t DROP COLUMN scratch;\n"
        "CREATE INDEX final_a ON final (a);",
    )
    assert [j.line("x") for j in verdicts(folder).values() if j.fails] == []
    # What the old release used is still judged.
    kept = verdicts(release(tmp_path / "kept", "SELECT 1;", "ALTER TABLE t DROP COLUMN a;"))
    assert kept["ban-drop-column"].fails


def test_a_held_back_drop_is_reported(tmp_path: Path) -> None:
    found = verdicts(release(tmp_path, "-- dbgate: hold-back 7d\nALTER TABLE t DROP COLUMN a;"))
    assert not found["ban-drop-column"].fails
    assert "held back" in (found["ban-drop-column"].because or "")


@pytest.mark.parametrize(
    ("rows", "fails"), [({"t": 12}, False), ({"t": 2_000_000}, True), ({}, True)]
)
def test_a_lock_finding_on_a_small_table_is_reported(
    tmp_path: Path, rows: dict[str, int], fails: bool
) -> None:
    (finding,) = [
        f
        for f in findings(release(tmp_path, "CREATE INDEX t_a ON t (a);"))
        if f.rule.id == "require-concurrent-index-creation"
    ]
    judged = judge(finding, {}, rows, 10_000)
    assert judged is not None and judged.fails == fails
    if not fails:
        assert judged.because == "t has 12 rows, fewer than 10,000"


def test_a_rename_fails_whatever_the_size_of_the_table(tmp_path: Path) -> None:
    """The old release breaks on a renamed column of a table of 3 rows just the same."""
    (finding,) = [
        f
        for f in findings(release(tmp_path, "ALTER TABLE t RENAME COLUMN a TO b;"))
        if f.rule.id == "renaming-column"
    ]
    judged = judge(finding, {}, {"t": 3}, 10_000)
    assert judged is not None and judged.fails


def test_set_not_null_after_that_columns_check_was_validated_is_reported(tmp_path: Path) -> None:
    check = 'ALTER TABLE "Account" ADD CONSTRAINT nn CHECK ("Email" IS NOT NULL) NOT VALID;'
    validate = 'ALTER TABLE "Account" VALIDATE CONSTRAINT nn;'
    same = verdicts(
        release(
            tmp_path / "same",
            check,
            validate,
            'ALTER TABLE "Account" ALTER COLUMN "Email" SET NOT NULL;',
        )
    )
    other = verdicts(
        release(
            tmp_path / "other",
            check,
            validate,
            'ALTER TABLE "Account" ALTER COLUMN "Name" SET NOT NULL;',
        )
    )
    assert not same["adding-not-nullable-field"].fails
    assert "skips the scan" in (same["adding-not-nullable-field"].because or "")
    assert other["adding-not-nullable-field"].fails


# -- how the runner runs the file ------------------------------------------------------------


def test_validating_in_the_transaction_that_added_the_constraint_fails(tmp_path: Path) -> None:
    both = (
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;\n"
        "ALTER TABLE t VALIDATE CONSTRAINT c;"
    )
    wrapped = verdicts(release(tmp_path / "wrapped", both))
    apart = verdicts(release(tmp_path / "apart", "-- dbgate: no-transaction\n" + both))
    assert wrapped["constraint-missing-not-valid"].fails
    assert "constraint-missing-not-valid" not in apart


def test_squawk_lints_for_the_version_it_is_told(tmp_path: Path) -> None:
    """A constant default rewrites the table before PostgreSQL 11, not since."""
    folder = release(tmp_path, "ALTER TABLE t ADD COLUMN flag boolean DEFAULT false;")
    assert "adding-field-with-default" in {f.rule.id for f in findings(folder, "10")}
    assert "adding-field-with-default" not in {f.rule.id for f in findings(folder, "15")}


def test_a_dbmate_down_section_is_not_linted(tmp_path: Path) -> None:
    (tmp_path / "20250101000000_add_note.sql").write_text(
        "-- migrate:up\nALTER TABLE t ADD COLUMN note text;\n\n"
        "-- migrate:down\nALTER TABLE t DROP COLUMN note;\nDROP TABLE t;\n"
    )
    found = {f.rule.id for f in findings(tmp_path)}
    assert not found & {"ban-drop-column", "ban-drop-table"}


def test_findings_point_at_the_files_own_lines(tmp_path: Path) -> None:
    folder = release(tmp_path, "-- a comment\n\nSELECT 1;\n\n  CREATE INDEX t_a\n    ON t (a);")
    (finding,) = [f for f in findings(folder) if f.rule.id == "require-concurrent-index-creation"]
    assert (finding.line, finding.statement.line) == (5, 5)


# -- what the project configured -------------------------------------------------------------


def test_severities_are_configurable_per_rule(tmp_path: Path) -> None:
    folder = release(
        tmp_path, "CREATE INDEX CONCURRENTLY t_b ON t (b);\nALTER TABLE t RENAME TO u;"
    )
    default = verdicts(folder)
    changed = verdicts(folder, **{"prefer-robust-stmts": "fail", "renaming-table": "report"})
    off = verdicts(folder, **{"renaming-table": "off"})
    assert not default["prefer-robust-stmts"].fails and default["renaming-table"].fails
    assert changed["prefer-robust-stmts"].fails and not changed["renaming-table"].fails
    assert changed["renaming-table"].because == "reported (dbgate_lint_rules)"
    assert "renaming-table" not in off


def test_the_squawk_toml_and_squawk_ignore_comments_are_honoured(tmp_path: Path) -> None:
    folder = release(
        tmp_path / "migrations",
        "-- squawk-ignore renaming-column\nALTER TABLE t RENAME COLUMN a TO b;\n"
        "UPDATE t SET a = 0;\nCREATE INDEX CONCURRENTLY t_b ON t (b);",
    )
    (tmp_path / ".squawk.toml").write_text('excluded_rules = ["prefer-robust-stmts"]\n')
    fired = {f.rule.id for f in findings(folder, rootdir=tmp_path)}
    assert not fired & {"renaming-column", "prefer-robust-stmts"}, fired
    assert "large-write" in fired
    # The file is found from the migrations folder up to the project root, not above it.
    assert "prefer-robust-stmts" in {
        f.rule.id for f in findings(folder, rootdir=tmp_path / "migrations")
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("excluded_rules = [prefer-robust-stmts\n", r"\.squawk\.toml cannot be read as TOML"),
        ('excluded_rules = "prefer-robust-stmts"\n', "must be a list of rule names"),
        ('excluded_rules = ["large-write"]\n', "large-write is the gate's own rule"),
        ('excluded_rules = ["prefer-robust-stmt"]\n', "did you mean prefer-robust-stmts"),
    ],
)
def test_a_bad_squawk_toml_is_bad_input(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / ".squawk.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        squawk.read_config(tmp_path, tmp_path)


def test_a_dbgate_ignore_accepts_a_squawk_finding_with_its_reason(tmp_path: Path) -> None:
    folder = release(
        tmp_path,
        "-- dbgate: ignore require-concurrent-index-creation a lookup table of 12 rows\n"
        "CREATE INDEX t_a ON t (a);\nCREATE INDEX t_b ON t (b);",
    )
    judged = [
        (j.finding.statement.line, j.fails, j.because)
        for f in findings(folder)
        if f.rule.id == "require-concurrent-index-creation"
        and (j := judge(f, {}, None, 10_000)) is not None
    ]
    assert judged == [(2, False, "ignored: a lookup table of 12 rows"), (3, True, None)]


def test_no_ignore_and_no_severity_silences_a_statement_outside_the_database(
    tmp_path: Path,
) -> None:
    found = verdicts(
        release(
            tmp_path,
            "-- dbgate: ignore outside-database it is only staging\nDROP DATABASE IF EXISTS x;",
        ),
        **{"outside-database": "off"},
    )
    assert found["outside-database"].fails


@pytest.mark.parametrize(
    ("directive", "message"),
    [
        ("-- dbgate: ignore renaming-colum because", "did you mean renaming-column"),
        ("-- dbgate: ignore renaming-column", "gives no reason"),
    ],
)
def test_bad_ignores_are_clear_errors(tmp_path: Path, directive: str, message: str) -> None:
    folder = release(tmp_path, f"{directive}\nALTER TABLE t RENAME COLUMN a TO b;")
    with pytest.raises(ConfigError, match=message) as raised:
        Lint.read(discover(folder), squawk.SquawkConfig(None))
    assert "1_m1.sql:1" in str(raised.value)


def test_without_squawk_the_lint_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(squawk.sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SquawkFailed, match="pip install 'squawk-cli"):
        findings(release(tmp_path / "m", "SELECT 1;"))


def test_the_demo_release_has_no_failing_finding() -> None:
    found = Lint.read(discover(REPO / "migrations"), squawk.SquawkConfig(None)).findings("15")
    judged = [judge(f, {}, None, 10_000) for fs in found.values() for f in fs]
    assert [j.line("x") for j in judged if j is not None and j.fails] == []
    cleanup = found["20250115160002_fix_recipe_category_fields_cleanup"]
    assert any(f.rule.id == "ban-drop-column" and f.held_back for f in cleanup)


@pytest.mark.parametrize(
    ("example", "rule"),
    [
        ("index_without_concurrently", "require-concurrent-index-creation"),
        ("volatile_default", "adding-field-with-default"),
        ("fk_revalidated", "adding-foreign-key-constraint"),
        ("renamed_column", "renaming-column"),
        ("unvalidated_fk", "constraint-left-not-valid"),
    ],
)
def test_the_unsafe_examples_fail_with_their_rule(example: str, rule: str) -> None:
    found = Lint.read(discover(REPO / "examples" / example), squawk.SquawkConfig(None))
    judged = [judge(f, {}, None, 10_000) for fs in found.findings("15").values() for f in fs]
    assert rule in {j.finding.rule.id for j in judged if j is not None and j.fails}


def test_the_readme_lists_every_rule() -> None:
    readme = (REPO / "README.md").read_text()
    lint = readme[readme.index("## Lint") : readme.index("## Your own tests")]
    assert [rule for rule in RULES if f"| `{rule}` |" not in lint] == []


def test_annotations_escape_what_github_reads_as_syntax() -> None:
    from pytest_dbgate.core.annotations import Annotation, of_item

    command = Annotation("error", "db/a,b:c.sql", 3, "rule", "50% done\nfix: x", 7).command()
    assert command == "::error file=db/a%2Cb%3Ac.sql,line=3,col=7,title=rule::50%25 done%0Afix: x"
    applied = of_item("m.sql", "applied", "failed at line 12: relation does not exist")
    assert applied.line == 12 and applied.level == "error"


def test_reindex_with_concurrently_switched_off_runs_in_one_transaction(tmp_path: Path) -> None:
    """It is a plain REINDEX: the runner wraps its file in one transaction (all or nothing,
    exactly once after any crash), where a concurrent one runs statement by statement."""
    off = discover(release(tmp_path / "off", "REINDEX (CONCURRENTLY false) TABLE t;"))
    on = discover(release(tmp_path / "on", "REINDEX (CONCURRENTLY) TABLE t;"))
    assert off[0].transactional and not on[0].transactional
