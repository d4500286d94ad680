"""The criterion: one generated test. It names the steps it needs (prepared before it runs, so a
broken prerequisite shows as a skip or an error, not as this criterion failing), checks one thing
and returns the figures it measured; a failure message names the object and the fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from pytest_dbgate.core.errors import Figure
from pytest_dbgate.core.run import Run

Figures = dict[str, Figure]

USER_SCHEMAS = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'"
)


class DbgateWarning(UserWarning):
    """Something a release engineer should see that does not fail the gate."""


R = TypeVar("R", bound=Run)


@dataclass(frozen=True)
class Criterion(Generic[R]):
    """One generated test, checked against a run of type ``R`` (a staging gate, a deploy, or
    any run for the checks both share)."""

    stage: ClassVar[str]
    # Where in its stage: below 0 before the project's phased tests, above 0 after them.
    position: ClassVar[int] = -1
    name: str
    path: Path
    requires: tuple[str, ...] = ()
    owns: tuple[str, ...] = ()
    needs_migrations: bool = field(default=False, kw_only=True)
    per_file: ClassVar[bool] = False  # named ``<file>::<check>`` rather than dbgate::<stage>::…

    def check(self, gate: R) -> Figures:
        raise NotImplementedError
