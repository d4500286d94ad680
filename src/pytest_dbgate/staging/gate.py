"""The staging gate's run: refresh, migrate under watch, measure, each step once, lazily.

See :mod:`pytest_dbgate.core.run` for how steps, their owners and their failures work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from pytest_dbgate import __version__
from pytest_dbgate.config.model import GateConfig
from pytest_dbgate.core.commands import CommandResult, run_command
from pytest_dbgate.core.errors import PerformanceError
from pytest_dbgate.core.record import invalidate
from pytest_dbgate.core.results import Progress
from pytest_dbgate.core.run import LINT, Database, Reporter, Run, StepFailed, migration_step
from pytest_dbgate.migrations.apply import StatementLog
from pytest_dbgate.migrations.command_mode import CommandMigration, run_migrate_command
from pytest_dbgate.migrations.history import layout_note
from pytest_dbgate.migrations.parse import Migration
from pytest_dbgate.migrations.runner import Runner, Watch
from pytest_dbgate.migrations.tracking import applied_versions
from pytest_dbgate.observe.locks import watching
from pytest_dbgate.observe.relations import relations_in_sql
from pytest_dbgate.observe.timeline import LockReport
from pytest_dbgate.performance.capture import Capture, Performance
from pytest_dbgate.performance.compaction import Compacted, Table, table_sizes
from pytest_dbgate.performance.reference import Reference
from pytest_dbgate.performance.sidebyside import Side
from pytest_dbgate.performance.verdicts import Comparison
from pytest_dbgate.performance.workload import parse_workload
from pytest_dbgate.pg.binaries import PgBinaries
from pytest_dbgate.pg.connections import Conn, Endpoint, connect
from pytest_dbgate.pg.databases import server_identity
from pytest_dbgate.pg.seed import load_seed, seed_digest, seed_files
from pytest_dbgate.pg.servers import EMBEDDED_SOURCE_DB, keep_made_for, kept_server, made_for
from pytest_dbgate.refresh.dumpfile import DumpFile, checksum
from pytest_dbgate.refresh.restore import Snapshot
from pytest_dbgate.refresh.steps import Refreshing
from pytest_dbgate.staging.lint_context import StagingLint
from pytest_dbgate.staging.points import Found
from pytest_dbgate.staging.resume import CachedLocks, RestorePoints
from pytest_dbgate.staging.steady import Steadying

if TYPE_CHECKING:
    from pytest_dbgate.core.criterion import Criterion
    from pytest_dbgate.core.results import Results
    from pytest_dbgate.migrations.outcomes import Outcome

SOURCE = "source"
DUMP_FILE = "dump_file"  # --dbgate-snapshot: read whole once, for the cache key
STAGING_SERVER = "staging_server"
SNAPSHOT = "snapshot"
RUNNER = "runner"
MIGRATED = "migrated"  # every migration applied and the post-migrate command run: "after" may start
BASELINE = "baseline"
AFTER_CAPTURE = "after_capture"
PERFORMANCE = "performance"
APPLIED_BEFORE = "applied_before"
COMMAND = "migrate_command"  # command mode: the project's tool applies the migrations


class Gate(StagingLint, Steadying, RestorePoints, Refreshing, Run):
    """One staging gate run against one source and one staging server."""

    mode = "staging"
    lints = True
    runs_project_tests = True

    def __init__(
        self,
        config: GateConfig,
        migrations: list[Migration],
        binaries: PgBinaries,
        progress: Progress,
        results: Results,
        dump: DumpFile | None = None,
    ) -> None:
        super().__init__(config, migrations, progress, results)
        self.binaries = binaries
        self.dump = dump
        self.workload = parse_workload(config.workload) if config.workload is not None else []
        self.lock_reports: dict[str, LockReport] = {}
        # The report each locks item judged by (the middle of several when re-measured), by
        # migration id: what the gate record's figures come from.
        self.decided_locks: dict[str, LockReport] = {}
        # Rows of the tables lint findings name, just before each migration ran, by version.
        self.sizes_before: dict[str, dict[str, int]] = {}
        self.performance: Performance | None = None
        # The un-migrated copy the workload is measured against, when the snapshot cache gives
        # one (set by the refresh); else why not.
        self.reference: Reference | None = None
        self.no_reference = ""
        self.sessions: list[Conn] = []
        self.cached_locks: dict[str, CachedLocks] = {}
        self.found: dict[int, Found] = {}
        self.points_made: dict[int, str] = {}
        self.last_point = 0.0
        self.point_cost = 0.0
        self.no_points = ""
        self.point_keys: list[str] = []
        self.points_said = False
        self.run_started = ""
        self.resumed_steady: list[Compacted] | None = None
        self.steady_points: dict[int, list[dict[str, object]]] = {}
        self.steady_s = 0.0  # what making staging steady took, counted in the after capture
        self.steady_whole = False
        self.staging_xid: int | None = None
        self._swept = False  # what killed runs left is removed once, before a server starts
        self._sizes_before: dict[int, Table] = {}  # without a reference: staging's, at baseline
        if config.performance:
            self.performance = Performance(config, progress, self.workload, results.secrets.mask)
            self.performance.attach(lambda: self.staging_connection(purpose="stats"))
            self._stack.callback(self.performance.close)

    def checklist(self) -> list[Criterion[Any]]:
        from pytest_dbgate.staging.checklist import staging_checklist
        from pytest_dbgate.staging.open import required_extensions

        return staging_checklist(self, required_extensions(self))

    def header(self) -> list[str]:
        cfg = self.config
        if cfg.embedded_source:
            source = "embedded server seeded from " + ", ".join(self.shown(p) for p in cfg.seed)
        elif cfg.file_only:
            source = "none"
        else:
            source = cfg.source_url_setting
        if self.dump is not None:
            source += f" (data from the dump file {self.shown(self.dump.path)})"
        staging = "embedded server" if cfg.embedded_staging else cfg.staging_url_setting
        what = (
            f"the migrate command `{cfg.migrate_command}`"
            if cfg.migrate_command
            else f"{len(self.migrations)} migration(s) in "
            f"{self.shown(cfg.migrations)}{layout_note(self.migrations)}"
        )
        return [
            f"dbgate: {cfg.mode} gate of {what}",
            f"dbgate: source: {source}; staging: {staging}",
            f"dbgate: PostgreSQL programs: {self.binaries.bindir}",
        ]

    def collected(self, selected: set[Reporter], generated: list[Reporter]) -> None:
        """Until this run passes, the previous run's record no longer speaks for the release."""
        super().collected(selected, generated)
        if selected and invalidate(self.config.record):
            self.progress(f"removed the previous gate record {self.shown(self.config.record)}")

    def source(self) -> Database:
        return self._once(SOURCE, self._open_source)

    def dump_file(self) -> DumpFile:
        """The dump given with --dbgate-snapshot, with its checksum (every byte read once)."""
        return self._once(DUMP_FILE, self._read_dump_file)

    @property
    def origin(self) -> str:
        """The step the copy comes from: the dump file if one was given, else the source."""
        return DUMP_FILE if self.dump is not None else SOURCE

    def staging_server(self) -> Database:
        return self._once(STAGING_SERVER, self._open_staging_server)

    def snapshot(self) -> Snapshot:
        return self._once(SNAPSHOT, self._refresh)

    def runner(self) -> Runner:
        return self._once(RUNNER, self._open_runner)

    def steps(self) -> dict[str, Callable[[], object]]:
        return {
            SOURCE: self.source,
            DUMP_FILE: self.dump_file,
            STAGING_SERVER: self.staging_server,
            SNAPSHOT: self.snapshot,
            RUNNER: self.runner,
            MIGRATED: self.migrated,
            BASELINE: self.baseline,
            AFTER_CAPTURE: self.after_capture,
            PERFORMANCE: self.comparisons,
            COMMAND: self.command,
            LINT: lambda: self.findings,
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

    def applied_before(self) -> dict[str, str]:
        """Migrations the copy already has (as dbgate.migrations or the migration tool's own
        history records them), read before anything runs: they are not part of the release."""
        return self._once(APPLIED_BEFORE, self._read_applied)

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
        return (isinstance(runner, Runner) and runner.started) or COMMAND in self._memo

    def command(self) -> CommandMigration:
        """Command mode: the project's own tool applied the migrations, under the lock watch."""
        return self._once(COMMAND, self._migrate_with_command)

    def outcomes(self) -> list[Outcome]:
        if self.config.migrate_command is not None:
            self.command()  # raises StepFailed when the command failed: its item says why
            return []
        outcomes = super().outcomes()
        self.say_points()
        return outcomes

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
        self.sessions.append(conn)
        return conn

    # -- step bodies -------------------------------------------------------------------------

    def _migrate_with_command(self) -> CommandMigration:
        command = self.config.migrate_command
        assert command is not None
        if self.performance is not None:
            with contextlib.suppress(StepFailed):
                self.baseline()  # before anything changes, as with the gate's own runner
        staging = self.snapshot().staging
        self.progress(f"running the migrate command `{command}` under the lock watch")
        done = run_migrate_command(
            command,
            staging,
            self.config.rootdir,
            self.config.staging_url_setting,
            self._workload_reads(),
            self.config.traffic_rate,
        )
        if not done.result.ok:
            raise StepFailed(COMMAND, done.result.failure("the migrate command"))
        return done

    def _read_applied(self) -> dict[str, str]:
        return applied_versions(self.staging_connection(purpose="read"), self.migrations)

    def _read_dump_file(self) -> DumpFile:
        assert self.dump is not None
        self.progress(f"reading {self.dump.display()} for its checksum")
        return dataclasses.replace(self.dump, checksum=checksum(self.dump))

    def source_dbname(self) -> str:
        """The source database's name, which names the gate's staging database after it."""
        if self.config.file_only:
            assert self.dump is not None
            return self.dump.dbname
        return self.source().endpoint.dbname

    def _open_source(self) -> Database:
        cfg = self.config
        if cfg.file_only:
            raise StepFailed(SOURCE, "no source database: the copy comes from the dump file")
        self._sweep()
        if cfg.source_url is None:
            endpoint = self._seeded_source()
            embedded = True
        else:
            endpoint = Endpoint.from_url(cfg.source_url, cfg.source_url_setting)
            embedded = False
        conn = connect(endpoint, "source", cfg.source_url_setting, read_only=True, purpose="read")
        self._stack.callback(conn.close)
        return Database(endpoint, conn, server_identity(conn), embedded)

    def _seeded_source(self) -> Endpoint:
        """The embedded source: kept beside the staging server and seeded once for the seed
        files' bytes and the session settings they load with (seed_digest); a run whose seed
        is unchanged starts it and reads it as it is (the gate never writes to a source)."""
        files = seed_files(self.config.seed)
        key = "seed " + seed_digest(files)
        where = self.config.staging_dir / "source" if self.config.staging_dir else None
        server, kept = self._stack.enter_context(
            kept_server("source", self.binaries, where, self.progress, "the seeded source", key)
        )
        if kept is not None and made_for(kept) == key:
            self.progress("the seed is unchanged since the kept source was loaded: not re-seeding")
            return server.with_dbname(EMBEDDED_SOURCE_DB)
        self.progress("loading the seed into the embedded source")
        endpoint = load_seed(server, EMBEDDED_SOURCE_DB, files)
        if kept is not None:
            keep_made_for(kept, key)
        return endpoint

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
            self.steady()
            self.open_window("after")
        return result

    def _capture_baseline(self) -> Capture:
        assert self.performance is not None
        snapshot = self.snapshot()
        if self.migrations_started:
            raise PerformanceError.migrations_first()
        if self.reference is not None:  # the workload runs side by side after migrating
            return self.performance.capture("before", ())
        side = self._measuring("before")
        self._sizes_before = table_sizes(side.conn)
        where = f"{snapshot.staging.dbname} before migrating; {self.no_reference}"
        return self.performance.capture("before", (side,), where)

    def _capture_after(self) -> Capture:
        assert self.performance is not None
        self.baseline()  # without one, the after capture has nothing to be compared with
        self.migrated()
        compacted = self.steady()
        staging = self.snapshot().staging.dbname
        started = time.monotonic()
        after = self._measuring("after")
        if self.reference is None:
            where = f"{staging} after migrating; {self.no_reference}"
            sides: tuple[Side, ...] = (after,)
        else:
            where = f"{staging}, migrated, and {self.reference.name}, its un-migrated copy"
            sides = (self._before_side(), after)
        prepared = self.steady_s + time.monotonic() - started
        return self.performance.capture("after", sides, where, compacted, prepared)

    def _measuring(self, name: str) -> Side:
        return Side(name, self.staging_connection(purpose="measure"))

    def _reference_session(self, endpoint: Endpoint) -> Conn:
        conn = connect(endpoint, "staging", self.config.staging_url_setting, purpose="measure")
        self._stack.callback(conn.close)
        return conn

    def _compare(self) -> list[Comparison]:
        assert self.performance is not None
        return self.performance.judge(self.baseline(), self.after_capture())

    def _open_runner(self) -> Runner:
        if self.performance is not None:
            # The baseline belongs before the first migration, whatever was selected; if it
            # cannot be taken, the baseline item says why and migrating goes on.
            with contextlib.suppress(StepFailed):
                self.baseline()
        # What the copy had before this run, read before it changes it (lint skips those).
        with contextlib.suppress(StepFailed):
            self.applied_before()
        resumed = self.resume_from_points()
        conn = self.staging_connection(purpose="migrate")
        runner = Runner(
            conn,
            self.migrations,
            self.progress,
            f"pytest-dbgate {__version__} staging",
            watch=self.watcher(self.snapshot().staging, self.lock_reports),
            boundary=self.boundary,
            timeout_s=self.config.migration_timeout_s,
            checkpoint=self.checkpoint if self.points_kept() else None,
        )
        try:
            runner.prepare()
            runner.preset(resumed)
        except psycopg.Error as exc:
            raise StepFailed(
                RUNNER,
                f"could not create or read the tracking tables on staging: {exc}".strip(),
            ) from None
        return runner

    def watcher(self, database: Endpoint, reports: dict[str, LockReport]) -> Watch:
        """Simulated traffic and the lock monitor around each migration applied to
        ``database``; each migration's report goes into ``reports``."""
        reads = self._workload_reads()

        def session() -> Conn:
            return connect(database, "staging", self.config.staging_url_setting, purpose="watch")

        @contextlib.contextmanager
        def watch(migration: Migration, conn: Conn) -> Iterator[StatementLog]:
            self.sizes_before[migration.version] = self._sizes(conn, migration)
            with watching(session, migration, conn, reads, self.config.traffic_rate) as (
                report,
                timeline,
            ):
                reports[migration.id] = report
                yield timeline

        return watch

    def _sizes(self, conn: Conn, migration: Migration) -> dict[str, int]:
        """Rows of the tables the migration's lint findings name, as they are just before it
        runs (what earlier migrations of the release inserted included), counted up to the
        small-table limit: enough to judge, and cheap on a big table."""
        limit = self.config.lint_small_table_rows
        sizes: dict[str, int] = {}
        try:
            findings = self.findings.get(migration.id, [])
        except StepFailed:
            return sizes  # squawk failed: the lint items say so
        for table in {f.table for f in findings if f.table}:
            query = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT %s) AS s").format(
                sql.Identifier(*table.split("."))
            )
            try:
                row = conn.execute(query, (limit,)).fetchone()
            except psycopg.Error:
                continue  # not there yet: the migration creates it
            sizes[table] = int(row[0]) if row and isinstance(row[0], int) else 0
        return sizes

    def _workload_reads(self) -> dict[str, list[str]]:
        """The workload's read queries by the relations they read: traffic reads these."""
        reads: dict[str, list[str]] = {}
        for query in self.workload:
            if query.writes:  # a writing WITH is no read, even rolled back
                continue
            names = set(relations_in_sql([query.sql]))
            # Only one-table reads: a join holds one table while it waits for the next, and a
            # migration locking both in the other order would deadlock with the simulation.
            if len(names) == 1:
                reads.setdefault(names.pop(), []).append(query.sql)
        return reads
