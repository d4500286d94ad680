"""Hold-backs on production: when a held-back migration may go out, and who let it.

A held-back migration (``-- dbgate: hold-back 7d``, or ``dbgate_holdbacks``) waits until its
period has passed since the migrations before it were applied, as the tracking table records;
with ``dbgate_holdback_requires = time+metrics`` it then also waits for a passing watch of
production's metrics. ``--dbgate-release-early`` lets it go before that, on purpose and said so.
These rules live apart from the runner because they decide *whether* a file runs, never *how*.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pytest_dbgate.config.settings import MAX_RETRY_WAIT_S
from pytest_dbgate.core.results import Progress
from pytest_dbgate.migrations.layouts import version_key
from pytest_dbgate.migrations.outcomes import Outcome, Status
from pytest_dbgate.migrations.parse import Migration
from pytest_dbgate.migrations.tracking import TrackedMigration, applied_before


@dataclass(frozen=True)
class Policy:
    """How production applies migrations: a lock_timeout, bounded retries with backoff,
    hold-backs, and the held-back migrations released early on purpose."""

    lock_timeout_ms: float
    retries: int
    retry_wait_s: float
    hold_backs: Mapping[str, timedelta] = field(default_factory=dict)  # by version
    release_early: frozenset[str] = frozenset()  # versions
    # Once a hold-back's period has passed: whether production's metrics let it go, and the
    # watch that said so or why not (None: the period alone releases it).
    metrics: Callable[[datetime], tuple[bool, str]] | None = None
    sleep: Callable[[float], None] = time.sleep

    def wait(self, attempt: int) -> float:
        """Seconds before retry ``attempt`` (1-based): doubling, capped."""
        return float(min(self.retry_wait_s * 2 ** (attempt - 1), MAX_RETRY_WAIT_S))


@dataclass(frozen=True)
class Release:
    """What the hold-back rules say of a migration about to be applied."""

    held: Outcome | None = None  # not applied in this run: its item says why
    early: bool = False  # applied before its time, by --dbgate-release-early
    released_by: str | None = None  # the passing watch that let it go


@dataclass(frozen=True)
class Period:
    """When a held-back migration's period starts: what the runner knows of the release."""

    now: datetime  # the server's clock, read once per run
    applied_in_this_run: bool  # a migration before it was applied by this run
    recorded: Mapping[str, TrackedMigration]  # dbgate.migrations before this run
    migrations: Sequence[Migration]
    held_since: Callable[[str], datetime]  # when a run first held a version back

    def of(self, migration: Migration, hold_back: timedelta) -> tuple[datetime, datetime] | None:
        """When ``migration``'s period started and when it ends; ``None`` when no release
        comes before it to wait behind.

        The period runs from when the migrations before it were applied: now, if this run
        applied any of them; else the latest ``applied_at`` the tracking table has for them;
        else (applied before the gate kept records) from when a run first held it back.
        """
        if self.applied_in_this_run:
            since = self.now
        else:
            earlier = applied_before(self.recorded, migration.version)
            if earlier is not None:
                since = earlier
            elif any(
                version_key(m.version) < version_key(migration.version) for m in self.migrations
            ):
                # Applied, but not by the gate: when is unknown, so the period starts now.
                since = self.held_since(migration.version)
            else:
                return None  # nothing before it: no release to wait behind
        return since, since + hold_back


def release(migration: Migration, policy: Policy, period: Period, progress: Progress) -> Release:
    """Whether ``migration`` goes out in this run under ``policy``'s hold-backs."""
    hold_back = policy.hold_backs.get(migration.version)
    if hold_back is None:
        return Release()
    window = period.of(migration, hold_back)
    if window is None:
        return Release()
    since, eligible = window
    held: Outcome | None = Outcome(
        migration,
        Status.HELD_BACK,
        eligible_at=eligible,
        held_since=since,
        needs_watch=policy.metrics is not None,
    )
    released_by: str | None = None
    if eligible <= period.now:
        held = None
        if policy.metrics is not None:
            allowed, said = policy.metrics(eligible)
            if allowed:
                released_by = said
            else:
                held = Outcome(
                    migration,
                    Status.HELD_BACK,
                    eligible_at=eligible,
                    held_since=since,
                    waits_for=said,
                )
    if held is None:
        return Release(released_by=released_by)
    if migration.version not in policy.release_early:
        return Release(held=held)
    progress(
        f"{migration.id}: held back until {held.eligible_at:%Y-%m-%d %H:%M %Z}"
        + (" and flat metrics" if held.waits_for else "")
        + ", released early by --dbgate-release-early"
    )
    return Release(early=True)
