"""The watch's verdicts: each query and each error signal, the period since the deploy against
the baseline window before it.

Production cannot be measured side by side, so the windows are all there is. A query is judged
as the staging gate judges the project's own test queries (see
:func:`pytest_dbgate.performance.verdicts.judge_tests`): the one-sided 95 % lower bound of the
ratio of mean times above the allowed regression, by more than the floor, and typical of its
calls rather than a few slow ones. A signal (rollbacks, deadlocks, temporary files) is a count
of events per transaction; it got worse when the lower bound of the ratio of rates is above the
allowed regression *and* the period has more events than the baseline rate predicts by the
signal's own floor (:class:`Signal`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pytest_dbgate.core.record import RecordedQuery
from pytest_dbgate.performance.confidence import Z_ONE_SIDED, Ratio
from pytest_dbgate.performance.stats import Counter, QueryStats, short_text
from pytest_dbgate.performance.verdicts import (
    Comparison,
    Thresholds,
    Verdict,
    judge_tests,
    spread_over_many_calls,
)
from pytest_dbgate.watch.reading import DatabaseCounters, Reading

METHOD = "production's own calls: the baseline window before the deploy, the period since"


@dataclass(frozen=True)
class WatchedQuery:
    """One query, the baseline window and the period since the deploy, and the verdict."""

    key: str
    label: str
    why: str  # "measured by the staging gate" or "production's top queries, #3"
    staging: RecordedQuery | None
    comparison: Comparison
    baseline: QueryStats | None = None
    period: QueryStats | None = None

    def prediction(self) -> str:
        """``staging: +3 %; production: +48 %``: what staging foretold, beside what happened."""
        production = self.comparison.change
        seen = f"production: {_percent(production)}" if production is not None else ""
        if self.staging is None:
            return seen
        foretold = (
            f"staging: {_percent(self.staging.change)}"
            if self.staging.change is not None
            else f"staging: {self.staging.before_ms:.3f} → {self.staging.after_ms:.3f} ms"
        )
        return f"{foretold}; {seen}" if seen else foretold


def _percent(change: float | None) -> str:
    return "unknown" if change is None else f"{round(change * 100):+d} %"


def _merged(entries: Iterable[tuple[str, Counter]]) -> dict[str, Counter]:
    merged: dict[str, Counter] = {}
    for key, counter in entries:
        merged[key] = merged[key].plus(counter) if key in merged else counter
    return merged


def period_counters(after: Reading, now: Reading) -> tuple[dict[str, Counter], dict[str, str]]:
    """What each query did since ``after`` (the deploy's second reading), by key; and the keys
    whose period cannot be told, with why.

    Running totals subtract only while the entry lived through the period. After
    ``pg_stat_statements_reset()`` every entry started again after the deploy: what it holds is
    the period. An entry evicted and made again (``pg_stat_statements.max`` reached) holds only
    what ran since it was made: PostgreSQL 17 says when that was; before 17 it cannot be told,
    so while evictions happened no entry's period is trusted.
    """
    was, then = after.statements, now.statements
    reset = was is not None and then is not None and was.reset != then.reset
    evicted = not reset and was is not None and then is not None and then.dealloc > was.dealloc
    start = {} if reset else after.by_id()
    deployed = _time(after.taken_at)
    uncertain: dict[str, str] = {}
    pairs: list[tuple[str, Counter]] = []
    for e in now.entries:
        earlier = start.get((e.userid, e.queryid))
        made = _time(e.since) if e.since else None
        if made is not None and deployed is not None and made > deployed:
            earlier = None  # made since the deploy: all it holds is the period's
        elif evicted and made is None and was is not None and then is not None:
            uncertain[e.key] = (
                f"pg_stat_statements evicted {then.dealloc - was.dealloc:,} entries since the "
                "deploy (pg_stat_statements.max is too small for every query), and this "
                "server does not say which were made again: not judged; raise "
                "pg_stat_statements.max"
            )
        pairs.append((e.key, e.counter.minus(earlier.counter if earlier else None)))
    return _merged(pairs), uncertain


def _time(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        return None


def baseline_counters(before: Reading) -> dict[str, Counter]:
    """What each query did in the baseline window (from the last reset to the deploy)."""
    return _merged((e.key, e.counter) for e in before.entries)


def texts(now: Reading) -> dict[str, str]:
    """A readable text per key, from what pg_stat_statements holds now."""
    found: dict[str, str] = {}
    for e in now.entries:
        if e.counter.text and e.key not in found:
            found[e.key] = e.counter.text
    return found


def judge_queries(
    before: Reading,
    after: Reading,
    now: Reading,
    staging: tuple[RecordedQuery, ...],
    top: int,
    limits: Thresholds,
) -> list[WatchedQuery]:
    """Every query the staging gate measured, then production's ``top`` queries by execution
    time since the deploy, each judged once."""
    baseline = baseline_counters(before)
    period, uncertain = period_counters(after, now)
    text_of = texts(now)
    chosen: dict[str, tuple[str, str, RecordedQuery | None]] = {}
    for query in staging:
        chosen.setdefault(query.key, (query.label, "measured by the staging gate", query))
    busiest = sorted(
        (k for k, c in period.items() if c.calls > 0), key=lambda k: -period[k].total_ms
    )
    for rank, key in enumerate(busiest[:top], start=1):
        chosen.setdefault(
            key, (short_text(text_of.get(key, key), 60), f"production's top queries, #{rank}", None)
        )
    watched: list[WatchedQuery] = []
    labels: set[str] = set()
    for key, (named, why, recorded) in chosen.items():
        label = named.replace("::", ":")  # "::" separates the parts of a node id
        if label in labels:
            label = f"{label} #{key[:6]}"
        labels.add(label)
        text = text_of.get(key) or (recorded.text if recorded else key)
        was, since = _stats(baseline.get(key), text), _stats(period.get(key), text)
        if key in uncertain:
            reason = uncertain[key]
            comparison = Comparison(
                f"tests:{text}", text, "tests", text, None, None, Verdict.NOT_JUDGED, reason
            )
            watched.append(WatchedQuery(key, label, why, recorded, comparison, was, since))
            continue
        comparison = judge_tests(
            text,
            was,
            since,
            (None, None),
            limits,
            method=METHOD,
            windows=("in the baseline window", "since the deploy"),
            typical=spread_over_many_calls,
        )
        watched.append(WatchedQuery(key, label, why, recorded, comparison, was, since))
    return watched


def _stats(counter: Counter | None, text: str) -> QueryStats | None:
    if counter is None or counter.calls <= 0:
        return None
    return QueryStats.of(dataclasses.replace(counter, text=text))


# -- signals ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signal:
    """An error or slow-query signal PostgreSQL counts per database."""

    name: str
    what: str  # "rolled-back transactions"
    # Events beyond what the baseline rate predicts before it can fail, and as a share of the
    # period's transactions: one deadlock more in a quiet week is news, not a verdict.
    min_excess: int = 3
    min_share: float = 0.0
    judged: str = ""  # why it is reported, not judged; "" when it is judged

    def count(self, counters: DatabaseCounters) -> int:
        return int(getattr(counters, self.name))


SIGNALS = (
    Signal(
        "xact_rollback",
        "rolled-back transactions",
        judged="reported, not judged: each staging run's pg_dump of production ends its "
        "sessions with rollbacks (a job per core, up to 9 a run), and many drivers roll back "
        "read-only transactions, so on a quiet production a few pull requests outnumber any "
        "error; deadlocks and temporary files are judged",
    ),
    Signal("deadlocks", "deadlocks"),
    Signal("temp_files", "temporary files (queries spilling to disk)"),
)


@dataclass(frozen=True)
class SignalVerdict:
    signal: Signal
    baseline_events: int
    baseline_transactions: int
    period_events: int
    period_transactions: int
    verdict: Verdict
    reason: str
    ratio: Ratio | None = None

    @property
    def worse(self) -> bool:
        return self.verdict is Verdict.REGRESSED

    def figures(self) -> dict[str, str | int | float]:
        out: dict[str, str | int | float] = {
            "baseline_events": self.baseline_events,
            "baseline_transactions": self.baseline_transactions,
            "period_events": self.period_events,
            "period_transactions": self.period_transactions,
            "verdict": self.verdict.value,
            "summary": self.reason,
        }
        if self.ratio is not None:
            out["ratio"] = round(self.ratio.estimate, 4)
            out["ratio_lower_bound"] = round(self.ratio.lower, 4)
        return out


def rate_ratio(k1: int, e1: int, k2: int, e2: int) -> Ratio:
    """The ratio of two event rates (``k`` events in ``e`` transactions) and its one-sided 95 %
    lower bound: Poisson counts, the log of the ratio normal with a half-event correction, so a
    window with no events still gives a finite, cautious bound."""
    r1, r2 = (k1 + 0.5) / e1, (k2 + 0.5) / e2
    se = math.sqrt(1 / (k1 + 0.5) + 1 / (k2 + 0.5))
    estimate = r2 / r1
    return Ratio(estimate, estimate * math.exp(-Z_ONE_SIDED * se), "ratio of rates per transaction")


def judge_signal(
    signal: Signal, baseline: DatabaseCounters, period: DatabaseCounters, limits: Thresholds
) -> SignalVerdict:
    k1, e1 = signal.count(baseline), baseline.transactions
    k2, e2 = signal.count(period), period.transactions
    figures = (k1, e1, k2, e2)
    if e1 == 0 or e2 == 0:
        side = "before the deploy" if e1 == 0 else "since the deploy"
        return SignalVerdict(
            signal, *figures, Verdict.NOT_JUDGED, f"no transactions {side}: not judged"
        )
    ratio = rate_ratio(k1, e1, k2, e2)
    expected = k1 / e1 * e2
    if signal.judged:
        rates = f"{k2:,} in {e2:,} transactions since the deploy, {k1:,} in {e1:,} before"
        return SignalVerdict(signal, *figures, Verdict.OK, f"{rates}: {signal.judged}", ratio)
    rates = (
        f"{k2:,} {signal.what} in {e2:,} transactions since the deploy, "
        f"{k1:,} in {e1:,} before ({_per(k2, e2)} vs {_per(k1, e1)})"
    )
    beyond = ratio.lower > 1 + limits.max_regression
    needed = max(signal.min_excess, signal.min_share * e2)
    excess = k2 - expected >= needed
    if beyond and excess:
        return SignalVerdict(
            signal,
            *figures,
            Verdict.REGRESSED,
            f"{rates}: {ratio.percent()}, at least {ratio.percent(ratio.lower)} with 95 % "
            "confidence",
            ratio,
        )
    note = ""
    if k2 <= expected:
        note = ""  # no more than the baseline rate predicts
    elif beyond:
        note = (
            f": {k2 - expected:.1f} more than the baseline rate predicts, {needed:,.0f} needed "
            "to count"
        )
    elif ratio.estimate > 1 + limits.max_regression:
        note = ": not beyond the allowance with confidence"
    return SignalVerdict(signal, *figures, Verdict.OK, rates + note, ratio)


def _per(events: int, transactions: int) -> str:
    return f"{events / transactions * 1000:.3g} per 1,000"
