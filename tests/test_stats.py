"""pg_stat_statements' bookkeeping: normalised text, windows, plan changes."""

from __future__ import annotations

import pytest

from pytest_dbgate.performance.stats import (
    Counter,
    is_application_query,
    normalise,
    plan_change,
    window,
)

INDEX_PLAN = ["Index Scan using t_a_idx on t"]
SEQ_PLAN = ["Seq Scan on t"]


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


def test_plan_change_names_what_went_and_what_came() -> None:
    assert plan_change(INDEX_PLAN, INDEX_PLAN) == ""
    assert plan_change(None, SEQ_PLAN) == ""
    assert plan_change(["A", "B"], ["B", "C"]) == "A → C"


def test_an_entry_made_anew_during_a_window_counts_what_ran_since() -> None:
    # pg_stat_statements deallocated the entry (100 calls) and recreated it: 4 calls since.
    start = {(1, 7): Counter("SELECT 1", 100, 100.0, 100.0, 100, 100, 0)}
    end = {(1, 7): Counter("SELECT 1", 4, 8.0, 16.0, 4, 4, 0)}
    (entry,) = window(start, end).values()
    assert entry.calls == 4
    assert entry.mean_ms == 2.0
