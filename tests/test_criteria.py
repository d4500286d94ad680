"""Each criterion on real servers: every unsafe example fails the right item, rightly worded."""

from __future__ import annotations

import hashlib
import json

import pytest
from psycopg import sql

from pytest_dbgate.pg.connections import Endpoint, connection

from .conftest import Project, example, outcomes


def test_unvalidated_foreign_key_fails_constraints_validated(remote_demo: Project) -> None:
    result = remote_demo.migrations(example("unvalidated_fk")).run()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes(result, failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*_ schema: constraints_validated _*",
            "1 constraint(s) are NOT VALID: existing rows were never checked against them",
            "    recipes.recipes_category_id_fkey (foreign key)",
            "  fix: validate them in a migration*",
            "    ALTER TABLE recipes VALIDATE CONSTRAINT recipes_category_id_fkey;",
            "FAILED dbgate::schema::constraints_validated - *",
        ]
    )
    # The lint saw it before the run, and in staging leaves the verdict to the schema check,
    # so one cause fails one item.
    results = json.loads((remote_demo.path / ".dbgate" / "staging-results.json").read_text())
    (lint,) = [i for i in results["items"] if i["nodeid"].endswith("::lint")]
    assert lint["outcome"] == "passed"
    notes = lint["figures"]["notes"]
    assert "[constraint-left-not-valid]" in notes
    assert "dbgate::schema::constraints_validated judges it on the migrated database" in notes


def test_failing_migration_names_file_line_and_error(remote_demo: Project) -> None:
    result = remote_demo.migrations(example("failing_migration")).run("-rs", "-rA")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes(result, failed=1, skipped=result.parseoutcomes()["skipped"])
    result.stdout.fnmatch_lines(
        [
            "*_ migrate: applied[[]20250115150100_add_recipes_category_id[]] _*",
            'migrations/20250115150100_add_recipes_category_id.sql:4: ERROR: relation "recipe" '
            "does not exist [[]42P01[]]",
            "    ALTER TABLE recipe ADD COLUMN IF NOT EXISTS category_note text",
            "  the file ran in one transaction, which was rolled back: none of its 2 statements*",
        ]
    )
    # One cause fails once: the schema checks say what they judged, not the failure again.
    results = json.loads((remote_demo.path / ".dbgate" / "staging-results.json").read_text())
    schema = {i["name"]: i for i in results["items"] if i["stage"] == "schema"}
    assert {i["outcome"] for i in schema.values()} == {"passed"}
    assert schema["migrations_recorded"]["figures"]["summary"] == (
        "1 of 3 recorded with their checksums (dbgate.migrations); judged on a partly migrated "
        "schema (2 migration(s) not applied)"
    )
    assert schema["constraints_validated"]["figures"]["summary"].endswith(
        "judged on a partly migrated schema (2 migration(s) not applied)"
    )
    result.stdout.fnmatch_lines(
        [
            "SKIPPED * not run: dbgate::migrate::applied"
            "[[]20250115150100_add_recipes_category_id[]] failed"
        ]
    )


def test_a_failed_concurrent_index_fails_its_migration_and_leaves_no_invalid_index(
    remote_demo: Project,
) -> None:
    result = remote_demo.migrations(example("invalid_index")).run("-rA")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*_ migrate: applied[[]20250115160001_unique_recipe_descriptions[]] _*",
            '*could not create unique index "recipes_description_key"*[[]23505[]]',
            "  the INVALID index the failed build left was dropped (recipes_description_key)",
        ]
    )
    result.stdout.fnmatch_lines(["schema * indexes_valid_and_ready * passed *"])


def test_an_invalid_index_fails_indexes_valid_and_ready_with_the_fix(
    remote_demo: Project,
) -> None:
    folder = remote_demo.path / "migrations"
    (folder / "20250116000000_break_an_index.sql").write_text(
        "CREATE UNIQUE INDEX recipes_title_key ON recipes (title, id);\n"
        "-- What a build cut short by a crash leaves (the gate drops the ones it sees fail).\n"
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'recipes_title_key'::regclass;\n"
    )
    result = remote_demo.run("-k", "schema or migrate")
    result.stdout.fnmatch_lines(
        [
            "*_ schema: indexes_valid_and_ready _*",
            "1 index(es) are not valid and ready*",
            "    recipes_title_key on recipes (not valid; *",
            "      fix: REINDEX INDEX CONCURRENTLY recipes_title_key;",
            "       or: DROP INDEX CONCURRENTLY recipes_title_key; CREATE UNIQUE INDEX "
            "CONCURRENTLY recipes_title_key ON public.recipes USING btree (title, id);",
        ]
    )


def test_pool_headroom_fails_when_the_pool_does_not_fit(remote_demo: Project) -> None:
    result = remote_demo.run("--dbgate-pool-size=500", "-k", "pool_headroom")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "staging postgres@127.0.0.1:*/postgres has room for * more connection(s): "
            "max_connections 100, 3 reserved, * in use; the gate needs 2 (the migration and a "
            "second session) and the application pool 500",
            "  raise max_connections*",
        ]
    )


def test_a_required_extension_nobody_has(remote_demo: Project) -> None:
    result = remote_demo.run("--dbgate-extensions=citext,no_such_ext", "-k", "extension")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ refresh: extension[[]no_such_ext[]] _*",
            "no_such_ext is not installed on the source server postgres@127.0.0.1:*/prod and "
            "cannot be: the server has no such extension",
            "    install the package that provides it on that server*",
            "  no_such_ext is not installed on the staging server *",
        ]
    )


def test_staging_on_the_production_server_is_refused(
    demo: Project, prod_db: Endpoint, source_server: Endpoint
) -> None:
    result = demo.against(prod_db, source_server).run()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*_ connect: staging_reachable _*",
            "the staging server postgres@127.0.0.1:*/postgres is the production (source) server; "
            "the gate refuses to create, restore or migrate databases there",
        ]
    )
    with connection(source_server, "source", "test") as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'dbgate%'"
        ).fetchone()
    assert row == (0,)


def test_an_existing_staging_database_of_someone_else_is_left_alone(
    remote_demo: Project, staging_server: Endpoint
) -> None:
    with connection(staging_server, "staging", "test") as conn:
        conn.execute("DROP DATABASE IF EXISTS dbgate_prod WITH (FORCE)")
        conn.execute("CREATE DATABASE dbgate_prod")
        conn.execute("COMMENT ON DATABASE dbgate_prod IS 'the team''s own'")
    try:
        result = remote_demo.run()
        result.stdout.fnmatch_lines(
            [
                "*_ refresh: snapshot_restored _*",
                "the database 'dbgate_prod' already exists on * and was not created by "
                "pytest-dbgate",
            ]
        )
        with connection(staging_server, "staging", "test") as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database"
                " WHERE datname = 'dbgate_prod'"
            ).fetchone()
        assert row == ("the team's own",)
    finally:
        with connection(staging_server, "staging", "test") as conn:
            conn.execute("DROP DATABASE IF EXISTS dbgate_prod WITH (FORCE)")


def _fingerprint(endpoint: Endpoint) -> str:
    """A digest of the source's catalog and of every row of every table."""
    digest = hashlib.sha256()
    with connection(endpoint, "source", "test", read_only=True) as conn:
        for row in conn.execute(
            "SELECT c.oid::regclass::text, c.relkind, c.relpages > -1, a.attname, a.atttypid"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
            " ORDER BY 1, 4"
        ):
            digest.update(repr(row).encode())
        tables = conn.execute(
            "SELECT quote_ident(schemaname), quote_ident(tablename) FROM pg_tables"
            " WHERE schemaname = 'public' ORDER BY 1, 2"
        ).fetchall()
        for schema, table in tables:
            query = sql.SQL("SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {}.{} t")
            row = conn.execute(
                query.format(sql.Identifier(str(schema)), sql.Identifier(str(table)))
            ).fetchone()
            digest.update(repr(row).encode())
    return digest.hexdigest()


def test_the_source_is_only_read(remote_demo: Project, prod_db: Endpoint) -> None:
    before = _fingerprint(prod_db)
    result = remote_demo.run()
    outcomes(result)
    assert _fingerprint(prod_db) == before
