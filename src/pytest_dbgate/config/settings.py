"""Every option of the gate, declared once: its flag, ini key, help (with the default) and range."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pytest


Mode = Literal["staging", "production", "watch", "lint"]
MODES: tuple[Mode, ...] = ("staging", "production", "watch", "lint")
SOURCE_URL_ENV = "PROD_DATABASE_URL"
STAGING_URL_ENV = "STAGING_DATABASE_URL"
DATABASE_URL_ENV = "DATABASE_URL"
# Files the gate keeps in the report folder, unless their own option names another place.
DEFAULT_RECORD = "gate-record.json"
DEFAULT_WATCH_RECORD = "watch-record.json"
HOLDBACK_REQUIRES = ("time+metrics", "time")
MAX_RETRY_WAIT_S = 60.0  # a wait doubles per retry up to this
SIGNING_KEY_ENV = "DBGATE_SIGNING_KEY"
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
    """One option: its CLI flag, ini key, help text, default and accepted range, declared in
    one place; ``{default}`` in the help shows the default."""

    name: str
    text: str
    ini_type: Literal["string", "paths", "args", "bool"] = "string"
    metavar: str = "VALUE"
    cli_append: bool = False
    range: Range | None = None
    ini: bool = True  # False: a one-off decision, on the command line only
    default: str | float | None = None  # None: no default (unset, or derived from another)

    @property
    def help(self) -> str:
        shown = f"{self.default:g}" if isinstance(self.default, float) else self.default
        return self.text.replace("{default}", "" if shown is None else str(shown))

    def number(self) -> float:
        """The default of a numeric option."""
        assert isinstance(self.default, int | float), f"{self.name} has no numeric default"
        return float(self.default)

    def word(self) -> str:
        """The default of a text option (a path, a period)."""
        assert isinstance(self.default, str), f"{self.name} has no text default"
        return self.default

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
        "folder of the release's migration files (default: {default})",
        metavar="PATH",
        default="migrations",
    ),
    Setting(
        "layout",
        "how the migrations folder is laid out: auto, flat, prisma, flyway, golang-migrate or "
        "dbmate (default: auto, detected from the files)",
        metavar="LAYOUT",
    ),
    Setting(
        "lint_small_table_rows",
        "staging: a lint finding on a table with fewer rows than this is reported, not failed "
        "(default: {default})",
        metavar="N",
        range=Range(0, 1e12, "rows", whole=True),
        default=10_000,
    ),
    Setting(
        "lint_rules",
        "lint rules' severity, as <rule>=fail|report|off, comma separated on the CLI, space "
        "separated in the ini (e.g. prefer-robust-stmts=off require-lock-timeout=fail); "
        "the defaults fail rules about locks, rewrites, validation and compatibility and "
        "report style and robustness rules",
        ini_type="args",
        metavar="LIST",
    ),
    Setting(
        "pg_version",
        "the PostgreSQL version squawk assumes in lint mode, like 15 or 16.4 (default: the "
        "project's .squawk.toml pg_version, else {default}); staging lints for the staging "
        "server's own version",
        metavar="VERSION",
        default="18",
    ),
    Setting(
        "sarif",
        "also write the lint findings as SARIF 2.1.0 to this file (GitHub code scanning reads it)",
        metavar="PATH",
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
        "folder the gate writes its reports to (default: {default})",
        metavar="PATH",
        default=".dbgate",
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
        "most rounds each workload query runs per phase, after two warm-up rounds; fewer when "
        "the time budget runs out, never fewer than 3 (default: {default})",
        metavar="N",
        range=Range(3, 10_000, "rounds", whole=True),
        default=30,
    ),
    Setting(
        "perf_budget",
        "seconds each phase may spend running the workload, shared among its queries; a slow "
        "query gets fewer rounds (default: {default})",
        metavar="SECONDS",
        range=Range(1, 86_400, "seconds"),
        default=60.0,
    ),
    Setting(
        "max_regression",
        "allowed slow-down of a query's execution time, as a fraction (default: "
        "{default}); `off` disables the performance stage",
        metavar="FRACTION",
        range=Range(0, 100, "a fraction (0.2 is 20 %)"),
        default=0.20,
    ),
    Setting(
        "perf_floor_ms",
        "a query slower by less than this many milliseconds passes whatever the ratio (default: "
        "{default})",
        metavar="MS",
        range=Range(0, 60_000, "milliseconds"),
        default=0.1,
    ),
    Setting(
        "max_lock_ms",
        "longest a migration may hold a lock that blocks reads or writes on a table with rows "
        "(default: {default})",
        metavar="MS",
        range=Range(0, DAY_MS, "milliseconds"),
        default=1000,
    ),
    Setting(
        "max_block_ms",
        "longest a simulated application session may wait for a migration (default: {default})",
        metavar="MS",
        range=Range(0, DAY_MS, "milliseconds"),
        default=500,
    ),
    Setting(
        "max_idle_in_transaction_ms",
        "production: a session idle in a transaction longer than this (holding its locks until "
        "someone ends it) fails the no_blocking_sessions preflight (default: "
        "{default})",
        metavar="MS",
        range=Range(0, DAY_MS, "milliseconds"),
        default=5_000,
    ),
    Setting(
        "traffic_rate",
        "queries per second each simulated reader and writer sends while a migration runs "
        "(default: {default}; 0: no traffic)",
        metavar="N",
        range=Range(0, 1_000, "queries per second"),
        default=20,
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
        "oldest gate record production accepts, as <N>h, <N>d or <N>w (default: {default})",
        metavar="PERIOD",
        range=Range(1, YEAR_H, "hours"),
        default="3d",
    ),
    Setting(
        "migration_timeout",
        "longest a migration file may run, in seconds, on staging and production: its "
        "statements run with this statement_timeout and the file is cancelled when it is up "
        "(default: {default}, 30 minutes)",
        metavar="SECONDS",
        range=Range(1, 7 * 86400, "seconds"),
        # Long enough for any real migration on a big table, short enough that a forgotten
        # pg_sleep or an endless loop ends the CI job with a message, not its hard timeout.
        default=1800.0,
    ),
    Setting(
        "lock_timeout",
        f"production: lock_timeout of the migrating session, in milliseconds, 1 to {DAY_MS} "
        f"(default: {{default}})",
        metavar="MS",
        range=Range(1, DAY_MS, "milliseconds"),
        default=500,
    ),
    Setting(
        "lock_retries",
        "production: times a migration is retried after a lock timeout (default: {default})",
        metavar="N",
        range=Range(0, 100, "retries", whole=True),
        default=5,
    ),
    Setting(
        "lock_retry_wait",
        "production: seconds before the first retry, doubling for each next one (default: "
        "{default})",
        metavar="SECONDS",
        range=Range(0, MAX_RETRY_WAIT_S, "seconds"),
        default=1.0,
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
        "holdback_requires",
        "production: what releases a held-back migration: time+metrics (its period has passed "
        "and the latest --dbgate=watch since the deploy before it passed) or time (the period "
        "alone, for teams without the watch) (default: {default})",
        metavar="WHAT",
        default="time+metrics",
    ),
    Setting(
        "watch_record",
        f"the watch record: written by --dbgate=watch, read by production to release a "
        f"held-back migration (default: <report folder>/{DEFAULT_WATCH_RECORD})",
        metavar="PATH",
    ),
    Setting(
        "watch_top",
        "watch: besides the queries the staging gate measured, judge production's this many "
        "queries with the most execution time since the deploy (default: {default})",
        metavar="N",
        range=Range(0, 1_000, "queries", whole=True),
        default=10,
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
        "cached snapshot serves the next run, and the seeded embedded source its own (in "
        "<folder>/source) (default: <report dir>/staging-server; off: throwaway servers)",
        metavar="PATH",
    ),
    Setting(
        "restore_points",
        "staging: keep the staging database after each migration (on the staging server, beside "
        "the cached snapshot), so a re-run starts after the last unchanged migration: on (unless "
        "the copy costs over ten times what the migrations since the last point took; always "
        "after the last), every (after each migration), or off (default: {default})",
        metavar="ON|EVERY|OFF",
        default="on",
    ),
    Setting(
        "snapshot_max_age",
        "oldest cached snapshot a run reuses instead of dumping the source, as <N>h, <N>d or "
        "<N>w (default: {default})",
        metavar="PERIOD",
        range=Range(0, YEAR_H, "hours"),
        default="1d",
    ),
    Setting(
        "refresh",
        "dump and restore the source even when a cached snapshot could be reused",
        ini_type="bool",
    ),
    Setting(
        "pool_size",
        "connections the application's pool opens; pool headroom must leave room for it plus "
        "the migration and the monitor (default: {default})",
        metavar="N",
        range=Range(0, 100_000, "connections", whole=True),
        default=10,
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
        "production (deploy what staging passed), watch (read only: production since the "
        "deploy against the baseline before it), lint (static checks, no database)",
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
