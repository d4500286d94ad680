"""A ``[before]`` or ``[after]`` test held to its side of the migrations."""

from __future__ import annotations

import pytest

from pytest_dbgate.core.dependencies import require
from pytest_dbgate.core.run import Reporter
from pytest_dbgate.staging.gate import MIGRATED, SNAPSHOT, Gate


def enter_phase(gate: Gate, phase: str, item: Reporter) -> None:
    """Hold a ``[before]`` or ``[after]`` test to its side of the migrations."""
    if phase == "before":
        require(gate, SNAPSHOT, item)
        if gate.migrations_started:
            pytest.fail(
                "this [before] test would run after the migrations started: something reordered "
                "the gate's items (pytest-randomly, say); run the gate without reordering",
                pytrace=False,
            )
    else:
        require(gate, MIGRATED, item)
    gate.open_window(phase)
