"""The staging gate's run: refresh, migrate under watch, measure, each step once, lazily.

See :mod:`pytest_dbgate.steps` for how steps, their owners and their failures work.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_dbgate import __version__
from pytest_dbgate.binaries import PgBinaries, client_for, find_binaries
from pytest_dbgate.commands import CommandResult, run_command
from pytest_dbgate.config import GateConfig
from pytest_dbgate.connections import Endpoint, connect
from pytest_dbgate.exceptions import ConfigError, DbgateError, PerformanceError, SafetyError
from pytest_dbgate.locks import LockReport, relations_in_sql, watching
from pytest_dbgate.migrations import Migration, discover, extensions_in, hold_backs
from pytest_dbgate.performance import Performance
from pytest_dbgate.provisioning import (
    EMBEDDED_SOURCE_DB,
    check_can_run_servers,
    create_gate_database,
    embedded_server,
    gate_database_name,
    load_seed,
    seed_files,
    server_identity,
    take_gate_lock,
)
from pytest_dbgate.runner import Runner, StatementLog
from pytest_dbgate.snapshot import Snapshot, refresh
from pytest_dbgate.stats import Capture, Comparison
from pytest_dbgate.steps import Conn, Database, Progress, Run, StepFailed, migration_step
from pytest_dbgate.workload import parse_workload

if TYPE_CHECKING:
    from pytest_dbgate.report import Results

SOURCE = "source"
STAGING_SERVER = "staging_server"
SNAPSHOT = "snapshot"
RUNNER = "runner"
MIGRATED = "migrated"  # every migration applied and the post-migrate command run: "after" may start
BASELINE = "baseline"
AFTER_CAPTURE = "after_capture"
PERFORMANCE = "performance"


class Gate(Run):
    """One staging gate run against one source and one staging server."""

    mode = "staging"
    lints = True

    def __init__(
        self,
        config: GateConfig,
        migrations: list[Migration],
        binaries: PgBinaries,
        progress: Progress,
        results: Results,
    ) -> None:
        super().__init__(config, migrations, progress, results)
        self.binaries = binaries
        self.workload = parse_workload(config.workload) if config.workload is not None else []
        self.lock_reports: dict[str, LockReport] = {}
        self.performance: Performance | None = None
        if config.performance:
            self.performance = Performance(config, progress, self.workload)
            self.performance.attach(lambda: self.staging_connection(purpose="stats"))
            self._stack.callback(self.performance.close)

    def source(self) -> Database:
        return self._once(SOURCE, self._open_source)

    def staging_server(self) -> Database:
        return self._once(STAGING_SERVER, self._open_staging_server)

    def snapshot(self) -> Snapshot:
        return self._once(SNAPSHOT, self._refresh)

    def runner(self) -> Runner:
        return self._once(RUNNER, self._open_runner)

    def steps(self) -> dict[str, Callable[[], object]]:
        return {
            SOURCE: self.source,
            STAGING_SERVER: self.staging_server,
            SNAPSHOT: self.snapshot,
            RUNNER: self.runner,
            MIGRATED: self.migrated,
            BASELINE: self.baseline,
            AFTER_CAPTURE: self.after_capture,
            PERFORMANCE: self.comparisons,
        }

    def migrated(self) -> CommandResult | None:
        """Every migration applied, then the post-migrate command: what "after" tests need."""
        return self._once(MIGRATED, self._finish_migrating)

    def baseline(self) -> Capture:
        """The before window closed and the workload measured, before any migration."""
        return self._once(BASELINE, self._capture_baseline)

    def after_capture(self) -> Capture:
        return self._once(AFTER_CAPTURE, self._capture_after)

    def comparisons(self) -> list[Comparison]:
        return self._once(PERFORMANCE, self._compare)

    def open_window(self, phase: str) -> None:
        """Start measuring a phase's queries, if the performance stage runs and staging is up."""
        if self.performance is None:
            return
        try:
            self.snapshot()
        except StepFailed:
            return
        self.performance.open_window(phase)

    @property
    def migrations_started(self) -> bool:
        runner = self._memo.get(RUNNER)
        return isinstance(runner, Runner) and runner.started

    def staging_url(self) -> str:
        """The restored staging database's URL, credentials included, for the app's code."""
        return self.snapshot().staging.url()

    def target_connection(self, purpose: str = "check") -> Conn:
        return self.staging_connection(purpose)

    def staging_connection(self, purpose: str = "check") -> Conn:
        """A fresh session on the restored staging database, closed with the gate."""
        snapshot = self.snapshot()
        conn = connect(
            snapshot.staging, "staging", self.config.staging_url_setting, purpose=purpose
        )
        self._stack.callback(conn.close)
        return conn

    # -- step bodies -------------------------------------------------------------------------

    def _open_source(self) -> Database:
        cfg = self.config
        if cfg.source_url is None:
            self.progress("starting the embedded source server and loading the seed")
            server = self._stack.enter_context(embedded_server("prod", self.binaries))
            endpoint = load_seed(server, EMBEDDED_SOURCE_DB, seed_files(cfg.seed))
            embedded = True
        else:
            endpoint = Endpoint.from_url(cfg.source_url, cfg.source_url_setting)
            embedded = False
        conn = connect(endpoint, "source", cfg.source_url_setting, read_only=True, purpose="read")
        self._stack.callback(conn.close)
        return Database(endpoint, conn, server_identity(conn), embedded)

    def _open_staging_server(self) -> Database:
        cfg = self.config
        source = self.source()
        if cfg.staging_url is None:
            self.progress("starting the embedded staging server")
            endpoint = self._stack.enter_context(embedded_server("staging", self.binaries))
            embedded = True
        else:
            endpoint = Endpoint.from_url(cfg.staging_url, cfg.staging_url_setting)
            embedded = False
        conn = connect(endpoint, "staging", cfg.staging_url_setting, purpose="control")
        self._stack.callback(conn.close)
        identity = server_identity(conn)
        if identity.same_server(source.identity):
            raise SafetyError.staging_is_production(endpoint.display())
        dbname = gate_database_name(source.endpoint.dbname)
        take_gate_lock(conn, dbname, endpoint.display())
        return Database(endpoint, conn, identity, embedded)

    def _refresh(self) -> Snapshot:
        source = self.source()
        staging = self.staging_server()
        client = client_for(source.identity.major, self.binaries)
        dbname = gate_database_name(source.endpoint.dbname)
        row = source.conn.execute(
            "SELECT pg_encoding_to_char(encoding) FROM pg_database"
            " WHERE datname = current_database()"
        ).fetchone()
        encoding = str(row[0]) if row else "UTF8"
        create_gate_database(staging.conn, dbname, staging.endpoint.display(), encoding)
        workdir = Path(
            self._stack.enter_context(tempfile.TemporaryDirectory(prefix="dbgate-dump-"))
        )
        return refresh(
            source.conn,
            source.endpoint,
            staging.endpoint.with_dbname(dbname),
            client,
            workdir,
            self.progress,
        )

    def _finish_migrating(self) -> CommandResult | None:
        failed = next((o for o in self.outcomes() if not o.ok), None)
        if failed is not None:
            raise StepFailed(migration_step(failed.migration), failed.describe_failure(self.rel))
        command = self.config.post_migrate_command
        result = None
        if command is not None:
            self.progress(f"running the post-migrate command `{command}`")
            result = run_command(command, self.snapshot().staging, self.config.rootdir)
            if not result.ok:
                raise StepFailed(MIGRATED, result.failure("the post-migrate command"))
        if self.performance is not None:
            # Compare steady states: a backfill's dead rows are vacuumed on production soon
            # after a deploy; the after window should not measure them.
            self.progress("VACUUM ANALYZE on staging before measuring the after phase")
            self.staging_connection(purpose="vacuum").execute("VACUUM (ANALYZE)")
            self.open_window("after")
        return result

    def _capture_baseline(self) -> Capture:
        assert self.performance is not None
        self.snapshot()
        if self.migrations_started:
            raise PerformanceError.migrations_first()
        return self.performance.capture("before")

    def _capture_after(self) -> Capture:
        assert self.performance is not None
        self.baseline()  # without one, the after capture has nothing to be compared with
        self.migrated()
        return self.performance.capture("after")

    def _compare(self) -> list[Comparison]:
        assert self.performance is not None
        return self.performance.judge(self.baseline(), self.after_capture())

    def _open_runner(self) -> Runner:
        if self.performance is not None:
            # The baseline belongs before the first migration, whatever was selected; if it
            # cannot be taken, the baseline item says why and migrating goes on.
            with contextlib.suppress(StepFailed):
                self.baseline()
        conn = self.staging_connection(purpose="migrate")
        return Runner(
            conn,
            self.migrations,
            self.progress,
            f"pytest-dbgate {__version__} staging",
            watch=self._watch_migration,
        )

    @contextlib.contextmanager
    def _watch_migration(self, migration: Migration, conn: Conn) -> Iterator[StatementLog]:
        """Simulated traffic and the lock monitor around one migration."""
        staging = self.snapshot().staging

        def session() -> Conn:
            return connect(staging, "staging", self.config.staging_url_setting, purpose="watch")

        with watching(
            session, migration, conn, self._workload_reads(), self.config.traffic_rate
        ) as (report, timeline):
            self.lock_reports[migration.id] = report
            yield timeline

    def _workload_reads(self) -> dict[str, list[str]]:
        """The workload's read queries by the relations they read: traffic reads these."""
        reads: dict[str, list[str]] = {}
        for query in self.workload:
            if not query.sql.lstrip().lower().startswith(("select", "with")):
                continue
            names = set(relations_in_sql([query.sql]))
            # Only one-table reads: a join holds one table while it waits for the next, and a
            # migration locking both in the other order would deadlock with the simulation.
            if len(names) == 1:
                reads.setdefault(names.pop(), []).append(query.sql)
        return reads


def open_gate(config: GateConfig, progress: Progress, results: Results) -> Gate:
    """Check everything that can be checked without a database, then make the gate.

    Raises a :class:`DbgateError` for bad input, before anything is started or touched.
    """
    migrations = discover(config.migrations, config.layout)
    hold_backs(migrations, config.holdbacks)  # an unknown name is bad input: say so now
    if config.source_url is not None:
        source = Endpoint.from_url(config.source_url, config.source_url_setting)
    else:
        if not config.seed:
            raise ConfigError.no_source()
        for path in config.seed:
            if not path.exists():
                raise ConfigError.seed_missing(path)
    if config.staging_url is not None:
        staging = Endpoint.from_url(config.staging_url, config.staging_url_setting)
        if config.source_url is not None and staging == source:
            raise ConfigError.staging_is_source()
    programs: tuple[str, ...] = ("pg_dump", "pg_restore")
    if config.embedded_source or config.embedded_staging:
        programs = ("pg_ctl", *programs)
        check_can_run_servers()
    binaries = find_binaries(config.pg_bindir, programs)
    return Gate(config, migrations, binaries, progress, results)


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
    if config.source_url is None:
        for path in seed_files(config.seed):
            names.extend(extensions_in(path.read_text()))
    else:
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
