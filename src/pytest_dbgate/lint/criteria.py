"""The lint criterion: one item per migration file, judged with what the gate knows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pytest_dbgate.core.criterion import Criterion, Figures
from pytest_dbgate.core.errors import CriterionFailed
from pytest_dbgate.core.run import Run, StepFailed
from pytest_dbgate.lint.engine import Finding
from pytest_dbgate.migrations.parse import Migration
from pytest_dbgate.staging.gate import Gate


@dataclass(frozen=True)
class MigrationLinted(Criterion[Run]):
    """One migration file against the static safety rules (:mod:`pytest_dbgate.lint.engine`).

    In the staging gate the restored copy says how big each table is: a finding on a table with
    fewer rows than ``dbgate_lint_small_table_rows`` is reported, not failed.
    """

    stage: ClassVar[str] = "lint"
    per_file: ClassVar[bool] = True
    migration: Migration | None = None

    def check(self, gate: Run) -> Figures:
        assert self.migration is not None
        findings = gate.findings.get(self.migration.id, [])
        applied = _applied_before(gate).get(self.migration.version)
        if applied is not None:
            # History, not the release: it ran on production long ago.
            return {"summary": f"already applied ({applied}): not part of this release"}
        rows = _table_rows(gate, self.migration)
        limit = gate.config.lint_small_table_rows
        failing: list[tuple[Finding, bool]] = []
        reported: list[tuple[Finding, bool]] = []
        for finding in findings:
            small = (
                finding.table is not None
                and rows is not None
                and _rows_of(rows, finding.table) < limit
            )
            (failing if finding.fails and not small else reported).append((finding, small))
        figures: Figures = {
            "summary": f"{len(failing)} failing, {len(reported)} reported"
            if findings
            else "no findings",
            "findings": len(findings),
            "failing": len(failing),
            "reported": len(reported),
            "rules": ", ".join(sorted({f.rule.id for f in findings})),
        }
        rel = gate.rel(self.migration)
        notes = []
        for finding, small in reported:
            line = f"{rel}:{finding.statement.line}: [{finding.rule.id}] {finding.detail}"
            if small and finding.table is not None and rows is not None:
                count = _rows_of(rows, finding.table)
                line += f" (reported: {finding.table} has {count:,} rows, fewer than {limit:,})"
            elif finding.ignored is not None:
                line += f" (ignored: {finding.ignored})"
            elif finding.held_back:
                line += " (held back: the sanctioned way to remove what the old release reads)"
            else:
                line += " (reported)"
            notes.append(line)
        if notes:
            figures["notes"] = " | ".join(notes)
        if failing:
            lines = [f"{len(failing)} unsafe statement(s) in {rel}:"]
            lines += [finding.describe(rel) for finding, _ in failing]
            if notes:
                lines.append("  also reported, not failing:")
                lines += [f"    {note}" for note in notes]
            if any(finding.rule.ignorable for finding, _ in failing):
                lines.append(
                    "  a reviewed exception: `-- dbgate: ignore <rule> <reason>` on the line "
                    "above the statement"
                )
            raise CriterionFailed("\n".join(lines), figures)
        return figures


def _applied_before(gate: Run) -> dict[str, str]:
    """Migrations the staging copy already has, when there is a copy that could be read."""
    if not isinstance(gate, Gate):
        return {}
    try:
        return gate.applied_before()
    except StepFailed:
        return {}


def _table_rows(gate: Run, migration: Migration) -> dict[str, int] | None:
    """Rows per table as the migration met them: counted just before it ran (what earlier
    migrations of the release inserted included), else as restored on the staging copy (the
    source of a dump file is not there to count, the copy is); by name as the SQL gave it and
    by unqualified name. ``None`` without a copy (lint mode)."""
    if not isinstance(gate, Gate):
        return None
    try:
        snapshot = gate.snapshot()
    except StepFailed:
        return None
    rows = {table: count for (_, table), count in snapshot.rows().items()}
    rows.update(gate.sizes_before.get(migration.version, {}))
    return rows


def _rows_of(rows: dict[str, int], table: str) -> int:
    return rows.get(table, rows.get(table.split(".")[-1], 0))


def lint_checklist(run: Run) -> list[Criterion[Any]]:
    return [MigrationLinted(f"{run.rel(m)}::lint", m.path, migration=m) for m in run.migrations]
