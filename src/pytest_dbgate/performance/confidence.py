"""How sure the gate is that a query got slower: a one-sided confidence bound on the ratio of its
execution times after and before the migrations.

A point estimate flaps: on a busy machine one run in twenty shows a fast query 25 % slower by
chance. The verdict therefore asks for the *lower* bound of a confidence interval to be above the
allowed regression, so that chance alone fails a release at most once in twenty comparisons *and*
only when the chance slowdown is itself beyond the allowance, which for an unchanged release it
is practically never. A real slowdown of a few times the allowance clears the bound from a handful
of rounds, which is what lets a time budget decide the number of rounds.

Three shapes of data, three estimators:

* side by side (:func:`paired`): round *i* ran the query once on each database, moments apart,
  so the machine's noise of that moment falls on both; the per-round ratios carry the signal and
  their median (with a bootstrap over rounds) resists the odd round a neighbour disturbed;
* one phase after the other (:func:`independent`): no pairing to exploit; the ratio of the
  medians, each side bootstrapped on its own;
* only pg_stat_statements' means and deviations (:func:`from_summaries`, the project's own test
  queries, whose parameters are not known so they cannot be re-run): the ratio of means with the
  delta-method standard error of its logarithm.

The bootstrap uses a fixed seed: the same timings always give the same verdict and report.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95
RESAMPLES = 2000
# A bound from fewer rounds than this says nothing: with two rounds every resample is one of
# four, and a single disturbed round decides it.
MIN_ROUNDS = 3
Z_ONE_SIDED = 1.6449  # the standard normal's 95th percentile
# Execution times are reported to the microsecond; a zero would make a ratio infinite.
RESOLUTION_MS = 0.001
SEED = 20251130


@dataclass(frozen=True)
class Ratio:
    """After ÷ before: the estimate and its one-sided 95 % lower confidence bound."""

    estimate: float
    lower: float
    method: str  # how it was estimated, for the report

    def percent(self, value: float | None = None) -> str:
        change = round(((self.estimate if value is None else value) - 1) * 100)
        return f"{change:+d} %"


def _floor(values: Sequence[float]) -> list[float]:
    return [max(v, RESOLUTION_MS) for v in values]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def paired(before: Sequence[float], after: Sequence[float]) -> Ratio:
    """Median of the per-round ratios ``after[i] / before[i]``, bootstrapped over rounds."""
    if len(before) != len(after) or len(before) < MIN_ROUNDS:
        raise ValueError(f"paired needs at least {MIN_ROUNDS} rounds of both sides")
    logs = [math.log(b / a) for a, b in zip(_floor(before), _floor(after), strict=True)]
    rng = random.Random(SEED)
    n = len(logs)
    resampled = [statistics.median(rng.choices(logs, k=n)) for _ in range(RESAMPLES)]
    return Ratio(
        math.exp(statistics.median(logs)),
        math.exp(_percentile(resampled, 1 - CONFIDENCE)),
        "median of per-round ratios, side by side",
    )


def independent(before: Sequence[float], after: Sequence[float]) -> Ratio:
    """Ratio of the medians of two independent samples, each bootstrapped on its own."""
    if len(before) < MIN_ROUNDS or len(after) < MIN_ROUNDS:
        raise ValueError(f"independent needs at least {MIN_ROUNDS} runs of each side")
    a, b = _floor(before), _floor(after)
    rng = random.Random(SEED)
    resampled = [
        math.log(
            statistics.median(rng.choices(b, k=len(b)))
            / statistics.median(rng.choices(a, k=len(a)))
        )
        for _ in range(RESAMPLES)
    ]
    return Ratio(
        statistics.median(b) / statistics.median(a),
        math.exp(_percentile(resampled, 1 - CONFIDENCE)),
        "ratio of medians, one phase after the other",
    )


def from_summaries(
    mean_before: float,
    sd_before: float,
    calls_before: int,
    mean_after: float,
    sd_after: float,
    calls_after: int,
) -> Ratio:
    """Ratio of means from pg_stat_statements' counters: log-normal approximation."""
    if min(calls_before, calls_after) < MIN_ROUNDS:
        raise ValueError(f"from_summaries needs at least {MIN_ROUNDS} calls of each side")
    a, b = max(mean_before, RESOLUTION_MS), max(mean_after, RESOLUTION_MS)
    se = math.sqrt((sd_before / a) ** 2 / calls_before + (sd_after / b) ** 2 / calls_after)
    ratio = b / a
    return Ratio(ratio, ratio * math.exp(-Z_ONE_SIDED * se), "ratio of means")
