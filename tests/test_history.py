"""The migration tool's own history: it decides what is pending, and gets the gate's rows.

Real projects point the gate at their whole migrations folder, with production far along it:
the tool's table (``_prisma_migrations``, ``schema_migrations``, ``flyway_schema_history``) says
which are applied. Staging and production must skip those and write the tool's rows for the ones
they apply, as the tool would.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_dbgate.migrations.history import flyway_checksum
from pytest_dbgate.pg.connections import Endpoint, connection

from .conftest import Project, fresh_database

# Each vector's checksum as Flyway computes it (CRC32 over the lines, without their endings, a
# byte order mark dropped), computed by a Java program with BufferedReader.readLine and CRC32.
FLYWAY_VECTORS = [
    ("CREATE TABLE a (id int);\n", -623083431),
    ("CREATE TABLE a (id int);\r\nINSERT INTO a VALUES (1);\r\n", -279898995),
    ("\ufeffCREATE TABLE b (id int);\rSELECT 1;", -115910119),
    ("-- comment\n\nSELECT 'é';\n", 305556262),
]


@pytest.mark.parametrize(("text", "checksum"), FLYWAY_VECTORS)
def test_flyway_checksums_are_flyways(text: str, checksum: int) -> None:
    assert flyway_checksum(text.encode()) == checksum


def query(endpoint: Endpoint, text: str) -> list[tuple[object, ...]]:
    with connection(endpoint, "test", "test") as conn:
        return conn.execute(text).fetchall()  # type: ignore[arg-type]


@pytest.fixture
def prod(source_server: Endpoint, request: pytest.FixtureRequest) -> Iterator[Endpoint]:
    with fresh_database(source_server, request) as db:
        yield db


def project_with(
    project: Project, prod: Endpoint, staging: Endpoint, files: dict[str, str], applied: str
) -> Project:
    """A project whose migrations folder holds ``files``; production already ran ``applied``
    (the tool's own SQL and its history rows)."""
    folder = project.path / "migrations"
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    with connection(prod, "test", "test") as conn:
        conn.execute(applied)
    return project.ini(dbgate_max_regression="off").against(prod, staging)


def outcomes(project: Project, mode: str) -> dict[str, tuple[str, str]]:
    document = json.loads((project.path / ".dbgate" / f"{mode}-results.json").read_text())
    return {
        i["nodeid"]: (str(i["outcome"]), str(i["figures"].get("summary", "")))
        for i in document["items"]
    }


PRISMA = {
    "migration_lock.toml": 'provider = "postgresql"\n',
    "20260101000000_init/migration.sql": (
        "-- CreateEnum\nCREATE TYPE \"Role\" AS ENUM ('USER', 'ADMIN');\n\n"
        '-- CreateTable\nCREATE TABLE "User" (\n    "id" SERIAL NOT NULL,\n'
        '    "role" "Role" NOT NULL DEFAULT \'USER\',\n'
        '    CONSTRAINT "User_pkey" PRIMARY KEY ("id")\n);\n'
    ),
    "20260102000000_add_name/migration.sql": 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\n',
    "20260103000000_add_email/migration.sql": 'ALTER TABLE "User" ADD COLUMN "email" TEXT;\n',
}


def prisma_applied(project_path: Path) -> str:
    """What `prisma migrate deploy` left after the first two migrations."""
    rows = []
    sql = []
    for name in ("20260101000000_init", "20260102000000_add_name"):
        text = PRISMA[f"{name}/migration.sql"]
        sql.append(text)
        checksum = hashlib.sha256(text.encode()).hexdigest()
        rows.append(f"('{name}-id', '{checksum}', now() - interval '2 days', '{name}', now(), 1)")
    return (
        "\n".join(sql)
        + """
CREATE TABLE "_prisma_migrations" (
    "id" VARCHAR(36) PRIMARY KEY NOT NULL, "checksum" VARCHAR(64) NOT NULL,
    "finished_at" TIMESTAMPTZ, "migration_name" VARCHAR(255) NOT NULL, "logs" TEXT,
    "rolled_back_at" TIMESTAMPTZ, "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count" INTEGER NOT NULL DEFAULT 0
);
INSERT INTO "User" ("role") SELECT 'USER' FROM generate_series(1, 100);
INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at,
                                applied_steps_count) VALUES """
        + ", ".join(rows)
        + ";"
    )


def test_prisma_history_decides_what_is_pending_and_gets_the_deploys_rows(
    project: Project, prod: Endpoint, staging_server: Endpoint
) -> None:
    project_with(project, prod, staging_server, PRISMA, prisma_applied(project.path))
    staging = project.run("-rA")
    assert staging.ret == 0, staging.stdout.str()
    assert "2 of 3 migrations already applied (as _prisma_migrations and dbgate.migrations" in (
        staging.stdout.str()
    )
    items = outcomes(project, "staging")
    assert items["dbgate::migrate::applied[20260101000000_init]"] == (
        "passed",
        "already applied (_prisma_migrations)",
    )
    lint = items["migrations/20260101000000_init/migration.sql::lint"]
    assert lint == ("passed", "already applied (_prisma_migrations): not part of this release")
    assert items["dbgate::migrate::applied[20260103000000_add_email]"][1].startswith("applied in")

    deploy = project.deploy("-rA")
    assert deploy.ret == 0, deploy.stdout.str()
    history = query(
        prod,
        "SELECT migration_name, checksum, finished_at IS NOT NULL, applied_steps_count"
        " FROM _prisma_migrations ORDER BY migration_name",
    )
    email = PRISMA["20260103000000_add_email/migration.sql"]
    assert history[2] == (
        "20260103000000_add_email",
        hashlib.sha256(email.encode()).hexdigest(),
        True,
        1,
    )
    assert len(history) == 3
    assert query(prod, "SELECT version FROM dbgate.migrations") == [("20260103000000",)]


def test_restore_points_hold_the_migrations_the_history_says_were_applied(
    project: Project, prod: Endpoint, staging_server: Endpoint
) -> None:
    """A point after the first pending migration holds what the already-applied ones found too:
    a re-run after editing the last migration resumes from it."""
    files = {
        **PRISMA,
        "20260104000000_add_age/migration.sql": 'ALTER TABLE "User" ADD COLUMN "age" INT;\n',
    }
    project_with(project, prod, staging_server, files, prisma_applied(project.path))
    project.ini(dbgate_restore_points="every")
    first = project.run("-s")
    assert first.ret == 0, first.stdout.str()
    assert "restore points: 2 kept for the next run" in first.stdout.str()
    last = project.path / "migrations" / "20260104000000_add_age" / "migration.sql"
    last.write_text('ALTER TABLE "User" ADD COLUMN "age" SMALLINT;\n')
    again = project.run("-s")
    assert again.ret == 0, again.stdout.str()
    assert "resuming after 20260103000000_add_email" in again.stdout.str()
    items = outcomes(project, "staging")
    init = items["dbgate::migrate::applied[20260101000000_init]"]
    assert init == ("passed", "already applied (_prisma_migrations)")
    assert items["dbgate::migrate::applied[20260104000000_add_age]"][1].startswith("applied in")


def test_an_unfinished_prisma_migration_stops_with_the_tools_command(
    project: Project, prod: Endpoint, staging_server: Endpoint
) -> None:
    applied = prisma_applied(project.path).replace(
        "now() - interval '2 days', '20260102000000_add_name'", "NULL, '20260102000000_add_name'"
    )
    project_with(project, prod, staging_server, PRISMA, applied)
    result = project.run("-rA")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str()
    assert "the migration tool's history _prisma_migrations records a migration that did not " in (
        text
    )
    assert "npx prisma migrate resolve --rolled-back 20260102000000_add_name" in text


GOLANG = {
    "1_init.up.sql": "CREATE TABLE users (id bigserial PRIMARY KEY);\n",
    "1_init.down.sql": "DROP TABLE users;\n",
    "2_name.up.sql": "ALTER TABLE users ADD COLUMN name text;\n",
    "2_name.down.sql": "ALTER TABLE users DROP COLUMN name;\n",
    "3_email.up.sql": "ALTER TABLE users ADD COLUMN email text;\n",
    "3_email.down.sql": "ALTER TABLE users DROP COLUMN email;\n",
}
GOLANG_APPLIED = (
    GOLANG["1_init.up.sql"]
    + GOLANG["2_name.up.sql"]
    + "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT"
    " NULL);\nINSERT INTO schema_migrations VALUES (2, false);"
)


def test_golang_migrate_history_decides_what_is_pending_and_gets_the_new_version(
    project: Project, prod: Endpoint, staging_server: Endpoint
) -> None:
    project_with(project, prod, staging_server, GOLANG, GOLANG_APPLIED)
    assert project.run().ret == 0
    deploy = project.deploy("-rA")
    assert deploy.ret == 0, deploy.stdout.str()
    assert query(prod, "SELECT version, dirty FROM schema_migrations") == [(3, False)]
    assert "email" in {
        str(r[0]) for r in query(prod, "SELECT column_name FROM information_schema.columns")
    }


def test_a_dirty_golang_migrate_history_stops_with_the_tools_command(
    project: Project, prod: Endpoint, staging_server: Endpoint
) -> None:
    project_with(project, prod, staging_server, GOLANG, GOLANG_APPLIED.replace("false", "true"))
    result = project.run()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "version 2 (dirty)" in result.stdout.str()
    assert "`migrate force 1` (not applied) or `migrate force 2` (applied)" in result.stdout.str()


def test_another_tools_table_of_the_same_name_is_not_taken_for_the_history(
    project: Project, prod: Endpoint, staging_server: Endpoint
) -> None:
    rails = "CREATE TABLE schema_migrations (version varchar PRIMARY KEY);"
    project_with(project, prod, staging_server, GOLANG, rails)
    result = project.run()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "schema_migrations is not the golang-migrate history" in result.stdout.str()
    assert query(prod, "SELECT count(*) FROM schema_migrations") == [(0,)]


FLYWAY = {
    "V1__init.sql": "CREATE TABLE users (id bigserial PRIMARY KEY);\n",
    "V1_1__add_user_name.sql": "ALTER TABLE users ADD COLUMN name text;\r\n",
}
FLYWAY_APPLIED = (
    FLYWAY["V1__init.sql"]
    + """CREATE TABLE flyway_schema_history (
    installed_rank integer NOT NULL PRIMARY KEY, version varchar(50),
    description varchar(200) NOT NULL, type varchar(20) NOT NULL, script varchar(1000) NOT NULL,
    checksum integer, installed_by varchar(100) NOT NULL,
    installed_on timestamp NOT NULL DEFAULT now(), execution_time integer NOT NULL,
    success boolean NOT NULL);
INSERT INTO flyway_schema_history VALUES
    (1, '1', 'init', 'SQL', 'V1__init.sql', -623083431, 'app', now(), 5, true);"""
)


def test_flyway_history_decides_what_is_pending_and_gets_flyways_row(
    project: Project, prod: Endpoint, staging_server: Endpoint
) -> None:
    project_with(project, prod, staging_server, FLYWAY, FLYWAY_APPLIED)
    assert project.run().ret == 0
    deploy = project.deploy("-rA")
    assert deploy.ret == 0, deploy.stdout.str()
    rows = query(
        prod,
        "SELECT installed_rank, version, description, type, script, checksum, success"
        " FROM flyway_schema_history ORDER BY installed_rank",
    )
    assert rows[1] == (
        2,
        "1.1",
        "add user name",
        "SQL",
        "V1_1__add_user_name.sql",
        flyway_checksum(FLYWAY["V1_1__add_user_name.sql"].encode()),
        True,
    )


DBMATE = {
    "20260101000000_init.sql": "-- migrate:up\nCREATE TABLE users (id bigserial PRIMARY KEY);\n"
    "-- migrate:down\nDROP TABLE users;\n",
    "20260102000000_name.sql": "-- migrate:up\nALTER TABLE users ADD COLUMN name text;\n"
    "-- migrate:down\nALTER TABLE users DROP COLUMN name;\n",
}


def test_dbmate_history_decides_what_is_pending_and_gets_the_new_version(
    project: Project, prod: Endpoint, staging_server: Endpoint
) -> None:
    applied = (
        "CREATE TABLE users (id bigserial PRIMARY KEY);\n"
        "CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY);\n"
        "INSERT INTO schema_migrations VALUES ('20260101000000');"
    )
    project_with(project, prod, staging_server, DBMATE, applied)
    assert project.run().ret == 0
    assert project.deploy().ret == 0
    assert query(prod, "SELECT version FROM schema_migrations ORDER BY 1") == [
        ("20260101000000",),
        ("20260102000000",),
    ]
