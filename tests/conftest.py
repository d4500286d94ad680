"""Fixtures for the suite: real PostgreSQL servers, and the demo and example projects.

Two servers are started once per session with the plugin's own provisioning: a "production"
holding the demo database at a small scale, and a password-protected "staging". Tests that run
the gate against URLs use them; tests of the embedded default let the gate start its own.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

# pytester's in-process runs drop the modules first imported during a run; pglast's compiled
# parser keeps building nodes from the first copy of pglast.ast, so import it once up front.
import pytest_dbgate.migrations.parse  # noqa: F401
from pytest_dbgate.pg.binaries import PgBinaries, find_binaries
from pytest_dbgate.pg.connections import Endpoint, connection
from pytest_dbgate.pg.seed import load_seed, seed_files
from pytest_dbgate.pg.servers import embedded_server
from tests.secretscan import leaks, mtimes, written_since

# Example projects are copied into pytester runs, never collected by the suite itself.
collect_ignore = ["projects"]

REPO = Path(__file__).resolve().parents[1]
PROJECTS = Path(__file__).resolve().parent / "projects"
DEMO_SCALE = "-c dbgate_demo.scale=0.01"
STAGING_PASSWORD = "st4ging-s3cret"
# Plugins an in-process pytester run need not load: each run re-imports (and assertion-rewrites)
# every plugin, and these unrelated ones, where installed, cost most of a short run's time.
QUIET_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:benchmark", "-p", "no:hypothesispytest")


# What needs PostgreSQL (its programs or a server) or runs the gate end to end through pytester.
# Tests using none of these are the fast layer: `pytest tests -m "not postgres"`.
SLOW_FIXTURES = frozenset(
    {
        "pytester",
        "binaries",
        "source_server",
        "staging_server",
        "prod_db",
        "perf_db",
        "mixed_case_db",
        "locks_db",
        "full_demo_db",
        "deploy_db",
        "demo_prod",
        "scratch_db",
        "servers",
    }
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "postgres: needs PostgreSQL (programs or a server) or runs the gate through pytester; "
        'deselect with -m "not postgres" for the fast layer',
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def binaries() -> PgBinaries:
    return find_binaries(None, ("pg_ctl", "pg_dump", "pg_restore"))


@pytest.fixture(scope="session")
def source_server(binaries: PgBinaries) -> Iterator[Endpoint]:
    """Maintenance endpoint of a server standing in for production."""
    with embedded_server("test-prod", binaries) as server:
        yield server


@pytest.fixture(scope="session")
def prod_db(source_server: Endpoint) -> Endpoint:
    """The demo production database (1 % scale) on the source server."""
    scaled = source_server.replace(options=DEMO_SCALE)
    loaded = load_seed(scaled, "prod", seed_files([REPO / "demo" / "prod"]))
    return Endpoint.from_params({k: v for k, v in loaded.params if k != "options"})


@pytest.fixture(scope="session")
def staging_server(binaries: PgBinaries) -> Iterator[Endpoint]:
    """Maintenance endpoint of a password-protected staging server."""
    with embedded_server("test-staging", binaries, password=STAGING_PASSWORD) as server:
        yield server


def url(endpoint: Endpoint) -> str:
    """A postgresql:// URL for an endpoint (password included, as a CI secret would be)."""
    auth = endpoint.user + (f":{endpoint.password}" if endpoint.password else "")
    return f"postgresql://{auth}@{endpoint.host}:{endpoint.port}/{endpoint.dbname}"


def _passwords() -> list[str]:
    """The passwords a run is given: those of the URLs in its environment, and $PGPASSWORD."""
    found = [os.environ.get("PGPASSWORD", "")]
    for name in ("PROD_DATABASE_URL", "STAGING_DATABASE_URL", "DATABASE_URL"):
        try:
            found.append(str(conninfo_to_dict(os.environ.get(name, "")).get("password") or ""))
        except psycopg.ProgrammingError:
            continue
    return [p for p in found if p]


def outcomes(result: pytest.RunResult, **expected: int) -> None:
    """Each outcome given is exact and every other one is none, except ``passed``: it is only
    checked when given, so a criterion added later (one more passing item) breaks no test about
    the others."""
    found = {k: v for k, v in result.parseoutcomes().items() if k != "deselected"}
    found = {("errors" if k == "error" else k): v for k, v in found.items()}
    for kind in ("failed", "errors", "skipped", "xfailed", "xpassed"):
        assert found.get(kind, 0) == expected.get(kind, 0), (kind, found)
    if "passed" in expected:
        assert found.get("passed", 0) == expected["passed"], found
    else:
        assert found.get("passed", 0) > 0, found


class Project:
    """A pytester project with migrations, and the gate's settings for it."""

    def __init__(self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pytester = pytester
        self.monkeypatch = monkeypatch
        self.path = pytester.path
        # The session's servers are shared by the tests: a restore point one test leaves (same
        # source, same migrations) would let the next resume instead of applying. Tests of
        # restore points turn them on.
        self.settings: dict[str, str] = {}
        self.ini(dbgate_restore_points="off")
        for name in ("PROD_DATABASE_URL", "STAGING_DATABASE_URL", "GITHUB_STEP_SUMMARY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("PGOPTIONS", DEMO_SCALE)

    def migrations(self, source: Path) -> Project:
        target = self.path / "migrations"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)
        return self

    def seed(self, source: Path) -> Project:
        shutil.copytree(source, self.path / "prod", dirs_exist_ok=True)
        return self

    def app_tests(self) -> Project:
        """The demo application's own database tests (demo/tests, demo/recipes.py)."""
        shutil.copytree(REPO / "demo" / "tests", self.path / "tests")
        shutil.copy(REPO / "demo" / "recipes.py", self.path / "recipes.py")
        return self

    def ini(self, **settings: str) -> Project:
        """Add settings to the project's pytest.ini (earlier ones are kept)."""
        self.settings.update(settings)
        lines = ["[pytest]"] + [f"{key} = {value}" for key, value in self.settings.items()]
        self.pytester.makeini("\n".join(lines) + "\n")
        return self

    def against(self, source: Endpoint, staging: Endpoint) -> Project:
        """Real servers, given the way CI gives them: URLs in the environment."""
        self.monkeypatch.setenv("PROD_DATABASE_URL", url(source))
        self.monkeypatch.setenv("STAGING_DATABASE_URL", url(staging))
        return self

    def run(self, *args: str, mode: str = "staging") -> pytest.RunResult:
        """One gate run; whatever the test, no password it was given shows anywhere after it:
        not in the output, nor in any file the run wrote (reports, JUnit XML, the record, the
        kept server's log), in any spelling."""
        passwords = _passwords()
        before = mtimes(self.path)
        result = self.pytester.runpytest(f"--dbgate={mode}", *QUIET_PLUGINS, *args)
        outputs = [result.stdout.str(), result.stderr.str()]
        found = leaks(passwords, outputs, written_since(self.path, before))
        assert not found, f"a password shows: {found}"
        return result

    def deploy(self, *args: str) -> pytest.RunResult:
        return self.run(*args, mode="production")

    def deploy_killed(self, signal_name: str, at: str, delay: float = 0.0) -> int:
        """A production run in a child process that the project's conftest (a copy of
        projects/crash/conftest.py) signals at boundary ``at``, ``delay`` seconds after it:
        the signal that ended the child, or its exit status, negated, if it ended itself."""
        pid = os.fork()
        if pid == 0:  # the child: one production run, its output discarded
            status = 99
            try:
                os.environ.update(CRASH_AT=at, CRASH_SIGNAL=signal_name, CRASH_DELAY=str(delay))
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.dup2(null, 2)
                result = self.pytester.runpytest_inprocess("--dbgate=production", *QUIET_PLUGINS)
                status = int(result.ret)
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        return os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    """An empty gate project; tests add migrations, a seed and settings."""
    return Project(pytester, monkeypatch)


@pytest.fixture
def demo(project: Project) -> Project:
    """The repository's demo: its seed (at 1 % scale), its six migrations and its workload."""
    shutil.copy(REPO / "demo" / "workload.sql", project.path / "workload.sql")
    return (
        project.seed(REPO / "demo" / "prod")
        .migrations(REPO / "migrations")
        .ini(dbgate_seed="prod", dbgate_workload="workload.sql", pythonpath=".")
    )


@pytest.fixture
def remote_demo(demo: Project, prod_db: Endpoint, staging_server: Endpoint) -> Project:
    """The demo release gated against the session's real servers through URLs."""
    return demo.against(prod_db, staging_server)


def example(name: str) -> Path:
    return REPO / "examples" / name


@contextmanager
def fresh_database(
    server: Endpoint, request: pytest.FixtureRequest, suffix: str = ""
) -> Iterator[Endpoint]:
    """A new, empty database on ``server`` named after the test, dropped after it."""
    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50] + suffix
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with connection(server, "test", "test") as conn:
        conn.execute(drop)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.with_dbname(name)
    finally:
        with connection(server, "test", "test") as conn:
            conn.execute(drop)


@contextmanager
def seeded_database(
    server: Endpoint,
    request: pytest.FixtureRequest,
    files: list[Path],
    options: str = "",
    suffix: str = "",
) -> Iterator[Endpoint]:
    """A fresh database on ``server`` loaded from seed files, dropped after the test."""
    with fresh_database(server, request, suffix) as endpoint:
        loading = endpoint.replace(options=options) if options else endpoint
        with connection(loading, "test", "test") as conn:
            for path in files:
                conn.execute(path.read_text())
        yield endpoint


@pytest.fixture
def scratch_db(staging_server: Endpoint, request: pytest.FixtureRequest) -> Iterator[Endpoint]:
    """A fresh, empty database on the staging server for one test."""
    with fresh_database(staging_server, request) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def perf_db(source_server: Endpoint) -> Endpoint:
    """tests/projects/perf's source database: 200,000 events with an index they need."""
    return load_seed(source_server, "perf", [PROJECTS / "perf" / "seed.sql"])


@pytest.fixture(scope="session")
def mixed_case_db(source_server: Endpoint) -> Endpoint:
    """tests/projects/mixed_case's source database, loaded once: quoted mixed-case names, a
    lower-case twin, a name with a space, a schema and a table with non-ASCII characters."""
    return load_seed(source_server, "mixed_case", [PROJECTS / "mixed_case" / "seed.sql"])


@pytest.fixture
def perf_project(project: Project, perf_db: Endpoint, staging_server: Endpoint) -> Project:
    """The perf project gated against real servers; add `safe` or `unsafe` migrations."""
    for name in ("workload.sql", "test_events.py"):
        shutil.copy(PROJECTS / "perf" / name, project.path / name)
    return project.ini(dbgate_workload="workload.sql").against(perf_db, staging_server)


@pytest.fixture(scope="session")
def locks_db(source_server: Endpoint) -> Endpoint:
    """tests/projects/locks' source database."""
    return load_seed(source_server, "locks", [PROJECTS / "locks" / "seed.sql"])


@pytest.fixture
def locks_project(project: Project, locks_db: Endpoint, staging_server: Endpoint) -> Project:
    """The locks project against real servers, performance stage off; add a release folder."""
    return project.ini(dbgate_max_regression="off").against(locks_db, staging_server)


@pytest.fixture(scope="session")
def full_demo_db(source_server: Endpoint) -> Endpoint:
    """The demo production database at full size, for the examples that need real sizes."""
    loaded = load_seed(
        source_server.replace(options="-c dbgate_demo.scale=1"),
        "prod_full",
        seed_files([REPO / "demo" / "prod"]),
    )
    return Endpoint.from_params({k: v for k, v in loaded.params if k != "options"})


@pytest.fixture
def kept_dir() -> Iterator[Path]:
    """A folder the unprivileged server account can reach (pytest's own tmp is private), for
    dbgate_staging_dir."""
    folder = Path(tempfile.mkdtemp(prefix="dbgate-kept-"))
    folder.chmod(0o755)
    yield folder / "staging"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def demo_prod(source_server: Endpoint, request: pytest.FixtureRequest) -> Iterator[Endpoint]:
    """A fresh "production" database for one test: the demo's seed at 1 % scale."""
    files = sorted((REPO / "demo" / "prod").glob("*.sql"))
    with seeded_database(source_server, request, files, options=DEMO_SCALE) as db:
        yield db


@pytest.fixture
def deploy_db(source_server: Endpoint, request: pytest.FixtureRequest) -> Iterator[Endpoint]:
    """A fresh "production" database for one test, from tests/projects/deploy/seed.sql."""
    with seeded_database(source_server, request, [PROJECTS / "deploy" / "seed.sql"]) as db:
        yield db


@pytest.fixture
def deploy_project(project: Project, deploy_db: Endpoint, staging_server: Endpoint) -> Project:
    """tests/projects/deploy gated on staging and deployed to its own production database."""
    project.migrations(PROJECTS / "deploy" / "release")
    return project.ini(dbgate_max_regression="off").against(deploy_db, staging_server)


def pytest_report_header() -> str:
    """Which PostgreSQL the suite runs on (CI runs it on two)."""
    found = find_binaries(None, ("pg_ctl", "pg_dump", "pg_restore"))
    return f"PostgreSQL {found.major} programs: {found.bindir}"
