"""The performance stage's bookkeeping: when each phase's window opens and closes, on which
session, and what is written to the report folder.

The before window opens when the first ``[before]`` test or the external test command starts (or
at the baseline capture if there are none) and closes at the baseline capture, which then runs the
workload in a window of its own. The after window opens once migrating is done (after the
post-migrate command and a ``VACUUM ANALYZE``, so both sides are compared in a steady state) and
closes at the after capture.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from pytest_dbgate.config import GateConfig
from pytest_dbgate.exceptions import PerformanceError
from pytest_dbgate.stats import (
    Capture,
    Comparison,
    Snapshot,
    Thresholds,
    compare,
    explain,
    find_measured,
    read_counters,
    report_markdown,
    window,
)
from pytest_dbgate.workload import WorkloadQuery, run_workload, warm_up

Conn = psycopg.Connection[tuple[object, ...]]
Progress = Callable[[str], None]


class Performance:
    """Measurement windows on one staging database."""

    def __init__(
        self, config: GateConfig, progress: Progress, workload: list[WorkloadQuery]
    ) -> None:
        self.config = config
        self.progress = progress
        self.workload = workload
        self._conn: Conn | None = None
        self._connect: Callable[[], Conn] | None = None
        self._starts: dict[str, Snapshot] = {}
        self._error: PerformanceError | None = None

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
                _ensure_extension(conn)
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

    def capture(self, phase: str) -> Capture:
        """Close ``phase``'s window, run and measure the workload, plan every query seen."""
        conn = self._session()
        self.open_window(phase)
        started = time.monotonic()
        tests = window(self._starts[phase], read_counters(conn))
        result = Capture(phase, tests=tests)
        if self.workload:
            runs = self.config.workload_runs
            self.progress(
                f"running the workload ({len(self.workload)} queries, {runs} runs each, {phase})"
            )
            try:
                warm_up(conn, self.workload)
                before_runs = read_counters(conn)
                run_workload(conn, self.workload, runs)
            except psycopg.Error as exc:
                raise PerformanceError.workload_failed(
                    self.config.workload, str(exc).splitlines()[0]
                ) from None
            measured = window(before_runs, read_counters(conn))
            for query in self.workload:
                stats = find_measured(measured, query.sql)
                if stats is not None:
                    result.workload[query.label] = stats
                result.workload_sql[query.label] = query.sql
                result.plans[f"workload:{query.label}"] = explain(conn, query.sql)
        for text, stats in tests.items():
            result.plans[f"tests:{text}"] = explain(conn, stats.text)
        result.seconds = time.monotonic() - started
        result.write(self._folder() / f"{'baseline' if phase == 'before' else 'after'}_perf.json")
        return result

    def judge(self, before: Capture, after: Capture) -> list[Comparison]:
        results = compare(before, after, self.thresholds)
        (self._folder() / "perf_report.md").write_text(report_markdown(results, self.thresholds))
        return results

    def _folder(self) -> Path:
        folder = self.config.report_dir
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _ensure_extension(conn: Conn) -> None:
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
