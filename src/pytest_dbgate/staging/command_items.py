"""The migrate stage in command mode: the project's tool ran, and what its sessions locked.

Items are fixed when pytest collects, before any database is read, so which migrations the tool
has pending is not known then: the command is one item, and the migrations its history table
gained (``alembic_version``'s new head, ``django_migrations``' new rows …) are its figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pytest_dbgate.core.criterion import Criterion, Figures
from pytest_dbgate.core.errors import CriterionFailed
from pytest_dbgate.observe.criteria import lock_figures, lock_verdict
from pytest_dbgate.staging.gate import Gate


@dataclass(frozen=True)
class MigrateCommandRan(Criterion[Gate]):
    """The project's migrate command exited 0 on staging."""

    stage: ClassVar[str] = "migrate"

    def check(self, gate: Gate) -> Figures:
        done = gate.command()
        applied = ", ".join(done.applied) or "nothing new"
        figures: Figures = {
            "command": done.result.command,
            "exit_status": done.result.returncode,
            "seconds": round(done.result.seconds, 3),
            "history_table": done.history or "none found",
            "applied": applied,
            "summary": f"applied {applied} in {done.result.seconds:.1f}s"
            + (f" (as {done.history} records)" if done.history else ""),
        }
        return figures


@dataclass(frozen=True)
class CommandLocksHeldBriefly(Criterion[Gate]):
    """No long blocking lock, and no application session blocked for long, while the
    project's tool migrated (every session the watch did not open is the tool's)."""

    stage: ClassVar[str] = "migrate"

    def check(self, gate: Gate) -> Figures:
        report = gate.command().report
        gate.decided_locks["command"] = report
        figures = lock_figures(report)
        message = lock_verdict(gate, report)
        if message:
            raise CriterionFailed(message, figures)
        return figures
