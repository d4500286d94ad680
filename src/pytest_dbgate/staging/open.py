"""Opening the staging gate: everything that can be checked without a database, checked first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.config.model import GateConfig
from pytest_dbgate.core.errors import DbgateError
from pytest_dbgate.core.results import Progress
from pytest_dbgate.migrations.parse import Migration, discover, extensions_in
from pytest_dbgate.migrations.sqltext import read_sql
from pytest_dbgate.pg.binaries import find_binaries
from pytest_dbgate.pg.connections import Endpoint, connect
from pytest_dbgate.pg.seed import seed_files
from pytest_dbgate.pg.servers import check_can_run_servers
from pytest_dbgate.refresh.dumpfile import inspect
from pytest_dbgate.staging.gate import Gate

if TYPE_CHECKING:
    from pytest_dbgate.core.results import Results


def _release(config: GateConfig) -> list[Migration]:
    """The release's migration files; in command mode the folder may hold none the gate can
    read (alembic's are Python): the tool finds its own, and lint has nothing to read."""
    if config.migrate_command is None:
        return discover(config.migrations, config.layout)
    if not config.migrations.is_dir() or not any(config.migrations.glob("**/*.sql")):
        return []
    return discover(config.migrations, config.layout)


def open_gate(config: GateConfig, progress: Progress, results: Results) -> Gate:
    """Check everything that can be checked without a database, then make the gate.

    Raises a :class:`DbgateError` for bad input, before anything is started or touched.
    """
    migrations = _release(config)
    if config.source_url is not None:
        source = Endpoint.from_url(config.source_url, config.source_url_setting)
    elif config.snapshot_file is None:
        if not config.seed:
            raise ConfigError.no_source()
        for path in config.seed:
            if not path.exists():
                raise ConfigError.seed_missing(path)
        for path in config.seed:
            if path.is_dir() and not seed_files([path]):
                raise ConfigError.seed_empty(path)
        for path in seed_files(config.seed):
            read_sql(path, "seed file")  # not UTF-8, a NUL byte: said now, not mid-load
    if config.clone_command is not None and config.staging_url is not None:
        raise ConfigError.clone_and_staging()
    if config.clone_command is not None and config.snapshot_file is not None:
        raise ConfigError.clone_and_snapshot()
    if config.staging_url is not None:
        staging = Endpoint.from_url(config.staging_url, config.staging_url_setting)
        if config.source_url is not None and staging == source:
            raise ConfigError.staging_is_source()
    programs: tuple[str, ...] = ("pg_dump", "pg_restore", "psql")
    if config.embedded_source or config.embedded_staging:
        programs = ("pg_ctl", *programs)
        check_can_run_servers()
    binaries = find_binaries(config.pg_bindir, programs)
    dump = None
    if config.snapshot_file is not None:
        dump = inspect(config.snapshot_file, binaries)
    return Gate(config, migrations, binaries, progress, results, dump)


def required_extensions(gate: Gate) -> list[str]:
    """The extensions to check, known at collection time.

    Configured ones if given; otherwise those the migrations and the seed create, plus, for a
    real source, those installed there (one short read-only query; skipped if unreachable, the
    source item then reports why).
    """
    config = gate.config
    if config.extensions is not None:
        return list(config.extensions)
    names: list[str] = [name for m in gate.migrations for name in m.extensions]
    if gate.dump is not None:
        names.extend(gate.dump.extensions)
    if config.embedded_source:
        for path in seed_files(config.seed):
            names.extend(extensions_in(read_sql(path, "seed file")))
    elif config.source_url is not None:
        try:
            endpoint = Endpoint.from_url(config.source_url, config.source_url_setting)
            with connect(
                endpoint, "source", config.source_url_setting, read_only=True, purpose="read"
            ) as conn:
                rows = conn.execute(
                    "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1"
                ).fetchall()
            names.extend(str(r[0]) for r in rows)
        except DbgateError:
            pass
    return sorted(dict.fromkeys(n for n in names if n != "plpgsql"))
