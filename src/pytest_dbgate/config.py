"""The gate's options: declared once, read once into a frozen :class:`GateConfig`.

Every setting is a CLI flag ``--dbgate-x`` mirrored by an ini key ``dbgate_x``; the CLI wins over
the ini, the ini over the environment or the default. Values are compared with ``is not None`` so
that an explicit ``0`` on the command line is never mistaken for "unset".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pytest_dbgate.core.errors import ConfigError

if TYPE_CHECKING:
    import pytest

Mode = Literal["staging", "production", "lint"]
MODES: tuple[Mode, ...] = ("staging", "production", "lint")

SOURCE_URL_ENV = "PROD_DATABASE_URL"
STAGING_URL_ENV = "STAGING_DATABASE_URL"
DATABASE_URL_ENV = "DATABASE_URL"

DEFAULT_MIGRATIONS = "migrations"
DEFAULT_REPORT_DIR = ".dbgate"
DEFAULT_POOL_SIZE = 10
DEFAULT_WORKLOAD_RUNS = 30
DEFAULT_MAX_REGRESSION = 0.20
DEFAULT_PERF_FLOOR_MS = 0.1
DEFAULT_PERF_BUDGET_S = 60.0
DEFAULT_MAX_LOCK_MS = 1000
DEFAULT_MAX_BLOCK_MS = 500
DEFAULT_TRAFFIC_RATE = 20
DEFAULT_RECORD = "gate-record.json"
DEFAULT_RECORD_MAX_AGE = "3d"
DEFAULT_LOCK_TIMEOUT_MS = 500
# Long enough for any real migration on a big table, short enough that a forgotten pg_sleep or
# an endless loop ends the CI job with a message instead of its hard timeout.
DEFAULT_MIGRATION_TIMEOUT_S = 1800.0
DEFAULT_LOCK_RETRIES = 5
DEFAULT_LOCK_RETRY_WAIT_S = 1.0
MAX_RETRY_WAIT_S = 60.0  # a wait doubles per retry up to this
SIGNING_KEY_ENV = "DBGATE_SIGNING_KEY"
DEFAULT_LINT_SMALL_TABLE_ROWS = 10_000
DEFAULT_SNAPSHOT_MAX_AGE = "1d"
DEFAULT_STAGING_DIR = "staging-server"
LAYOUTS = ("auto", "flat", "prisma", "flyway", "golang-migrate", "dbmate")


@dataclass(frozen=True)
class Range:
    """The values a numeric option accepts. Checked before anything starts: a value PostgreSQL
    would reject halfway through a deploy (a lock_timeout over 24 days) must never reach it."""

    low: float
    high: float
    unit: str  # what the number counts, for the message: "milliseconds", "hours"
    whole: bool = False

    def expected(self) -> str:
        if self.unit.startswith("a "):  # says what it is itself: "a fraction …"
            return f"{self.unit} from {_number(self.low)} to {_number(self.high)}"
        kind = "a whole number of" if self.whole else "a number of"
        return f"{kind} {self.unit} from {_number(self.low)} to {_number(self.high)}"

    def check(self, value: float) -> bool:
        return math.isfinite(value) and self.low <= value <= self.high


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


DAY_MS = 86_400_000
YEAR_H = 366 * 24


@dataclass(frozen=True)
class Setting:
    """One option: its CLI flag, ini key, help text and accepted range, declared in one place."""

    name: str
    help: str
    ini_type: Literal["string", "paths", "args", "bool"] = "string"
    metavar: str = "VALUE"
    cli_append: bool = False
    range: Range | None = None
    ini: bool = True  # False: a one-off decision, on the command line only

    @property
    def flag(self) -> str:
        return "--dbgate-" + self.name.replace("_", "-")

    @property
    def ini_key(self) -> str:
        return "dbgate_" + self.name

    @property
    def dest(self) -> str:
        return "dbgate_" + self.name


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "migrations",
        f"folder of the release's migration files (default: {DEFAULT_MIGRATIONS})",
        metavar="PATH",
    ),
    Setting(
        "layout",
        "how the migrations folder is laid out: auto, flat, prisma, flyway, golang-migrate or "
        "dbmate (default: auto, detected from the files)",
        metavar="LAYOUT",
    ),
    Setting(
        "lint_small_table_rows",
        f"staging: a lint finding on a table with fewer rows than this is reported, not failed "
        f"(default: {DEFAULT_LINT_SMALL_TABLE_ROWS})",
        metavar="N",
        range=Range(0, 1e12, "rows", whole=True),
    ),
    Setting(
        "source_url",
        f"URL of the source (production) database, read only (default: ${SOURCE_URL_ENV}; "
        "unset: an embedded server built from dbgate_seed)",
        metavar="URL",
    ),
    Setting(
        "staging_url",
        f"URL of the staging server the snapshot is restored to (default: ${STAGING_URL_ENV}; "
        "unset: an embedded server)",
        metavar="URL",
    ),
    Setting(
        "extensions",
        "extensions the release needs, comma separated on the CLI, space separated in the ini "
        "(default: those the snapshot and the migrations use)",
        ini_type="args",
        metavar="NAMES",
    ),
    Setting(
        "report_dir",
        f"folder the gate writes its reports to (default: {DEFAULT_REPORT_DIR})",
        metavar="PATH",
    ),
    Setting(
        "seed",
        "SQL file or folder of .sql files that builds the embedded source database when no "
        "source URL is set (repeatable)",
        ini_type="paths",
        metavar="PATH",
        cli_append=True,
    ),
    Setting(
        "pg_bindir",
        "folder holding pg_ctl, pg_dump and pg_restore (default: found through pg_config, PATH "
        "and /usr/lib/postgresql/<version>/bin)",
        metavar="PATH",
    ),
    Setting(
        "test_command",
        "the project's non-pytest database tests (e.g. `npm test -- tests/integration/`), run "
        "before and after migrating with DATABASE_URL set to staging",
        metavar="COMMAND",
    ),
    Setting(
        "migrate_command",
        "staging: the project's own command that applies its migrations (`alembic upgrade "
        "head`, `python manage.py migrate`, `npx prisma migrate deploy`), run with "
        "DATABASE_URL set to staging under the lock watch, instead of the gate applying SQL "
        "files itself",
        metavar="COMMAND",
    ),
    Setting(
        "post_migrate_command",
        "command run after migrating and before the after-tests, with DATABASE_URL set "
        "(e.g. `npx prisma generate`)",
        metavar="COMMAND",
    ),
    Setting(
        "database_url",
        f"database the dbgate_url/dbgate_db fixtures use without --dbgate (default: "
        f"${DATABASE_URL_ENV}; unset: those tests are skipped)",
        metavar="URL",
    ),
    Setting(
        "workload",
        "SQL file of representative queries with literal parameters, measured before and after "
        "migrating (one query per statement; `-- name: x` above one names it)",
        metavar="PATH",
    ),
    Setting(
        "workload_runs",
        f"most rounds each workload query runs per phase, after two warm-up rounds; fewer when "
        f"the time budget runs out, never fewer than 3 (default: {DEFAULT_WORKLOAD_RUNS})",
        metavar="N",
        range=Range(3, 10_000, "rounds", whole=True),
    ),
    Setting(
        "perf_budget",
        f"seconds each phase may spend running the workload, shared among its queries; a slow "
        f"query gets fewer rounds (default: {DEFAULT_PERF_BUDGET_S:g})",
        metavar="SECONDS",
        range=Range(1, 86_400, "seconds"),
    ),
    Setting(
        "max_regression",
        f"allowed slow-down of a query's execution time, as a fraction (default: "
        f"{DEFAULT_MAX_REGRESSION}); `off` disables the performance stage",
        metavar="FRACTION",
        range=Range(0, 100, "a fraction (0.2 is 20 %)"),
    ),
    Setting(
        "perf_floor_ms",
        f"a query slower by less than this many milliseconds passes whatever the ratio (default: "
        f"{DEFAULT_PERF_FLOOR_MS})",
        metavar="MS",
        range=Range(0, 60_000, "milliseconds"),
    ),
    Setting(
        "max_lock_ms",
        f"longest a migration may hold a lock that blocks reads or writes on a table with rows "
        f"(default: {DEFAULT_MAX_LOCK_MS})",
        metavar="MS",
        range=Range(0, DAY_MS, "milliseconds"),
    ),
    Setting(
        "max_block_ms",
        f"longest a simulated application session may wait for a migration (default: "
        f"{DEFAULT_MAX_BLOCK_MS})",
        metavar="MS",
        range=Range(0, DAY_MS, "milliseconds"),
    ),
    Setting(
        "traffic_rate",
        f"queries per second each simulated reader and writer sends while a migration runs "
        f"(default: {DEFAULT_TRAFFIC_RATE}; 0: no traffic)",
        metavar="N",
        range=Range(0, 1_000, "queries per second"),
    ),
    Setting(
        "record",
        f"the gate record: written by a passing staging run, required by production (default: "
        f"<report folder>/{DEFAULT_RECORD})",
        metavar="PATH",
    ),
    Setting(
        "production_url",
        f"URL of the production database --dbgate=production deploys to (default: "
        f"${SOURCE_URL_ENV})",
        metavar="URL",
    ),
    Setting(
        "record_max_age",
        f"oldest gate record production accepts, as <N>h, <N>d or <N>w (default: "
        f"{DEFAULT_RECORD_MAX_AGE})",
        metavar="PERIOD",
        range=Range(1, YEAR_H, "hours"),
    ),
    Setting(
        "migration_timeout",
        "longest a migration file may run, in seconds, on staging and production: its "
        "statements run with this statement_timeout and the file is cancelled when it is up "
        f"(default: {DEFAULT_MIGRATION_TIMEOUT_S:.0f}, 30 minutes)",
        metavar="SECONDS",
        range=Range(1, 7 * 86400, "seconds"),
    ),
    Setting(
        "lock_timeout",
        f"production: lock_timeout of the migrating session, in milliseconds, 1 to {DAY_MS} "
        f"(default: {DEFAULT_LOCK_TIMEOUT_MS})",
        metavar="MS",
        range=Range(1, DAY_MS, "milliseconds"),
    ),
    Setting(
        "lock_retries",
        f"production: times a migration is retried after a lock timeout (default: "
        f"{DEFAULT_LOCK_RETRIES})",
        metavar="N",
        range=Range(0, 100, "retries", whole=True),
    ),
    Setting(
        "lock_retry_wait",
        f"production: seconds before the first retry, doubling for each next one (default: "
        f"{DEFAULT_LOCK_RETRY_WAIT_S:g})",
        metavar="SECONDS",
        range=Range(0, MAX_RETRY_WAIT_S, "seconds"),
    ),
    Setting(
        "holdbacks",
        "migrations production holds back, as <version or name>=<N>h|d|w, comma separated on "
        "the CLI, space separated in the ini; adds a hold-back or lengthens a file's own "
        "`-- dbgate: hold-back`, never shortens one",
        ini_type="args",
        metavar="LIST",
        range=Range(1, 10 * YEAR_H, "hours"),
    ),
    Setting(
        "release_early",
        "production: apply these held-back migrations (version or name, comma separated) before "
        "their hold-back has passed; said in the output and the tracking table (command line "
        "only: a one-off decision, not configuration)",
        metavar="LIST",
        ini=False,
    ),
    Setting(
        "clone_command",
        "command that provisions the staging database (a thin-clone or branching service) and "
        "prints its URL as its last line; the gate then skips dump and restore",
        metavar="COMMAND",
    ),
    Setting(
        "clone_cleanup_command",
        "command run at the end of the run to remove that clone (its URL in DATABASE_URL)",
        metavar="COMMAND",
    ),
    Setting(
        "snapshot",
        "a dump pg_dump wrote (plain SQL, gzipped or not; custom; directory; tar) restored "
        "instead of dumping the source; the source, if set, is still checked",
        metavar="PATH",
    ),
    Setting(
        "staging_dir",
        "folder where the embedded staging server keeps its cluster between runs, so its "
        "cached snapshot serves the next run (default: <report dir>/staging-server; off: a "
        "throwaway server per run)",
        metavar="PATH",
    ),
    Setting(
        "snapshot_max_age",
        f"oldest cached snapshot a run reuses instead of dumping the source, as <N>h, <N>d or "
        f"<N>w (default: {DEFAULT_SNAPSHOT_MAX_AGE})",
        metavar="PERIOD",
        range=Range(0, YEAR_H, "hours"),
    ),
    Setting(
        "refresh",
        "dump and restore the source even when a cached snapshot could be reused",
        ini_type="bool",
    ),
    Setting(
        "pool_size",
        f"connections the application's pool opens; pool headroom must leave room for it plus "
        f"the migration and the monitor (default: {DEFAULT_POOL_SIZE})",
        metavar="N",
        range=Range(0, 100_000, "connections", whole=True),
    ),
)


SETTING = {setting.name: setting for setting in SETTINGS}


def add_options(parser: pytest.Parser) -> None:
    """Declare ``--dbgate`` and every ``--dbgate-x`` / ``dbgate_x`` pair."""
    group = parser.getgroup("dbgate", "release gate for PostgreSQL migrations (pytest-dbgate)")
    group.addoption(
        "--dbgate",
        dest="dbgate",
        choices=MODES,
        default=None,
        help="run the release gate: staging (full gate on a refreshed staging copy), "
        "production (deploy what staging passed), lint (static checks, no database)",
    )
    for setting in SETTINGS:
        if setting.ini_type == "bool":  # a switch: given or not, no value
            group.addoption(
                setting.flag,
                dest=setting.dest,
                action="store_const",
                const=True,
                default=None,
                help=setting.help,
            )
        else:
            group.addoption(
                setting.flag,
                dest=setting.dest,
                action="append" if setting.cli_append else "store",
                default=None,
                metavar=setting.metavar,
                help=setting.help,
            )
        if setting.ini:
            parser.addini(setting.ini_key, setting.help, type=setting.ini_type)


@dataclass(frozen=True)
class GateConfig:
    """Everything the gate was told, resolved to absolute paths and checked values.

    URLs are kept out of ``repr`` because they may carry a password.
    """

    mode: Mode
    rootdir: Path
    migrations: Path
    report_dir: Path
    source_url: str | None = field(repr=False)
    source_url_setting: str
    staging_url: str | None = field(repr=False)
    staging_url_setting: str
    extensions: tuple[str, ...] | None
    seed: tuple[Path, ...]
    pg_bindir: Path | None
    pool_size: int
    test_command: str | None = None
    post_migrate_command: str | None = None
    migrate_command: str | None = None
    workload: Path | None = None
    workload_runs: int = DEFAULT_WORKLOAD_RUNS
    max_regression: float | None = DEFAULT_MAX_REGRESSION
    perf_floor_ms: float = DEFAULT_PERF_FLOOR_MS
    perf_budget_s: float = DEFAULT_PERF_BUDGET_S
    max_lock_ms: float = DEFAULT_MAX_LOCK_MS
    max_block_ms: float = DEFAULT_MAX_BLOCK_MS
    traffic_rate: float = DEFAULT_TRAFFIC_RATE
    record: Path = Path(DEFAULT_REPORT_DIR) / DEFAULT_RECORD
    production_url: str | None = field(default=None, repr=False)
    production_url_setting: str = f"${SOURCE_URL_ENV}"
    record_max_age: timedelta = timedelta(days=3)
    lock_timeout_ms: float = DEFAULT_LOCK_TIMEOUT_MS
    migration_timeout_s: float = DEFAULT_MIGRATION_TIMEOUT_S
    lock_retries: int = DEFAULT_LOCK_RETRIES
    lock_retry_wait_s: float = DEFAULT_LOCK_RETRY_WAIT_S
    holdbacks: tuple[tuple[str, timedelta], ...] = ()
    release_early: tuple[str, ...] = ()
    signing_key: str | None = field(default=None, repr=False)
    layout: str = "auto"
    snapshot_max_age: timedelta = timedelta(days=1)
    clone_command: str | None = None
    clone_cleanup_command: str | None = None
    refresh: bool = False
    snapshot_file: Path | None = None
    staging_dir: Path | None = None
    lint_small_table_rows: int = DEFAULT_LINT_SMALL_TABLE_ROWS

    @property
    def performance(self) -> bool:
        """Whether the performance stage runs (``dbgate_max_regression = off`` turns it off)."""
        return self.max_regression is not None

    @property
    def embedded_source(self) -> bool:
        """Whether the gate builds its own source from the seed (no URL and no dump file)."""
        return self.source_url is None and self.snapshot_file is None

    @property
    def file_only(self) -> bool:
        """A dump file stands in for the source: there is no source database to check."""
        return self.source_url is None and self.snapshot_file is not None

    @property
    def embedded_staging(self) -> bool:
        return self.staging_url is None and self.clone_command is None


def read_config(config: pytest.Config) -> GateConfig | None:
    """Read the gate's settings, or ``None`` when ``--dbgate`` is not given."""
    mode = config.getoption("dbgate")
    if mode is None:
        return None
    reader = _Reader(config)
    source_url, source_setting = reader.url("source_url", SOURCE_URL_ENV)
    staging_url, staging_setting = reader.url("staging_url", STAGING_URL_ENV)
    extensions = reader.extensions()
    report_dir = reader.path("report_dir", DEFAULT_REPORT_DIR)
    production_url, production_setting = reader.url("production_url", SOURCE_URL_ENV)
    return GateConfig(
        mode=mode,
        rootdir=config.rootpath,
        migrations=reader.path("migrations", DEFAULT_MIGRATIONS),
        report_dir=report_dir,
        source_url=source_url,
        source_url_setting=source_setting,
        staging_url=staging_url,
        staging_url_setting=staging_setting,
        extensions=extensions,
        seed=reader.seed(),
        pg_bindir=reader.optional_path("pg_bindir"),
        pool_size=reader.whole("pool_size", DEFAULT_POOL_SIZE),
        test_command=reader.text("test_command"),
        post_migrate_command=reader.text("post_migrate_command"),
        migrate_command=reader.text("migrate_command"),
        workload=reader.optional_path("workload"),
        workload_runs=reader.whole("workload_runs", DEFAULT_WORKLOAD_RUNS),
        max_regression=reader.fraction_or_off("max_regression", DEFAULT_MAX_REGRESSION),
        perf_floor_ms=reader.number("perf_floor_ms", DEFAULT_PERF_FLOOR_MS),
        perf_budget_s=reader.number("perf_budget", DEFAULT_PERF_BUDGET_S),
        max_lock_ms=reader.number("max_lock_ms", DEFAULT_MAX_LOCK_MS),
        max_block_ms=reader.number("max_block_ms", DEFAULT_MAX_BLOCK_MS),
        traffic_rate=reader.number("traffic_rate", DEFAULT_TRAFFIC_RATE),
        record=reader.optional_path("record") or report_dir / DEFAULT_RECORD,
        production_url=production_url,
        production_url_setting=production_setting,
        record_max_age=reader.period("record_max_age", DEFAULT_RECORD_MAX_AGE),
        lock_timeout_ms=reader.number("lock_timeout", DEFAULT_LOCK_TIMEOUT_MS),
        migration_timeout_s=reader.number("migration_timeout", DEFAULT_MIGRATION_TIMEOUT_S),
        lock_retries=reader.whole("lock_retries", DEFAULT_LOCK_RETRIES),
        lock_retry_wait_s=reader.number("lock_retry_wait", DEFAULT_LOCK_RETRY_WAIT_S),
        holdbacks=reader.holdbacks(),
        release_early=reader.one_off("release_early"),
        signing_key=os.environ.get(SIGNING_KEY_ENV) or None,
        layout=reader.choice("layout", LAYOUTS, "auto"),
        snapshot_max_age=reader.period("snapshot_max_age", DEFAULT_SNAPSHOT_MAX_AGE),
        refresh=reader.switch("refresh"),
        snapshot_file=reader.optional_path("snapshot"),
        staging_dir=reader.path_or_off("staging_dir", report_dir / DEFAULT_STAGING_DIR),
        clone_command=reader.text("clone_command"),
        clone_cleanup_command=reader.text("clone_cleanup_command"),
        lint_small_table_rows=reader.whole("lint_small_table_rows", DEFAULT_LINT_SMALL_TABLE_ROWS),
    )


def run_args(config: pytest.Config) -> list[str]:
    """The arguments of this run: its command line and PYTEST_ADDOPTS, not the ini's addopts
    (which are the project's standing configuration)."""
    import shlex

    return [*shlex.split(os.environ.get("PYTEST_ADDOPTS", "")), *config.invocation_params.args]


def development_url(config: pytest.Config) -> tuple[str | None, str]:
    """The database the fixtures use without ``--dbgate``, and where it was set."""
    return _Reader(config).url("database_url", DATABASE_URL_ENV)


class _Reader:
    """CLI over ini over default, with paths resolved against where each was written."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._cwd = config.invocation_params.dir
        self._inidir = config.inipath.parent if config.inipath else config.rootpath

    def _cli(self, name: str) -> object:
        return self._config.getoption(SETTING[name].dest)

    def _ini(self, name: str) -> object:
        setting = SETTING[name]
        if not setting.ini:
            return None
        value = self._config.getini(setting.ini_key)
        if value in ("", [], None):
            return None
        return value

    def path(self, name: str, default: str) -> Path:
        found = self.optional_path(name)
        return found if found is not None else (self._inidir / default).resolve()

    def optional_path(self, name: str) -> Path | None:
        cli = self._cli(name)
        if cli is not None:
            return (self._cwd / str(cli)).resolve()
        ini = self._ini(name)
        if ini is not None:
            return (self._inidir / str(ini)).resolve()
        return None

    def path_or_off(self, name: str, default: Path) -> Path | None:
        if self.text(name) == "off":
            return None
        found = self.optional_path(name)
        return found if found is not None else default

    def seed(self) -> tuple[Path, ...]:
        cli = self._cli("seed")
        if cli is not None:
            assert isinstance(cli, list)
            return tuple((self._cwd / str(p)).resolve() for p in cli)
        ini = self._ini("seed")
        if ini is not None:
            assert isinstance(ini, list)
            return tuple(Path(p).resolve() for p in ini)
        return ()

    def url(self, name: str, env: str) -> tuple[str | None, str]:
        setting = SETTING[name]
        cli = self._cli(name)
        if cli is not None:
            return _nonempty(str(cli)), setting.flag
        ini = self._ini(name)
        if ini is not None:
            value = str(ini)
            if _has_password(value):
                raise ConfigError.password_in_ini(setting.ini_key)
            return _nonempty(value), setting.ini_key
        return _nonempty(os.environ.get(env)), f"${env}"

    def text(self, name: str) -> str | None:
        cli = self._cli(name)
        raw = cli if cli is not None else self._ini(name)
        return _nonempty(str(raw)) if raw is not None else None

    def extensions(self) -> tuple[str, ...] | None:
        names = self.listed("extensions")
        return None if names is None else tuple(dict.fromkeys(names))

    def listed(self, name: str) -> list[str] | None:
        """A list setting: comma separated on the CLI, space (or comma) separated in the ini."""
        cli = self._cli(name)
        if cli is not None:
            return [n.strip() for n in str(cli).split(",") if n.strip()]
        ini = self._ini(name)
        if ini is None:
            return None
        assert isinstance(ini, list)
        return [n for item in ini for n in (p.strip() for p in str(item).split(",")) if n]

    def one_off(self, name: str) -> tuple[str, ...]:
        """A list option that must come from this run's own command line (or PYTEST_ADDOPTS),
        never from the ini's addopts, where it would apply to every later run."""
        values = tuple(self.listed(name) or ())
        flag = SETTING[name].flag
        if values and not any(a.split("=", 1)[0] == flag for a in run_args(self._config)):
            raise ConfigError.one_off_in_addopts(flag)
        return values

    def switch(self, name: str) -> bool:
        cli = self._cli(name)
        if cli is not None:
            return bool(cli)
        return bool(self._ini(name))

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        if raw not in choices:
            raise ConfigError.bad_value(SETTING[name].flag, raw, "one of " + ", ".join(choices))
        return raw

    def period(self, name: str, default: str) -> timedelta:
        cli = self._cli(name)
        raw = str(cli if cli is not None else self._ini(name) or default)
        found = parse_period(raw)
        limits = SETTING[name].range
        assert limits is not None
        if found is None or not limits.check(found / timedelta(hours=1)):
            raise ConfigError.bad_value(SETTING[name].flag, raw, _period_expected(limits))
        return found

    def holdbacks(self) -> tuple[tuple[str, timedelta], ...]:
        limits = SETTING["holdbacks"].range
        assert limits is not None
        entries: list[tuple[str, timedelta]] = []
        for entry in self.listed("holdbacks") or []:
            key, _, raw = entry.partition("=")
            found = parse_period(raw)
            if not key.strip() or found is None or not limits.check(found / timedelta(hours=1)):
                raise ConfigError.bad_value(
                    SETTING["holdbacks"].flag,
                    entry,
                    "entries like 20250115160002=7d (a migration's version or name, then "
                    + _period_expected(limits)
                    + ")",
                )
            entries.append((key.strip(), found))
        return tuple(entries)

    def fraction_or_off(self, name: str, default: float) -> float | None:
        raw = self._raw(name)
        if raw is not None and str(raw).strip().lower() in ("off", "none", "false"):
            return None
        return self.number(name, default)

    def _raw(self, name: str) -> object:
        cli = self._cli(name)
        return cli if cli is not None else self._ini(name)

    def number(self, name: str, default: float) -> float:
        """A numeric option within its declared range; anything else is a usage error."""
        raw = self._raw(name)
        if raw is None:
            return default
        limits = SETTING[name].range
        assert limits is not None, f"{name} declares no range"
        try:
            value = float(str(raw).strip())
        except ValueError:
            value = math.nan
        if not limits.check(value) or (limits.whole and not value.is_integer()):
            raise ConfigError.bad_value(SETTING[name].flag, str(raw), limits.expected())
        return value

    def whole(self, name: str, default: int) -> int:
        return int(self.number(name, default))


def _period_expected(limits: Range) -> str:
    return (
        "a period like 12h, 3d or 1w (hours, days, weeks) of "
        f"{_hours(limits.low)} to {_hours(limits.high)}"
    )


def _hours(hours: float) -> str:
    if hours and hours % (24 * 7) == 0:
        return f"{hours / (24 * 7):g}w"
    if hours and hours % 24 == 0:
        return f"{hours / 24:g}d"
    return f"{hours:g}h"


PERIOD_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_period(text: str) -> timedelta | None:
    """``7d``, ``12h``, ``1w`` (spaces allowed); ``None`` when it is not a period."""
    compact = "".join(text.split()).lower()
    if len(compact) < 2 or compact[-1] not in PERIOD_UNITS or not compact[:-1].isdigit():
        return None
    return int(compact[:-1]) * PERIOD_UNITS[compact[-1]]


def _nonempty(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return value.strip()


def _has_password(url: str) -> bool:
    """Whether a URL or key=value connection string carries a password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        return bool(conninfo_to_dict(url).get("password"))
    except Exception:
        return False
