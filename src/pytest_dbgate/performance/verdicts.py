"""The performance verdict: is a query slower after the migrations, and why.

Time is the criterion. A query regressed when both hold:

1. its execution time grew by more than the allowed regression (default 20 %) *with confidence*:
   the one-sided 95 % lower bound of the after/before ratio
   (:mod:`pytest_dbgate.performance.confidence`)
   is above ``1 + max_regression``;
2. the median time grew by more than the floor (default 0.1 ms): below it the difference is too
   small to matter to an application, whatever the ratio.

What the query did is the explanation, never a precondition: a plan change ("Index Scan using
x → Seq Scan on t") points at a dropped or unusable index; the same plan with the same blocks
means the time went to CPU (a trigger, a function, a cast, JIT), and the breakdown of one timed
run says where. The project's own test queries are judged from pg_stat_statements' means when
they ran often enough on both sides; otherwise they are reported, not judged.
"""

from __future__ import annotations

import enum
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pytest_dbgate.performance.confidence import (
    Ratio,
    from_summaries,
    independent,
    paired,
)
from pytest_dbgate.performance.sidebyside import Measured
from pytest_dbgate.performance.stats import QueryStats, plan_change
from pytest_dbgate.performance.timing import Breakdown, Run

CPU = "same plan, same blocks: slower per call (CPU: triggers, functions, casts)"
SAME_WORK = "same blocks per call: slower per call (CPU: triggers, functions, casts; or waits)"
# A test query needs this many calls on each side for its mean to be judged.
MIN_TEST_CALLS = 5


@dataclass(frozen=True)
class Thresholds:
    max_regression: float
    floor_ms: float

    def describe(self) -> str:
        return (
            f"more than {self.max_regression * 100:.0f} % slower with 95 % confidence and by "
            f"more than {self.floor_ms:g} ms"
        )


class Verdict(enum.Enum):
    OK = "ok"
    REGRESSED = "REGRESSED"
    NOT_JUDGED = "not judged"
    FAILS_AFTER = "fails after"
    FAILS_BEFORE = "fails before"


@dataclass(frozen=True)
class Summary:
    """One side of a comparison, summarised."""

    ms: float  # median of the runs, or pg_stat_statements' mean for a test query
    runs: int
    blocks: float | None  # shared blocks per run
    plan: list[str] | None


@dataclass
class Comparison:
    """One query, before and after, and the verdict."""

    key: str
    label: str
    source: str  # "workload" or "tests"
    sql: str
    before: Summary | None
    after: Summary | None
    verdict: Verdict
    reason: str
    method: str = ""
    ratio: Ratio | None = None
    seconds: float = 0.0
    # Where the time of one run went on each side: filled in for a regressed query.
    breakdown: tuple[Breakdown | None, Breakdown | None] | None = None
    notes: list[str] = field(default_factory=list)
    timing: str = ""  # the figures the verdict rests on, as the reason states them

    @property
    def regressed(self) -> bool:
        return self.verdict is Verdict.REGRESSED

    @property
    def failed(self) -> bool:
        return self.verdict in (Verdict.REGRESSED, Verdict.FAILS_AFTER)

    @property
    def plan_diff(self) -> str:
        if self.before is None or self.after is None:
            return ""
        return plan_change(self.before.plan, self.after.plan)

    @property
    def change(self) -> float | None:
        if self.before is None or self.after is None or self.before.ms <= 0:
            return None
        return self.after.ms / self.before.ms - 1

    def explanation(self) -> str:
        """Why it is slower, in one line: the plan change, or where the CPU went."""
        if self.plan_diff:
            return f"plan: {self.plan_diff}"
        work = _blocks(self.before, self.after)
        # Production's own queries come without plans: their counters say nothing of one.
        planned = all(s is not None and s.plan is not None for s in (self.before, self.after))
        if work and not _same_work(self.before, self.after):
            return f"{'same plan, ' if planned else ''}more work: {work}"
        return CPU if planned else SAME_WORK

    def cpu_lines(self) -> list[str]:
        """Triggers, functions and JIT that took more time after, from the breakdown runs."""
        if self.breakdown is None:
            return []
        before, after = self.breakdown
        lines = []
        if after is not None:
            for name, ms in sorted(after.triggers.items(), key=lambda kv: -kv[1]):
                was = before.triggers.get(name) if before is not None else None
                lines.append(f"trigger {name}: {_was(was)}{ms:.3f} ms per run")
            for name, ms in sorted(after.functions.items(), key=lambda kv: -kv[1]):
                was = before.functions.get(name) if before is not None else None
                lines.append(f"function {name}: {_was(was)}{ms:.3f} ms per run")
            if after.jit_ms:
                was = before.jit_ms if before is not None else None
                lines.append(f"JIT compilation: {_was(was)}{after.jit_ms:.3f} ms per run")
        return lines[:6]

    def figures(
        self, sides: tuple[str, str] = ("before", "after"), count: str = "runs"
    ) -> dict[str, str | int | float]:
        """The figures in JUnit; ``sides`` and ``count`` name the two windows and what was
        counted in them (the watch: ``baseline``/``period``, ``calls``)."""
        out: dict[str, str | int | float] = {"query": " ".join(self.sql.split())[:300]}
        for name, side in zip(sides, (self.before, self.after), strict=True):
            if side is not None:
                out[f"{name}_ms"] = round(side.ms, 4)
                out[f"{name}_{count}"] = side.runs
                if side.blocks is not None:
                    out[f"{name}_blocks_per_call"] = round(side.blocks, 2)
        if self.ratio is not None:
            out["ratio"] = round(self.ratio.estimate, 4)
            out["ratio_lower_bound"] = round(self.ratio.lower, 4)
        if self.method:
            out["method"] = self.method
        if self.seconds:
            out["seconds"] = round(self.seconds, 3)
        if self.plan_diff:
            out["plan_change"] = self.plan_diff
        out["verdict"] = self.verdict.value
        out["summary"] = self.reason
        return out


def _was(value: float | None) -> str:
    return f"{value:.3f} → " if value is not None else "new, "


def _blocks(before: Summary | None, after: Summary | None) -> str:
    if before is None or after is None or before.blocks is None or after.blocks is None:
        return ""
    return f"{before.blocks:.0f} → {after.blocks:.0f} blocks per call"


def _same_work(before: Summary | None, after: Summary | None) -> bool:
    """Blocks within the allowance of each other (or one block): bloat-level, not new work."""
    if before is None or after is None or before.blocks is None or after.blocks is None:
        return True
    return after.blocks - before.blocks < 1 or after.blocks <= before.blocks * 1.2


def _summarise(runs: Sequence[Run]) -> Summary | None:
    """Medians of one side's runs; the plan of its last (the plans of a side agree)."""
    if not runs:
        return None
    return Summary(
        statistics.median(r.ms for r in runs),
        len(runs),
        statistics.median(r.blocks for r in runs),
        list(runs[-1].plan),
    )


def judge_workload(
    measured: Measured,
    before_alone: Measured | None,
    limits: Thresholds,
) -> Comparison:
    """A workload query measured side by side (``measured`` has both sides), or one phase after
    the other (``before_alone`` has the before phase's runs)."""
    query = measured.query
    before_runs = before_alone.before if before_alone is not None else measured.before
    key = f"workload:{query.label}"
    seconds = measured.seconds + (before_alone.seconds if before_alone is not None else 0.0)

    def comparison(verdict: Verdict, reason: str, **extra: object) -> Comparison:
        before, after = _summarise(before_runs), _summarise(measured.after)
        return Comparison(
            key,
            query.label,
            "workload",
            query.sql,
            before,
            after,
            verdict,
            reason,
            seconds=seconds,
            **extra,  # type: ignore[arg-type]
        )

    for failure in (
        before_alone.failure if before_alone is not None else None,
        measured.failure,
    ):
        if failure is None:
            continue
        if failure.side == "after":
            return comparison(
                Verdict.FAILS_AFTER,
                f"fails after the migrations: {failure.message}\n  what to do: the release "
                "breaks a query the application runs: fix the migration (or, if the application "
                "changes with it, the workload file)",
            )
        return comparison(
            Verdict.FAILS_BEFORE,
            f"fails on the un-migrated schema: {failure.message}\n  what to do: fix the "
            "query in the workload file; a workload query must run on the schema before and "
            "after the release",
        )
    too_slow = measured.too_slow or (before_alone.too_slow if before_alone else None)
    if too_slow is not None:
        return comparison(Verdict.NOT_JUDGED, f"not measured within the budget: {too_slow}")
    a = [r.ms for r in before_runs]
    b = [r.ms for r in measured.after]
    if before_alone is None:
        ratio, method = paired(a, b), "side by side"
    else:
        ratio, method = independent(a, b), "one phase after the other"
    result = comparison(Verdict.OK, "", ratio=ratio, method=method)
    assert result.before is not None and result.after is not None
    rounds = f"{len(b)} rounds {method}"
    timing = (
        f"{result.before.ms:.3f} → {result.after.ms:.3f} ms ({ratio.percent()}, "
        f"at least {ratio.percent(ratio.lower)} with 95 % confidence; {rounds})"
    )
    return _settle(result, timing, limits)


def judge_tests(
    text: str,
    before: QueryStats | None,
    after: QueryStats | None,
    plans: tuple[list[str] | None, list[str] | None],
    limits: Thresholds,
    method: str = "the tests' own calls, one phase after the other",
    windows: tuple[str, str] = ("before the migrations", "after the migrations"),
    typical: Callable[[QueryStats, QueryStats], bool] | None = None,
) -> Comparison:
    """A query from pg_stat_statements' windows: one the project's tests ran on staging, or
    one production ran (the watch, with its own ``method`` and names for the ``windows``)."""
    sides = [
        Summary(s.mean_ms, s.calls, s.blocks_per_call, plan) if s is not None else None
        for s, plan in zip((before, after), plans, strict=True)
    ]
    shown = next((s.text for s in (before, after) if s is not None), text)

    def comparison(verdict: Verdict, reason: str, **extra: object) -> Comparison:
        return Comparison(
            f"tests:{text}",
            text,
            "tests",
            shown,
            sides[0],
            sides[1],
            verdict,
            reason,
            **extra,  # type: ignore[arg-type]
        )

    if before is None and after is None:
        return comparison(
            Verdict.NOT_JUDGED, f"not run {windows[0]} nor {windows[1]}: nothing to judge"
        )
    if before is None or after is None:
        side = windows[1] if before is None else windows[0]
        return comparison(Verdict.NOT_JUDGED, f"seen only {side}: reported, not judged")
    if min(before.calls, after.calls) < MIN_TEST_CALLS:
        return comparison(
            Verdict.NOT_JUDGED,
            f"{before.mean_ms:.3f} → {after.mean_ms:.3f} ms; called {before.calls} time(s) "
            f"{windows[0]} and {after.calls} {windows[1]}, {MIN_TEST_CALLS} on each side needed "
            "to judge: reported, not judged",
        )
    ratio = from_summaries(
        before.mean_ms, before.stddev_ms, before.calls, after.mean_ms, after.stddev_ms, after.calls
    )
    is_typical = typical if typical is not None else within_a_deviation
    result = comparison(Verdict.OK, "", method=method, ratio=ratio)
    timing = (
        f"{before.mean_ms:.3f} → {after.mean_ms:.3f} ms mean ({ratio.percent()}, at least "
        f"{ratio.percent(ratio.lower)} with 95 % confidence; {before.calls} and {after.calls} "
        "calls)"
    )
    outlier = (
        ""
        if is_typical(before, after)
        else f"a few slow calls, not the query (after: {after.mean_ms:.3f} ± "
        f"{after.stddev_ms:.3f} ms, before: {before.mean_ms:.3f} ± {before.stddev_ms:.3f} ms)"
    )
    return _settle(result, timing, limits, outlier)


def within_a_deviation(before: QueryStats, after: QueryStats) -> bool:
    """Whether the query itself got slower, not a few of its calls, judged from a handful of
    calls (the project's tests): the counters hold a mean and a spread, not the calls, and one
    call that waited on the machine (a checkpoint, another process) lifts the mean of ten. A
    median lies within one standard deviation of the mean, so only when the calls after, one
    deviation down, are still slower than the calls before, one deviation up, did it."""
    return after.mean_ms - after.stddev_ms > before.mean_ms + before.stddev_ms


# The slowdown must be carried by at least this share of the calls since (and at least
# MIN_TEST_CALLS of them) to be the query's own.
SPREAD_SHARE = 0.05


def spread_over_many_calls(before: QueryStats, after: QueryStats) -> bool:
    """The same question for hundreds of production calls, where a real slowdown of half
    again is well inside one deviation of a skewed query's times: could a few calls carry the
    whole excess? Excess time packed into ``m`` of ``n`` calls needs a variance of about
    ``n·Δ²/m``, so the variance seen bounds ``m`` from below; one call that waited a second
    among three hundred of half a millisecond shows as ``m`` of one."""
    excess = after.mean_ms - before.mean_ms
    if excess <= 0:
        return False
    variance = max(after.stddev_ms**2, 1e-12)
    carriers = after.calls * excess**2 / variance
    return carriers >= max(MIN_TEST_CALLS, SPREAD_SHARE * after.calls)


def _settle(result: Comparison, timing: str, limits: Thresholds, outlier: str = "") -> Comparison:
    """The verdict from the ratio's bound and the floor, and the reason that says so;
    ``outlier`` says why a slowdown the bound shows is not the query's own."""
    assert result.ratio is not None and result.before is not None and result.after is not None
    beyond = (
        result.ratio.lower > 1 + limits.max_regression
        and result.after.ms - result.before.ms > limits.floor_ms
    )
    slower = beyond and not outlier
    result.verdict = Verdict.REGRESSED if slower else Verdict.OK
    result.timing = timing
    if beyond and outlier:
        result.reason = f"{timing}: {outlier}: not counted"
    else:
        result.reason = _reason(result, timing, slower, limits)
    return result


def confirm(first: Comparison, second: Comparison) -> Comparison:
    """A slowdown measured side by side counts only when a second measurement, with the rounds
    in a new random order, shows it too; the verdict is the second's, saying what the first
    found."""
    if second.regressed:
        second.reason += f"; confirmed by a second measurement (the first: {first.timing})"
    else:
        second.reason = (
            f"{second.reason}; a first measurement had it slower ({first.timing}), this one "
            "did not confirm it: not counted"
        )
    return second


def _reason(result: Comparison, timing: str, slower: bool, limits: Thresholds) -> str:
    work = _blocks(result.before, result.after)
    if slower:
        return f"{timing}; {result.explanation()}" + (
            f" ({work})" if work and result.plan_diff else ""
        )
    allowance = f"{limits.max_regression * 100:.0f} %"
    if result.ratio is not None and result.ratio.estimate > 1 + limits.max_regression:
        return (
            f"{timing}: not beyond the allowed {allowance} with confidence, or under "
            f"{limits.floor_ms:g} ms: not counted" + (f"; {work}" if work else "")
        )
    return f"{timing}" + (f"; {work}" if work else "")
