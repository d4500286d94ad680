"""Static safety rules for migrations, read from PostgreSQL's own syntax tree (pglast).

Every rule comes from how PostgreSQL locks and rewrites: which statement takes a lock that blocks
reads or writes, for how long (a scan, a rewrite, an index build), and what breaks the release
that is still running while the migration applies. The linter walks the release in order and
remembers what the release itself created: building an index on a table created earlier in the
same release harms nobody, since nobody else uses that table yet.

No database is needed; in the staging gate the restored copy adds the one thing a static linter
cannot know, how many rows a table has.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pglast import ast
from pglast.enums import (
    AlterTableType,
    ConstrType,
    DropBehavior,
    NullTestType,
    ObjectType,
    TransactionStmtKind,
)

from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.lint.columns import _added_column, _type_name
from pytest_dbgate.lint.rules import RULES, Check, Rule
from pytest_dbgate.migrations.parse import Migration, Statement

IGNORE = re.compile(
    r"--[ \t]*dbgate[ \t]*:[ \t]*ignore[ \t]+(?P<rule>[a-z0-9-]+)"
    r"(?:[ \t]+(?P<reason>\S.*?))?[ \t]*$",
    re.MULTILINE | re.IGNORECASE,
)
# Type changes PostgreSQL makes without a rewrite when the old type is one of these.
NO_REWRITE_TARGETS = {"text", "varchar"}


@dataclass(frozen=True)
class Finding:
    rule: Rule
    migration: Migration
    statement: Statement
    detail: str
    table: str | None = None
    ignored: str | None = None  # the reason given in an ignore directive
    held_back: bool = False

    @property
    def fails(self) -> bool:
        silenced = self.ignored is not None and self.rule.ignorable
        return self.rule.severity == "fail" and not silenced and not self.held_back

    def describe(self, rel: str) -> str:
        lines = [f"{rel}:{self.statement.line}: [{self.rule.id}] {self.detail}"]
        lines.append(f"    {self.statement.excerpt()}")
        if self.ignored is not None and not self.rule.ignorable:
            lines.append(f"    why: {self.rule.why} (the ignore, {self.ignored!r}, is refused)")
            lines.append(f"    fix: {self.rule.fix}")
        elif self.ignored is not None:
            lines.append(f"    ignored: {self.ignored}")
        elif self.held_back:
            lines.append("    held back: the sanctioned way to remove what the old release reads")
        else:
            lines.append(f"    why: {self.rule.why}")
            lines.append(f"    fix: {self.rule.fix}")
        return "\n".join(lines)


@dataclass
class _Release:
    """What the release did so far: tables it created, NOT NULL checks it validated."""

    created: set[str] = field(default_factory=set)
    # Columns the release added to tables that existed, and indexes it built (by name, the
    # table they are on): the old release never used them, so dropping them harms nobody.
    added_columns: set[tuple[str, str]] = field(default_factory=set)
    index_tables: dict[str, str] = field(default_factory=dict)
    # (table, column) with a validated CHECK (column IS NOT NULL): SET NOT NULL skips its scan.
    not_null_checks: set[tuple[str, str]] = field(default_factory=set)
    # CHECK (column IS NOT NULL) constraints added NOT VALID: (table, name) → column.
    not_null_candidates: dict[tuple[str, str], str] = field(default_factory=dict)
    # Constraints added NOT VALID: (table, name) → where, until a VALIDATE names them.
    not_valid: dict[tuple[str, str], tuple[Migration, Statement]] = field(default_factory=dict)

    def existing(self, table: str | None) -> bool:
        return table is not None and _bare(table) not in self.created


def lint(migrations: Sequence[Migration]) -> dict[str, list[Finding]]:
    """Every finding, by migration id, in file order."""
    release = _Release()
    found: dict[str, list[Finding]] = {}
    ignored: dict[str, dict[tuple[str, int], str]] = {}
    for migration in migrations:
        ignores = ignored[migration.id] = _ignores(migration)
        findings: list[Finding] = []
        lock_timeout = False
        depth = 0
        last = migration.statements[-1]
        for statement in migration.statements:
            node = statement.tree
            if node is None:
                continue
            if isinstance(node, ast.VariableSetStmt) and node.name == "lock_timeout":
                lock_timeout = True
            depth = _transactions(node, depth, migration, statement, findings)
            followed = statement is not last  # a later failure would leave this one applied
            for rule_id, table, detail in _check(node, release, migration, depth > 0, followed):
                if rule_id == "no-lock-timeout" and lock_timeout:
                    continue
                findings.append(
                    Finding(
                        RULES[rule_id],
                        migration,
                        statement,
                        detail,
                        table,
                        ignores.get((rule_id, statement.line), ignores.get((rule_id, 0))),
                        held_back=rule_id == "drop" and migration.hold_back is not None,
                    )
                )
            action = statement.outside
            if action is not None:
                findings.append(
                    Finding(
                        RULES["outside-database"],
                        migration,
                        statement,
                        f"acts outside the migrated database: it {action}",
                        ignored=ignores.get(
                            ("outside-database", statement.line),
                            ignores.get(("outside-database", 0)),
                        ),
                    )
                )
            _remember(node, release, migration, statement)
        if depth > 0:
            findings.append(
                Finding(
                    RULES["transaction-nesting"],
                    migration,
                    last,
                    "the file ends inside a transaction (BEGIN without COMMIT)",
                    ignored=ignores.get(("transaction-nesting", 0)),
                )
            )
        found[migration.id] = findings
    for (table, name), (migration, statement) in release.not_valid.items():
        ignores = ignored[migration.id]
        found[migration.id].append(
            Finding(
                RULES["constraint-left-not-valid"],
                migration,
                statement,
                f"{table}.{name} is added NOT VALID and no later migration validates it",
                table,
                ignores.get(
                    ("constraint-left-not-valid", statement.line),
                    ignores.get(("constraint-left-not-valid", 0)),
                ),
            )
        )
    return found


def _ignores(migration: Migration) -> dict[tuple[str, int], str]:
    """``-- dbgate: ignore <rule> <reason>`` in the comment lines right above a statement (that
    statement), or at the top of the file separated from the first statement by a blank line
    (the whole file)."""
    text = migration.text
    lines = text.splitlines()
    first = migration.statements[0].line
    starts = {s.line for s in migration.statements}
    ignores: dict[tuple[str, int], str] = {}
    for match in IGNORE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        rule, reason = match.group("rule").lower(), match.group("reason")
        if rule not in RULES:
            raise ConfigError.unknown_rule(migration.path, line, rule, sorted(RULES))
        if not reason:
            raise ConfigError.ignore_without_reason(migration.path, line, rule)
        between = lines[line : first - 1]
        if line < first and any(not text_line.strip() for text_line in between):
            ignores[(rule, 0)] = reason
        else:
            target = min((s for s in starts if s >= line), default=line)
            ignores[(rule, target)] = reason
    return ignores


def _transactions(
    node: ast.Node,
    depth: int,
    migration: Migration,
    statement: Statement,
    findings: list[Finding],
) -> int:
    if not isinstance(node, ast.TransactionStmt):
        return depth
    if node.kind in (TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START):
        if depth > 0:
            findings.append(
                Finding(
                    RULES["transaction-nesting"],
                    migration,
                    statement,
                    "BEGIN inside a transaction that is already open",
                )
            )
        return depth + 1
    if node.kind in (
        TransactionStmtKind.TRANS_STMT_COMMIT,
        TransactionStmtKind.TRANS_STMT_ROLLBACK,
    ):
        return max(depth - 1, 0)
    return depth


def _check(
    node: ast.Node, release: _Release, migration: Migration, in_block: bool, followed: bool
) -> Iterator[Check]:
    yield from _indexes(node, release, in_block)
    yield from _alter_table(node, release)
    yield from _others(node, release, in_block)
    if not migration.transactional and not in_block and followed:
        yield from _idempotent(node)


def _table(relation: ast.RangeVar | None) -> str | None:
    if relation is None:
        return None
    return f"{relation.schemaname}.{relation.relname}" if relation.schemaname else relation.relname


def _bare(name: str) -> str:
    return name.split(".")[-1]


def _indexes(node: ast.Node, release: _Release, in_block: bool) -> Iterator[Check]:
    if isinstance(node, ast.IndexStmt):
        table = _table(node.relation)
        if node.concurrent and in_block:
            yield "concurrently-in-transaction", table, "CREATE INDEX CONCURRENTLY inside BEGIN"
        elif not node.concurrent and release.existing(table):
            yield "index-not-concurrent", table, f"CREATE INDEX on {table} without CONCURRENTLY"
            yield "no-lock-timeout", table, f"SHARE on {table}"
    elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_INDEX:
        if node.concurrent and in_block:
            yield "concurrently-in-transaction", None, "DROP INDEX CONCURRENTLY inside BEGIN"
        elif not node.concurrent:
            # An index the release built on a table the release created locks nobody's table.
            on = [
                release.index_tables.get(_bare(".".join(getattr(n, "sval", "") for n in obj)))
                for obj in node.objects or ()
                if isinstance(obj, tuple)
            ]
            if not on or any(table is None or release.existing(table) for table in on):
                yield "index-not-concurrent", None, "DROP INDEX without CONCURRENTLY"
    elif isinstance(node, ast.ReindexStmt):
        concurrent = any(getattr(p, "defname", None) == "concurrently" for p in node.params or ())
        table = _table(node.relation)
        if concurrent and in_block:
            yield "concurrently-in-transaction", table, "REINDEX CONCURRENTLY inside BEGIN"
        elif not concurrent and (table is None or release.existing(table)):
            yield "index-not-concurrent", table, "REINDEX without CONCURRENTLY"


def _alter_table(node: ast.Node, release: _Release) -> Iterator[Check]:
    if not isinstance(node, ast.AlterTableStmt) or node.objtype != ObjectType.OBJECT_TABLE:
        return
    table = _table(node.relation)
    existing = release.existing(table)
    dangerous = False
    for cmd in node.cmds or ():
        if not isinstance(cmd, ast.AlterTableCmd):
            continue
        definition = cmd.def_
        subtype = cmd.subtype
        if subtype == AlterTableType.AT_AddConstraint and isinstance(definition, ast.Constraint):
            dangerous = True
            kind = definition.contype
            if not existing:
                continue
            if kind in (ConstrType.CONSTR_FOREIGN, ConstrType.CONSTR_CHECK):
                if not definition.skip_validation:
                    what = "FOREIGN KEY" if kind == ConstrType.CONSTR_FOREIGN else "CHECK"
                    yield (
                        "constraint-not-valid",
                        table,
                        f"{what} added to {table} without NOT VALID",
                    )
            elif kind in (ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_PRIMARY):
                if not definition.indexname:
                    yield (
                        "unique-constraint-directly",
                        table,
                        f"UNIQUE/PRIMARY KEY built on {table}",
                    )
            elif kind == ConstrType.CONSTR_EXCLUSION:
                yield "exclusion-constraint", table, f"EXCLUDE constraint built on {table}"
        elif subtype == AlterTableType.AT_ValidateConstraint:
            column = release.not_null_candidates.get((_bare(table or ""), cmd.name or ""))
            if column is not None:
                release.not_null_checks.add((_bare(table or ""), column))
        elif subtype == AlterTableType.AT_AddColumn and isinstance(definition, ast.ColumnDef):
            dangerous = True
            if existing:
                yield from _added_column(definition, table)
        elif subtype == AlterTableType.AT_AlterColumnType and isinstance(definition, ast.ColumnDef):
            dangerous = True
            target = _type_name(definition)
            if existing and target not in NO_REWRITE_TARGETS:
                yield (
                    "type-change-rewrite",
                    table,
                    f"{table}.{cmd.name} changes type to {target}",
                )
        elif subtype == AlterTableType.AT_SetNotNull:
            dangerous = True
            if existing and not _has_not_null_check(release, table, cmd.name):
                yield "set-not-null", table, f"{table}.{cmd.name} SET NOT NULL scans the table"
        elif subtype == AlterTableType.AT_DropColumn:
            dangerous = True
            if existing and (_bare(table or ""), cmd.name or "") not in release.added_columns:
                yield "drop", table, f"column {table}.{cmd.name} dropped"
        elif subtype == AlterTableType.AT_DropNotNull:
            if existing:
                yield "drop", table, f"NOT NULL of {table}.{cmd.name} dropped"
        elif subtype == AlterTableType.AT_DetachPartition and isinstance(
            definition, ast.PartitionCmd
        ):
            if not definition.concurrent:
                dangerous = True
                yield "detach-not-concurrent", table, f"partition detached from {table}"
        elif subtype in (AlterTableType.AT_AttachPartition,):
            dangerous = True
    if dangerous and existing:
        yield "no-lock-timeout", table, f"ALTER TABLE {table}"


def _has_not_null_check(release: _Release, table: str | None, column: str | None) -> bool:
    """A CHECK (column IS NOT NULL) of this very column, validated earlier in the release, lets
    SET NOT NULL skip the scan; another constraint validated on the table does not."""
    return (_bare(table or ""), column or "") in release.not_null_checks


def _not_null_column(constraint: ast.Constraint) -> str | None:
    """The column of a ``CHECK (column IS NOT NULL)``, or ``None`` for any other constraint."""
    expression = constraint.raw_expr
    if (
        constraint.contype != ConstrType.CONSTR_CHECK
        or not isinstance(expression, ast.NullTest)
        or expression.nulltesttype != NullTestType.IS_NOT_NULL
        or not isinstance(expression.arg, ast.ColumnRef)
    ):
        return None
    last = (expression.arg.fields or ())[-1:]
    return last[0].sval if last and isinstance(last[0], ast.String) else None


def _others(node: ast.Node, release: _Release, in_block: bool) -> Iterator[Check]:
    if isinstance(node, ast.RenameStmt) and node.renameType in (
        ObjectType.OBJECT_COLUMN,
        ObjectType.OBJECT_TABLE,
    ):
        table = _table(node.relation)
        if release.existing(table):
            what = "column" if node.renameType == ObjectType.OBJECT_COLUMN else "table"
            yield "rename", table, f"{what} {node.subname or table} renamed to {node.newname}"
    elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_TABLE:
        for obj in node.objects or ():
            names = [getattr(n, "sval", "") for n in obj] if isinstance(obj, tuple) else []
            name = ".".join(names)
            if name and release.existing(name):
                yield "drop", name, f"table {name} dropped"
    elif isinstance(node, ast.DropdbStmt):
        yield "drop", None, f"database {node.dbname} dropped"
    elif (
        isinstance(node, ast.UpdateStmt | ast.DeleteStmt)
        and node.whereClause is None
        and release.existing(_table(node.relation))
    ):
        verb = "UPDATE" if isinstance(node, ast.UpdateStmt) else "DELETE"
        table = _table(node.relation)
        yield "large-write", table, f"{verb} of every row of {table} in one statement"
    elif isinstance(node, ast.TruncateStmt) and node.behavior == DropBehavior.DROP_CASCADE:
        tables = ", ".join(_table(r) or "" for r in node.relations or ())
        yield "truncate-cascade", None, f"TRUNCATE {tables} CASCADE"
    elif isinstance(node, ast.AlterDomainStmt) and node.subtype == "C":
        constraint = node.def_
        if isinstance(constraint, ast.Constraint) and not constraint.skip_validation:
            yield "domain-constraint", None, "constraint added to a domain without NOT VALID"
    elif (
        isinstance(node, ast.AlterTableStmt)
        and in_block
        and any(
            isinstance(c, ast.AlterTableCmd)
            and c.subtype == AlterTableType.AT_DetachPartition
            and isinstance(c.def_, ast.PartitionCmd)
            and c.def_.concurrent
            for c in node.cmds or ()
        )
    ):
        yield "concurrently-in-transaction", _table(node.relation), "DETACH PARTITION CONCURRENTLY"


def _idempotent(node: ast.Node) -> Iterator[Check]:
    if isinstance(node, ast.IndexStmt) and not node.if_not_exists:
        yield "not-idempotent", _table(node.relation), "CREATE INDEX without IF NOT EXISTS"
    elif isinstance(node, ast.CreateStmt) and not node.if_not_exists:
        yield "not-idempotent", _table(node.relation), "CREATE TABLE without IF NOT EXISTS"
    elif isinstance(node, ast.DropStmt) and not node.missing_ok:
        yield "not-idempotent", None, "DROP without IF EXISTS"


def _remember(
    node: ast.Node, release: _Release, migration: Migration, statement: Statement
) -> None:
    if isinstance(node, ast.AlterTableStmt):
        table = _bare(_table(node.relation) or "")
        for cmd in node.cmds or ():
            if not isinstance(cmd, ast.AlterTableCmd):
                continue
            definition = cmd.def_
            if cmd.subtype == AlterTableType.AT_AddConstraint and isinstance(
                definition, ast.Constraint
            ):
                column = _not_null_column(definition)
                if column is not None and not definition.skip_validation:
                    release.not_null_checks.add((table, column))
                elif column is not None and definition.conname:
                    release.not_null_candidates[(table, definition.conname)] = column
                if definition.skip_validation and definition.conname:
                    release.not_valid[(table, definition.conname)] = (migration, statement)
            elif cmd.subtype == AlterTableType.AT_ValidateConstraint and cmd.name:
                release.not_valid.pop((table, cmd.name), None)
    if isinstance(node, ast.AlterTableStmt):
        table = _bare(_table(node.relation) or "")
        for cmd in node.cmds or ():
            if (
                isinstance(cmd, ast.AlterTableCmd)
                and cmd.subtype == AlterTableType.AT_AddColumn
                and isinstance(cmd.def_, ast.ColumnDef)
                and cmd.def_.colname
            ):
                release.added_columns.add((table, cmd.def_.colname))
    if isinstance(node, ast.IndexStmt) and node.idxname:
        release.index_tables[node.idxname] = _table(node.relation) or ""
    if (
        isinstance(node, ast.RenameStmt)
        and node.renameType == ObjectType.OBJECT_TABLE
        and node.newname
        and not release.existing(_table(node.relation))
    ):
        release.created.add(node.newname)  # a table the release made, under its new name
    relation = None
    if isinstance(node, ast.CreateStmt):
        relation = node.relation
    elif isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
        relation = node.into.rel
    created = _table(relation)
    if created:
        release.created.add(_bare(created))
