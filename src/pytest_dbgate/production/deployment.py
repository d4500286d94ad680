"""The production run: deploy exactly what a staging gate passed, carefully.

Preflight checks (the gate record, the target, versions, extensions, headroom, blocking
sessions) are steps like any other; applying the migrations requires every one of them, so no
selection of items (``-k``, ``--deselect``) can deploy past a failed or skipped check. Migrations
run with a ``lock_timeout`` and bounded retries
(see :class:`pytest_dbgate.migrations.runner.Policy`);
held-back ones wait for their date.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import psycopg

from pytest_dbgate import __version__
from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.config.model import GateConfig, parse_period
from pytest_dbgate.core.commands import CommandResult, run_command
from pytest_dbgate.core.errors import Figure
from pytest_dbgate.core.interruptions import Interruptions
from pytest_dbgate.core.record import GateRecord, load, now_utc
from pytest_dbgate.core.results import Progress
from pytest_dbgate.core.run import Database, OnProduction, Reporter, StepFailed, migration_step
from pytest_dbgate.migrations.history import layout_note
from pytest_dbgate.migrations.holdbacks import Policy
from pytest_dbgate.migrations.outcomes import Status
from pytest_dbgate.migrations.parse import Migration, Statement, discover
from pytest_dbgate.migrations.runner import Runner
from pytest_dbgate.migrations.tracking import JournalEntry, Tracking, applied_versions
from pytest_dbgate.observe.locks import blockers
from pytest_dbgate.observe.relations import statement_relations
from pytest_dbgate.pg.connections import Conn, Endpoint, connect
from pytest_dbgate.pg.databases import server_identity
from pytest_dbgate.pg.gatelock import client_tag, keep_gate_lock, take_gate_lock
from pytest_dbgate.watch.deploys import DEPLOYS_NAME, Deploy, latest_deploy, record_deploy
from pytest_dbgate.watch.eligibility import metrics_release
from pytest_dbgate.watch.reading import Reading, read

if TYPE_CHECKING:
    from pytest_dbgate.core.criterion import Criterion
    from pytest_dbgate.core.results import Results

PRODUCTION = "production"
RECORD = "record"
RUNNER = "deploy_runner"
MIGRATED = "deployed"
DEPLOY_BASELINE = "deploy_baseline"  # the deploy's row in dbgate.deploys, for the watch

Figures = dict[str, Figure]


class Preflight(Protocol):
    """A check that must pass before anything is applied (the preflight criteria)."""

    @property
    def name(self) -> str: ...

    def verify(self, run: Deployment) -> Figures: ...


def preflight_step(name: str) -> str:
    return f"preflight:{name}"


class Deployment(OnProduction):
    """One ``--dbgate=production`` run against one production database."""

    mode = "production"
    # --setup-only would apply the migrations while setting up the deploy's checks.
    allows_setup_only = False
    preflights: list[Preflight]  # what applying requires, set with the checklist

    def checklist(self) -> list[Criterion[Any]]:
        from pytest_dbgate.production.checklist import preflight_checks, production_checklist

        # The run keeps what it requires before applying: no selection can deploy past it.
        checks = preflight_checks(self)
        self.preflights = list(checks)
        return production_checklist(self, checks)

    def header(self) -> list[str]:
        cfg = self.config
        return [
            f"dbgate: production deploy of {len(self.migrations)} migration(s) in "
            f"{self.shown(cfg.migrations)}{layout_note(self.migrations)}",
            f"dbgate: target: {cfg.production_url_setting}; gate record: {self.shown(cfg.record)}",
        ]

    def collected(self, selected: set[Reporter], generated: list[Reporter]) -> None:
        """A deploy runs all of its checklist or nothing."""
        left_out = [item.nodeid for item in generated if item not in selected]
        if left_out:
            raise ConfigError.partial_deploy(left_out[:20])
        super().collected(selected, generated)

    def __init__(
        self,
        config: GateConfig,
        migrations: list[Migration],
        progress: Progress,
        results: Results,
        target: Endpoint,
    ) -> None:
        super().__init__(config, migrations, progress, results, target)
        self.preflights = []
        # Production's counters just before applying (the baseline window's end), or why not.
        self.before_reading: Reading | None = None
        self.no_reading = ""
        self._latest: tuple[Deploy | None, str] | None = None

    def steps(self) -> dict[str, Callable[[], object]]:
        return {
            PRODUCTION: self.production,
            RECORD: self.record,
            RUNNER: self.runner,
            MIGRATED: self.migrated,
            DEPLOY_BASELINE: self.deploy_baseline,
        }

    # -- steps -------------------------------------------------------------------------------

    def production(self) -> Database:
        return self._once(PRODUCTION, self._open_production)

    def record(self) -> GateRecord:
        return self._once(RECORD, lambda: load(self.config.record))

    def preflight(self, check: Preflight) -> Figures:
        return self._once(preflight_step(check.name), lambda: check.verify(self))

    def runner(self) -> Runner:
        return self._once(RUNNER, self._open_runner)

    def migrated(self) -> CommandResult | None:
        return self._once(MIGRATED, self._finish)

    def deploy_baseline(self) -> RecordedDeploy | None:
        """This deploy's row in dbgate.deploys; ``None`` when the run applied nothing."""
        return self._once(DEPLOY_BASELINE, self._record_deploy)

    def target_connection(self, purpose: str = "check") -> Conn:
        conn = connect(
            self.target, "production", self.config.production_url_setting, purpose=purpose
        )
        self._stack.callback(conn.close)
        return conn

    # -- facts the preflight checks read ----------------------------------------------------

    def applied_versions(self) -> dict[str, str]:
        """Versions production has applied, as dbgate.migrations or the migration tool's own
        history records them (nothing is created)."""
        return applied_versions(self.production().conn, self.migrations)

    def journal(self) -> dict[str, list[JournalEntry]]:
        """The statements production's journal records, by version (nothing is created)."""
        return Tracking(self.production().conn).journal()

    def pending(self) -> list[Migration]:
        applied = self.applied_versions()
        return [m for m in self.migrations if m.version not in applied]

    def deploy_hold_backs(self) -> dict[str, timedelta]:
        """Each held-back migration's period: the longest of its file's, the configuration's and
        the one staging recorded (configuration may lengthen a hold-back, never shorten one)."""
        periods = dict(self.hold_backs)
        for recorded in self.record().migrations:
            period = parse_period(recorded.hold_back) if recorded.hold_back else None
            if period is not None and period > periods.get(recorded.version, timedelta()):
                periods[recorded.version] = period
        return periods

    # -- step bodies -------------------------------------------------------------------------

    @property
    def lock_key(self) -> str:
        return "production:" + self.target.dbname

    def _open_production(self) -> Database:
        """Two sessions, each holding a gate lock: one that only holds it (a migration cannot
        let it go: a DISCARD ALL or pg_advisory_unlock_all() in a file does not let a second
        run in), and the deploy's own, whose lock outlives a killed run for as long as the
        statement it was running (a re-run waits for it, see gatelock)."""
        self._locked_session("deploy lock", self.lock_key)
        conn = self._locked_session("deploy", self.lock_key + ":applying")
        return Database(self.target, conn, server_identity(conn), embedded=False)

    def _locked_session(self, purpose: str, key: str) -> Conn:
        conn = connect(
            self.target,
            "production",
            self.config.production_url_setting,
            purpose=f"{purpose}, {client_tag()}",
        )
        self._stack.callback(conn.close)
        take_gate_lock(conn, key, self.target.display())
        return conn

    def _open_runner(self) -> Runner:
        for check in self.preflights:
            self.preflight(check)  # raises StepFailed, reported by that check's item
        database = self.production()
        conn = database.conn
        own = conn.info.backend_pid
        hold_backs = self.deploy_hold_backs()

        def in_the_way(statement: Statement) -> list[str]:
            return blockers(
                conn,
                [own],
                statement_relations(statement),
                open_longer_ms=LONG_TRANSACTION_MS,
                idle_longer_ms=0,
            )

        self._read_before()
        policy = Policy(
            lock_timeout_ms=self.config.lock_timeout_ms,
            retries=self.config.lock_retries,
            retry_wait_s=self.config.lock_retry_wait_s,
            hold_backs=hold_backs,
            release_early=self.release_early,
            metrics=self._metrics if self.config.holdback_requires == "time+metrics" else None,
        )
        runner = Runner(
            conn,
            self.migrations,
            self.progress,
            f"pytest-dbgate {__version__} production",
            policy=policy,
            blockers=in_the_way,
            boundary=self.boundary,
            interruptions=Interruptions(self.progress),
            keep_lock=lambda: keep_gate_lock(
                conn, self.lock_key + ":applying", database.endpoint.display()
            ),
            timeout_s=self.config.migration_timeout_s,
        )
        try:
            runner.prepare()
        except psycopg.Error as exc:
            raise StepFailed(
                RUNNER,
                f"could not prepare production for the deploy (the tracking tables, "
                f"lock_timeout): {database.endpoint.redact(str(exc)).strip()}\n"
                "  nothing was applied; check that the deploy role may create the schema dbgate "
                "and its tables (or create them once with a role that may)",
            ) from None
        return runner

    def _read_before(self) -> None:
        """The baseline window ends here: read production's counters before anything runs (a
        failure to read them is reported by baseline_recorded, it does not stop the deploy)."""
        try:
            self.before_reading = read(self.target_connection("baseline"))
        except psycopg.Error as exc:
            self.no_reading = self.target.redact(str(exc)).strip()

    def _metrics(self, period_ends: datetime) -> tuple[bool, str]:
        """Whether the latest watch lets a held-back migration go (the deploys read once per
        run, in a session of its own: the migrating one may carry what a file set)."""
        if self._latest is None:
            try:
                self._latest = (latest_deploy(self.target_connection("hold-back check")), "")
            except psycopg.Error as exc:
                why = f"could not read {DEPLOYS_NAME}: {self.target.redact(str(exc)).strip()}"
                self._latest = (None, why)
        latest, unreadable = self._latest
        if unreadable:
            return False, unreadable
        database = self.production()
        release = metrics_release(
            self.config.watch_record,
            self.shown(self.config.watch_record),
            self.config.signing_key,
            latest,
            database.identity.system_identifier,
            database.endpoint.dbname,
            period_ends,
            now_utc(),
        )
        return release.allowed, release.reason

    def _record_deploy(self) -> RecordedDeploy | None:
        with contextlib.suppress(StepFailed):
            self.migrated()  # the post-migrate command belongs before the period starts
        applied = [o.migration.version for o in self.outcomes() if o.status is Status.APPLIED]
        if not applied:
            return None
        before = self.before_reading
        if before is None:
            raise StepFailed(
                DEPLOY_BASELINE,
                f"production's counters could not be read before applying: {self.no_reading}\n"
                "  the migrations are applied; the watch has no baseline for this deploy (grant "
                "the deploy role pg_read_all_stats, and the next deploy records one)",
            )
        record = self.record()
        try:
            conn = self.target_connection("deploy record")
            after = read(conn)
            deploy_id, deployed_at = record_deploy(
                conn,
                applied,
                f"pytest-dbgate {__version__} production",
                record.created_at,
                before,
                after,
                record.queries,
            )
        except psycopg.Error as exc:
            raise StepFailed(
                DEPLOY_BASELINE,
                f"could not write this deploy's baseline to {DEPLOYS_NAME}: "
                f"{self.target.redact(str(exc)).strip()}\n  the migrations are applied; let the "
                "deploy role create and write tables in the schema dbgate, and the next deploy "
                "records one",
            ) from None
        seen = {e.key for e in before.entries}
        return RecordedDeploy(
            deploy_id,
            deployed_at,
            tuple(applied),
            len(before.entries),
            len(record.queries),
            sum(1 for q in record.queries if q.key in seen),
            before.no_statements,
            before.statements.hidden if before.statements else 0,
        )

    def _finish(self) -> CommandResult | None:
        failed = next(
            (o for o in self.outcomes() if not o.ok and o.status is not Status.HELD_BACK), None
        )
        if failed is not None and failed.status is not Status.NOT_APPLIED:
            raise StepFailed(migration_step(failed.migration), failed.describe_failure(self.rel))
        command = self.config.post_migrate_command
        if command is None:
            return None
        self.progress(f"running the post-migrate command `{command}`")
        result = run_command(command, self.target, self.config.rootdir)
        if not result.ok:
            raise StepFailed(MIGRATED, result.failure("the post-migrate command"))
        return result


@dataclass(frozen=True)
class RecordedDeploy:
    """What baseline_recorded reports of the deploy's row."""

    id: int
    deployed_at: datetime
    applied: tuple[str, ...]
    statements: int  # pg_stat_statements entries in the baseline
    staging_queries: int  # queries the staging gate measured
    staging_queries_seen: int  # … that production had run before the deploy
    no_statements: str  # why the baseline holds no queries; "" when it does
    hidden: int  # entries of other roles the deploy role may not see


# A transaction open this long will not end within the retry budget (with the defaults, six
# 500 ms tries and 31 s of waits), and idle-in-transaction sessions hold their locks until
# someone ends them: either would make the deploy time out, so preflight refuses to start.
LONG_TRANSACTION_MS = 60_000


def sessions_in_the_way(run: Deployment, relations: Sequence[str]) -> list[str]:
    database = run.production()
    return blockers(
        database.conn,
        [database.conn.info.backend_pid],
        relations,
        open_longer_ms=LONG_TRANSACTION_MS,
        idle_longer_ms=run.config.max_idle_in_transaction_ms,
        lock_holders=False,
    )


def open_deployment(config: GateConfig, progress: Progress, results: Results) -> Deployment:
    """Check what can be checked without a database, then make the deployment."""
    if config.migrate_command is not None:
        raise ConfigError.command_mode_in_production()
    migrations = discover(config.migrations, config.layout)
    return Deployment(config, migrations, progress, results, Deployment.target_of(config))
