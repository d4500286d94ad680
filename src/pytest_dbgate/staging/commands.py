"""The project's own commands as items: the post-migrate command, the external tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pytest_dbgate.core.commands import CommandResult, run_command
from pytest_dbgate.core.criterion import Criterion, Figures
from pytest_dbgate.core.errors import CriterionFailed
from pytest_dbgate.core.run import Run
from pytest_dbgate.staging.gate import Gate


@dataclass(frozen=True)
class PostMigrateCommand(Criterion[Run]):
    """The post-migrate command (an ORM client regeneration, say) ran cleanly."""

    stage: ClassVar[str] = "after"

    def check(self, gate: Run) -> Figures:
        result = gate.migrated()
        assert result is not None
        return _command_figures(result)


def _command_figures(result: CommandResult) -> Figures:
    return {
        "summary": f"exit 0 in {result.seconds:.1f}s",
        "command": result.command,
        "exit_status": result.returncode,
        "seconds": round(result.seconds, 3),
    }


@dataclass(frozen=True)
class ExternalTests(Criterion[Gate]):
    """The project's non-pytest database tests (``dbgate_test_command``) pass on staging."""

    position: ClassVar[int] = 1
    command: str = ""

    def check(self, gate: Gate) -> Figures:
        if self.stage == "before" and gate.migrations_started:
            raise CriterionFailed(
                "the [before] test command would run after the migrations started: something "
                "reordered the gate's items; run the gate without reordering"
            )
        gate.open_window(self.stage)
        result = run_command(self.command, gate.snapshot().staging, gate.config.rootdir)
        figures = _command_figures(result)
        if not result.ok:
            figures["summary"] = f"exit {result.returncode} in {result.seconds:.1f}s"
            raise CriterionFailed(result.failure(f"the test command [{self.stage}]"), figures)
        return figures


@dataclass(frozen=True)
class ExternalTestsBefore(ExternalTests):
    stage: ClassVar[str] = "before"


@dataclass(frozen=True)
class ExternalTestsAfter(ExternalTests):
    stage: ClassVar[str] = "after"
