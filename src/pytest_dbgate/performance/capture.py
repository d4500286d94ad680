"""The performance stage's bookkeeping: the windows on the project's test queries, the workload's
measurement in each phase, and the verdicts.

The before window opens when the first ``[before]`` test or the external test command starts (or
at the baseline capture if there are none) and closes at the baseline capture. The after window
opens once migrating is done (after the post-migrate command and a ``VACUUM ANALYZE``, so both
sides are compared in a steady state) and closes at the after capture.

The workload is measured where the comparison is fairest: in the after phase, side by side on
staging and the un-migrated copy
(:mod:`pytest_dbgate.performance.reference`), given by the gate as two
:class:`~pytest_dbgate.performance.sidebyside.Side` s; without a copy, on staging alone in
each phase.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from pytest_dbgate.config.model import GateConfig
from pytest_dbgate.core.errors import PerformanceError
from pytest_dbgate.core.results import Progress
from pytest_dbgate.performance.compaction import Compacted
from pytest_dbgate.performance.report import report_markdown, write_capture
from pytest_dbgate.performance.sidebyside import Budget, Measured, Side, measure
from pytest_dbgate.performance.stats import QueryStats, Snapshot, explain, read_counters, window
from pytest_dbgate.performance.timing import Breakdown, where_time_went
from pytest_dbgate.performance.verdicts import (
    Comparison,
    Thresholds,
    confirm,
    judge_tests,
    judge_workload,
)
from pytest_dbgate.performance.workload import WorkloadQuery
from pytest_dbgate.pg.connections import Conn

SIDE_BY_SIDE = "side by side"
ALONE = "one phase after the other"


@dataclass
class Capture:
    """One phase's measurements: the project's test queries and, where measured in this phase,
    the workload's runs."""

    phase: str
    tests: dict[str, QueryStats] = field(default_factory=dict)
    plans: dict[str, list[str] | None] = field(default_factory=dict)  # tests' plans, by text
    workload: dict[str, Measured] = field(default_factory=dict)
    method: str = ""  # SIDE_BY_SIDE or ALONE; "" when the workload was not run in this phase
    where: str = ""  # the databases it ran on, for the output
    compacted: list[Compacted] = field(default_factory=list)  # staging tables compacted first
    budget_s: float = 0.0
    seconds: float = 0.0  # all of it, preparing included
    prepared_s: float = 0.0  # making the un-migrated copy and compacting, before the runs


class Performance:
    """Measurement windows and workload runs on one staging database."""

    def __init__(
        self,
        config: GateConfig,
        progress: Progress,
        workload: list[WorkloadQuery],
        mask: Callable[[str], str] = str,
    ) -> None:
        self.config = config
        self.progress = progress
        self.workload = workload
        self.mask = mask  # the run's passwords out of the files written
        self._conn: Conn | None = None
        self._connect: Callable[[], Conn] | None = None
        self._starts: dict[str, Snapshot] = {}
        self._error: PerformanceError | None = None
        self._sides: dict[str, Sequence[Side]] = {}

    @property
    def thresholds(self) -> Thresholds:
        assert self.config.max_regression is not None
        return Thresholds(self.config.max_regression, self.config.perf_floor_ms)

    def attach(self, connect: Callable[[], Conn]) -> None:
        """Where to open the measuring session, once the staging database exists."""
        self._connect = connect

    def _session(self) -> Conn:
        if self._error is not None:
            raise self._error
        if self._conn is None:
            assert self._connect is not None
            conn = self._connect()
            try:
                ensure_extension(conn)
            except PerformanceError as error:
                self._error = error
                raise
            self._conn = conn
        return self._conn

    def open_window(self, phase: str) -> None:
        """Start measuring ``phase``; harmless to call again, or when measuring is impossible
        (the capture reports why)."""
        if phase in self._starts:
            return
        try:
            self._starts[phase] = read_counters(self._session())
        except PerformanceError:
            return

    def capture(
        self,
        phase: str,
        sides: Sequence[Side],
        where: str = "",
        compacted: Sequence[Compacted] = (),
        prepared_s: float = 0.0,
    ) -> Capture:
        """``prepared_s``: what making the sides ready took (the copy, compaction), counted in
        the phase's seconds."""
        """Close ``phase``'s window and plan the tests' queries; run the workload on ``sides``
        (both databases side by side, staging alone, or none when this phase does not)."""
        conn = self._session()
        self.open_window(phase)
        started = time.monotonic()
        result = Capture(phase, tests=window(self._starts[phase], read_counters(conn)))
        result.compacted = list(compacted)
        for text, stats in result.tests.items():
            result.plans[text] = explain(conn, stats.text)
        if self.workload and sides:
            budget = Budget(self.config.perf_budget_s)
            result.method = SIDE_BY_SIDE if len(sides) == 2 else ALONE
            result.where = where
            result.budget_s = budget.seconds
            self.progress(
                f"running the workload {result.method if len(sides) == 2 else 'on staging'} "
                f"({where}; {len(self.workload)} queries, budget {budget.seconds:g}s, "
                f"at most {self.config.workload_runs} rounds each)"
            )
            result.workload = measure(
                sides, self.workload, budget, self.config.workload_runs, self.progress
            )
            self._sides[phase] = sides
        result.seconds = time.monotonic() - started + prepared_s
        result.prepared_s = prepared_s
        name = "baseline" if phase == "before" else "after"
        write_capture(result, self._folder() / f"{name}_perf.json", self.mask)
        return result

    def judge(self, before: Capture, after: Capture) -> list[Comparison]:
        limits = self.thresholds
        results: list[Comparison] = []
        alone = after.method == ALONE
        for query in self.workload:
            measured = after.workload.get(query.label)
            if measured is None:
                raise PerformanceError.not_measured(query.label)
            found = judge_workload(
                measured, before.workload.get(query.label) if alone else None, limits
            )
            if found.regressed and not alone:
                found = self._confirm(query, found)
            if found.regressed:
                found.breakdown = self._breakdown(query)
            results.append(found)
        for text in sorted(set(before.tests) | set(after.tests)):
            plans = (before.plans.get(text), after.plans.get(text))
            results.append(
                judge_tests(text, before.tests.get(text), after.tests.get(text), plans, limits)
            )
        (self._folder() / "perf_report.md").write_text(
            self.mask(report_markdown(results, limits, after.method, after.where, after.compacted))
        )
        return results

    def _confirm(self, query: WorkloadQuery, first: Comparison) -> Comparison:
        """Measure a query found slower once more, side by side (see :func:`confirm`): a real
        slowdown shows twice; a noisy machine seldom fools two measurements the same way."""
        sides = self._sides.get("after", ())
        if len(sides) != 2:
            return first
        share = max(self.config.perf_budget_s / max(len(self.workload), 1), 1.0)
        self.progress(f"  {query.label} was slower: measuring it again to confirm")
        again = measure(sides, [query], Budget(share), self.config.workload_runs, self.progress)
        return confirm(first, judge_workload(again[query.label], None, self.thresholds))

    def _breakdown(self, query: WorkloadQuery) -> tuple[Breakdown | None, Breakdown | None]:
        """One timed run on each side still reachable: where the time went."""
        sides = {side.name: side.conn for side in self._sides.get("after", ())}
        before = where_time_went(sides["before"], query.sql) if "before" in sides else None
        after = where_time_went(sides["after"], query.sql) if "after" in sides else None
        return before, after

    def _folder(self) -> Path:
        folder = self.config.report_dir
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def ensure_extension(conn: Conn) -> None:
    """pg_stat_statements readable in the database of ``conn``, created if it is missing."""
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        # LIMIT 0 would be planned away without reading the view; one row makes it check.
        conn.execute("SELECT count(*) FROM (SELECT 1 FROM pg_stat_statements LIMIT 1) AS probe")
    except psycopg.errors.ObjectNotInPrerequisiteState:
        raise PerformanceError.not_preloaded() from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise PerformanceError.cannot_create(str(exc).splitlines()[0]) from None
    except psycopg.Error as exc:
        raise PerformanceError.unavailable(str(exc).splitlines()[0]) from None
