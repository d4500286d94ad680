"""The watch's judgement without a server: windows of production counters, error signals, the
watch record and what lets a held-back migration go."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pytest_dbgate.core.record import RecordedQuery
from pytest_dbgate.performance.stats import Counter, is_application_query, query_key
from pytest_dbgate.performance.verdicts import Thresholds, Verdict
from pytest_dbgate.watch.deploys import Deploy
from pytest_dbgate.watch.eligibility import metrics_release
from pytest_dbgate.watch.judge import SIGNALS, judge_queries, judge_signal, rate_ratio
from pytest_dbgate.watch.reading import (
    CATALOG,
    DatabaseCounters,
    Entry,
    Reading,
    Statements,
    housekeeping,
)
from pytest_dbgate.watch.record import WatchRecord, load_watch

LIMITS = Thresholds(0.2, 0.1)
COOK = "SELECT id, title FROM recipes WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2"
LATEST = "SELECT id, title FROM recipes ORDER BY created_at DESC LIMIT $1"


def calls(rng: random.Random, n: int, median_ms: float, spread: float = 0.3) -> Counter:
    """``n`` calls of a query whose times are log-normal around ``median_ms``."""
    times = [median_ms * math.exp(rng.gauss(0, spread)) for _ in range(n)]
    return Counter("", n, sum(times), sum(t * t for t in times), n * 20, n * 22, 0)


def db(
    transactions: int, rollbacks: int = 0, deadlocks: int = 0, temp: int = 0
) -> DatabaseCounters:
    return DatabaseCounters(transactions - rollbacks, rollbacks, deadlocks, temp, temp * 8192, None)


def reading(
    entries: dict[tuple[int, str], Counter], database: DatabaseCounters | None = None
) -> Reading:
    """A reading holding ``entries`` by (query id, text)."""
    return Reading(
        "2026-11-30T12:00:00+00:00",
        database or db(1000),
        tuple(
            Entry(10, queryid, query_key(text), dataclasses.replace(c, text=text))
            for (queryid, text), c in entries.items()
        ),
    )


def windows(
    baseline: dict[tuple[int, str], Counter], period: dict[tuple[int, str], Counter]
) -> tuple[Reading, Reading, Reading]:
    """The deploy's two readings (nothing ran between them) and the watch's, ``period`` on top."""
    now = dict(baseline)
    for key, counter in period.items():
        now[key] = now[key].plus(counter) if key in now else counter
    return reading(baseline), reading(baseline), reading(now)


def recorded(text: str, label: str, change: float | None = 0.03) -> RecordedQuery:
    return RecordedQuery(query_key(text), label, "workload", text, 0.5, 0.515, change)


# -- queries ---------------------------------------------------------------------------------


def test_a_flat_query_passes_and_a_slower_one_fails_with_staging_beside_it() -> None:
    rng = random.Random(1)
    before, after, now = windows(
        {(1, COOK): calls(rng, 2000, 0.5), (2, LATEST): calls(rng, 2000, 0.2)},
        {(1, COOK): calls(rng, 300, 0.74), (2, LATEST): calls(rng, 300, 0.2)},
    )
    staged = (
        recorded(
            "SELECT id, title FROM recipes WHERE user_id = 42 ORDER BY created_at DESC LIMIT 20",
            "recipes_of_a_cook",
        ),
    )
    found = {q.label: q for q in judge_queries(before, after, now, staged, 10, LIMITS)}
    cook = found["recipes_of_a_cook"]  # the workload's literal query, found by fingerprint
    assert cook.comparison.verdict is Verdict.REGRESSED
    assert cook.prediction().startswith("staging: +3 %; production: +4")
    assert cook.why == "measured by the staging gate"
    latest = next(q for q in found.values() if q.key == query_key(LATEST))
    assert latest.comparison.verdict is Verdict.OK
    assert latest.why == "production's top queries, #2"
    assert latest.period is not None and latest.period.calls == 300


def test_unchanged_production_never_fails_across_many_noisy_windows() -> None:
    """Same distribution before and after, 200 times over: no false alarm."""
    alarms = 0
    for seed in range(200):
        rng = random.Random(seed)
        before, after, now = windows(
            {(1, COOK): calls(rng, 1000, 0.5, 0.6)}, {(1, COOK): calls(rng, 100, 0.5, 0.6)}
        )
        (only,) = judge_queries(before, after, now, (), 10, LIMITS)
        alarms += only.comparison.regressed
    assert alarms == 0


def test_a_half_again_slower_query_is_caught_in_every_window() -> None:
    caught = 0
    for seed in range(50):
        rng = random.Random(seed)
        before, after, now = windows(
            {(1, COOK): calls(rng, 1000, 0.5)}, {(1, COOK): calls(rng, 200, 0.75)}
        )
        (only,) = judge_queries(before, after, now, (), 10, LIMITS)
        caught += only.comparison.regressed
    assert caught == 50


def test_one_call_that_waited_a_second_is_not_a_slower_query() -> None:
    rng = random.Random(7)
    period = calls(rng, 300, 0.5)
    waited = Counter("", 1, 1000.0, 1000.0**2, 20, 22, 0)  # a lock wait, say
    before, after, now = windows(
        {(1, COOK): calls(rng, 2000, 0.5)}, {(1, COOK): period.plus(waited)}
    )
    (only,) = judge_queries(before, after, now, (), 10, LIMITS)
    assert only.comparison.verdict is Verdict.OK
    assert "a few slow calls, not the query" in only.comparison.reason


def test_a_recreated_table_gives_new_query_ids_and_the_query_is_still_matched() -> None:
    rng = random.Random(2)
    base = {(1, COOK): calls(rng, 1000, 0.5)}
    before = reading(base)
    now = reading({**base, (99, COOK): calls(rng, 200, 2.0)})  # the same text, a new id
    (only,) = judge_queries(before, before, now, (), 10, LIMITS)
    assert only.comparison.regressed
    assert only.period is not None and only.period.calls == 200


def test_an_entry_deallocated_since_the_deploy_counts_what_it_holds_now() -> None:
    rng = random.Random(3)
    before = reading({(1, COOK): calls(rng, 1000, 0.5)})
    now = reading({(1, COOK): calls(rng, 40, 0.5)})  # fewer calls than at the deploy
    (only,) = judge_queries(before, before, now, (), 10, LIMITS)
    assert only.period is not None and only.period.calls == 40
    assert only.comparison.verdict is Verdict.OK


def test_too_few_calls_and_unseen_queries_are_reported_not_judged() -> None:
    rng = random.Random(4)
    before, after, now = windows(
        {(1, COOK): calls(rng, 1000, 0.5)}, {(1, COOK): calls(rng, 3, 5.0)}
    )
    staged = (recorded("SELECT * FROM ratings WHERE stars = 5", "five_stars"),)
    found = {q.label: q for q in judge_queries(before, after, now, staged, 10, LIMITS)}
    assert found["five_stars"].comparison.verdict is Verdict.NOT_JUDGED
    assert (
        "not run in the baseline window nor since the deploy"
        in found["five_stars"].comparison.reason
    )
    cook = next(q for q in found.values() if q.key == query_key(COOK))
    assert cook.comparison.verdict is Verdict.NOT_JUDGED
    assert (
        "called 1000 time(s) in the baseline window and 3 since the deploy"
        in cook.comparison.reason
    )


def test_top_queries_are_the_busiest_since_the_deploy_and_labels_make_node_ids() -> None:
    rng = random.Random(5)
    cast = "SELECT id::text FROM recipes WHERE user_id = $1"
    before, after, now = windows(
        {
            (1, COOK): calls(rng, 100, 0.5),
            (2, LATEST): calls(rng, 100, 0.2),
            (3, cast): calls(rng, 100, 0.1),
        },
        {
            (1, COOK): calls(rng, 100, 0.5),
            (2, LATEST): calls(rng, 100, 5.0),
            (3, cast): calls(rng, 100, 0.1),
        },
    )
    top = judge_queries(before, after, now, (), 2, LIMITS)
    assert [q.key for q in top] == [query_key(LATEST), query_key(COOK)]
    everything = judge_queries(before, after, now, (), 10, LIMITS)
    assert all("::" not in q.label for q in everything)
    assert any("id:text" in q.label for q in everything)


def test_the_workload_literal_and_the_driver_parameters_share_a_key() -> None:
    assert query_key("SELECT * FROM t WHERE id = 42 AND s IN (1, 2, 3)") == query_key(
        "SELECT * FROM t WHERE id = $1 AND s IN ($2, $3)"
    )
    assert query_key("SELECT * FROM t WHERE id = 42") != query_key("SELECT * FROM u WHERE id = 42")
    assert query_key("not sql at all (").startswith("text:")


@pytest.mark.parametrize(
    "text",
    [
        'INSERT INTO "dbgate"."deploys" (applied) VALUES ($1)',
        "SELECT version FROM dbgate.migrations WHERE success",
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid",
        "SELECT to_regclass($1)",
    ],
)
def test_the_gates_own_and_catalog_queries_are_not_the_applications(text: str) -> None:
    assert CATALOG.search(text)


def test_application_queries_are_kept() -> None:
    assert not CATALOG.search(COOK)
    assert not CATALOG.search("UPDATE recipes SET title = $1 WHERE id = $2")


# -- signals ---------------------------------------------------------------------------------

BUILTINS = frozenset(
    {
        "pg_export_snapshot",
        "set_config",
        "pg_postmaster_start_time",
        "current_setting",
        "current_database",
        "now",
        "lower",
    }
)
DEADLOCKS = next(s for s in SIGNALS if s.name == "deadlocks")
ROLLBACKS = next(s for s in SIGNALS if s.name == "xact_rollback")


def test_ten_times_the_deadlocks_fail() -> None:
    found = judge_signal(DEADLOCKS, db(100_000, deadlocks=10), db(10_000, deadlocks=12), LIMITS)
    assert found.worse
    assert found.figures()["period_events"] == 12
    assert found.ratio is not None and found.ratio.lower > 1.2


def test_one_more_deadlock_than_expected_is_news_not_a_verdict() -> None:
    found = judge_signal(DEADLOCKS, db(100_000, deadlocks=0), db(1_000, deadlocks=2), LIMITS)
    assert found.verdict is Verdict.OK
    assert "3 needed to count" in found.reason


def test_no_transactions_since_the_deploy_is_not_judged() -> None:
    found = judge_signal(DEADLOCKS, db(100_000), db(0), LIMITS)
    assert found.verdict is Verdict.NOT_JUDGED


def test_rate_ratio_is_cautious_on_small_counts() -> None:
    few = rate_ratio(1, 1000, 3, 1000)
    many = rate_ratio(100, 100_000, 300, 100_000)
    assert few.estimate == pytest.approx(3.5 / 1.5)
    assert few.lower < 1 < many.lower


def test_counters_reset_since_the_deploy_count_everything_since() -> None:
    deployed = DatabaseCounters(900, 100, 2, 5, 100, "2026-11-01 00:00:00+00")
    now = DatabaseCounters(50, 5, 0, 1, 10, "2026-11-29 00:00:00+00")
    assert now.minus(deployed) == now
    later = DatabaseCounters(1900, 110, 3, 5, 100, "2026-11-01 00:00:00+00")
    assert later.minus(deployed).xact_commit == 1000 and later.minus(deployed).deadlocks == 1


def test_a_reading_survives_its_round_trip_through_json() -> None:
    rng = random.Random(6)
    original = reading({(1, COOK): calls(rng, 10, 0.5)}, db(500, rollbacks=3))
    again = Reading.from_document(json.loads(json.dumps(original.document())))
    assert again.database == original.database
    assert [(e.queryid, e.key, e.counter.calls) for e in again.entries] == [
        (e.queryid, e.key, e.counter.calls) for e in original.entries
    ]
    with pytest.raises(ValueError, match="not a reading"):
        Reading.from_document({"taken_at": "x", "database": [1], "entries": []})


# -- the watch record and the release of a hold-back --------------------------------------------


def watch(passed: bool = True, deploy_id: int = 3, database: str = "prod") -> WatchRecord:
    return WatchRecord(
        watched_at="2026-11-30T12:00:00+00:00",
        plugin_version="0",
        production=f"deploy@db:5432/{database}",
        database=database,
        system_identifier="7",
        deploy_id=deploy_id,
        deployed_at="2026-11-29T12:00:00+00:00",
        passed=passed,
        queries_judged=4,
        queries_slower=0 if passed else 1,
        signals_worse=0,
        failures=() if passed else ("query[recipes_of_a_cook]: slower on production",),
    )


DEPLOY = Deploy(3, datetime(2026, 11, 29, 12, tzinfo=UTC), ("1", "2"), None, None, ())


NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def release(
    path: Path,
    key: str | None = None,
    latest: Deploy | None = DEPLOY,
    period_ends: datetime = datetime(2026, 11, 30, 13, tzinfo=UTC),
) -> tuple[bool, str]:
    found = metrics_release(path, "w.json", key, latest, "7", "prod", period_ends, NOW)
    return found.allowed, found.reason


def test_a_passing_watch_of_the_latest_deploy_releases_it(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    watch().write(path)
    allowed, reason = release(path)
    assert allowed and reason.startswith("the watch of 2026-11-30 12:00 UTC passed")


@pytest.mark.parametrize(
    ("record", "latest", "expected"),
    [
        (None, DEPLOY, "there is no watch record at"),
        (watch(passed=False), DEPLOY, "FAILED (4 queries judged, 1 slower"),
        (watch(deploy_id=2), DEPLOY, "watched deploy #2, not the latest, deploy #3"),
        (watch(database="other"), DEPLOY, "not this database"),
        (watch(), None, "no deploy with a baseline is recorded on production"),
    ],
)
def test_what_keeps_a_hold_back_held(
    tmp_path: Path, record: WatchRecord | None, latest: Deploy | None, expected: str
) -> None:
    path = tmp_path / "w.json"
    if record is not None:
        record.write(path)
    allowed, reason = release(path, latest=latest)
    assert not allowed and expected in reason


def test_a_signed_watch_record_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    watch().signed("k").write(path)
    assert release(path, "k")[0]
    assert "signature does not match" in release(path, "other")[1]
    document = json.loads(path.read_text())
    document["passed"] = True
    document["queries_slower"] = 0
    document["deploy_id"] = 3
    document["failures"] = []
    document["queries_judged"] = 99  # edited by hand
    path.write_text(json.dumps(document))
    assert not release(path, "k")[0]
    watch().write(path)
    assert "unsigned" in release(path, "k")[1]


def test_a_broken_watch_record_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_bytes(b"\xff\xfe not json")
    assert "is not JSON" in release(path)[1]
    path.write_text(
        json.dumps({"kind": "pytest-dbgate watch record", "format": 1, "passed": "yes"})
    )
    assert "not a readable watch record" in release(path)[1]
    with pytest.raises(ValueError, match="no watch record"):
        load_watch(tmp_path / "missing.json")


def test_a_watch_too_early_in_the_period_releases_nothing(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    watch().write(path)  # 2026-11-30 12:00, the day after the deploy
    allowed, reason = release(path, period_ends=datetime(2026, 12, 6, 12, tzinfo=UTC))
    assert not allowed and "more than a day before the hold-back's period ended" in reason


@pytest.mark.parametrize(
    ("watched_at", "expected"),
    [
        ("2026-11-29T11:00:00+00:00", "is older than deploy #3"),
        ("2099-01-01T00:00:00+00:00", "made in the future"),
        ("2026-11-30T12:00:00", "watched_at has no time zone"),
    ],
)
def test_a_watch_record_with_impossible_times_is_refused(
    tmp_path: Path, watched_at: str, expected: str
) -> None:
    path = tmp_path / "w.json"
    dataclasses.replace(watch(), watched_at=watched_at).write(path)
    allowed, reason = release(path)
    assert not allowed and expected in reason


def test_a_watch_record_nested_too_deep_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    allowed, reason = release(path)
    assert not allowed and "nested too deep" in reason


# -- what production's counters can and cannot say ---------------------------------------------


def with_statements(reading_: Reading, reset: str | None, dealloc: int, hidden: int = 0) -> Reading:
    return dataclasses.replace(reading_, statements=Statements(reset, dealloc, hidden))


def test_after_a_reset_the_counters_are_the_period_whole() -> None:
    rng = random.Random(8)
    before = reading({(1, COOK): calls(rng, 300, 0.5)})
    deployed = with_statements(before, "2026-11-01T00:00:00+00:00", 0)
    # After pg_stat_statements_reset(), the app called it 330 times at the same speed.
    now = with_statements(
        reading({(1, COOK): calls(rng, 330, 0.5)}), "2026-12-01T00:00:00+00:00", 0
    )
    (only,) = judge_queries(deployed, deployed, now, (), 10, LIMITS)
    assert only.period is not None and only.period.calls == 330
    assert only.comparison.verdict is Verdict.OK


def test_evicted_entries_are_not_judged_where_the_server_cannot_say_when_they_were_made() -> None:
    rng = random.Random(9)
    deployed = with_statements(reading({(1, COOK): calls(rng, 300, 0.5)}), None, 10)
    now = with_statements(reading({(1, COOK): calls(rng, 330, 0.55)}), None, 9000)
    (only,) = judge_queries(deployed, deployed, now, (), 10, LIMITS)
    assert only.comparison.verdict is Verdict.NOT_JUDGED
    assert "evicted 8,990 entries since the deploy" in only.comparison.reason


def test_an_entry_made_after_the_deploy_counts_whole_where_the_server_says_so() -> None:
    rng = random.Random(10)
    deployed = with_statements(reading({(1, COOK): calls(rng, 300, 0.5)}), None, 10)
    remade = reading({(1, COOK): calls(rng, 330, 0.5)})
    entry = dataclasses.replace(remade.entries[0], since="2026-12-01T00:00:00+00:00")
    now = with_statements(dataclasses.replace(remade, entries=(entry,)), None, 9000)
    (only,) = judge_queries(deployed, deployed, now, (), 10, LIMITS)
    assert only.period is not None and only.period.calls == 330
    assert only.comparison.verdict is Verdict.OK


@pytest.mark.parametrize(
    "text",
    [
        "-- name: GetRecipes :many\nSELECT id FROM recipes WHERE user_id = $1",
        "/* controller:recipes,action:index */ SELECT id FROM recipes",
        "(SELECT id FROM recipes) UNION ALL (SELECT id FROM archived_recipes)",
        "SELECT id FROM jobs WHERE pg_try_advisory_xact_lock(id) LIMIT $1",
    ],
)
def test_the_applications_queries_in_any_dress_are_watched(text: str) -> None:
    assert is_application_query(text) and not CATALOG.search(text)


def test_the_gates_own_reads_of_production_are_not_the_applications() -> None:
    assert not is_application_query('SELECT /* dbgate */ count(*) FROM "public"."busy"')
    assert CATALOG.search("SELECT last_value, is_called FROM public.recipes_id_seq")


def test_rollbacks_are_reported_not_judged() -> None:
    # Eight pull requests' staging runs against a quiet production: pg_dump's workers end their
    # sessions with rollbacks, 24 of them, more than the application ever had.
    found = judge_signal(ROLLBACKS, db(7_640, rollbacks=3), db(1_011, rollbacks=24), LIMITS)
    assert found.verdict is Verdict.OK and not found.worse
    assert "24 in 1,011 transactions since the deploy" in found.reason
    assert "reported, not judged: each staging run's pg_dump" in found.reason
    assert found.figures()["period_events"] == 24


@pytest.mark.parametrize(
    "text",
    [
        "SELECT pg_export_snapshot()",
        "SELECT pg_catalog.set_config('search_path', $1, false)",
        "SELECT pg_postmaster_start_time()::text, current_setting($1)::int",
        "SELECT current_user, current_database()",
        "SELECT $1",
    ],
)
def test_a_sessions_housekeeping_is_not_the_applications_work(text: str) -> None:
    assert housekeeping(text, BUILTINS)


@pytest.mark.parametrize(
    "text",
    [
        "SELECT compute_report($1)",  # the application's own function: it can get slower
        "SELECT id FROM recipes WHERE now() > created_at",
        "UPDATE recipes SET title = lower($1) WHERE id = $2",
    ],
)
def test_the_applications_work_is_not_housekeeping(text: str) -> None:
    assert not housekeeping(text, BUILTINS)


def test_no_events_on_either_side_says_nothing_rose() -> None:
    found = judge_signal(DEADLOCKS, db(100_000), db(1_000), LIMITS)
    assert found.verdict is Verdict.OK and "allowance" not in found.reason


def test_an_entry_made_while_the_deploy_ran_is_not_the_periods() -> None:
    """Made between the deploy's two readings (the tool's history row, say), within one second
    of the second reading: what it did then belongs to neither window."""
    rng = random.Random(11)
    made = reading({(1, COOK): calls(rng, 4, 0.5)})
    entry = dataclasses.replace(made.entries[0], since="2026-11-30T12:00:00.400000+00:00")
    after = dataclasses.replace(
        with_statements(made, None, 0), taken_at="2026-11-30T12:00:00.900000+00:00"
    )
    now = with_statements(dataclasses.replace(made, entries=(entry,)), None, 0)
    before = with_statements(reading({}), None, 0)
    (only,) = judge_queries(before, after, now, (), 10, LIMITS) or (None,)
    assert only is None or only.period is None
