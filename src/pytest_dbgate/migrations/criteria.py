"""The migrate stage's criterion: each migration applied (or why not)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

import pytest

from pytest_dbgate.core.criterion import Criterion, DbgateWarning, Figures
from pytest_dbgate.core.errors import CriterionFailed
from pytest_dbgate.core.record import format_period, run_label
from pytest_dbgate.core.run import Run, StepFailed, migration_step
from pytest_dbgate.migrations.outcomes import Outcome, Status
from pytest_dbgate.migrations.parse import Migration


@dataclass(frozen=True)
class MigrationApplied(Criterion[Run]):
    stage: ClassVar[str] = "migrate"
    migration: Migration | None = None
    index: int = 0

    def check(self, gate: Run) -> Figures:
        assert self.migration is not None
        outcome = gate.outcome(self.index)
        m = self.migration
        figures: Figures = {
            "file": gate.rel(m),
            "checksum": m.checksum,
            "status": outcome.status.value,
            "statements": len(m.statements),
            "transaction": "single" if m.transactional else "per statement",
        }
        figures["summary"] = outcome.status.value
        if outcome.recorded_by is not None:
            figures["summary"] = f"already applied ({outcome.recorded_by})"
            figures["recorded_by"] = outcome.recorded_by
        if outcome.cached_from is not None:
            figures["cached_from"] = outcome.cached_from
        if outcome.attempts:
            figures["lock_timeouts"] = len(outcome.attempts)
        if outcome.resumed_after:
            figures["resumed_after"] = outcome.resumed_after
        if outcome.notes:
            figures["settled"] = "; ".join(outcome.notes)
        if outcome.status is Status.APPLIED:
            figures["duration_ms"] = round(outcome.duration_ms, 1)
            figures["statements_run"] = outcome.statements_run
            retried = f", after {len(outcome.attempts)} lock timeout(s)" if outcome.attempts else ""
            resumed = (
                f", resumed after statement {outcome.resumed_after} (applied by an earlier run)"
                if outcome.resumed_after
                else ""
            )
            figures["summary"] = (
                f"applied in {outcome.duration_ms / 1000:.1f}s"
                + ("" if m.transactional else ", statement by statement")
                + resumed
                + retried
            )
            if outcome.cached_from is not None:
                figures["summary"] = (
                    f"cached from {run_label(outcome.cached_from)}: {figures['summary']}"
                )
            if outcome.released_by is not None:
                figures["released_by"] = outcome.released_by
                figures["summary"] = (
                    f"{figures['summary']}, released: its hold-back has passed and "
                    f"{outcome.released_by}"
                )
            if outcome.released_early:
                figures["released_early"] = True
                figures["summary"] = str(figures["summary"]) + ", released early on purpose"
                warnings.warn(
                    DbgateWarning(
                        f"{m.id} was held back and is released early by --dbgate-release-early; "
                        "the tracking table records that (applied_by)"
                    ),
                    stacklevel=1,
                )
        if outcome.status is Status.HELD_BACK:
            pytest.skip(held_back_message(outcome))
        if outcome.status is Status.NOT_APPLIED:
            blocker = outcome.blocked_by
            assert blocker is not None
            if blocker.status is Status.HELD_BACK:
                pytest.skip(
                    f"waits for {blocker.migration.id}, which comes before it: "
                    + held_back_message(blocker)
                )
            raise StepFailed(migration_step(blocker.migration), blocker.describe_failure(gate.rel))
        if not outcome.ok:
            raise CriterionFailed(outcome.describe_failure(gate.rel), figures)
        return figures


def held_back_message(outcome: Outcome) -> str:
    assert outcome.eligible_at is not None and outcome.held_since is not None
    period = format_period(outcome.eligible_at - outcome.held_since)
    if outcome.waits_for is not None:
        return (
            f"held back: its period ended on {outcome.eligible_at:%Y-%m-%d %H:%M %Z} ({period} "
            f"after the migrations before it were applied on "
            f"{outcome.held_since:%Y-%m-%d %H:%M %Z}), and it waits for production's metrics to "
            f"be flat: {outcome.waits_for}"
        )
    return (
        f"held back until {outcome.eligible_at:%Y-%m-%d %H:%M %Z} ({period} after the migrations "
        f"before it were applied on {outcome.held_since:%Y-%m-%d %H:%M %Z}); a production run "
        + (
            "from then on applies it once a watch since the deploy has passed (pytest "
            "--dbgate=watch)"
            if outcome.needs_watch
            else "from then on applies it"
        )
    )
