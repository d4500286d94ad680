"""What the staging gate tells the lint that a static linter cannot know: which migrations
production already had, how big each table was when its migration met it, what the lock watch
measured, and the staging server's PostgreSQL version (squawk lints for it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_dbgate.core.run import StepFailed
from pytest_dbgate.migrations.parse import Migration

if TYPE_CHECKING:
    from pytest_dbgate.config.model import GateConfig
    from pytest_dbgate.core.run import Database
    from pytest_dbgate.observe.timeline import LockReport
    from pytest_dbgate.refresh.restore import Snapshot


class StagingLint:
    """The lint's context in the staging gate: a mixin of
    :class:`~pytest_dbgate.staging.gate.Gate`, which provides the state and the steps."""

    config: GateConfig
    sizes_before: dict[str, dict[str, int]]
    decided_locks: dict[str, LockReport]
    lock_reports: dict[str, LockReport]

    if TYPE_CHECKING:

        def staging_server(self) -> Database: ...
        def snapshot(self) -> Snapshot: ...
        def applied_before(self) -> dict[str, str]: ...

    def lint_version(self) -> str | None:
        """The staging server's own version (what the runner runs on); the configured one when
        the server could not be opened."""
        try:
            identity = self.staging_server().identity
        except StepFailed:
            return self.config.pg_version
        return f"{identity.major}.{identity.version_num % 100}"

    def lint_applied_before(self) -> dict[str, str]:
        try:
            return self.applied_before()
        except StepFailed:
            return {}

    def lint_rows_met(self, migration: Migration) -> dict[str, int] | None:
        """Rows per table as the migration met them: counted just before it ran (what earlier
        migrations of the release inserted included), else as restored on the staging copy (the
        source of a dump file is not there to count, the copy is)."""
        try:
            snapshot = self.snapshot()
        except StepFailed:
            return None
        rows = {table: count for (_, table), count in snapshot.rows().items()}
        rows.update(self.sizes_before.get(migration.version, {}))
        return rows

    def lint_measured(self, migration: Migration) -> str | None:
        report = self.decided_locks.get(migration.id) or self.lock_reports.get(migration.id)
        if report is None or report.monitor_error is not None:
            return None
        blocked = len(report.blocked)
        return (
            f"the lock watch measured {report.longest_blocking_ms:,.0f} ms of blocking locks, "
            f"{blocked} of {report.probes} traffic probe(s) blocked"
            + (f" up to {report.max_blocked_ms:,.0f} ms" if blocked else "")
        )
