"""What the staging gate's mixins (restore points, the after phase's preparation) read of it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_dbgate.config.model import GateConfig
    from pytest_dbgate.core.results import Progress
    from pytest_dbgate.migrations.parse import Migration
    from pytest_dbgate.performance.capture import Performance
    from pytest_dbgate.performance.reference import Reference


class GatePart:
    """A mixin of :class:`~pytest_dbgate.staging.gate.Gate`, which provides the state declared
    here and in the subclasses, and the steps they declare."""

    config: GateConfig
    progress: Progress
    migrations: list[Migration]
    performance: Performance | None
    reference: Reference | None
