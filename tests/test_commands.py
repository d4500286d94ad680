"""The project's own commands: an external test suite and a post-migrate step, on staging."""

from __future__ import annotations

import pytest

from .conftest import STAGING_PASSWORD, Project, outcomes

# Stands in for `npm test -- tests/integration/`: the app's tests, reading DATABASE_URL.
APP_CHECK = """
import os, sys
import psycopg

url = os.environ["DATABASE_URL"]
print("connecting to", url)
with psycopg.connect(url) as conn:
    found = conn.execute(
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_name = 'recipes' AND column_name = %s", (sys.argv[1],)
    ).fetchone()[0]
print("column", sys.argv[1], "present" if found else "MISSING")
sys.exit(0 if found else 1)
"""

# Stands in for `npx prisma generate`: writes a client from the migrated schema.
GENERATE_CLIENT = """
import os
import psycopg

with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'recipes'"
    ).fetchall()
with open("client.txt", "w") as out:
    out.write("\\n".join(r[0] for r in rows))
"""


def test_external_tests_run_before_and_after(remote_demo: Project) -> None:
    remote_demo.pytester.makepyfile(app_check=APP_CHECK)
    remote_demo.ini(dbgate_test_command="python app_check.py title")
    result = remote_demo.run("-v")
    outcomes(result)
    lines = [line.split(" ")[0] for line in result.stdout.lines if line.endswith("%]")]
    assert lines.index("dbgate::before::test_command") < lines.index(
        "dbgate::migrate::applied[20250115150000_create_recipe_categories]"
    )
    assert lines[lines.index("dbgate::after::test_command") + 1] == "dbgate::after::after_captured"


def test_failing_external_tests_show_their_output_without_the_password(
    remote_demo: Project,
) -> None:
    remote_demo.pytester.makepyfile(app_check=APP_CHECK)
    # The old release's column: there before the release, dropped by its cleanup.
    remote_demo.ini(dbgate_test_command="python app_check.py category")
    result = remote_demo.run()
    outcomes(result, failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*_ after: test_command _*",
            "the test command [[]after[]] `python app_check.py category` exited with status 1*",
            "    connecting to postgresql://postgres:***@127.0.0.1:*/dbgate_prod",
            "    column category MISSING",
        ]
    )
    assert STAGING_PASSWORD not in result.stdout.str()


def test_post_migrate_command_runs_between_migrating_and_the_after_tests(
    remote_demo: Project,
) -> None:
    remote_demo.pytester.makepyfile(generate_client=GENERATE_CLIENT)
    remote_demo.pytester.makepyfile(
        test_app="""
        from pathlib import Path
        import pytest

        @pytest.mark.dbgate_phase("after")
        def test_client_knows_the_new_column(dbgate_db):
            assert "category_id" in Path("client.txt").read_text().split()
        """
    )
    remote_demo.ini(dbgate_post_migrate_command="python generate_client.py")
    result = remote_demo.run("-v")
    outcomes(result)
    result.stdout.fnmatch_lines(
        [
            "dbgate::schema::migrations_recorded PASSED*",
            "*running the post-migrate command `python generate_client.py`",
            "dbgate::after::post_migrate_command PASSED*",
            "test_app.py::test_client_knows_the_new_column[[]after[]] PASSED*",
        ]
    )


def test_failing_post_migrate_command_stops_the_after_tests(remote_demo: Project) -> None:
    remote_demo.pytester.makepyfile(
        test_app="def test_app(dbgate_db):\n    pass\n",
        regenerate="import sys\nprint('client generation failed: schema drift')\nsys.exit(3)\n",
    )
    remote_demo.ini(dbgate_post_migrate_command="python regenerate.py")
    result = remote_demo.run("-rs")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes(result, failed=1, skipped=result.parseoutcomes()["skipped"])
    result.stdout.fnmatch_lines(
        [
            "*_ after: post_migrate_command _*",
            "the post-migrate command `python regenerate.py` exited with status 3 after *s; its "
            "last output:",
            "    client generation failed: schema drift",
            "SKIPPED * not run: dbgate::after::post_migrate_command failed",
        ]
    )
