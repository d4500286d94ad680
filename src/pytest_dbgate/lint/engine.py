"""The lint of a release: squawk's rules and the gate's own, each finding placed on its statement,
with what the release itself did before it.

squawk reads each file as the runner will run it; the gate's own rules (``lint.rules``) cover
what squawk does not check. Walking the release in order, the engine marks a finding on
something the release itself made (a table it created, a column it added) as *new*: the judge
(``lint.judge``) reports those instead of failing them, as it does for small tables in staging.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_dbgate.config.settings import SETTING
from pytest_dbgate.lint import squawk
from pytest_dbgate.lint.catalog import RULES, unknown
from pytest_dbgate.lint.ignores import Ignores, read_ignores
from pytest_dbgate.lint.release import Release, target
from pytest_dbgate.lint.rule import Rule
from pytest_dbgate.lint.rules import Context, check_statement
from pytest_dbgate.lint.rules.constraint_left_not_valid import left
from pytest_dbgate.migrations.parse import Migration, Statement

# squawk rules that say less than another squawk rule firing on the same statement: a foreign
# key or a primary key is flagged by its own rule, whose advice fits it (a primary key cannot
# be added NOT VALID).
SAYS_LESS = {
    "constraint-missing-not-valid": {
        "adding-foreign-key-constraint",
        "adding-serial-primary-key-field",
    },
}


@dataclass(frozen=True)
class Finding:
    rule: Rule
    migration: Migration
    statement: Statement
    line: int  # the file line it points at (squawk's, or the statement's first)
    detail: str  # what was found: squawk's message, or the own rule's
    help: str = ""  # squawk's help, when it gave one
    column: int = 1
    table: str | None = None  # the relation the statement acts on
    new: bool = False  # it acts only on what the release itself made
    exempt: str | None = None  # why it is harmless after all (a validated NOT NULL check)
    ignored: str | None = None  # the reason given in an ignore directive
    held_back: bool = False  # its migration is held back (a drop there is the sanctioned way)

    @property
    def why(self) -> str:
        return self.rule.why or self.detail

    @property
    def fix(self) -> str:
        return self.rule.fix or self.help


@dataclass(frozen=True)
class Lint:
    """A release read for linting: its migrations and their ignore directives, checked when the
    run opens (a bad directive is bad input); squawk runs when the findings are first asked."""

    migrations: tuple[Migration, ...]
    ignores: dict[str, Ignores]
    config: squawk.SquawkConfig

    @classmethod
    def read(cls, migrations: Sequence[Migration], config: squawk.SquawkConfig) -> Lint:
        return cls(tuple(migrations), {m.id: read_ignores(m) for m in migrations}, config)

    def findings(self, pg_version: str | None) -> dict[str, list[Finding]]:
        """Every finding, by migration id, in file order; ``pg_version`` as squawk takes it."""
        texts = [(m.sql or m.text, _wrapped(m)) for m in self.migrations]
        version = pg_version or self.config.pg_version or SETTING["pg_version"].word()
        reported = squawk.run(texts, version, self.config)
        release = Release()
        found: dict[str, list[Finding]] = {}
        for migration, raws in zip(self.migrations, reported, strict=True):
            found[migration.id] = self._file(migration, raws, release)
        for migration, statement, (rule_id, table, detail) in left(release):
            found[migration.id].append(
                self._finding(RULES[rule_id], migration, statement, detail, table=table)
            )
        for findings in found.values():
            findings.sort(key=lambda f: (f.line, f.column, f.rule.id))
        return found

    def _file(
        self, migration: Migration, raws: list[squawk.Raw], release: Release
    ) -> list[Finding]:
        statements = migration.statements
        starts = [s.line for s in statements]
        by_statement: dict[int, list[squawk.Raw]] = {}
        for raw in raws:
            position = max(bisect.bisect_right(starts, raw.line) - 1, 0)
            by_statement.setdefault(position, []).append(raw)
        findings: list[Finding] = []
        depth = 0
        for position, statement in enumerate(statements):
            node = statement.tree
            depth = _depth(statement, depth)
            new = release.is_new(node)
            own = list(check_statement(statement, Context(depth > 0, release)))
            theirs = by_statement.get(position, [])
            fired = {raw.rule for raw in theirs}
            superseded = {r for module, _ in own for r in module.SUPERSEDES}
            superseded |= {r for r, better in SAYS_LESS.items() if fired & better}
            for raw in theirs:
                if raw.rule in superseded:
                    continue
                rule = RULES.get(raw.rule) or unknown(raw.rule, raw.message, raw.help)
                findings.append(
                    self._finding(
                        rule,
                        migration,
                        statement,
                        raw.message,
                        line=raw.line,
                        column=raw.column,
                        help_text=raw.help or "",
                        table=target(node),
                        new=new,
                        exempt=release.scan_skipped(node)
                        if raw.rule == "adding-not-nullable-field"
                        else None,
                    )
                )
            for module, (rule_id, table, detail) in own:
                if fired & module.COVERED_BY:
                    continue
                findings.append(
                    self._finding(
                        RULES[rule_id], migration, statement, detail, table=table, new=new
                    )
                )
            release.remember(node, migration, statement)
        return findings

    def _finding(
        self,
        rule: Rule,
        migration: Migration,
        statement: Statement,
        detail: str,
        *,
        line: int | None = None,
        column: int = 1,
        help_text: str = "",
        table: str | None = None,
        new: bool = False,
        exempt: str | None = None,
    ) -> Finding:
        return Finding(
            rule,
            migration,
            statement,
            line if line is not None else statement.line,
            detail,
            help_text,
            column,
            table,
            new,
            exempt,
            self.ignores[migration.id].reason(rule.id, statement.line),
            held_back=migration.hold_back is not None,
        )


def _wrapped(migration: Migration) -> bool:
    """Whether the runner wraps the file in one transaction: it runs in one and does not open
    its own (a file with BEGIN … COMMIT runs them as written)."""
    return migration.transactional and not any(s.control for s in migration.statements)


def _depth(statement: Statement, depth: int) -> int:
    """How deep in the file's own BEGIN blocks the statement is (``COMMIT AND CHAIN`` keeps the
    block open)."""
    if statement.control == "begin":
        return depth + 1
    if statement.control in ("commit", "rollback", "prepare") and not statement.chain:
        return max(depth - 1, 0)
    return depth
