"""The watch's checklist: production reachable, the deploy found, each signal and each query
flat since the deploy, and the watch record that lets a held-back migration go."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

import psycopg
import pytest

from pytest_dbgate import __version__
from pytest_dbgate.core.criterion import Criterion, Figures
from pytest_dbgate.core.errors import CriterionFailed
from pytest_dbgate.core.record import CLOCK_SKEW, format_period
from pytest_dbgate.core.run import StepFailed
from pytest_dbgate.migrations.tracking import Tracking, applied_before, applied_versions
from pytest_dbgate.performance.verdicts import Verdict
from pytest_dbgate.watch.judge import SIGNALS, WatchedQuery
from pytest_dbgate.watch.reading import Reading
from pytest_dbgate.watch.record import WatchRecord
from pytest_dbgate.watch.run import DEPLOY, PRODUCTION, VERDICTS, Verdicts, Watch

NOTHING_JUDGED = "the watch judged no query"
INDEX_HINT = (
    "  look at what changed on production since the deploy (EXPLAIN the query; an index "
    "dropped or not used, a table grown or bloated, a new trigger); the held-back migrations "
    "stay held until a watch passes"
)


@dataclass(frozen=True)
class WatchReachable(Criterion[Watch]):
    stage: ClassVar[str] = "watch"

    def check(self, gate: Watch) -> Figures:
        database = gate.production()
        return {
            "summary": f"{database.where}, PostgreSQL {database.identity.version.split()[0]}, "
            "read only",
            "production": database.where,
            "server_version": database.identity.version,
        }


@dataclass(frozen=True)
class DeployFound(Criterion[Watch]):
    """The deploy whose baseline the watch compares with, and production's counters now."""

    stage: ClassVar[str] = "watch"

    def check(self, gate: Watch) -> Figures:
        verdicts = gate.verdicts()
        deploy = verdicts.deploy
        assert deploy.before is not None
        period = verdicts.now.taken - deploy.deployed_at
        reset = deploy.before.database.stats_reset
        if period < -CLOCK_SKEW:
            raise CriterionFailed(
                f"{deploy.describe()} is dated {format_period(-period)} after production's "
                f"clock now ({verdicts.now.taken:%Y-%m-%d %H:%M %Z}): the deploy record or the "
                "server's clock is wrong; a watch cannot judge a period that has not begun",
            )
        figures: Figures = {
            "summary": f"{deploy.describe()} ({len(deploy.applied)} migrations), "
            f"{format_period(max(period, timedelta()))} ago; {len(verdicts.now.entries):,} "
            f"queries on production; read and judged in {verdicts.seconds:.2f}s",
            "deploy_id": deploy.id,
            "deployed_at": deploy.deployed_at.isoformat(timespec="seconds"),
            "applied": ", ".join(deploy.applied),
            "period_hours": round(period.total_seconds() / 3600, 2),
            "baseline_since": reset or "the server's start (never reset)",
            "statements_now": len(verdicts.now.entries),
            "seconds": round(verdicts.seconds, 3),
        }
        if verdicts.no_statements:
            figures["summary"] = f"{figures['summary']}; {verdicts.no_statements}"
        blind = _hidden(deploy.before, "the deploy's baseline", "deploy role") + _hidden(
            verdicts.now, "production's counters now", "watch's role"
        )
        if blind:
            raise CriterionFailed(
                "\n".join(blind)
                + "\n  pg_stat_statements shows a role only its own queries unless it has "
                "pg_read_all_stats: the queries of the application's role are not judged",
                figures,
            )
        return figures


def _hidden(reading: Reading | None, what: str, role: str) -> list[str]:
    hidden = reading.statements.hidden if reading and reading.statements else 0
    if not hidden:
        return []
    return [
        f"{what}: {hidden:,} pg_stat_statements entries belong to other roles and are hidden "
        f"from the {role} (GRANT pg_read_all_stats TO it)"
    ]


@dataclass(frozen=True)
class SignalFlat(Criterion[Watch]):
    """An error or slow-query signal no worse since the deploy."""

    stage: ClassVar[str] = "watch"
    signal: str = ""

    def check(self, gate: Watch) -> Figures:
        found = next(s for s in gate.verdicts().signals if s.signal.name == self.signal)
        figures: Figures = dict(found.figures())
        if found.verdict is Verdict.NOT_JUDGED:
            pytest.skip(found.reason)
        if found.worse:
            raise CriterionFailed(
                f"more {found.signal.what} on production since the deploy: {found.reason}\n"
                "  look at the server log for the errors; the held-back migrations stay held "
                "until a watch passes",
                figures,
            )
        return figures


@dataclass(frozen=True)
class QueryFlat(Criterion[Watch]):
    """One query no slower on production since the deploy than in the baseline window."""

    stage: ClassVar[str] = "watch"
    key: str = ""

    def check(self, gate: Watch) -> Figures:
        found = next(q for q in gate.verdicts().queries if q.key == self.key)
        figures = query_figures(found)
        c = found.comparison
        if c.verdict is Verdict.NOT_JUDGED:
            pytest.skip(f"{found.label}: {c.reason}")
        if c.regressed:
            raise CriterionFailed(
                f"{found.label} ({found.why}) is slower on production since the deploy: "
                f"{found.prediction()}\n  {c.reason}\n    {' '.join(c.sql.split())[:300]}\n"
                f"{INDEX_HINT}",
                figures,
            )
        return figures


def query_figures(found: WatchedQuery) -> Figures:
    """The query's figures in JUnit: both windows, staging's prediction, the verdict."""
    c = found.comparison
    figures: Figures = dict(c.figures(("baseline", "period"), "calls"))
    figures["why_watched"] = found.why
    for side, stats in (("baseline", found.baseline), ("period", found.period)):
        if stats is not None:
            figures[f"{side}_rows_per_call"] = round(stats.rows_per_call, 2)
    if found.staging is not None:
        figures["staging_before_ms"] = found.staging.before_ms
        figures["staging_after_ms"] = found.staging.after_ms
        if found.staging.change is not None:
            figures["staging_change"] = found.staging.change
    if c.change is not None:
        figures["production_change"] = round(c.change, 4)
    prediction = found.prediction()
    figures["summary"] = f"{prediction}: {c.reason}" if prediction else c.reason
    return figures


@dataclass(frozen=True)
class WatchRecordWritten(Criterion[Watch]):
    """The watch's verdict written where production reads it, once everything was judged."""

    stage: ClassVar[str] = "verdict"

    def check(self, gate: Watch) -> Figures:
        verdicts = gate.verdicts()
        results = gate.results
        missing = results.did_not_run(self.stage)
        if missing:
            pytest.skip(
                "no watch record written: only a watch that judged everything may release a "
                f"hold-back, and {len(missing)} item(s) did not run:\n"
                + "\n".join(f"    {n}" for n in missing[:15])
            )
        failed = [
            r
            for r in results.items.values()
            if r.stage != self.stage and r.outcome in ("failed", "error")
        ]
        judged_any = any(q.comparison.verdict is not Verdict.NOT_JUDGED for q in verdicts.queries)
        database = gate.production()
        judged = [q for q in verdicts.queries if q.comparison.verdict is not Verdict.NOT_JUDGED]
        record = WatchRecord(
            watched_at=verdicts.now.taken_at,
            plugin_version=__version__,
            production=database.where,
            database=database.endpoint.dbname,
            system_identifier=database.identity.system_identifier,
            deploy_id=verdicts.deploy.id,
            deployed_at=verdicts.deploy.deployed_at.isoformat(timespec="seconds"),
            # A watch that judged no query vouches for nothing: it releases no hold-back.
            passed=not failed and judged_any,
            queries_judged=len(judged),
            queries_slower=sum(1 for q in judged if q.comparison.regressed),
            signals_worse=sum(1 for s in verdicts.signals if s.worse),
            failures=tuple(_failure_line(r.nodeid, r.message) for r in failed[:20])
            + (() if judged_any else (NOTHING_JUDGED,)),
        ).signed(gate.config.signing_key)
        record.write(gate.config.watch_record)
        held = holdback_notes(gate, verdicts, record.passed)
        for note in held:
            gate.progress(note)
        figures: Figures = {
            "summary": f"{record.summary()}; {gate.shown(gate.config.watch_record)}"
            + (f"; {held[0]}" if held else ""),
            "record": str(gate.config.watch_record),
            "passed": record.passed,
            "signed": record.signature is not None,
        }
        if held:
            figures["holdbacks"] = " | ".join(held)
        if not judged_any:
            skipped = next((f"{q.label}: {q.comparison.reason}" for q in verdicts.queries), "")
            why = verdicts.no_statements or (
                f"none could be, e.g. {skipped}" if skipped else "production ran no query"
            )
            raise CriterionFailed(
                f"{NOTHING_JUDGED}: {why}\n  a watch that judged nothing releases no hold-back; "
                "run it again once production has served the release (or use "
                "--dbgate-holdback-requires=time)",
                figures,
            )
        return figures


def _failure_line(nodeid: str, message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    return f"{nodeid.rsplit('::', 1)[-1]}: {first[:200]}"


def holdback_notes(gate: Watch, verdicts: Verdicts, passed: bool) -> list[str]:
    """When each held-back migration production has not applied may go out."""
    if not gate.hold_backs:
        return []
    conn = gate.production().conn
    try:
        applied = applied_versions(conn, gate.migrations)
        recorded = Tracking(conn).migrations()
    except (StepFailed, psycopg.Error):
        return []
    notes = []
    for migration in gate.migrations:
        period = gate.hold_backs.get(migration.version)
        if period is None or migration.version in applied:
            continue
        # As production counts it: from when the migrations before it were applied there.
        since = applied_before(recorded, migration.version) or verdicts.deploy.deployed_at
        eligible = since + period
        when = f"{eligible:%Y-%m-%d %H:%M %Z}"
        notes.append(
            f"{migration.id}: eligible from {when}, this watch passing"
            if passed
            else f"{migration.id}: held (period ends {when}) until a watch passes"
        )
    return notes


def watch_checklist(gate: Watch) -> list[Criterion[Any]]:
    """Production, the deploy, the signals, the queries (known only once production was read;
    if it cannot be, the deploy item says why), the record."""
    where = gate.config.migrations
    checklist: list[Criterion[Any]] = [
        WatchReachable("production_reachable", where, owns=(PRODUCTION,)),
        DeployFound("deploy_found", where, (PRODUCTION,), owns=(DEPLOY, VERDICTS)),
    ]
    checklist += [
        SignalFlat(f"signal[{s.name}]", where, (VERDICTS,), signal=s.name) for s in SIGNALS
    ]
    try:
        queries = gate.verdicts().queries
    except StepFailed:
        queries = []  # the deploy item reports why
    checklist += [QueryFlat(f"query[{q.label}]", where, (VERDICTS,), key=q.key) for q in queries]
    checklist.append(WatchRecordWritten("watch_record", gate.config.watch_record, (VERDICTS,)))
    return checklist
