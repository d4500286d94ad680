"""Query statistics: pg_stat_statements windows, matching by normalised text, plans, verdicts.

A *window* is the span of a phase whose queries are measured: counters are read at its start and
end and subtracted, for the staging database only, which measures exactly the queries run in
between without needing the privilege to reset the view. Queries are matched before/after by
normalised text, since query ids change when a table is recreated and differ between servers.

The verdict is built not to flap on a noisy machine. A query regressed only when all hold:

1. its mean execution time grew by more than the allowed regression (default 20 %);
2. the growth exceeds the noise: a floor (default 0.1 ms) and three standard errors of the
   difference, from the standard deviations pg_stat_statements keeps;
3. it does more work per call, which does not depend on how busy the machine is: its plan
   changed and the shared blocks (hit + read) it touches per call grew by more than the allowed
   regression, or the blocks per call grew more than threefold whatever the plan.

Machine noise can satisfy 1 and 2 but not 3. A release that rewrites every row of a table (a
backfill) leaves index and heap bloat behind that can double the blocks a query touches with the
same plan; the threefold bar keeps that from failing the gate. An index a query needs going
missing changes the plan and multiplies the blocks.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
import sqlparse
from psycopg import sql

Conn = psycopg.Connection[tuple[object, ...]]

MARKER = "/* dbgate */"
SNAPSHOT_QUERY = f"""
SELECT {MARKER} s.userid, s.queryid, s.query, s.calls, s.total_exec_time, s.mean_exec_time,
       s.stddev_exec_time, s.rows, s.shared_blks_hit, s.shared_blks_read
FROM pg_stat_statements s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.toplevel
"""
# Blocks per call may grow this much with an unchanged plan before it counts as more work.
BLOAT_FACTOR = 3.0
DATA_QUERY = re.compile(r"^\s*(select|insert|update|delete|with|values|table|merge)\b")
PARAM = re.compile(r"\$(\d+)")


def normalise(text: str) -> str:
    """Comparable text: comments gone, whitespace folded, lower case."""
    stripped = sqlparse.format(text, strip_comments=True, strip_whitespace=True)
    return " ".join(stripped.split()).lower().rstrip(";").strip()


def is_application_query(text: str) -> bool:
    """A data query someone other than the gate ran (not the gate's own bookkeeping)."""
    lowered = text.lower()
    return (
        bool(DATA_QUERY.match(lowered))
        and MARKER not in text
        and "pg_stat_statements" not in lowered
    )


@dataclass(frozen=True)
class Counter:
    """pg_stat_statements' cumulative counters for one entry."""

    text: str
    calls: int
    total_ms: float
    sumsq_ms: float
    rows: int
    hit: int
    read: int

    def minus(self, earlier: Counter | None) -> Counter:
        if earlier is None:
            return self
        return Counter(
            self.text,
            self.calls - earlier.calls,
            self.total_ms - earlier.total_ms,
            self.sumsq_ms - earlier.sumsq_ms,
            self.rows - earlier.rows,
            self.hit - earlier.hit,
            self.read - earlier.read,
        )

    def plus(self, other: Counter) -> Counter:
        return Counter(
            self.text,
            self.calls + other.calls,
            self.total_ms + other.total_ms,
            self.sumsq_ms + other.sumsq_ms,
            self.rows + other.rows,
            self.hit + other.hit,
            self.read + other.read,
        )


Snapshot = dict[tuple[int, int], Counter]


def read_counters(conn: Conn) -> Snapshot:
    """The staging database's pg_stat_statements entries, by (user, query id)."""
    counters: Snapshot = {}
    for row in conn.execute(SNAPSHOT_QUERY).fetchall():
        userid, queryid, text, calls, total, mean, stddev, rows, hit, read = row
        n = int(str(calls))
        mean_f, stddev_f = float(str(mean)), float(str(stddev))
        counters[(int(str(userid)), int(str(queryid)))] = Counter(
            text=str(text),
            calls=n,
            total_ms=float(str(total)),
            sumsq_ms=(stddev_f**2 + mean_f**2) * n,
            rows=int(str(rows)),
            hit=int(str(hit)),
            read=int(str(read)),
        )
    return counters


@dataclass(frozen=True)
class QueryStats:
    """What one query did during one window."""

    text: str
    calls: int
    mean_ms: float
    stddev_ms: float
    rows_per_call: float
    blocks_hit_per_call: float
    blocks_read_per_call: float

    @property
    def blocks_per_call(self) -> float:
        return self.blocks_hit_per_call + self.blocks_read_per_call

    @classmethod
    def of(cls, counter: Counter) -> QueryStats:
        n = max(counter.calls, 1)
        mean = counter.total_ms / n
        variance = max(counter.sumsq_ms / n - mean**2, 0.0)
        return cls(
            text=counter.text,
            calls=counter.calls,
            mean_ms=mean,
            stddev_ms=math.sqrt(variance),
            rows_per_call=counter.rows / n,
            blocks_hit_per_call=counter.hit / n,
            blocks_read_per_call=counter.read / n,
        )


def window(start: Snapshot, end: Snapshot) -> dict[str, QueryStats]:
    """Application queries run between two snapshots, merged by normalised text."""
    merged: dict[str, Counter] = {}
    for key, counter in end.items():
        delta = counter.minus(start.get(key))
        if delta.calls <= 0 or not is_application_query(delta.text):
            continue
        text = normalise(delta.text)
        merged[text] = merged[text].plus(delta) if text in merged else delta
    return {text: QueryStats.of(counter) for text, counter in merged.items()}


def find_measured(measured: Mapping[str, QueryStats], sql_text: str) -> QueryStats | None:
    """The entry of a query written with literals, which pg_stat_statements replaced by ``$n``."""
    target = _shape(normalise(sql_text))
    return next((s for text, s in measured.items() if _shape(text) == target), None)


def _shape(text: str) -> str:
    text = re.sub(r"'(?:[^']|'')*'", "?", text)
    text = re.sub(r"\$\d+", "?", text)
    return re.sub(r"\b\d+(\.\d+)?\b", "?", text)


# -- plans ---------------------------------------------------------------------------------


def plan_nodes(plan: Mapping[str, object]) -> list[str]:
    """The scans of a JSON plan, readable: ``Index Scan using recipes_pkey on recipes``."""
    found: list[str] = []
    node_type = str(plan.get("Node Type", ""))
    index = plan.get("Index Name")
    relation = plan.get("Relation Name")
    if index or relation:
        text = node_type
        if index:
            text += f" using {index}"
        if relation:
            text += f" on {relation}"
        found.append(text)
    children = plan.get("Plans") or []
    assert isinstance(children, list)
    for child in children:
        found.extend(plan_nodes(child))
    return found


def explain(conn: Conn, text: str) -> list[str] | None:
    """The scans of a query's plan: with literal parameters as written, or, for a normalised
    query with ``$n`` placeholders, its generic plan. ``None`` when it cannot be planned."""
    count = max((int(n) for n in PARAM.findall(text)), default=0)
    try:
        with conn.transaction(force_rollback=True):
            if count == 0:
                row = conn.execute(
                    sql.SQL("EXPLAIN (FORMAT JSON) {}").format(sql.SQL(text))
                ).fetchone()
            else:
                conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                conn.execute(sql.SQL("PREPARE dbgate_plan AS {}").format(sql.SQL(text)))
                try:
                    nulls = sql.SQL(", ").join([sql.NULL] * count)
                    row = conn.execute(
                        sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE dbgate_plan({})").format(nulls)
                    ).fetchone()
                finally:
                    conn.execute("DEALLOCATE dbgate_plan")
    except psycopg.Error:
        return None
    if row is None:
        return None
    document = row[0]
    if isinstance(document, str):
        document = json.loads(document)
    return plan_nodes(document[0]["Plan"])  # type: ignore[index]


def plan_change(before: list[str] | None, after: list[str] | None) -> str:
    """``Index Scan using recipes_title_trgm on recipes → Seq Scan on recipes``, or ``""``."""
    if before is None or after is None or sorted(before) == sorted(after):
        return ""
    gone = [n for n in dict.fromkeys(before) if n not in after]
    new = [n for n in dict.fromkeys(after) if n not in before]
    return f"{', '.join(gone) or '(same scans)'} → {', '.join(new) or '(same scans)'}"


# -- captures and verdicts -----------------------------------------------------------------


@dataclass
class Capture:
    """One phase's measurements: the project's test queries and the workload's."""

    phase: str
    tests: dict[str, QueryStats] = field(default_factory=dict)
    workload: dict[str, QueryStats] = field(default_factory=dict)
    workload_sql: dict[str, str] = field(default_factory=dict)
    plans: dict[str, list[str] | None] = field(default_factory=dict)
    seconds: float = 0.0

    def write(self, path: Path) -> None:
        document = {
            "phase": self.phase,
            "seconds": round(self.seconds, 3),
            "workload": {
                label: {"sql": self.workload_sql.get(label, ""), **_stats_json(stats)}
                | {"plan": self.plans.get(f"workload:{label}")}
                for label, stats in self.workload.items()
            },
            "tests": [
                {**_stats_json(stats), "plan": self.plans.get(f"tests:{text}")}
                for text, stats in sorted(self.tests.items())
            ],
        }
        path.write_text(json.dumps(document, indent=2) + "\n")


def _stats_json(stats: QueryStats) -> dict[str, object]:
    data: dict[str, object] = asdict(stats)
    for key in ("mean_ms", "stddev_ms", "rows_per_call", "blocks_hit_per_call"):
        data[key] = round(float(str(data[key])), 4)
    data["blocks_read_per_call"] = round(stats.blocks_read_per_call, 4)
    return data


@dataclass(frozen=True)
class Thresholds:
    max_regression: float
    floor_ms: float


@dataclass(frozen=True)
class Comparison:
    """One query, before and after, and the verdict."""

    key: str
    label: str
    source: str
    sql: str
    before: QueryStats | None
    after: QueryStats | None
    plan_before: list[str] | None
    plan_after: list[str] | None
    regressed: bool
    reason: str

    @property
    def change(self) -> float | None:
        if self.before is None or self.after is None or self.before.mean_ms == 0:
            return None
        return self.after.mean_ms / self.before.mean_ms - 1

    @property
    def plan_diff(self) -> str:
        return plan_change(self.plan_before, self.plan_after)

    @property
    def verdict(self) -> str:
        if self.before is None:
            return "new (after only)"
        if self.after is None:
            return "gone (before only)"
        return "REGRESSED" if self.regressed else "ok"

    def figures(self) -> dict[str, str | int | float]:
        out: dict[str, str | int | float] = {
            "query": self.before.text if self.before else (self.after.text if self.after else "")
        }
        for side, stats in (("before", self.before), ("after", self.after)):
            if stats is not None:
                out[f"{side}_mean_ms"] = round(stats.mean_ms, 4)
                out[f"{side}_stddev_ms"] = round(stats.stddev_ms, 4)
                out[f"{side}_calls"] = stats.calls
                out[f"{side}_blocks_per_call"] = round(stats.blocks_per_call, 2)
        if self.change is not None:
            out["ratio"] = round(1 + self.change, 4)
        if self.plan_diff:
            out["plan_change"] = self.plan_diff
        out["summary"] = self.reason
        return out


def judge(
    key: str,
    label: str,
    source: str,
    sql_text: str,
    before: QueryStats | None,
    after: QueryStats | None,
    plans: tuple[list[str] | None, list[str] | None],
    limits: Thresholds,
) -> Comparison:
    if before is None or after is None:
        side = "after" if before is None else "before"
        reason = f"seen only {side} the migrations: reported, not judged"
        return Comparison(key, label, source, sql_text, before, after, *plans, False, reason)
    grew = after.mean_ms - before.mean_ms
    noise = max(
        limits.floor_ms,
        3 * math.sqrt(before.stddev_ms**2 / before.calls + after.stddev_ms**2 / after.calls),
    )
    slower = after.mean_ms > before.mean_ms * (1 + limits.max_regression) and grew > noise
    more_blocks = after.blocks_per_call - before.blocks_per_call >= 1
    grew_blocks = after.blocks_per_call > before.blocks_per_call * (1 + limits.max_regression)
    replanned = bool(plan_change(*plans))
    more_work = more_blocks and (
        (replanned and grew_blocks) or after.blocks_per_call > before.blocks_per_call * BLOAT_FACTOR
    )
    pct = f"{grew / before.mean_ms * 100:+.0f} %" if before.mean_ms else "n/a"
    timing = f"{before.mean_ms:.3f} → {after.mean_ms:.3f} ms ({pct})"
    work = f"{before.blocks_per_call:.0f} → {after.blocks_per_call:.0f} blocks per call"
    regressed = slower and more_work
    if regressed:
        reason = f"{timing}, {work}"
    elif slower:
        reason = (
            f"{timing} but no more work per call ({work}, "
            f"{'new plan' if replanned else 'same plan'}): noise or bloat, not counted"
        )
    else:
        reason = f"{timing}; {work}"
    return Comparison(key, label, source, sql_text, before, after, *plans, regressed, reason)


def compare(before: Capture, after: Capture, limits: Thresholds) -> list[Comparison]:
    """Every query of either side, the workload's by label, the tests' by normalised text."""
    results: list[Comparison] = []
    for label in dict.fromkeys([*before.workload, *after.workload]):
        key = f"workload:{label}"
        plans = (before.plans.get(key), after.plans.get(key))
        results.append(
            judge(
                key,
                label,
                "workload",
                before.workload_sql.get(label) or after.workload_sql.get(label, ""),
                before.workload.get(label),
                after.workload.get(label),
                plans,
                limits,
            )
        )
    for text in sorted(set(before.tests) | set(after.tests)):
        key = f"tests:{text}"
        plans = (before.plans.get(key), after.plans.get(key))
        results.append(
            judge(
                key,
                text,
                "tests",
                (before.tests.get(text) or after.tests[text]).text,
                before.tests.get(text),
                after.tests.get(text),
                plans,
                limits,
            )
        )
    return results


def report_markdown(comparisons: Iterable[Comparison], limits: Thresholds) -> str:
    from tabulate import tabulate

    rows = []
    regressions = []
    for c in comparisons:
        rows.append(
            (
                c.source,
                _short(c.label if c.source == "workload" else c.key.split(":", 1)[1]),
                f"{c.before.mean_ms:.3f}" if c.before else "",
                f"{c.after.mean_ms:.3f}" if c.after else "",
                f"{c.change * 100:+.0f} %" if c.change is not None else "",
                f"{c.before.blocks_per_call:.0f}" if c.before else "",
                f"{c.after.blocks_per_call:.0f}" if c.after else "",
                c.verdict,
            )
        )
        if c.regressed:
            regressions.append(c)
    lines = [
        "# Performance: before and after the migrations",
        "",
        f"Allowed regression {limits.max_regression * 100:.0f} %, noise floor "
        f"{limits.floor_ms} ms; a query fails only when it is slower beyond the noise *and* "
        "does more work per call (shared blocks).",
        "",
        tabulate(
            [tuple(str(cell).replace("|", "\\|") for cell in row) for row in rows],
            headers=(
                "source",
                "query",
                "before ms",
                "after ms",
                "change",
                "blocks before",
                "blocks after",
                "verdict",
            ),
            tablefmt="github",
        ),
    ]
    if regressions:
        lines += ["", "## Plan changes of the regressed queries"]
        for c in regressions:
            lines += ["", f"### {c.label if c.source == 'workload' else _short(c.label)}", ""]
            lines += ["```sql", c.sql, "```"]
            lines += ["", f"- {c.reason}", f"- plan: {c.plan_diff or 'unchanged'}"]
            lines += [f"- before: {'; '.join(c.plan_before or ['?'])}"]
            lines += [f"- after: {'; '.join(c.plan_after or ['?'])}"]
    return "\n".join(lines) + "\n"


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
