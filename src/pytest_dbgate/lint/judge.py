"""Each finding judged with what only the gate knows: fail, or report and say why not.

A rule's severity comes from the catalog, changed per rule by ``dbgate_lint_rules``. Then the
context: a lock rule on a table the release created, or one with fewer rows than
``dbgate_lint_small_table_rows`` when the migration met it (staging counts them), harms nobody;
a compatibility rule (a rename, a drop) on what the release made does not break the old
release, and a drop held back is the sanctioned way. What the lock watch measured on staging is
said beside every lock finding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pytest_dbgate.lint.engine import Finding
from pytest_dbgate.lint.rule import Severity


@dataclass(frozen=True)
class Judged:
    finding: Finding
    fails: bool
    because: str | None = None  # why it is reported, not failed
    measured: str | None = None  # what the lock watch saw (staging)

    @property
    def level(self) -> str:
        return "error" if self.fails else "warning"

    def line(self, rel: str) -> str:
        """One line for a report: file:line, rule, what was found, and why it does not fail."""
        text = f"{rel}:{self.finding.line}: [{self.finding.rule.id}] {self.finding.detail}"
        notes = [n for n in (self.because, self.measured) if n]
        return text + (f" ({'; '.join(notes)})" if notes else "")

    def describe(self, rel: str) -> str:
        """The failing finding in full: where, the statement, why, the fix."""
        finding = self.finding
        lines = [f"{rel}:{finding.line}: [{finding.rule.id}] {finding.detail}"]
        lines.append(f"    {finding.statement.excerpt()}")
        if finding.ignored is not None and not finding.rule.ignorable:
            lines.append(f"    why: {finding.why} (the ignore, {finding.ignored!r}, is refused)")
        elif finding.why != finding.detail:
            lines.append(f"    why: {finding.why}")
        if finding.fix:
            lines.append(f"    fix: {finding.fix}")
        if self.measured:
            lines.append(f"    staging: {self.measured}")
        return "\n".join(lines)


def judge(
    finding: Finding,
    severities: Mapping[str, Severity],
    rows: Mapping[str, int] | None,
    small: int,
    measured: str | None = None,
    staging: bool = False,
) -> Judged | None:
    """The verdict on one finding; ``None`` when its rule is off. ``rows``: rows per table as
    the migration met them (staging), ``None`` without a copy (lint mode)."""
    rule = finding.rule
    severity = severities.get(rule.id, rule.severity)
    if severity == "off" and rule.ignorable:
        return None
    measured = measured if rule.kind == "lock" else None
    if not rule.ignorable:
        return Judged(finding, True, None, measured)
    if finding.ignored is not None:
        return Judged(finding, False, f"ignored: {finding.ignored}", measured)
    if severity == "report":
        default = severity == rule.severity
        said = "reported by default" if default else "reported (dbgate_lint_rules)"
        return Judged(finding, False, said, measured)
    if staging and rule.judged_by is not None:
        return Judged(finding, False, f"{rule.judged_by} judges it on the migrated database")
    if finding.exempt is not None:
        return Judged(finding, False, finding.exempt, measured)
    if finding.new and rule.kind in ("lock", "compat"):
        return Judged(finding, False, "new in this release: nothing else uses it yet", measured)
    if finding.held_back and rule.kind == "compat":
        return Judged(
            finding, False, "held back: the sanctioned way to remove what the old release reads"
        )
    count = _rows_of(rows, finding.table) if rows is not None else None
    if rule.kind == "lock" and count is not None and count < small:
        return Judged(
            finding, False, f"{finding.table} has {count:,} rows, fewer than {small:,}", measured
        )
    return Judged(finding, True, None, measured)


def _rows_of(rows: Mapping[str, int], table: str | None) -> int | None:
    """Rows of the table as the statement named it, else by its unqualified name; ``None`` when
    the count is unknown (never taken for small)."""
    if table is None:
        return None
    found = rows.get(table)
    return found if found is not None else rows.get(table.split(".")[-1])
