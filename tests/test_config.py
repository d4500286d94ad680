"""Reading the gate's settings: CLI over ini over environment or default, checked once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pytest_dbgate.config.model import GateConfig, parse_period
from pytest_dbgate.config.settings import SETTINGS, Setting
from pytest_dbgate.plugin import GATE_KEY


@pytest.fixture
def configured(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("PROD_DATABASE_URL", "STAGING_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    (pytester.path / "migrations").mkdir()
    (pytester.path / "migrations" / "1_a.sql").write_text("SELECT 1;")
    (pytester.path / "seed.sql").write_text("CREATE TABLE t (id int);")
    return pytester


def gate_config(pytester: pytest.Pytester, *args: str) -> GateConfig:
    config = pytester.parseconfigure("--dbgate=staging", *args)
    return config.stash[GATE_KEY].config


def test_defaults(configured: pytest.Pytester) -> None:
    configured.makeini("[pytest]\ndbgate_seed = seed.sql\n")
    cfg = gate_config(configured)
    assert cfg.migrations == configured.path / "migrations"
    assert cfg.report_dir == configured.path / ".dbgate"
    assert cfg.seed == (configured.path / "seed.sql",)
    assert cfg.source_url is None and cfg.embedded_source and cfg.embedded_staging
    assert cfg.extensions is None
    assert cfg.pool_size == 10


def test_cli_over_ini_over_environment(
    configured: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROD_DATABASE_URL", "postgresql://env@env-host/prod")
    configured.makeini(
        "[pytest]\ndbgate_source_url = postgresql://ini@ini-host/prod\n"
        "dbgate_extensions = citext pg_trgm\ndbgate_pool_size = 5\n"
    )
    cfg = gate_config(configured)
    assert cfg.source_url == "postgresql://ini@ini-host/prod"
    assert cfg.source_url_setting == "dbgate_source_url"
    assert cfg.extensions == ("citext", "pg_trgm")
    assert cfg.pool_size == 5

    cfg = gate_config(
        configured,
        "--dbgate-source-url=postgresql://cli@cli-host/prod",
        "--dbgate-extensions=uuid-ossp, citext",
        "--dbgate-pool-size=0",
    )
    assert cfg.source_url == "postgresql://cli@cli-host/prod"
    assert cfg.extensions == ("uuid-ossp", "citext")
    assert cfg.pool_size == 0, "an explicit 0 on the command line wins over the ini"

    configured.makeini("[pytest]\n")
    cfg = gate_config(configured)
    assert cfg.source_url == "postgresql://env@env-host/prod"
    assert cfg.source_url_setting == "$PROD_DATABASE_URL"


def test_ini_paths_are_relative_to_the_ini_and_cli_paths_to_the_cwd(
    configured: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = configured.path / "release" / "v2"
    other.mkdir(parents=True)
    (other / "1_b.sql").write_text("SELECT 1;")
    configured.makeini("[pytest]\ndbgate_migrations = release/v2\ndbgate_seed = seed.sql\n")
    assert gate_config(configured).migrations == other
    monkeypatch.chdir(configured.path / "release")
    assert gate_config(configured, "--dbgate-migrations=v2").migrations == other


def test_url_settings_repr_hides_passwords(
    configured: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROD_DATABASE_URL", "postgresql://app:hunter2@db/prod")
    cfg = gate_config(configured)
    assert "hunter2" not in repr(cfg)


@pytest.mark.parametrize(
    ("ini", "args", "message"),
    [
        ("dbgate_source_url = postgresql://app:hunter2@db/prod", (), "contains a password"),
        ("dbgate_pool_size = lots", (), "--dbgate-pool-size has an invalid value 'lots'"),
        ("", ("--dbgate-pool-size=-3",), "--dbgate-pool-size has an invalid value '-3'"),
        ("", (), "there is no source database to gate against"),
        ("dbgate_seed = missing.sql", (), "the seed path"),
        ("dbgate_seed = seed.sql", ("--dbgate-record-max-age=3 days",), "invalid value '3 days'"),
        ("dbgate_seed = seed.sql", ("--dbgate-holdbacks=1_a",), "invalid value '1_a'"),
        ("dbgate_seed = seed.sql", ("--dbgate-holdbacks=9=7d",), "names '9', which is not a"),
        ("dbgate_seed = seed.sql", ("--dbgate-lock-retries=many",), "--dbgate-lock-retries"),
        (
            "dbgate_seed = seed.sql\ndbgate_clone_command = ./clone\n"
            "dbgate_staging_url = postgresql://app@staging/db",
            (),
            "both a clone command and a staging URL are set",
        ),
    ],
)
def test_bad_settings_are_usage_errors(
    configured: pytest.Pytester, ini: str, args: tuple[str, ...], message: str
) -> None:
    configured.makeini(f"[pytest]\n{ini}\n")
    result = configured.runpytest("--dbgate=staging", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: *{message}*", "*what to do: *"])
    assert "hunter2" not in result.stdout.str() + result.stderr.str()
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_without_dbgate_nothing_is_read_or_checked(configured: pytest.Pytester) -> None:
    configured.makeini("[pytest]\ndbgate_pool_size = lots\ndbgate_migrations = nowhere\n")
    config = configured.parseconfigure()
    assert GATE_KEY not in config.stash
    assert isinstance(configured.path, Path)


def test_production_settings(configured: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROD_DATABASE_URL", "postgresql://deploy@db/prod")
    monkeypatch.setenv("DBGATE_SIGNING_KEY", "s3cret-key")
    configured.makeini(
        "[pytest]\ndbgate_record = ci/record.json\ndbgate_holdbacks = a=2w, 1=12h\n"
        "dbgate_lock_timeout = 750\n"
    )
    config = configured.parseconfigure("--dbgate=production", "--dbgate-lock-retries=0")
    cfg = config.stash[GATE_KEY].config
    assert cfg.mode == "production"
    assert cfg.production_url == "postgresql://deploy@db/prod"
    assert cfg.production_url_setting == "$PROD_DATABASE_URL"
    assert cfg.record == configured.path / "ci" / "record.json"
    assert cfg.record_max_age == timedelta(days=3)
    assert cfg.holdbacks == (("a", timedelta(weeks=2)), ("1", timedelta(hours=12)))
    assert cfg.lock_timeout_ms == 750 and cfg.lock_retries == 0, "a CLI 0 is not unset"
    assert cfg.lock_retry_wait_s == 1.0
    assert cfg.signing_key == "s3cret-key" and "s3cret-key" not in repr(cfg)
    # The record follows the report folder unless it is named.
    cfg = gate_config(configured, "--dbgate-report-dir=out", "--dbgate-seed=seed.sql")
    assert cfg.record == configured.path / "ci" / "record.json"
    configured.makeini("[pytest]\n")
    cfg = gate_config(configured, "--dbgate-report-dir=out", "--dbgate-seed=seed.sql")
    assert cfg.record == configured.path / "out" / "gate-record.json"


@pytest.mark.parametrize(
    ("text", "period"),
    [("7d", timedelta(days=7)), ("12 h", timedelta(hours=12)), ("1W", timedelta(weeks=1))],
)
def test_periods(text: str, period: timedelta) -> None:
    assert parse_period(text) == period


@pytest.mark.parametrize("text", ["", "d", "7", "7m", "-1d", "1.5d", "seven days"])
def test_not_periods(text: str) -> None:
    assert parse_period(text) is None


def test_snapshot_settings(configured: pytest.Pytester) -> None:
    configured.makeini(
        "[pytest]\ndbgate_seed = seed.sql\ndbgate_refresh = true\n"
        "dbgate_snapshot_max_age = 12h\ndbgate_clone_command = ./clone --json\n"
    )
    cfg = gate_config(configured)
    assert cfg.refresh is True
    assert cfg.snapshot_max_age == timedelta(hours=12)
    assert cfg.clone_command == "./clone --json" and not cfg.embedded_staging
    configured.makeini("[pytest]\ndbgate_seed = seed.sql\n")
    assert gate_config(configured).refresh is False
    assert gate_config(configured, "--dbgate-refresh").refresh is True


NUMERIC = [s for s in SETTINGS if s.range is not None]
PERIODS = {"record_max_age", "snapshot_max_age", "holdbacks"}


def test_every_numeric_option_declares_its_range() -> None:
    assert {s.name for s in NUMERIC} == {
        "lint_small_table_rows",
        "workload_runs",
        "max_regression",
        "perf_floor_ms",
        "perf_budget",
        "max_lock_ms",
        "max_block_ms",
        "traffic_rate",
        "record_max_age",
        "lock_timeout",
        "migration_timeout",
        "lock_retries",
        "lock_retry_wait",
        "max_idle_in_transaction_ms",
        "holdbacks",
        "snapshot_max_age",
        "pool_size",
        "watch_top",
    }


@pytest.mark.parametrize(
    "setting", [s for s in NUMERIC if s.name not in PERIODS], ids=lambda s: s.name
)
def test_numbers_outside_their_range_stop_the_run(
    configured: pytest.Pytester, setting: Setting
) -> None:
    limits = setting.range
    assert limits is not None
    configured.makeini("[pytest]\ndbgate_seed = seed.sql\n")
    for bad in (f"{limits.high * 2 + 1:.0f}", f"{limits.low - 1:g}", "inf", "nan", "1e400"):
        with pytest.raises(pytest.UsageError) as raised:
            gate_config(configured, f"{setting.flag}={bad}")
        assert f"{setting.flag} has an invalid value {bad!r}" in str(raised.value)
        assert limits.expected() in str(raised.value)
    for good in (limits.low, limits.high):
        cfg = gate_config(configured, f"{setting.flag}={good:g}")
        assert isinstance(cfg, GateConfig)
    if limits.whole:
        with pytest.raises(pytest.UsageError, match="a whole number of"):
            gate_config(configured, f"{setting.flag}={limits.low + 0.5}")


def test_periods_outside_their_range_stop_the_run(configured: pytest.Pytester) -> None:
    configured.makeini("[pytest]\ndbgate_seed = seed.sql\n")
    with pytest.raises(pytest.UsageError, match="of 1h to 366d"):
        gate_config(configured, "--dbgate-record-max-age=0h")
    with pytest.raises(pytest.UsageError, match="of 1h to 366d"):
        gate_config(configured, "--dbgate-record-max-age=60w")
    assert gate_config(configured, "--dbgate-snapshot-max-age=0h").snapshot_max_age == timedelta()
    with pytest.raises(pytest.UsageError, match="20250115160002=7d"):
        gate_config(configured, "--dbgate-holdbacks=1=0h")


def test_hold_backs_from_configuration_only_lengthen(configured: pytest.Pytester) -> None:
    (configured.path / "migrations" / "2_cleanup.sql").write_text(
        "-- dbgate: hold-back 7d\nSELECT 2;"
    )
    configured.makeini("[pytest]\ndbgate_seed = seed.sql\n")
    run = configured.parseconfigure("--dbgate=staging", "--dbgate-holdbacks=2=14d,1=1h")
    assert run.stash[GATE_KEY].hold_backs == {"2": timedelta(days=14), "1": timedelta(hours=1)}
    with pytest.raises(pytest.UsageError, match="holds itself back 7d"):
        configured.parseconfigure("--dbgate=staging", "--dbgate-holdbacks=cleanup=6d")
    (configured.path / "migrations" / "3_zero.sql").write_text("-- dbgate: hold-back 0d\nSELECT 3;")
    with pytest.raises(
        pytest.UsageError, match="malformed dbgate directive '-- dbgate: hold-back 0d'"
    ):
        configured.parseconfigure("--dbgate=staging")
