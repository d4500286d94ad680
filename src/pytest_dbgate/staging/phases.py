"""The project's own database tests, run ``[before]`` and ``[after]`` the migrations.

A test that uses the ``dbgate_url`` or ``dbgate_db`` fixture (both rest on ``dbgate_phase``) is
parametrized into two items under ``--dbgate=staging``. ``@pytest.mark.dbgate_phase("after")``
keeps it to one phase. The gate's items and the phased tests are then put in runbook order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest

from pytest_dbgate.core.results import PHASES

PHASE_FIXTURE = "dbgate_phase"
MARKER = "dbgate_phase"

# Runbook order: the gate's stages, with the phased tests in their stage.
STAGE_ORDER = (
    "refresh",
    "connect",
    "before",
    "migrate",
    # After migrating: each migration's findings are judged with the tables as it met them.
    "lint",
    "schema",
    "after",
    "performance",
    "watch",  # --dbgate=watch: production since the deploy; then its verdict
    "verdict",
    # production
    "preflight",
    "deploy",
    "postdeploy",
)


def phases_for(node: pytest.Item | pytest.Function | object) -> tuple[str, ...]:
    """The phases a test runs in: both, or what its ``dbgate_phase`` marker names."""
    get_marker = getattr(node, "get_closest_marker", None)
    marker = get_marker(MARKER) if get_marker else None
    if marker is None:
        return PHASES
    chosen = tuple(str(a) for a in marker.args)
    unknown = [p for p in chosen if p not in PHASES]
    if not chosen or unknown:
        raise pytest.UsageError(
            f"{getattr(node, 'nodeid', node)}: @pytest.mark.dbgate_phase takes 'before' and/or "
            f"'after', not {', '.join(repr(p) for p in unknown) or 'nothing'}"
        )
    return chosen


def parametrize(metafunc: pytest.Metafunc) -> None:
    """Split a test that touches the staging database into its ``[before]``/``[after]`` runs."""
    if PHASE_FIXTURE not in metafunc.fixturenames:
        return
    phases = phases_for(metafunc.definition)
    metafunc.parametrize(PHASE_FIXTURE, phases, ids=list(phases), indirect=True)


def phase_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    phase = callspec.params.get(PHASE_FIXTURE)
    return str(phase) if phase is not None else None


def arrange(items: Sequence[pytest.Item], generated: Iterable[pytest.Item]) -> list[pytest.Item]:
    """Gate items and phased tests in runbook order, then everything else as collected.

    Within a stage, items go by position: the gate's items at negative positions, the project's
    phased pytest tests at 0, then the external test command (1) and the capture (2).
    """
    stages: dict[str, list[tuple[int, pytest.Item]]] = {stage: [] for stage in STAGE_ORDER}
    for item in generated:
        stage = str(getattr(item, "stage", "after"))
        stages.setdefault(stage, []).append((int(getattr(item, "position", -1)), item))
    others: list[pytest.Item] = []
    for item in items:
        phase = phase_of(item)
        if phase is None:
            others.append(item)
        else:
            stages[phase].append((0, item))
    ordered: list[pytest.Item] = []
    for members in stages.values():
        ordered.extend(item for _, item in sorted(members, key=lambda pair: pair[0]))
    return ordered + others
