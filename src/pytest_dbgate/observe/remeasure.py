"""Measuring a migration's locks again, when one measurement sits near a limit.

How long a lock is held, and how long the simulated application waits for it, vary from run to
run with the machine's load (and by how a probe happens to fall against the lock: up to the
probe interval). A migration measured at 950 ms against a 1,000 ms limit passes one run and fails
the next; a gate that flaps is not trusted. So a measurement within ±50 % of its limit is taken
twice more, each time on a fresh copy of the state just before the migration (the cached
snapshot, cloned, with the earlier migrations applied), and the middle of the three decides: the
migration fails when two of three measurements exceed a limit. The item shows all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_dbgate.migrations.runner import Runner
from pytest_dbgate.observe.timeline import LockReport
from pytest_dbgate.pg.connections import connect
from pytest_dbgate.pg.databases import create_gate_database, drop_gate_database, gate_database_name
from pytest_dbgate.refresh.cache import cache_name, find

if TYPE_CHECKING:
    from pytest_dbgate.staging.gate import Gate

# A measurement this close to its limit (as a fraction of it) is taken again.
NEAR = 0.5
TIMES = 2  # extra measurements: with the first, three, whose middle one decides


@dataclass(frozen=True)
class Measure:
    """What one measurement of a migration's locks says, against the limits."""

    lock_ms: float  # the longest lock that blocks reads or writes on a table with rows
    block_ms: float  # the longest a simulated application session waited
    severity: float  # the larger of the two, as a fraction of its limit

    @classmethod
    def of(cls, report: LockReport, max_lock_ms: float, max_block_ms: float) -> Measure:
        lock = max((lock.held_ms for lock in report.locks if lock.dangerous), default=0.0)
        block = report.max_blocked_ms
        severity = max(_ratio(lock, max_lock_ms), _ratio(block, max_block_ms))
        return cls(lock, block, severity)

    def near(self) -> bool:
        return 1 - NEAR <= self.severity <= 1 + NEAR


def _ratio(value: float, limit: float) -> float:
    if limit <= 0:
        return float("inf") if value > 0 else 0.0
    return value / limit


def median(
    reports: list[LockReport], max_lock_ms: float, max_block_ms: float
) -> tuple[LockReport, list[Measure]]:
    """The measurement in the middle by severity (with three, it fails only when two of three
    exceed a limit), and every measurement, in the order taken."""
    measures = [Measure.of(r, max_lock_ms, max_block_ms) for r in reports]
    order = sorted(range(len(reports)), key=lambda i: measures[i].severity)
    return reports[order[len(order) // 2]], measures


def again(gate: Gate, index: int, times: int = TIMES) -> tuple[list[LockReport], str]:
    """Migration ``index`` measured ``times`` more, each on a fresh copy of the state just
    before it; and, when that cannot be done, why (the measurement then stands alone)."""
    staging = gate.staging_server()
    cache = cache_name(gate_database_name(gate.source_dbname()))
    if gate.config.clone_command is not None or find(staging.conn, cache) is None:
        return [], "no cached snapshot to copy the state before it from"
    migration = gate.migrations[index]
    where = staging.endpoint.display()
    reports: list[LockReport] = []
    for attempt in range(times):
        name = f"{gate_database_name(gate.source_dbname())[:50]}_again"
        gate.progress(f"{migration.id}: near a lock limit, measuring again ({attempt + 2} of 3)")
        create_gate_database(staging.conn, name, where, "UTF8", template=cache)
        copy = staging.endpoint.with_dbname(name)
        try:
            with connect(copy, "staging", gate.config.staging_url_setting, purpose="migrate") as c:
                earlier = Runner(c, gate.migrations[:index], lambda _: None, "remeasure")
                if not all(o.ok for o in earlier.apply_all()):
                    return reports, "an earlier migration failed on the copy"
                found: dict[str, LockReport] = {}
                runner = Runner(
                    c,
                    [migration],
                    lambda _: None,
                    "remeasure",
                    watch=gate.watcher(copy, found),
                )
                if not runner.apply_all()[0].ok:
                    return reports, "it failed on the copy"
                reports.append(found[migration.id])
        finally:
            drop_gate_database(staging.conn, name, where)
    return reports, ""
