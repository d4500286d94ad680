"""``--dbgate=watch``: production since the latest deploy, against the baseline before it.

A run of its own rather than a part of the production run: it only reads (a read-only session;
no deploy role, no gate lock, nothing to apply), it is quick, and a team runs it daily from a
schedule, where a deploy job would be the wrong thing to start. Its verdict goes into the watch
record, which is what lets the next production run release a held-back migration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_dbgate.config.model import GateConfig
from pytest_dbgate.core.record import invalidate
from pytest_dbgate.core.results import Progress
from pytest_dbgate.core.run import Database, OnProduction, Reporter, StepFailed
from pytest_dbgate.migrations.parse import discover
from pytest_dbgate.performance.verdicts import Thresholds
from pytest_dbgate.pg.connections import connect
from pytest_dbgate.pg.databases import server_identity
from pytest_dbgate.watch.deploys import DEPLOYS_NAME, Deploy, latest_deploy
from pytest_dbgate.watch.judge import (
    SIGNALS,
    SignalVerdict,
    WatchedQuery,
    judge_queries,
    judge_signal,
)
from pytest_dbgate.watch.reading import Reading, read

if TYPE_CHECKING:
    from pytest_dbgate.core.criterion import Criterion
    from pytest_dbgate.core.results import Results

PRODUCTION = "watch:production"
DEPLOY = "watch:deploy"
VERDICTS = "watch:verdicts"


@dataclass(frozen=True)
class Verdicts:
    """Everything the watch judged, once."""

    deploy: Deploy
    now: Reading
    queries: list[WatchedQuery]
    signals: list[SignalVerdict]
    no_statements: str  # why queries could not be compared; "" when they could
    seconds: float  # reading and judging, for the record of how quick the watch is


class Watch(OnProduction):
    """One ``--dbgate=watch`` run against one production database."""

    mode = "watch"

    def steps(self) -> dict[str, Callable[[], object]]:
        return {PRODUCTION: self.production, DEPLOY: self.deploy, VERDICTS: self.verdicts}

    def production(self) -> Database:
        return self._once(PRODUCTION, self._open_production)

    def deploy(self) -> Deploy:
        return self._once(DEPLOY, self._find_deploy)

    def verdicts(self) -> Verdicts:
        return self._once(VERDICTS, self._judge)

    def checklist(self) -> list[Criterion[Any]]:
        from pytest_dbgate.watch.criteria import watch_checklist

        return watch_checklist(self)

    def header(self) -> list[str]:
        return [
            f"dbgate: watch of production ({self.config.production_url_setting}), read only: "
            "the period since the latest deploy against the baseline window before it"
        ]

    def collected(self, selected: set[Reporter], generated: list[Reporter]) -> None:
        """Until this watch has judged everything, the previous one no longer speaks."""
        super().collected(selected, generated)
        if selected and invalidate(self.config.watch_record):
            self.progress(
                f"removed the previous watch record {self.shown(self.config.watch_record)}"
            )

    # -- step bodies -------------------------------------------------------------------------

    def _open_production(self) -> Database:
        conn = connect(
            self.target,
            "production",
            self.config.production_url_setting,
            read_only=True,
            purpose="watch",
        )
        self._stack.callback(conn.close)
        return Database(self.target, conn, server_identity(conn), embedded=False)

    def _find_deploy(self) -> Deploy:
        deploy = latest_deploy(self.production().conn)
        if deploy is None:
            raise StepFailed(
                DEPLOY,
                f"no deploy is recorded on production ({DEPLOYS_NAME} is missing or empty): "
                "the watch compares the period since a deploy with the baseline it recorded\n"
                "  run `pytest --dbgate=production` first; a deploy that applies at least one "
                "migration records its baseline",
            )
        if deploy.damaged:
            raise StepFailed(
                DEPLOY,
                f"{deploy.describe()}: its baseline in {DEPLOYS_NAME} is damaged (not a reading "
                "of production's counters: edited by hand?)\n  the next deploy records one",
            )
        if deploy.before is None or deploy.after is None:
            raise StepFailed(
                DEPLOY,
                f"{deploy.describe()} kept no baseline of production's counters (only the "
                "latest deploys keep theirs)\n  the next deploy records one",
            )
        return deploy

    def _judge(self) -> Verdicts:
        deploy = self.deploy()
        assert deploy.before is not None and deploy.after is not None
        started = time.monotonic()
        now = read(self.production().conn)
        max_regression = self.config.max_regression
        limits = Thresholds(
            max_regression if max_regression is not None else 0.2, self.config.perf_floor_ms
        )
        no_statements = now.no_statements or deploy.before.no_statements
        queries = (
            []
            if no_statements
            else judge_queries(
                deploy.before, deploy.after, now, deploy.staging, self.config.watch_top, limits
            )
        )
        period = now.database.minus(deploy.after.database)
        signals = [judge_signal(s, deploy.before.database, period, limits) for s in SIGNALS]
        return Verdicts(deploy, now, queries, signals, no_statements, time.monotonic() - started)


def open_watch(config: GateConfig, progress: Progress, results: Results) -> Watch:
    """Check what can be checked without a database, then make the watch."""
    target = Watch.target_of(config)
    return Watch(config, discover(config.migrations, config.layout), progress, results, target)
