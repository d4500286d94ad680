"""What the performance stage writes to the report folder: each phase's measurements as JSON
(``baseline_perf.json``, ``after_perf.json``) and the verdicts as markdown (``perf_report.md``).

The JSON keeps every run's time, so a verdict can be checked, or recomputed, from the file.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from tabulate import tabulate

from pytest_dbgate.performance.compaction import Compacted
from pytest_dbgate.performance.sidebyside import Measured
from pytest_dbgate.performance.stats import short_text
from pytest_dbgate.performance.verdicts import Comparison, Thresholds

if TYPE_CHECKING:
    from pytest_dbgate.performance.capture import Capture


def write_capture(capture: Capture, path: Path, mask: Callable[[str], str] = str) -> None:
    document = {
        "phase": capture.phase,
        "seconds": round(capture.seconds, 3),
        "prepared_seconds": round(capture.prepared_s, 3),
        "workload_method": capture.method or None,
        "workload_ran_on": capture.where or None,
        "budget_seconds": capture.budget_s or None,
        "compacted": [asdict(c) for c in capture.compacted],
        "workload": {label: _measured(m) for label, m in capture.workload.items()},
        "tests": [
            {
                **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(s).items()},
                "plan": capture.plans.get(text),
            }
            for text, s in sorted(capture.tests.items())
        ],
    }
    path.write_text(mask(json.dumps(document, indent=2)) + "\n")


def _measured(m: Measured) -> dict[str, object]:
    out: dict[str, object] = {
        "sql": m.query.sql,
        "rounds": m.rounds,
        "seconds": round(m.seconds, 3),
    }
    for name, runs in (("before", m.before), ("after", m.after)):
        if runs:
            out[name] = {
                "median_ms": round(statistics.median(r.ms for r in runs), 4),
                "ms": [round(r.ms, 4) for r in runs],
                "blocks": [r.blocks for r in runs],
                "plan": list(runs[0].plan),
            }
    if m.failure is not None:
        out["failed"] = {"side": m.failure.side, "error": m.failure.message}
    if m.too_slow is not None:
        out["not_measured"] = m.too_slow
    return out


def report_markdown(
    comparisons: Iterable[Comparison],
    limits: Thresholds,
    method: str,
    where: str,
    compacted: Iterable[Compacted] = (),
) -> str:
    rows = []
    regressed = []
    for c in comparisons:
        rows.append(
            (
                c.source,
                short_text(c.label, 70),
                f"{c.before.ms:.3f}" if c.before else "",
                f"{c.after.ms:.3f}" if c.after else "",
                c.ratio.percent() if c.ratio else "",
                c.ratio.percent(c.ratio.lower) if c.ratio else "",
                f"{c.after.runs}" if c.after else "",
                f"{c.before.blocks:.0f}" if c.before and c.before.blocks is not None else "",
                f"{c.after.blocks:.0f}" if c.after and c.after.blocks is not None else "",
                c.verdict.value,
            )
        )
        if c.failed:
            regressed.append(c)
    measured = (
        f"The workload was measured {method} ({where})."
        if method
        else "The workload was not measured."
    )
    lines = [
        "# Performance: before and after the migrations",
        "",
        f"{measured} Times are the server's execution times (EXPLAIN ANALYZE), medians of the "
        "rounds; the project's test queries are pg_stat_statements' means. A query fails when "
        f"it is {limits.describe()}; the plan and blocks explain, they do not decide.",
        *_compacted(compacted),
        "",
        tabulate(
            [tuple(str(cell).replace("|", "\\|") for cell in row) for row in rows],
            headers=(
                "source",
                "query",
                "before ms",
                "after ms",
                "change",
                "at least",
                "runs",
                "blocks before",
                "blocks after",
                "verdict",
            ),
            tablefmt="github",
        ),
    ]
    if regressed:
        lines += ["", "## Why the failing queries are slower"]
        for c in regressed:
            lines += [
                "",
                f"### {short_text(c.label, 70)}",
                "",
                "```sql",
                c.sql,
                "```",
                "",
                f"- {c.reason}",
            ]
            if c.before is not None and c.after is not None:
                lines += [f"- plan: {c.plan_diff or 'unchanged'}"]
                lines += [f"- before: {'; '.join(c.before.plan or ['?'])}"]
                lines += [f"- after: {'; '.join(c.after.plan or ['?'])}"]
            lines += [f"- {line}" for line in c.cpu_lines()]
    return "\n".join(lines) + "\n"


def _compacted(compacted: Iterable[Compacted]) -> list[str]:
    names = [c.describe() for c in compacted]
    if not names:
        return []
    return [
        "",
        "Compacted first (VACUUM FULL), as the un-migrated copy is: the dead space the release "
        f"left is not a query regression: {'; '.join(names)}.",
    ]
