"""Running the workload: side by side on the un-migrated copy and on staging, within a budget.

In the after phase each workload query runs alternately on both databases of the same server,
the order of the two drawn afresh each round, so whatever else the machine does at that moment
(another job, a checkpoint, a CPU's clock) falls on both sides alike and cancels in the per-round
ratio. Without an un-migrated copy
(see :mod:`pytest_dbgate.performance.reference`) the same loop runs on one
database in each phase, and the verdict says it was measured one phase after the other.

The number of rounds comes from a time budget per phase, the way pytest-benchmark calibrates: the
budget left is shared among the queries still to measure, two warm-up rounds time the query (and
bring its pages into memory), and as many rounds follow as fit in its share, at most
``dbgate_workload_runs``. A fast query gets many rounds, a slow one few; a query that cannot get
the rounds a verdict needs
(:data:`~pytest_dbgate.performance.confidence.MIN_ROUNDS`) even from the whole
budget left is not measured and says how large a budget it needs. Every session has a
``statement_timeout`` of the budget, so no single run can overrun it unboundedly either.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg

from pytest_dbgate.performance.confidence import MIN_ROUNDS
from pytest_dbgate.performance.timing import Run, run_once
from pytest_dbgate.performance.workload import WorkloadQuery
from pytest_dbgate.pg.connections import Conn

Clock = Callable[[], float]
WARM_UP_ROUNDS = 2
SLOW_S = 2.0  # a query measured for longer than this gets its own progress line


@dataclass
class Budget:
    """Seconds a phase may spend running the workload."""

    seconds: float
    clock: Clock = time.monotonic
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def spent(self) -> float:
        return self.clock() - self.started

    def left(self) -> float:
        return max(self.seconds - self.spent(), 0.0)


@dataclass(frozen=True)
class Failure:
    """A workload query that did not run on one side."""

    side: str  # "before" or "after"
    message: str


@dataclass
class Measured:
    """One query's runs in one phase: both sides side by side, or one side alone."""

    query: WorkloadQuery
    before: list[Run] = field(default_factory=list)
    after: list[Run] = field(default_factory=list)
    seconds: float = 0.0
    failure: Failure | None = None
    # Why it has fewer rounds than a verdict needs, when it does.
    too_slow: str | None = None

    @property
    def rounds(self) -> int:
        return max(len(self.before), len(self.after))


@dataclass(frozen=True)
class Side:
    """A database the workload runs on, named for the progress line and messages."""

    name: str  # "before" or "after"
    conn: Conn


def measure(
    sides: Sequence[Side],
    queries: Sequence[WorkloadQuery],
    budget: Budget,
    max_rounds: int,
    progress: Callable[[str], None],
) -> dict[str, Measured]:
    """Run every query on every side (one or two) within ``budget``; results by label."""
    for side in sides:
        side.conn.execute(f"SET statement_timeout = {max(int(budget.seconds * 1000), 1)}")
    results: dict[str, Measured] = {}
    order = random.Random()
    for index, query in enumerate(queries):
        share = budget.left() / (len(queries) - index)
        results[query.label] = _measure_one(sides, query, budget, share, max_rounds, order)
        done = results[query.label]
        if done.seconds >= SLOW_S or done.failure or done.too_slow:  # the rest fly by
            progress(
                f"  {query.label}: {done.rounds} round(s) in {done.seconds:.1f}s"
                + (f", fails {done.failure.side} the migrations" if done.failure else "")
                + (", not measured: too slow for the budget" if done.too_slow else "")
            )
    return results


def _measure_one(
    sides: Sequence[Side],
    query: WorkloadQuery,
    budget: Budget,
    share: float,
    max_rounds: int,
    order: random.Random,
) -> Measured:
    measured = Measured(query)
    started = budget.clock()
    try:
        per_round = _timed(budget.clock, lambda: _round(sides, query, measured, order, keep=False))
        rest = WARM_UP_ROUNDS - 1 + MIN_ROUNDS
        for _ in range(WARM_UP_ROUNDS - 1):
            if per_round * rest > budget.left():
                break
            # The later warm-up runs on warm caches: it says what a measured round costs.
            per_round = _timed(
                budget.clock, lambda: _round(sides, query, measured, order, keep=False)
            )
        rounds = min(max_rounds, math.floor(share / per_round) if per_round > 0 else max_rounds)
        if rounds < MIN_ROUNDS:
            # Borrow from the queries after it, but never past the phase's budget.
            rounds = min(MIN_ROUNDS, math.floor(budget.left() / per_round), max_rounds)
        if rounds < min(MIN_ROUNDS, max_rounds):
            measured.too_slow = _too_slow(per_round, budget)
            rounds = 0
        allowed = max(share, per_round * rounds)
        for done in range(rounds):
            if done >= MIN_ROUNDS and budget.clock() - started + per_round > allowed:
                break
            _round(sides, query, measured, order, keep=True)
    except _Failed as failed:
        if failed.timed_out:
            measured.too_slow = (
                f"one run took longer than the whole budget ({budget.seconds:g}s): raise "
                "dbgate_perf_budget, or take the query out of the workload"
            )
        else:
            measured.failure = failed.failure
    measured.seconds = budget.clock() - started
    return measured


def _timed(clock: Clock, action: Callable[[], None]) -> float:
    started = clock()
    action()
    return clock() - started


def _too_slow(per_round: float, budget: Budget) -> str:
    needed = budget.spent() + per_round * MIN_ROUNDS
    return (
        f"one round takes {per_round:.1f}s and {MIN_ROUNDS} are needed: raise "
        f"dbgate_perf_budget to at least {math.ceil(needed)} seconds, or take the query out "
        "of the workload"
    )


class _Failed(Exception):
    def __init__(self, failure: Failure, timed_out: bool) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.timed_out = timed_out


def _round(
    sides: Sequence[Side],
    query: WorkloadQuery,
    measured: Measured,
    order: random.Random,
    keep: bool,
) -> None:
    shuffled = list(sides)
    order.shuffle(shuffled)
    for side in shuffled:
        try:
            run = run_once(side.conn, query.sql)
        except psycopg.errors.QueryCanceled as exc:
            raise _Failed(Failure(side.name, _first_line(exc)), timed_out=True) from None
        except psycopg.Error as exc:
            raise _Failed(Failure(side.name, _first_line(exc)), timed_out=False) from None
        if keep:
            (measured.before if side.name == "before" else measured.after).append(run)


def _first_line(exc: psycopg.Error) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
