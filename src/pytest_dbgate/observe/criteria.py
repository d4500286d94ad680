"""The lock watch's criterion: no migration holds a blocking lock, or blocks traffic, too long."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pytest_dbgate.core.criterion import Criterion, Figures
from pytest_dbgate.core.errors import CriterionFailed
from pytest_dbgate.core.record import run_label
from pytest_dbgate.core.run import StepFailed, migration_step
from pytest_dbgate.lint.catalog import RULES
from pytest_dbgate.migrations.outcomes import Status
from pytest_dbgate.migrations.parse import Migration
from pytest_dbgate.observe.lockmodes import sql_mode, strength
from pytest_dbgate.observe.remeasure import Measure, again, median
from pytest_dbgate.observe.timeline import HeldLock, LockReport
from pytest_dbgate.staging.gate import Gate


@dataclass(frozen=True)
class LocksHeldBriefly(Criterion[Gate]):
    """No long lock that blocks reads or writes, and no application session blocked for long,
    while one migration ran under simulated traffic."""

    stage: ClassVar[str] = "migrate"
    migration: Migration | None = None
    index: int = 0

    def check(self, gate: Gate) -> Figures:
        assert self.migration is not None
        outcome = gate.outcome(self.index)
        if outcome.status is Status.NOT_APPLIED:
            blocker = outcome.blocked_by
            assert blocker is not None
            raise StepFailed(migration_step(blocker.migration), blocker.describe_failure(gate.rel))
        report = gate.lock_reports.get(self.migration.id)
        if report is None:
            already = (
                f"{outcome.status.value} ({outcome.recorded_by}): not part of this release"
                if outcome.recorded_by
                else f"{outcome.status.value}: nothing ran"
            )
            return {"summary": already, "status": outcome.status.value}
        config = gate.config
        measured = Measure.of(report, config.max_lock_ms, config.max_block_ms)
        measures = [measured]
        note = ""
        cached = gate.cached_locks.get(self.migration.id)
        if cached is not None:
            note = cached.measurements  # decided by that run, re-measured there if it was near
        elif measured.near():
            more, why_not = again(gate, self.index)
            report, measures = median([report, *more], config.max_lock_ms, config.max_block_ms)
            note = why_not and f"measured once: near a limit, but {why_not}"
        gate.decided_locks[self.migration.id] = report
        figures = lock_figures(report)
        taken = ", ".join(f"{m.lock_ms:.0f}/{m.block_ms:.0f}" for m in measures)
        if len(measures) > 1:
            note = f"lock/blocked ms: {taken}"
            figures["summary"] = f"{figures['summary']}; middle of {len(measures)}: {taken} ms"
        if note:
            figures["measurements"] = note
        if cached is not None:
            figures["cached_from"] = cached.run
            figures["summary"] = f"cached from {run_label(cached.run)}: {figures['summary']}"
        else:
            gate.locks_decided(self.migration, report, note)
        message = lock_verdict(gate, report)
        if message:
            if len(measures) > 1:
                message += (
                    f"\n  measured {len(measures)} times, each on a fresh copy of the state "
                    f"before it (longest lock/blocked ms: {taken}): the "
                    "middle one, above, decides"
                )
            raise CriterionFailed(message, figures)
        return figures


def lock_verdict(gate: Gate, report: LockReport) -> str:
    """The failure message, or ``""`` when every lock and wait was within the limits."""
    config = gate.config
    long_locks = _strongest_per_table(
        [lock for lock in report.locks if lock.dangerous and lock.held_ms > config.max_lock_ms]
    )
    blocked = {
        table: figures
        for table, figures in report.blocked_by_table().items()
        if figures[1] > config.max_block_ms
    }
    waits = [w for w in report.waits if w.waited_ms > config.max_block_ms]
    if not (long_locks or blocked or waits):
        return ""
    headline = []
    if blocked:
        worst = max(figures[1] for figures in blocked.values())
        headline.append(
            f"blocked the application for up to {worst:.0f} ms (limit {config.max_block_ms:.0f} ms)"
        )
    if long_locks:
        worst_lock = long_locks[0]
        headline.append(
            f"held {sql_mode(worst_lock.mode)} on {worst_lock.relation} for "
            f"{worst_lock.held_ms:.0f} ms (limit {config.max_lock_ms:.0f} ms)"
        )
    if waits:
        headline.append(f"waited {max(w.waited_ms for w in waits):.0f} ms for another session")
    lines = [f"{gate.rel(report.migration)} " + " and ".join(headline)]
    # Each statement at fault once: what it held, on which tables, and the safe way to do it.
    causes = list(long_locks)
    for table in blocked:
        cause = _cause(report, table)
        if cause is not None and cause.relation not in {c.relation for c in causes}:
            causes.append(cause)
    by_statement: dict[int, list[HeldLock]] = {}
    for lock in causes:
        by_statement.setdefault(lock.statement.line if lock.statement else 0, []).append(lock)
    for line, locks in sorted(by_statement.items()):
        statement = locks[0].statement
        held = ", ".join(
            f"{sql_mode(lock.mode)} on {lock.relation} {lock.held_ms:.0f} ms" for lock in locks
        )
        if statement is None:
            lines.append(f"  held {held}")
            continue
        lines.append(f"  line {line}: {statement.excerpt()}")
        lines.append(f"    held {held}")
        lines.append(
            "    fix: "
            + (
                (RULES[statement.lock_rule].fix if statement.lock_rule else "")
                or "the locks are held until the file's transaction commits: move the long "
                "statements after this one to a migration of their own, or make them brief"
            )
        )
    if blocked:
        parts = []
        for table, (count, longest, _) in blocked.items():
            kinds = sorted({b.kind for b in report.blocked if b.table == table})
            noun = " and ".join(k + ("s" if count > 1 else "") for k in kinds)
            parts.append(f"{table} ({count} {noun}, longest {longest:.0f} ms)")
        lines.append("  traffic that waited: " + "; ".join(parts))
        if not causes:
            lines.append(f"    they waited on row locks; fix: {RULES['large-write'].fix}")
    for wait in waits:
        lines.append(
            f"  the migration waited {wait.waited_ms:.0f} ms for session {wait.pid} "
            f"({wait.application or 'no application_name'}, {wait.state}): {wait.query}"
        )
        lines.append(
            "    fix: end such sessions (idle in transaction, long transactions) before "
            "migrating, and migrate with a lock_timeout"
        )
    return "\n".join(lines)


def _strongest_per_table(locks: list[HeldLock]) -> list[HeldLock]:
    strongest: dict[str, HeldLock] = {}
    for lock in locks:
        current = strongest.get(lock.relation)
        if current is None or strength(lock.mode) > strength(current.mode):
            strongest[lock.relation] = lock
    return sorted(strongest.values(), key=lambda lock: (-lock.held_ms, lock.relation))


def _cause(report: LockReport, table: str) -> HeldLock | None:
    """The lock on ``table`` that traffic most likely queued behind: the strongest, longest."""
    on_table = [lock for lock in report.locks if lock.relation == table and lock.dangerous]
    return max(on_table, key=lambda lock: (strength(lock.mode), lock.held_ms), default=None)


def lock_figures(report: LockReport) -> Figures:
    dangerous = [lock for lock in report.locks if lock.dangerous]
    longest = max(dangerous, key=lambda lock: lock.held_ms, default=None)
    figures: Figures = {
        "locks": "; ".join(
            f"{lock.relation} {sql_mode(lock.mode)} {lock.held_ms:.0f} ms"
            for lock in report.locks[:12]
        ),
        "longest_blocking_lock_ms": round(report.longest_blocking_ms, 1),
        "traffic_tables": ", ".join(report.tables),
        "probes": report.probes,
        "blocked_probes": len(report.blocked),
        "max_blocked_ms": round(report.max_blocked_ms, 1),
        "polls": report.polls,
    }
    if report.blockers_before:
        figures["blockers_before"] = " | ".join(report.blockers_before)
    if report.waits:
        figures["migration_waited_ms"] = round(max(w.waited_ms for w in report.waits), 1)
    lock_part = (
        f"longest blocking lock {sql_mode(longest.mode)} on {longest.relation} "
        f"{longest.held_ms:.0f} ms"
        if longest
        else "no lock blocking reads or writes on a table with rows"
    )
    figures["summary"] = (
        f"{lock_part}; traffic blocked at most {report.max_blocked_ms:.0f} ms "
        f"({len(report.blocked)} of {report.probes} probes)"
    )
    return figures
