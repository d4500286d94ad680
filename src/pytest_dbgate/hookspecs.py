"""Hooks pytest-dbgate calls, for a plugin or a ``conftest.py`` to implement."""

from __future__ import annotations

import pytest


@pytest.hookspec
def pytest_dbgate_boundary(mode: str, point: str, migration: str, statement: int | None) -> None:
    """Called at each point of applying a migration where a run can stop.

    ``point`` is one of ``statement:start`` (nothing of the statement done), ``statement:marked``
    (a statement that commits on its own is recorded *in doubt*), ``statement:done`` (it ran;
    its record, or in one transaction the commit, is still to come), ``statement:recorded``,
    ``migration:commit`` (a one-transaction file and its row, before COMMIT) and
    ``migration:recorded``. ``migration`` is the migration's id (``<version>_<name>``),
    ``statement`` its 1-based position in the file (``None`` for the file as a whole), ``mode``
    ``staging`` or ``production``.

    For progress reporting, or for proving that a run killed at any of these points and run
    again applies every statement exactly once (the plugin's own crash tests do that).
    """
