"""The staging gate's side of restore points (see :mod:`pytest_dbgate.staging.points`): resume
from the last unchanged migration, keep a point after each migration applied, and give the
earlier run's findings back to the items."""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psycopg

from pytest_dbgate.core.record import run_label
from pytest_dbgate.migrations.outcomes import Outcome
from pytest_dbgate.migrations.parse import Migration
from pytest_dbgate.observe.timeline import LockReport
from pytest_dbgate.performance.compaction import Compacted
from pytest_dbgate.pg.databases import (
    committed_since,
    create_gate_database,
    drop_gate_database,
    sweep_half_made,
)
from pytest_dbgate.refresh.cache import cache_name
from pytest_dbgate.staging.points import (
    Found,
    Point,
    base_key,
    cached_outcome,
    chain,
    comment_on,
    outcome_document,
    point_name,
    points_pattern,
    read_points,
    report_document,
    report_from,
    stray_points,
    total_bytes,
    usable_point,
)
from pytest_dbgate.staging.shared import GatePart

if TYPE_CHECKING:
    from pytest_dbgate.core.run import Database
    from pytest_dbgate.migrations.runner import Runner
    from pytest_dbgate.pg.connections import Conn
    from pytest_dbgate.refresh.restore import Snapshot

# How long the sessions the gate closed may take to leave the server before a copy is made.
SETTLE_S = 5.0
# A point is skipped only when copying the database would take more than this many times what
# applying (under the watch) the migrations since the last point took: a re-run then applies
# them again, which is cheaper. A point that costs a few times a quick migration still saves the
# loop a team lives in (fix the failing migration, run again) its watch, traffic and verdicts,
# and makes that re-run apply only the fixed migration. The last migration's point is always
# made (an unchanged re-run starts from it).
WORTH = 10


@dataclass(frozen=True)
class CachedLocks:
    """What an earlier run's locks item decided for a migration this run did not apply."""

    run: str
    measurements: str


class RestorePoints(GatePart):
    """The gate's restore points."""

    lock_reports: dict[str, LockReport]
    decided_locks: dict[str, LockReport]
    sizes_before: dict[str, dict[str, int]]
    # Every session the gate opened on the staging database: closed before a copy is made.
    sessions: list[Conn]
    cached_locks: dict[str, CachedLocks]
    # What each migration's items found, by position (1-based), as the points keep it.
    found: dict[int, Found]
    points_made: dict[int, str]  # the points this run made, by position: their databases
    last_point: float  # when the last point was made (or migrating began), time.monotonic()
    point_cost: float  # what the last copy took, seconds
    no_points: str  # why this run keeps no points; "" when it does
    point_keys: list[str]  # each point's key, worked out once per run
    points_said: bool
    run_started: str
    # The tables compacted in the steady point this run resumed from (see steady_for_point);
    # None when it resumed from none, or from one made before the after phase's preparation.
    resumed_steady: list[Compacted] | None
    staging_xid: int | None  # the server's next transaction number when the copy was made
    steady_points: dict[int, list[dict[str, object]]]  # the steady points this run made

    def staging_server(self) -> Database:
        raise NotImplementedError

    def snapshot(self) -> Snapshot:
        raise NotImplementedError

    def runner(self) -> Runner:
        raise NotImplementedError

    def staging_connection(self, purpose: str = "check") -> Conn:
        raise NotImplementedError

    def steady_for_point(self) -> list[Compacted] | None:
        """After the last migration, before its point is made: the after phase's preparation
        (VACUUM ANALYZE, compaction), so that a re-run of the same release starts from a point
        that needs none; the tables compacted, or None when the point is made without it."""
        raise NotImplementedError

    # -- when ------------------------------------------------------------------------------

    def points_kept(self) -> bool:
        """Whether this run keeps points (decided when migrating begins, see
        :meth:`resume_from_points`), and nothing has stopped it since."""
        return not self.no_points

    def _point_keys(self) -> list[str]:
        cfg = self.config
        snapshot = self.snapshot()
        workload = (
            hashlib.sha256(cfg.workload.read_bytes()).hexdigest()
            if cfg.workload is not None and cfg.workload.is_file()
            else None
        )
        base = base_key(
            {
                "snapshot": [
                    cache_name(snapshot.staging.dbname),
                    # To the second, as the cached snapshot's comment keeps it.
                    snapshot.taken_at.isoformat(timespec="seconds") if snapshot.taken_at else None,
                    snapshot.cache_key,
                ],
                "server": self.staging_server().identity.version_num,
                "migration_timeout": cfg.migration_timeout_s,
                "max_lock_ms": cfg.max_lock_ms,
                "max_block_ms": cfg.max_block_ms,
                "traffic_rate": cfg.traffic_rate,
                "lint_small_table_rows": cfg.lint_small_table_rows,
                "lint_rules": [list(r) for r in cfg.lint_rules],
                "workload": workload,
            }
        )
        return chain(base, self.migrations)

    # -- resuming ----------------------------------------------------------------------------

    def resume_from_points(self) -> list[Outcome]:
        """Before the first migration: start from the point after the last unchanged one, if
        there is one; the outcomes of the migrations it holds. Points that no longer fit are
        dropped (only the latest run's are kept)."""
        self.run_started = datetime.now(UTC).isoformat(timespec="seconds")
        if self.config.restore_points == "off":
            self.no_points = "dbgate_restore_points = off"
            self._drop_points(self.no_points)
        elif self.reference is None or self.config.migrate_command is not None:
            self.no_points = "no snapshot cache"
        elif self.staging_server().throwaway:
            self.no_points = "the staging server is thrown away when the run ends"
        else:
            self.no_points = self._before_phase_wrote()
            if self.no_points:
                self.progress(f"no restore points in this run: {self.no_points}")
        if not self.points_kept():
            return []
        staging = self.staging_server()
        dbname = self.snapshot().staging.dbname
        where = staging.endpoint.display()
        self._drop_leftovers()
        points = read_points(staging.conn, dbname)
        keys = self.point_keys = self._point_keys()
        usable = usable_point(points, keys)
        for index, (name, _) in points.items():
            if index > usable:
                drop_gate_database(staging.conn, name, where)
        self.last_point = time.monotonic()
        # Until this run has made one, a point costs what the snapshot's copy cost.
        self.point_cost = self.snapshot().clone_seconds or 0.0
        if usable == 0:
            return []
        why = self.quiesce()
        if why:
            self.progress(f"not resuming from the restore points: {why}")
            return []
        started = time.monotonic()
        create_gate_database(
            staging.conn,
            dbname,
            where,
            "UTF8",
            template=point_name(dbname, usable),
            file_copy=staging.embedded,
        )
        self.last_point = time.monotonic()
        self.point_cost = self.last_point - started
        outcomes = []
        for index, found in enumerate(points[usable][1].found, start=1):
            migration = self.migrations[index - 1]
            self.found[index] = found
            outcomes.append(cached_outcome(migration, found))
            self.sizes_before[migration.version] = dict(found.sizes)
            report = report_from(found.report, migration) if found.report else None
            if report is not None:
                self.lock_reports[migration.id] = report
                if found.decided:
                    self.cached_locks[migration.id] = CachedLocks(found.run, found.measurements)
        steady = points[usable][1].steady
        if usable == len(self.migrations) and steady is not None:
            self.resumed_steady = [Compacted(**c) for c in steady]  # type: ignore[arg-type]
        last = points[usable][1].found[-1]
        nxt = (
            f"applying from {self.migrations[usable].id}"
            if usable < len(self.migrations)
            else "nothing left to apply"
        )
        self.progress(
            f"resuming after {last.migration}: migrations 1-{usable} are unchanged since "
            f"{run_label(last.run)}, whose restore point {usable} is now staging; {nxt}"
        )
        return outcomes

    def _before_phase_wrote(self) -> str:
        """Why the staging copy may not be what a point expects, or ``""``: the before phase ran
        on it first, and what it committed (your before-tests, the test command) a point made
        now would keep, and a point an earlier run made would lack. Told from the transactions
        committed on the staging server since the copy was made (a rolled-back test leaves
        none; another session writing elsewhere on that server counts too: no points then)."""
        if self.staging_xid is None:
            return "when the staging copy was made is not known"
        committed = committed_since(self.staging_server().conn, self.staging_xid)
        if committed == 0:
            return ""
        many = "many" if committed is None else str(committed)
        return (
            f"{many} transaction(s) committed on the staging server since the copy was made "
            "(your before-tests or test command wrote to staging, or another session on that "
            "server wrote): a point would not hold what the before phase leaves; roll back what "
            "the before phase writes (the dbgate_db fixture does) to get them back"
        )

    def _drop_leftovers(self) -> list[str]:
        """Drop what killed runs left of points (none can be resumed from); their names."""
        staging = self.staging_server()
        dbname = self.snapshot().staging.dbname
        strays = stray_points(staging.conn, dbname)
        for name in strays:
            drop_gate_database(staging.conn, name, staging.endpoint.display())
        return strays + sweep_half_made(staging.conn, points_pattern(dbname))

    def _drop_points(self, why: str) -> None:
        """Points an earlier run kept, when this one keeps none: their disk is given back."""
        staging = self.staging_server()
        dbname = self.snapshot().staging.dbname
        names = [n for n, _ in read_points(staging.conn, dbname).values()]
        size = total_bytes(staging.conn, names)
        for name in names:
            drop_gate_database(staging.conn, name, staging.endpoint.display())
        names += self._drop_leftovers()
        if not names:
            return
        self.progress(
            f"dropped the {len(names)} restore point(s) an earlier run kept ({size / 1e6:,.1f} "
            f"MB): {why}"
        )

    # -- keeping ----------------------------------------------------------------------------

    def checkpoint(self, migration: Migration, outcome: Outcome) -> Conn:
        """After a migration applied: note what it found, and keep a point unless the copy
        would cost far more than applying again since the last one; a new migrating session."""
        if self.points_kept():
            index = self.migrations.index(migration) + 1
            # A point holds what every migration up to it found, those this run did not apply
            # (the copy had them already) included.
            for earlier, done in enumerate(self.runner().outcomes_so_far[: index - 1], start=1):
                if earlier not in self.found:  # once each, not at every later point
                    self.found[earlier] = self._found(done)
            self.found[index] = self._found(outcome)
            since = time.monotonic() - self.last_point
            if index == len(self.migrations):
                steady = self.steady_for_point()
                if steady is not None:
                    self.steady_points[index] = [asdict(c) for c in steady]
                self._keep_point(index)
            elif since * WORTH >= self.point_cost or self.config.restore_points == "every":
                self._keep_point(index)
        return self.staging_connection(purpose="migrate")

    def _found(self, outcome: Outcome) -> Found:
        migration = outcome.migration
        report = self.lock_reports.get(migration.id)
        return Found(
            run=self.run_started,
            migration=migration.id,
            outcome=outcome_document(outcome),
            sizes=dict(self.sizes_before.get(migration.version, {})),
            report=report_document(report) if report is not None else None,
        )

    def _keep_point(self, index: int) -> None:
        staging = self.staging_server()
        dbname = self.snapshot().staging.dbname
        name = point_name(dbname, index)
        point = self._point(index)
        started = time.monotonic()
        why = self.quiesce()
        if not why:
            try:
                create_gate_database(
                    staging.conn,
                    name,
                    staging.endpoint.display(),
                    "UTF8",
                    template=dbname,
                    comment=point.description(),  # a point under its name is a whole one
                    file_copy=staging.embedded,
                )
            except psycopg.Error as exc:
                why = str(exc).strip().splitlines()[0]
        if why:
            self.no_points = why
            self.progress(
                f"no restore point after {point.found[-1].migration}, nor after the rest: {why}"
            )
            return
        self.last_point = time.monotonic()
        self.point_cost = self.last_point - started
        self.points_made[index] = name

    def _point(self, index: int) -> Point:
        """The point after migration ``index``, holding what every migration up to it found."""
        return Point(
            index,
            self.point_keys[index - 1],
            [self.found[i] for i in range(1, index + 1)],
            self.steady_points.get(index),
        )

    def locks_decided(self, migration: Migration, report: LockReport, measurements: str) -> None:
        """The locks item's decision goes into the points that hold the migration, for a run
        that resumes."""
        index = self.migrations.index(migration) + 1
        found = self.found.get(index)
        if found is None:
            return
        found.report = report_document(report)
        found.decided = True
        found.measurements = measurements
        for at, name in self.points_made.items():
            if at >= index:
                point = self._point(at)
                with contextlib.suppress(psycopg.Error):
                    comment_on(self.staging_server().conn, name, point)

    def say_points(self) -> None:
        """How many points the next run may start from, and their size on disk."""
        if not self.points_made or self.points_said:
            return
        self.points_said = True
        staging = self.staging_server()
        dbname = self.snapshot().staging.dbname
        kept = read_points(staging.conn, dbname)
        size = total_bytes(staging.conn, [name for name, _ in kept.values()])
        self.progress(
            f"restore points: {len(kept)} kept for the next run ({size / 1e6:,.1f} MB on the "
            "staging server); a re-run starts after the last unchanged migration"
        )

    def quiesce(self) -> str:
        """Close every session the gate has on the staging database and wait for the server to
        see them go; why that could not be done, or ``""``."""
        for conn in self.sessions:
            with contextlib.suppress(Exception):
                conn.close()
        self.sessions.clear()
        if self.performance is not None:
            self.performance.close()  # its next use opens a new session
        staging = self.staging_server()
        dbname = self.snapshot().staging.dbname
        deadline = time.monotonic() + SETTLE_S
        while True:
            row = staging.conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND pid <> pg_backend_pid()",
                (dbname,),
            ).fetchone()
            others = int(row[0]) if row and isinstance(row[0], int) else 0
            if others == 0:
                return ""
            if time.monotonic() > deadline:
                return (
                    f"{others} session(s) not the gate's are connected to {dbname} (a fixture "
                    "of your tests that keeps a connection?), and a copy needs none"
                )
            time.sleep(0.05)
