"""The gate's options: declared once, read once into a frozen :class:`GateConfig`.

Every setting is a CLI flag ``--dbgate-x`` mirrored by an ini key ``dbgate_x``; the CLI wins over
the ini, the ini over the environment or the default. Values are compared with ``is not None`` so
that an explicit ``0`` on the command line is never mistaken for "unset".
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.config.settings import (
    DATABASE_URL_ENV,
    DEFAULT_RECORD,
    DEFAULT_STAGING_DIR,
    DEFAULT_WATCH_RECORD,
    HOLDBACK_REQUIRES,
    LAYOUTS,
    SETTING,
    SIGNING_KEY_ENV,
    SOURCE_URL_ENV,
    STAGING_URL_ENV,
    Mode,
    Range,
)

if TYPE_CHECKING:
    import pytest

    from pytest_dbgate.lint.rule import Severity


@dataclass(frozen=True, kw_only=True)
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
    workload_runs: int
    max_regression: float | None
    perf_floor_ms: float
    perf_budget_s: float
    max_lock_ms: float
    max_block_ms: float
    traffic_rate: float
    record: Path
    production_url: str | None = field(default=None, repr=False)
    production_url_setting: str = f"${SOURCE_URL_ENV}"
    record_max_age: timedelta = timedelta(days=3)
    lock_timeout_ms: float
    migration_timeout_s: float
    lock_retries: int
    max_idle_in_transaction_ms: float
    lock_retry_wait_s: float
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
    lint_small_table_rows: int
    lint_rules: tuple[tuple[str, Severity], ...] = ()
    pg_version: str | None = None  # set: the version lint mode assumes
    sarif: Path | None = None
    holdback_requires: str = "time+metrics"
    watch_record: Path
    watch_top: int
    restore_points: str = "on"  # on (where worth the copy), every (after each), off

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
    report_dir = reader.path("report_dir")
    production_url, production_setting = reader.url("production_url", SOURCE_URL_ENV)
    return GateConfig(
        mode=mode,
        rootdir=config.rootpath,
        migrations=reader.path("migrations"),
        report_dir=report_dir,
        source_url=source_url,
        source_url_setting=source_setting,
        staging_url=staging_url,
        staging_url_setting=staging_setting,
        extensions=extensions,
        seed=reader.seed(),
        pg_bindir=reader.optional_path("pg_bindir"),
        pool_size=reader.whole("pool_size"),
        test_command=reader.text("test_command"),
        post_migrate_command=reader.text("post_migrate_command"),
        migrate_command=reader.text("migrate_command"),
        workload=reader.optional_path("workload"),
        workload_runs=reader.whole("workload_runs"),
        max_regression=reader.fraction_or_off("max_regression"),
        perf_floor_ms=reader.number("perf_floor_ms"),
        perf_budget_s=reader.number("perf_budget"),
        max_lock_ms=reader.number("max_lock_ms"),
        max_block_ms=reader.number("max_block_ms"),
        traffic_rate=reader.number("traffic_rate"),
        record=reader.optional_path("record") or report_dir / DEFAULT_RECORD,
        production_url=production_url,
        production_url_setting=production_setting,
        record_max_age=reader.period("record_max_age"),
        lock_timeout_ms=reader.number("lock_timeout"),
        migration_timeout_s=reader.number("migration_timeout"),
        lock_retries=reader.whole("lock_retries"),
        max_idle_in_transaction_ms=reader.number("max_idle_in_transaction_ms"),
        lock_retry_wait_s=reader.number("lock_retry_wait"),
        holdbacks=reader.holdbacks(),
        release_early=reader.one_off("release_early"),
        signing_key=os.environ.get(SIGNING_KEY_ENV) or None,
        layout=reader.choice("layout", LAYOUTS, "auto"),
        snapshot_max_age=reader.period("snapshot_max_age"),
        refresh=reader.switch("refresh"),
        snapshot_file=reader.optional_path("snapshot"),
        staging_dir=reader.path_or_off("staging_dir", report_dir / DEFAULT_STAGING_DIR),
        clone_command=reader.text("clone_command"),
        clone_cleanup_command=reader.text("clone_cleanup_command"),
        lint_small_table_rows=reader.whole("lint_small_table_rows"),
        lint_rules=reader.lint_rules(),
        pg_version=reader.pg_version(),
        sarif=reader.optional_path("sarif"),
        holdback_requires=reader.choice(
            "holdback_requires", HOLDBACK_REQUIRES, SETTING["holdback_requires"].word()
        ),
        watch_record=reader.optional_path("watch_record") or report_dir / DEFAULT_WATCH_RECORD,
        watch_top=reader.whole("watch_top"),
        restore_points=reader.choice("restore_points", ("on", "every", "off"), "on"),
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

    def path(self, name: str) -> Path:
        found = self.optional_path(name)
        return found if found is not None else (self._inidir / SETTING[name].word()).resolve()

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

    def lint_rules(self) -> tuple[tuple[str, Severity], ...]:
        from pytest_dbgate.lint.catalog import RULES
        from pytest_dbgate.lint.rule import SEVERITIES

        entries: list[tuple[str, Severity]] = []
        for entry in self.listed("lint_rules") or []:
            rule, _, raw = (part.strip() for part in entry.partition("="))
            severity = next((s for s in SEVERITIES if s == raw.lower()), None)
            if rule not in RULES or severity is None:
                raise ConfigError.bad_lint_rule(SETTING["lint_rules"].flag, entry, rule, RULES)
            if not RULES[rule].ignorable and severity != "fail":
                raise ConfigError.bad_value(
                    SETTING["lint_rules"].flag,
                    entry,
                    f"{rule} always fails (what it does is never rehearsed on staging); "
                    "leave it out",
                )
            entries.append((rule, severity))
        return tuple(entries)

    def pg_version(self) -> str | None:
        raw = self.text("pg_version")
        if raw is None:
            return None
        if not re.fullmatch(r"(9\.[56]|1[0-9])(\.\d{1,2})?", raw):
            raise ConfigError.bad_value(
                SETTING["pg_version"].flag,
                raw,
                "a PostgreSQL version from 9.5 to 19, like 15 or 16.4",
            )
        return raw

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

    def period(self, name: str) -> timedelta:
        cli = self._cli(name)
        raw = str(cli if cli is not None else self._ini(name) or SETTING[name].word())
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

    def fraction_or_off(self, name: str) -> float | None:
        raw = self._raw(name)
        if raw is not None and str(raw).strip().lower() in ("off", "none", "false"):
            return None
        return self.number(name)

    def _raw(self, name: str) -> object:
        cli = self._cli(name)
        return cli if cli is not None else self._ini(name)

    def number(self, name: str) -> float:
        """A numeric option within its declared range; anything else is a usage error."""
        raw = self._raw(name)
        if raw is None:
            return SETTING[name].number()
        limits = SETTING[name].range
        assert limits is not None, f"{name} declares no range"
        try:
            value = float(str(raw).strip())
        except ValueError:
            value = math.nan
        if not limits.check(value) or (limits.whole and not value.is_integer()):
            raise ConfigError.bad_value(SETTING[name].flag, str(raw), limits.expected())
        return value

    def whole(self, name: str) -> int:
        return int(self.number(name))


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
