"""The verdict's rules and the bookkeeping behind them, on numbers chosen to sit at each edge."""

from __future__ import annotations

import math

import pytest

from pytest_dbgate.stats import (
    Counter,
    QueryStats,
    Thresholds,
    find_measured,
    is_application_query,
    judge,
    normalise,
    plan_change,
    window,
)

LIMITS = Thresholds(max_regression=0.2, floor_ms=0.1)
INDEX_PLAN = ["Index Scan using t_a_idx on t"]
SEQ_PLAN = ["Seq Scan on t"]


def stats(mean: float, blocks: float, stddev: float = 0.05, calls: int = 30) -> QueryStats:
    return QueryStats("SELECT * FROM t WHERE a = $1", calls, mean, stddev, 1.0, blocks, 0.0)


def test_normalise_matches_the_same_query_written_differently() -> None:
    a = "SELECT id  FROM recipes -- find\n WHERE title ILIKE $1"
    b = "select id from recipes where title ilike $1;"
    assert normalise(a) == normalise(b)


@pytest.mark.parametrize(
    ("text", "counted"),
    [
        ("SELECT 1", True),
        ("with x as (select 1) select * from x", True),
        ("UPDATE t SET a = $1", True),
        ("BEGIN", False),
        ("SET search_path = public", False),
        ("SELECT /* dbgate */ queryid FROM pg_stat_statements", False),
        ("EXPLAIN SELECT 1", False),
    ],
)
def test_only_application_data_queries_are_measured(text: str, counted: bool) -> None:
    assert is_application_query(text) is counted


def test_a_window_subtracts_counters_and_rebuilds_the_spread() -> None:
    # 10 calls of 1 ms, then 10 more of 3 ms: the window holds only the last 10.
    first = Counter("SELECT 1", 10, 10.0, 10 * 1.0, 10, 100, 0)
    both = Counter("SELECT 1", 20, 40.0, 10 * 1.0 + 10 * 9.0, 20, 300, 20)
    measured = window({(1, 7): first}, {(1, 7): both})
    (entry,) = measured.values()
    assert entry.calls == 10
    assert entry.mean_ms == pytest.approx(3.0)
    assert entry.stddev_ms == pytest.approx(0.0, abs=1e-9)
    assert entry.blocks_per_call == pytest.approx(22.0)


def test_a_window_merges_entries_of_the_same_text() -> None:
    end = {
        (1, 1): Counter("SELECT a FROM t WHERE b = $1", 4, 4.0, 4.0, 4, 8, 0),
        (2, 9): Counter("select a from t where b = $1", 4, 12.0, 36.0, 4, 8, 0),
    }
    (entry,) = window({}, end).values()
    assert entry.calls == 8
    assert entry.mean_ms == pytest.approx(2.0)
    assert entry.stddev_ms == pytest.approx(1.0)


def test_slower_with_the_same_work_is_noise() -> None:
    verdict = judge(
        "k", "q", "workload", "", stats(1.0, 50), stats(2.0, 50), (INDEX_PLAN, INDEX_PLAN), LIMITS
    )
    assert not verdict.regressed
    assert "not counted" in verdict.reason


def test_bloat_that_doubles_the_blocks_with_the_same_plan_is_not_a_regression() -> None:
    verdict = judge(
        "k", "q", "workload", "", stats(2.0, 42), stats(2.6, 85), (INDEX_PLAN, INDEX_PLAN), LIMITS
    )
    assert not verdict.regressed


def test_a_new_plan_that_does_more_work_and_is_slower_regresses() -> None:
    verdict = judge(
        "k", "q", "workload", "", stats(0.1, 4), stats(12.0, 900), (INDEX_PLAN, SEQ_PLAN), LIMITS
    )
    assert verdict.regressed
    assert verdict.plan_diff == "Index Scan using t_a_idx on t → Seq Scan on t"
    assert verdict.figures()["ratio"] == pytest.approx(120.0)


def test_many_more_blocks_regress_even_without_a_known_plan() -> None:
    verdict = judge("k", "q", "tests", "", stats(1.0, 10), stats(5.0, 400), (None, None), LIMITS)
    assert verdict.regressed


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (stats(0.02, 4), stats(0.09, 900)),  # slower, more work, but under the 0.1 ms floor
        (stats(1.0, 4, stddev=5.0, calls=3), stats(2.0, 900, stddev=5.0, calls=3)),  # within 3 SE
        (stats(1.0, 4), stats(1.15, 900)),  # more work but only 15 % slower
    ],
)
def test_differences_within_the_noise_or_the_allowance_pass(
    before: QueryStats, after: QueryStats
) -> None:
    assert not judge("k", "q", "tests", "", before, after, (INDEX_PLAN, SEQ_PLAN), LIMITS).regressed


def test_queries_seen_on_one_side_are_reported_not_judged() -> None:
    verdict = judge("k", "q", "tests", "", None, stats(1.0, 1), (None, None), LIMITS)
    assert not verdict.regressed
    assert verdict.verdict == "new (after only)"
    assert math.isnan(float("nan"))  # the figures of a one-sided query carry no ratio
    assert "ratio" not in verdict.figures()


def test_plan_change_names_what_went_and_what_came() -> None:
    assert plan_change(INDEX_PLAN, INDEX_PLAN) == ""
    assert plan_change(None, SEQ_PLAN) == ""
    assert plan_change(["A", "B"], ["B", "C"]) == "A → C"


def test_a_workload_query_is_found_by_shape() -> None:
    measured = {normalise("SELECT id FROM t WHERE a = $1 AND b = $2"): stats(1.0, 1)}
    assert find_measured(measured, "select id from t where a = 42 and b = 'x'") is not None
    assert find_measured(measured, "select id from t where a = 42") is None
