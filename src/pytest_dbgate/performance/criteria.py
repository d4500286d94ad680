"""The performance stage's criteria: windows captured, no query slower."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pytest_dbgate.core.criterion import Criterion, Figures
from pytest_dbgate.core.errors import CriterionFailed
from pytest_dbgate.performance.capture import Capture
from pytest_dbgate.performance.stats import short_text
from pytest_dbgate.performance.verdicts import MIN_TEST_CALLS, Comparison, Verdict
from pytest_dbgate.staging.gate import Gate


def _capture_figures(capture: Capture) -> Figures:
    figures: Figures = {"test_queries": len(capture.tests), "seconds": round(capture.seconds, 3)}
    tests = f"{len(capture.tests)} test queries"
    if not capture.method:
        figures["summary"] = f"{tests}; the workload runs side by side after migrating"
        return figures
    rounds = [m.rounds for m in capture.workload.values()]
    figures.update(
        workload_queries=len(capture.workload),
        method=capture.method,
        ran_on=capture.where,
        budget_seconds=capture.budget_s,
        rounds=(
            f"{min(rounds)} to {max(rounds)}"
            if rounds and min(rounds) != max(rounds)
            else str(max(rounds, default=0))
        ),
    )
    workload_s = sum(m.seconds for m in capture.workload.values())
    figures.update(workload_seconds=round(workload_s, 3), prepared_seconds=capture.prepared_s)
    figures["summary"] = (
        f"{tests}; {len(capture.workload)} workload queries {capture.method}, "
        f"{figures['rounds']} rounds each in {workload_s:.1f}s (budget {capture.budget_s:g}s)"
        + (f", {capture.prepared_s:.1f}s preparing" if capture.prepared_s >= 0.05 else "")
    )
    if capture.compacted:
        figures["compacted"] = "; ".join(c.describe() for c in capture.compacted)
        figures["summary"] = f"{figures['summary']}; compacted first: {figures['compacted']}"
    return figures


@dataclass(frozen=True)
class BaselineCaptured(Criterion[Gate]):
    """The project's test queries before migrating (and the workload, when there is no
    un-migrated copy to measure it against after migrating)."""

    stage: ClassVar[str] = "before"
    position: ClassVar[int] = 2

    def check(self, gate: Gate) -> Figures:
        return _capture_figures(gate.baseline())


@dataclass(frozen=True)
class AfterCaptured(Criterion[Gate]):
    stage: ClassVar[str] = "after"
    position: ClassVar[int] = 2

    def check(self, gate: Gate) -> Figures:
        return _capture_figures(gate.after_capture())


INDEX_FIX = (
    "  fix: the release removed an index this query needs or changed what the planner can use: "
    "recreate it (CREATE INDEX CONCURRENTLY …), or keep it until the query no longer needs it"
)
CPU_FIX = (
    "  fix: look at what the release put on this query's path: triggers on the tables it "
    "writes, functions it calls, CHECK constraints, generated columns, foreign keys, column "
    "types that need casts"
)


def _regression_message(c: Comparison, what: str) -> str:
    lines = [f"{what} is slower after the migrations: {c.reason}"]
    lines.append(f"    {' '.join(c.sql.split())[:300]}")
    lines += [f"  {line}" for line in c.cpu_lines()]
    if c.plan_diff:
        lines += [f"  plan: {c.plan_diff}", INDEX_FIX]
    else:
        if c.before is not None:
            lines.append(f"  plan (unchanged): {'; '.join(c.before.plan or ['unknown'])}")
        lines.append(CPU_FIX)
    return "\n".join(lines)


@dataclass(frozen=True)
class QueryNotSlower(Criterion[Gate]):
    """One workload query is not slower than the allowed regression."""

    stage: ClassVar[str] = "performance"
    label: str = ""

    def check(self, gate: Gate) -> Figures:
        found = next(c for c in gate.comparisons() if c.key == f"workload:{self.label}")
        figures: Figures = dict(found.figures())
        what = f"workload query {self.label}"
        if found.regressed:
            raise CriterionFailed(_regression_message(found, what), figures)
        if found.verdict is not Verdict.OK:
            # Fails after, fails before, or could not be measured: each a gap the gate cannot
            # pass over; the reason says what to do.
            sql_line = f"    {' '.join(found.sql.split())[:300]}"
            raise CriterionFailed(f"{what} {found.reason}\n{sql_line}", figures)
        return figures


@dataclass(frozen=True)
class TestQueriesNotSlower(Criterion[Gate]):
    """The queries the project's own tests ran are not slower than the allowed regression."""

    stage: ClassVar[str] = "performance"

    def check(self, gate: Gate) -> Figures:
        tests = [c for c in gate.comparisons() if c.source == "tests"]
        judged = [c for c in tests if c.verdict is not Verdict.NOT_JUDGED]
        regressed = [c for c in judged if c.regressed]
        figures: Figures = {
            "summary": f"{len(judged)} judged, {len(regressed)} slower; "
            f"{len(tests) - len(judged)} reported, not judged (seen on one side, or called "
            f"fewer than {MIN_TEST_CALLS} times on a side)",
            "judged": len(judged),
            "regressed": len(regressed),
            "not_judged": len(tests) - len(judged),
        }
        notes = [f"{short_text(c.sql)}: {c.reason}" for c in tests if c not in judged]
        if notes:
            figures["notes"] = " | ".join(notes[:20])
        if regressed:
            raise CriterionFailed(
                "\n".join(
                    _regression_message(
                        c, f"a query of the project's tests (called {c.after.runs} times after)"
                    )
                    for c in regressed
                    if c.after is not None
                ),
                figures,
            )
        return figures
