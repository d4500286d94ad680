"""The gate's own rules: what squawk does not check, one rule per module, each with the cases
that show it firing on the unsafe statement and quiet on the safe one (run by the tests).

A module defines ``RULE`` (its catalog entry), ``check(statement, context)`` yielding
``(rule id, relation, what it found)``, ``CASES``, and may name squawk rules it stands aside
for (``COVERED_BY``: squawk already flags that statement) or stands in for (``SUPERSEDES``: the
own rule says it more exactly, squawk's finding on that statement is dropped).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_dbgate.lint.release import Release
    from pytest_dbgate.lint.rule import Check
    from pytest_dbgate.migrations.parse import Statement


@dataclass(frozen=True)
class Case:
    """An example for a rule: a release's migrations (the earlier ones stand for what is already
    deployed when ``history`` is set), the rule firing or not on the last."""

    sql: str
    fires: bool
    history: str = ""  # SQL production already has (tables the case then treats as existing)


@dataclass(frozen=True)
class Context:
    """Where a statement runs: inside an explicit BEGIN of the file, and what the release did
    before it."""

    in_block: bool
    release: Release


NAMES = (
    "column_constraint",
    "concurrently_false",
    "concurrently_in_transaction",
    "constraint_left_not_valid",
    "exclusion_constraint",
    "large_write",
    "outside_database",
    "rewrite_command",
    "serial_column",
)


def _modules() -> tuple[ModuleType, ...]:
    return tuple(importlib.import_module(f"{__name__}.{name}") for name in NAMES)


OWN_RULES: tuple[ModuleType, ...] = _modules()


def check_statement(statement: Statement, context: Context) -> Iterator[tuple[ModuleType, Check]]:
    for module in OWN_RULES:
        for found in module.check(statement, context):
            yield module, found
