"""The lint criterion: one item per migration file, each finding judged with what the gate knows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pytest_dbgate.core.criterion import Criterion, Figures
from pytest_dbgate.core.errors import CriterionFailed
from pytest_dbgate.core.run import LINT, Run
from pytest_dbgate.lint.judge import Judged, judge
from pytest_dbgate.migrations.parse import Migration


@dataclass(frozen=True)
class MigrationLinted(Criterion[Run]):
    """One migration file against squawk's rules and the gate's own (:mod:`pytest_dbgate.lint`).

    In the staging gate the copy says how big each table was when the migration met it, and the
    lock watch what its locks really cost.
    """

    stage: ClassVar[str] = "lint"
    per_file: ClassVar[bool] = True
    migration: Migration | None = None

    def check(self, gate: Run) -> Figures:
        assert self.migration is not None
        applied = gate.lint_applied_before().get(self.migration.version)
        if applied is not None:
            # History, not the release: it ran on production long ago.
            return {"summary": f"already applied ({applied}): not part of this release"}
        severities = dict(gate.config.lint_rules)
        rows = gate.lint_rows_met(self.migration)
        measured = gate.lint_measured(self.migration)
        judged = [
            verdict
            for finding in gate.findings.get(self.migration.id, [])
            if (
                verdict := judge(
                    finding,
                    severities,
                    rows,
                    gate.config.lint_small_table_rows,
                    measured,
                    # A migrated copy exists: the staging criteria judge what they measure.
                    staging=rows is not None,
                )
            )
            is not None
        ]
        gate.judged[self.migration.id] = judged
        failing = [j for j in judged if j.fails]
        reported = [j for j in judged if not j.fails]
        figures: Figures = {
            "summary": f"{len(failing)} failing, {len(reported)} reported"
            if judged
            else "no findings",
            "findings": len(judged),
            "failing": len(failing),
            "reported": len(reported),
            "rules": ", ".join(sorted({j.finding.rule.id for j in judged})),
        }
        rel = gate.rel(self.migration)
        notes = [j.line(rel) for j in reported]
        if notes:
            figures["notes"] = " | ".join(notes)
        if failing:
            raise CriterionFailed(_message(rel, failing, notes), figures)
        return figures


def _message(rel: str, failing: list[Judged], notes: list[str]) -> str:
    lines = [f"{len(failing)} unsafe statement(s) in {rel}:"]
    lines += [j.describe(rel) for j in failing]
    if notes:
        lines.append("  also reported, not failing:")
        lines += [f"    {note}" for note in notes]
    if any(j.finding.rule.ignorable for j in failing):
        lines.append(
            "  a reviewed exception: `-- dbgate: ignore <rule> <reason>` on the line above the "
            "statement; a rule's severity: dbgate_lint_rules"
        )
    return "\n".join(lines)


def lint_checklist(run: Run) -> list[Criterion[Any]]:
    return [
        MigrationLinted(f"{run.rel(m)}::lint", m.path, requires=(LINT,), migration=m)
        for m in run.migrations
    ]
