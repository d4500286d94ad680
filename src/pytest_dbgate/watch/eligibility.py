"""Whether production's metrics let a held-back migration go, once its period has passed.

The cleanup a hold-back delays (dropping the old column) is the step that cannot be undone; it
waits until the release before it has run on production long enough *and* production showed no
slowdown and no new errors meanwhile. The latest watch record must have watched the latest
deploy (the release before the held-back migration, since nothing after it can be deployed while
it waits), on this database, after that deploy, and passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pytest_dbgate.core.record import CLOCK_SKEW
from pytest_dbgate.watch.deploys import Deploy
from pytest_dbgate.watch.record import load_watch

WATCH_HINT = "run `pytest --dbgate=watch` against production (it writes the record)"


@dataclass(frozen=True)
class Release:
    """The metrics' answer: go, and the watch that said so; or wait, and why."""

    allowed: bool
    reason: str


# The watch that releases a hold-back must have looked at production near the end of the period
# (or after it), not only on the morning after the deploy.
RECENT = timedelta(days=1)


def metrics_release(
    path: Path,
    shown: str,
    signing_key: str | None,
    latest: Deploy | None,
    system_identifier: str | None,
    database: str,
    period_ends: datetime,
    now: datetime,
) -> Release:
    if latest is None:
        return Release(
            False,
            "no deploy with a baseline is recorded on production (dbgate.deploys), so no watch "
            "can vouch for the release before it; the migrations before it were applied by an "
            "earlier pytest-dbgate or another tool. Use --dbgate-holdback-requires=time, or "
            "release it on purpose with --dbgate-release-early",
        )
    try:
        watch = load_watch(path)
    except ValueError as exc:
        return Release(False, f"{exc}: {WATCH_HINT}, and give it to this run ({shown})")
    untrusted = watch.authentic(signing_key)
    if untrusted is not None:
        return Release(False, f"the watch record {shown} is refused: {untrusted}; {WATCH_HINT}")
    if watch.database != database or (
        watch.system_identifier
        and system_identifier
        and watch.system_identifier != system_identifier
    ):
        return Release(
            False,
            f"the watch record {shown} watched {watch.production}, not this database; {WATCH_HINT}",
        )
    if watch.deploy_id != latest.id:
        return Release(
            False,
            f"the latest watch ({watch.watched:%Y-%m-%d %H:%M %Z}) watched deploy "
            f"#{watch.deploy_id}, not the latest, {latest.describe()}: {WATCH_HINT} again",
        )
    if watch.watched > now + CLOCK_SKEW:
        return Release(False, f"the watch record {shown} says it was made in the future")
    if watch.watched < latest.deployed_at.replace(microsecond=0):  # kept to the second
        return Release(
            False, f"the watch record {shown} is older than {latest.describe()}: {WATCH_HINT}"
        )
    if not watch.passed:
        failures = "; ".join(watch.failures[:3]) or "see its report"
        return Release(False, f"{watch.summary()}: {failures}")
    if watch.watched < period_ends - RECENT:
        return Release(
            False,
            f"the latest watch ({watch.watched:%Y-%m-%d %H:%M %Z}) passed, but came more than a "
            f"day before the hold-back's period ended ({period_ends:%Y-%m-%d %H:%M %Z}): "
            f"{WATCH_HINT} again, now",
        )
    return Release(True, watch.summary())
