"""What a staging gate and a production deploy share: expensive steps done once, lazily.

Each step (reach a server, dump and restore, check the gate record, apply migrations) is memoised
with its result *or* its error. Every step has an owner, the generated item that reports it: when
a step fails, its owner fails with the message, and the items that needed it are skipped with a
pointer to the owner, or, when the owner was deselected, error out with the message themselves.
So no selection of items can silently skip a failure.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.config.model import GateConfig
from pytest_dbgate.core.errors import CriterionFailed, DbgateError, Figure
from pytest_dbgate.core.results import Progress
from pytest_dbgate.lint.engine import Finding, Lint
from pytest_dbgate.lint.squawk import read_config as read_squawk_config
from pytest_dbgate.migrations.parse import Migration, hold_backs, released_early

if TYPE_CHECKING:
    from pytest_dbgate.core.commands import CommandResult
    from pytest_dbgate.core.criterion import Criterion
    from pytest_dbgate.core.results import Results
    from pytest_dbgate.lint.judge import Judged
    from pytest_dbgate.migrations.apply import Boundary
    from pytest_dbgate.migrations.outcomes import Outcome
    from pytest_dbgate.migrations.runner import Runner
    from pytest_dbgate.pg.connections import Conn, Endpoint
    from pytest_dbgate.pg.databases import ServerIdentity

T = TypeVar("T")


class Reporter(Protocol):
    """The generated item that reports a step (identity matters, not the node id, which
    pytest-xdist rewrites)."""

    @property
    def nodeid(self) -> str: ...


def migration_step(migration: Migration) -> str:
    return f"migration:{migration.id}"


LINT = "lint"  # the step that runs squawk on the release


class StepFailed(Exception):
    """A step failed; ``step`` is the one whose owner reports it (maybe an earlier one)."""

    def __init__(self, step: str, message: str, figures: dict[str, Figure] | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.message = message
        self.figures = dict(figures or {})


@dataclass(frozen=True)
class Database:
    """A database the gate holds a session on."""

    endpoint: Endpoint
    conn: Conn
    identity: ServerIdentity
    embedded: bool
    throwaway: bool = False  # an embedded server removed when the run ends

    @property
    def where(self) -> str:
        return self.endpoint.display() + (" (embedded)" if self.embedded else "")


class Run:
    """One run of the plugin in a mode: its configuration, migrations and memoised steps."""

    mode = ""
    lints = False  # whether the run checks the migrations against the lint rules

    def __init__(
        self,
        config: GateConfig,
        migrations: list[Migration],
        progress: Progress,
        results: Results,
    ) -> None:
        self.config = config
        self.migrations = migrations
        self.progress = progress
        self.results = results
        self.owners: dict[str, Reporter] = {}
        self.selected: set[Reporter] = set()
        self._stack = ExitStack()
        self._memo: dict[str, object] = {}
        # Read when the run opens: an unknown name in dbgate_holdbacks, or a hold-back shorter
        # than its file's, is bad input.
        self.hold_backs = hold_backs(migrations, config.holdbacks)
        if config.release_early and config.mode != "production":
            raise ConfigError.release_early_outside_production()
        self.release_early = released_early(migrations, config.release_early, self.hold_backs)
        # Told at each point of applying a migration (pytest_dbgate_boundary); set by the plugin.
        self.boundary: Boundary | None = None
        # The release read for linting when the run opens (a bad ignore directive or
        # .squawk.toml is bad input); squawk runs when the findings are first asked for.
        self.lint: Lint | None = (
            Lint.read(migrations, read_squawk_config(config.rootdir, config.migrations))
            if self.lints
            else None
        )
        # What each lint item decided, by migration id: annotations and SARIF read it.
        self.judged: dict[str, list[Judged]] = {}

    def all_judged(self) -> list[Judged]:
        """Every lint verdict of the run, in the order the items ran."""
        return [verdict for found in self.judged.values() for verdict in found]

    def close(self) -> None:
        self._stack.close()

    @property
    def findings(self) -> dict[str, list[Finding]]:
        """The lint's findings by migration id (squawk run once); ``StepFailed`` when squawk
        could not lint the release."""
        return self._once(LINT, self._lint)

    def _lint(self) -> dict[str, list[Finding]]:
        if self.lint is None:
            return {}
        return self.lint.findings(self.lint_version())

    def lint_version(self) -> str | None:
        """The PostgreSQL version squawk lints for: the configured one (lint mode)."""
        return self.config.pg_version

    # What the lint judges findings with beyond the release itself: a copy of production and a
    # lock watch, which only the staging gate has.

    def lint_applied_before(self) -> dict[str, str]:
        """Migrations production already had (history, not the release): none known here."""
        return {}

    def lint_rows_met(self, migration: Migration) -> dict[str, int] | None:
        """Rows per table as the migration met them; ``None``: unknown (lint mode)."""
        return None

    def lint_measured(self, migration: Migration) -> str | None:
        """What the lock watch measured while the migration ran, in one line."""
        return None

    def rel(self, migration: Migration) -> str:
        """A migration's path as the user knows it: relative to the project root."""
        return self.shown(migration.path)

    def shown(self, path: Path) -> str:
        """A path as the user knows it: relative to the project root when it is inside."""
        try:
            return str(path.relative_to(self.config.rootdir))
        except ValueError:
            return str(path)

    # -- ownership ---------------------------------------------------------------------------

    def owner(self, step: str) -> Reporter | None:
        return self.owners.get(step)

    def reported_elsewhere(self, step: str, item: Reporter) -> bool:
        owner = self.owners.get(step)
        return owner is not None and owner is not item and owner in self.selected

    # -- steps -------------------------------------------------------------------------------

    def _once(self, step: str, work: Callable[[], T]) -> T:
        if step not in self._memo:
            try:
                self._memo[step] = work()
            except StepFailed as failed:
                self._memo[step] = failed
            except CriterionFailed as failed:
                self._memo[step] = StepFailed(step, failed.message, failed.figures)
            except DbgateError as error:
                self._memo[step] = StepFailed(step, str(error))
        value = self._memo[step]
        if isinstance(value, StepFailed):
            raise value
        return value  # type: ignore[return-value]

    def steps(self) -> dict[str, Callable[[], object]]:
        """The named steps items may require."""
        raise NotImplementedError

    def require(self, step: str) -> object:
        """Run (or recall) a named step; raises :class:`StepFailed`."""
        return self.steps()[step]()

    # -- what the shared criteria read -------------------------------------------------------

    def runner(self) -> Runner:
        """The step that applies the migrations (after whatever must come first)."""
        raise NotImplementedError

    def outcome(self, index: int) -> Outcome:
        return self.runner().outcome(index)

    def outcomes(self) -> list[Outcome]:
        return self.runner().apply_all()

    def migrated(self) -> CommandResult | None:
        """Every migration applied (or held back), then the post-migrate command."""
        raise NotImplementedError

    def target_connection(self, purpose: str = "check") -> Conn:
        """A session on the database the migrations were applied to, closed with the run."""
        raise NotImplementedError

    # -- what the plugin asks every run, whatever its mode ---------------------------------------

    # Whether the project's own tests run in this mode (staging: before and after migrating).
    runs_project_tests = False
    allows_setup_only = True

    def checklist(self) -> list[Criterion[Any]]:
        """Every criterion of this run, in the order a release engineer reads them."""
        raise NotImplementedError

    def header(self) -> list[str]:
        """The lines pytest's header shows for this run."""
        raise NotImplementedError

    def collected(self, selected: set[Reporter], generated: list[Reporter]) -> None:
        """Told what the session selected, before anything runs; a mode that cannot run part
        of its checklist raises :class:`DbgateError` (a usage error)."""
        self.selected = selected


class OnProduction(Run):
    """A run against the production database itself: a deploy, a watch."""

    def __init__(
        self,
        config: GateConfig,
        migrations: list[Migration],
        progress: Progress,
        results: Results,
        target: Endpoint,
    ) -> None:
        super().__init__(config, migrations, progress, results)
        self.target = target

    @staticmethod
    def target_of(config: GateConfig) -> Endpoint:
        """Production's endpoint; a usage error when none is set."""
        from pytest_dbgate.pg.connections import Endpoint

        if config.production_url is None:
            raise ConfigError.no_production_target(config.mode)
        return Endpoint.from_url(config.production_url, config.production_url_setting)


class LintRun(Run):
    """``--dbgate=lint``: the static rules only, no database."""

    mode = "lint"
    lints = True

    def steps(self) -> dict[str, Callable[[], object]]:
        return {LINT: lambda: self.findings}

    def checklist(self) -> list[Criterion[Any]]:
        from pytest_dbgate.lint.criteria import lint_checklist

        return lint_checklist(self)

    def header(self) -> list[str]:
        return [
            f"dbgate: lint of {len(self.migrations)} migration(s) in "
            f"{self.shown(self.config.migrations)} (no database)"
        ]
