"""What an item or a phased test does when something it needs failed.

If the item that reports the failure runs in this session, the dependent is skipped with a
pointer to it; if that item was deselected, the dependent errors with the failure itself. So no
selection (``-k``, ``-m``, ``--lf``) lets a failure pass unseen, and no failure is reported twice.
"""

from __future__ import annotations

from typing import NoReturn

import pytest

from pytest_dbgate.core.run import Reporter, Run, StepFailed


def blocked(gate: Run, failed: StepFailed, item: Reporter) -> NoReturn:
    owner = gate.owner(failed.step)
    if owner is not None and owner is not item and owner in gate.selected:
        pytest.skip(f"not run: {owner.nodeid} failed")
    try:
        pytest.fail(failed.message, pytrace=False)
    except pytest.fail.Exception as outcome:
        # Called while the step's failure is being handled: without this, the report would
        # show that failure, "During handling of the above exception", and the same again.
        raise outcome from None


def require(gate: Run, step: str, item: Reporter) -> None:
    """Make sure ``step`` is done before ``item`` runs; a step ``item`` owns is left to it."""
    try:
        gate.require(step)
    except StepFailed as failed:
        if gate.owner(failed.step) is item:
            return
        blocked(gate, failed, item)
