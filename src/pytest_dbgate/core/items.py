"""Generated pytest items: one per criterion, grouped under ``dbgate::<stage>``.

Node ids read as a checklist (``dbgate::schema::constraints_validated``) and JUnit classnames
become ``dbgate.<stage>``, so a CI dashboard groups the gate by stage. Prerequisites are prepared
in ``setup``: when one failed, the item is skipped if the item that reports the failure runs in
this session, and errors with the failure itself if it was deselected.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_dbgate.core.criterion import Criterion
from pytest_dbgate.core.dependencies import blocked, require
from pytest_dbgate.core.errors import CriterionFailed, DbgateError
from pytest_dbgate.core.results import ROOT
from pytest_dbgate.core.run import Run, StepFailed, migration_step

if TYPE_CHECKING:
    from _pytest._code.code import ExceptionInfo, TerminalRepr


class GateNode(pytest.Collector):
    """``dbgate``: the root of the generated items."""

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        return []


class StageNode(pytest.Collector):
    """``dbgate::<stage>``: one stage of the runbook."""

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        return []


class CriterionItem(pytest.Item):
    """One release criterion as a test."""

    def __init__(self, *, criterion: Criterion[Any], gate: Run, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.criterion = criterion
        self.gate = gate
        self.add_marker(pytest.mark.dbgate)

    @property
    def stage(self) -> str:
        return self.criterion.stage

    @property
    def position(self) -> int:
        return self.criterion.position

    def setup(self) -> None:
        for step in self.criterion.requires:
            require(self.gate, step, self)
        if self.criterion.needs_migrations:
            self._migrations_ran()

    def _migrations_ran(self) -> None:
        """Schema checks read the state the migrations reached, failures included; but a
        failure nobody else reports in this session must not pass unseen."""
        from pytest_dbgate.migrations.outcomes import Status

        try:
            outcomes = self.gate.outcomes()
        except StepFailed as failed:
            blocked(self.gate, failed, self)
        for outcome in outcomes:
            if outcome.status in (Status.FAILED, Status.CHECKSUM_CHANGED):
                step = migration_step(outcome.migration)
                if not self.gate.reported_elsewhere(step, self):
                    pytest.fail(outcome.describe_failure(self.gate.rel), pytrace=False)

    def runtest(self) -> None:
        try:
            figures = self.criterion.check(self.gate)
        except CriterionFailed as failed:
            self.user_properties.extend(failed.figures.items())
            raise
        except StepFailed as failed:
            if self.gate.owner(failed.step) is self:
                raise CriterionFailed(failed.message, failed.figures) from None
            blocked(self.gate, failed, self)
        except DbgateError as error:
            raise CriterionFailed(str(error)) from None
        self.user_properties.extend(figures.items())

    def repr_failure(
        self,
        excinfo: ExceptionInfo[BaseException],
        style: str | None = None,
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, CriterionFailed):
            return excinfo.value.message
        return super().repr_failure(excinfo, style=style)  # type: ignore[arg-type]

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.criterion.path, None, f"{self.stage}: {self.name}"


def build_items(
    session: pytest.Session, gate: Run, checklist: list[Criterion[Any]]
) -> list[pytest.Item]:
    """Create the item tree ``dbgate::<stage>::<criterion>`` and record who owns which step."""
    root = GateNode.from_parent(session, name=ROOT, nodeid=ROOT)
    stages: dict[str, StageNode] = {}
    items: list[pytest.Item] = []
    for criterion in checklist:
        if criterion.per_file:
            # A check of one file is named after it (``migrations/<file>::lint``), like a test
            # module's test, so editors and CI link it to the file.
            item = CriterionItem.from_parent(
                session, name=criterion.name, nodeid=criterion.name, criterion=criterion, gate=gate
            )
            items.append(item)
            continue
        stage = stages.get(criterion.stage)
        if stage is None:
            stage = StageNode.from_parent(
                root, name=criterion.stage, nodeid=f"{ROOT}::{criterion.stage}"
            )
            stages[criterion.stage] = stage
        item = CriterionItem.from_parent(
            stage,
            name=criterion.name,
            nodeid=f"{stage.nodeid}::{criterion.name}",
            criterion=criterion,
            gate=gate,
        )
        for step in criterion.owns:
            gate.owners[step] = item
        items.append(item)
    return items
