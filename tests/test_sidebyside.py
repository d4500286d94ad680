"""The workload loop's budget and alternation, on a simulated clock: every run costs what the
fake query says it does, so how many rounds fit is exact and no test waits."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
import pytest

from pytest_dbgate.performance import sidebyside
from pytest_dbgate.performance.sidebyside import Budget, Side, measure
from pytest_dbgate.performance.timing import Run
from pytest_dbgate.performance.workload import WorkloadQuery


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeConn:
    """A database where each query costs a fixed number of seconds of the fake clock."""

    name: str
    clock: Clock
    cost: dict[str, float]
    fails: set[str] = field(default_factory=set)
    log: list[tuple[str, str]] = field(default_factory=list)

    def execute(self, text: str) -> None:
        self.log.append((self.name, text))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()

    def run_once(conn: FakeConn, text: str) -> Run:
        if text in conn.fails:
            raise psycopg.errors.UndefinedColumn(f'column "x" does not exist ({text})')
        if conn.cost[text] > 1000:
            raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
        clock.now += conn.cost[text]
        conn.log.append((conn.name, text))
        return Run(conn.cost[text] * 1000, 1, ())

    monkeypatch.setattr(sidebyside, "run_once", run_once)
    return clock


def q(label: str) -> WorkloadQuery:
    return WorkloadQuery(label, label, 1)


def sides(clock: Clock, cost: dict[str, float], **kw: set[str]) -> list[Side]:
    return [
        Side("before", FakeConn("before", clock, cost)),  # type: ignore[arg-type]
        Side("after", FakeConn("after", clock, cost, **kw)),  # type: ignore[arg-type]
    ]


def test_a_slow_query_gets_few_rounds_and_the_phase_stays_within_its_budget(clock: Clock) -> None:
    # The case: a 0.5 s query used to cost 33 runs per phase. Here a round (both sides)
    # costs 1 s, the budget is 10 s, and fast queries share it.
    cost = {"slow": 0.5, "fast1": 0.001, "fast2": 0.002}
    budget = Budget(10, clock=clock)
    done = measure(sides(clock, cost), [q("slow"), q("fast1"), q("fast2")], budget, 30, print)
    assert budget.spent() <= 10
    assert 3 <= done["slow"].rounds < 5
    assert done["fast1"].rounds == done["fast2"].rounds == 30


def test_a_fast_query_gets_at_most_the_configured_rounds(clock: Clock) -> None:
    done = measure(sides(clock, {"a": 0.001}), [q("a")], Budget(60, clock=clock), 12, print)
    assert done["a"].rounds == 12
    assert len(done["a"].before) == len(done["a"].after) == 12


def test_order_within_rounds_varies(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    shared: list[str] = []
    cost = {"a": 0.001}

    def run_once(conn: FakeConn, text: str) -> Run:
        shared.append(conn.name)
        clock.now += 0.001
        return Run(1.0, 1, ())

    monkeypatch.setattr(sidebyside, "run_once", run_once)
    measure(sides(clock, cost), [q("a")], Budget(60, clock=clock), 30, print)
    rounds = [tuple(shared[i : i + 2]) for i in range(0, len(shared), 2)]
    assert all(sorted(r) == ["after", "before"] for r in rounds), "each round runs both sides"
    assert {("before", "after"), ("after", "before")} <= set(rounds), "the order is drawn"


def test_a_query_that_cannot_get_three_rounds_says_how_large_a_budget_it_needs(
    clock: Clock,
) -> None:
    budget = Budget(10, clock=clock)
    done = measure(sides(clock, {"huge": 3.0}), [q("huge")], budget, 30, print)
    assert done["huge"].rounds == 0
    assert done["huge"].too_slow is not None
    assert "raise dbgate_perf_budget to at least" in done["huge"].too_slow
    assert budget.spent() <= 10 + 6  # the warm-up round that found it out, and no more


def test_a_run_longer_than_the_whole_budget_is_cancelled_by_the_timeout(clock: Clock) -> None:
    done = measure(sides(clock, {"hang": 5000.0}), [q("hang")], Budget(30, clock=clock), 30, print)
    assert done["hang"].too_slow is not None
    assert "longer than the whole budget (30s)" in done["hang"].too_slow


def test_every_session_gets_a_statement_timeout_of_the_budget(clock: Clock) -> None:
    both = sides(clock, {"a": 0.001})
    measure(both, [q("a")], Budget(30, clock=clock), 3, print)
    for side in both:
        log = side.conn.log  # type: ignore[attr-defined]
        assert (side.name, "SET statement_timeout = 30000") in log


def test_a_failure_on_one_side_stops_that_query_only(clock: Clock) -> None:
    cost = {"broken": 0.001, "fine": 0.001}
    done = measure(
        sides(clock, cost, fails={"broken"}),
        [q("broken"), q("fine")],
        Budget(60, clock=clock),
        10,
        print,
    )
    assert done["broken"].failure is not None
    assert done["broken"].failure.side == "after"
    assert "does not exist" in done["broken"].failure.message
    assert done["fine"].rounds == 10
