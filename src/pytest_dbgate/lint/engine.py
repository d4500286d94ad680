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
    ObjectType,
    TransactionStmtKind,
)

from pytest_dbgate.core.errors import ConfigError
from pytest_dbgate.lint.outside import outside_action
from pytest_dbgate.migrations.parse import Migration, Statement
from pytest_dbgate.migrations.sqltext import read_sql


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    why: str
    fix: str
    # "fail": a finding fails the lint item; "report": shown, never failing.
    severity: str = "fail"
    ignorable: bool = True  # whether `-- dbgate: ignore <rule> <reason>` silences it


RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule(
            "index-not-concurrent",
            "CREATE INDEX, DROP INDEX or REINDEX without CONCURRENTLY on an existing table",
            "CREATE INDEX holds SHARE (blocks writes) and DROP INDEX / REINDEX hold ACCESS "
            "EXCLUSIVE (block reads and writes) on the table for the whole build or drop",
            "add CONCURRENTLY, in a file of its own (it cannot run in a transaction)",
        ),
        Rule(
            "concurrently-in-transaction",
            "a CONCURRENTLY statement inside BEGIN … COMMIT",
            "PostgreSQL refuses CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY and DETACH "
            "PARTITION CONCURRENTLY inside a transaction block: the migration fails",
            "remove the BEGIN/COMMIT around it; the gate runs such a file statement by statement",
        ),
        Rule(
            "constraint-not-valid",
            "a foreign key or check constraint added without NOT VALID to an existing table",
            "adding it validates every existing row while holding SHARE ROW EXCLUSIVE (a foreign "
            "key, on both tables) or ACCESS EXCLUSIVE (a check): writes, or everything, wait",
            "ADD CONSTRAINT … NOT VALID, then ALTER TABLE … VALIDATE CONSTRAINT … in a later "
            "migration (SHARE UPDATE EXCLUSIVE: reads and writes go on)",
        ),
        Rule(
            "constraint-left-not-valid",
            "a constraint added NOT VALID and never validated in the release",
            "existing rows were never checked against it, and the gate's own criterion "
            "(every constraint validated) fails on the migrated database",
            "ALTER TABLE … VALIDATE CONSTRAINT … in a later migration of the same release",
        ),
        Rule(
            "unique-constraint-directly",
            "a UNIQUE or PRIMARY KEY constraint added directly to an existing table",
            "it builds its index under ACCESS EXCLUSIVE: reads and writes wait for the whole build",
            "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT … UNIQUE USING INDEX …",
        ),
        Rule(
            "exclusion-constraint",
            "an EXCLUDE constraint added to an existing table",
            "it builds its index and checks every row under ACCESS EXCLUSIVE, and cannot be "
            "added NOT VALID",
            "create the table with it, or accept a maintenance window for the build",
        ),
        Rule(
            "volatile-default",
            "a column added with a volatile default",
            "a volatile default (random(), gen_random_uuid(), clock_timestamp(), nextval() …) "
            "rewrites the whole table under ACCESS EXCLUSIVE",
            "add the column without a default (or with a constant one), backfill it in batches, "
            "then SET DEFAULT for new rows",
        ),
        Rule(
            "not-null-without-default",
            "a NOT NULL column added to an existing table without a default",
            "it fails on a table with rows, and a release still running does not write the column",
            "add it nullable, backfill it, then add the NOT NULL the safe way (see set-not-null)",
        ),
        Rule(
            "set-not-null",
            "SET NOT NULL without a validated CHECK (column IS NOT NULL)",
            "SET NOT NULL scans the whole table under ACCESS EXCLUSIVE to check it",
            "ADD CONSTRAINT … CHECK (col IS NOT NULL) NOT VALID, VALIDATE it in a later migration, "
            "then SET NOT NULL (PostgreSQL skips the scan) and drop the check",
        ),
        Rule(
            "type-change-rewrite",
            "a column type change that rewrites the table",
            "ALTER COLUMN … TYPE rewrites the table and its indexes under ACCESS EXCLUSIVE "
            "(only a few changes, like varchar(n) to text or a longer varchar, do not)",
            "add a column of the new type, backfill it in batches, switch the application, drop "
            "the old one in a held-back migration",
        ),
        Rule(
            "rewriting-column",
            "a serial, identity or stored generated column added to an existing table",
            "filling it rewrites the whole table under ACCESS EXCLUSIVE",
            "add a plain nullable column, backfill it in batches, then attach the sequence or "
            "default for new rows",
        ),
        Rule(
            "rename",
            "a table or column renamed",
            "the release still running uses the old name: its queries fail from the moment the "
            "migration commits",
            "add the new name alongside (a view, or a new column kept in sync), switch the "
            "application, drop the old name in a held-back migration",
        ),
        Rule(
            "drop",
            "a column, table or database dropped, or a NOT NULL dropped",
            "the release still running reads (or relies on) it: its queries fail once the "
            "migration commits",
            "drop it in a migration held back until the old release is gone "
            "(`-- dbgate: hold-back 7d`)",
        ),
        Rule(
            "truncate-cascade",
            "TRUNCATE … CASCADE",
            "it empties every table that references this one, under ACCESS EXCLUSIVE on all of "
            "them",
            "delete what must go explicitly, table by table, in batches",
        ),
        Rule(
            "detach-not-concurrent",
            "DETACH PARTITION without CONCURRENTLY",
            "it holds ACCESS EXCLUSIVE on the parent table: every query on it waits",
            "DETACH PARTITION … CONCURRENTLY, in a file of its own",
        ),
        Rule(
            "domain-constraint",
            "a constraint added to a domain without NOT VALID",
            "it checks every column of that domain in every table, holding their locks",
            "ALTER DOMAIN … ADD CONSTRAINT … NOT VALID, then VALIDATE CONSTRAINT later",
        ),
        Rule(
            "no-lock-timeout",
            "a lock that blocks reads or writes taken with no lock_timeout set in the file",
            "waiting for the lock, the statement queues every later query on the table behind it",
            "`SET lock_timeout = '500ms'` at the top of the file; `--dbgate=production` sets it "
            "for you (dbgate_lock_timeout), so this is reported, not failed",
            severity="report",
        ),
        Rule(
            "transaction-nesting",
            "BEGIN inside a transaction, or a transaction left open",
            "a nested BEGIN is ignored with a warning (its COMMIT ends the outer transaction), "
            "and an unterminated one is rolled back: the file does not do what it says",
            "one BEGIN … COMMIT pair, or none (the gate runs a file in one transaction already)",
        ),
        Rule(
            "outside-database",
            "a statement that acts outside the migrated database",
            "staging is a copy of one database: what the statement does to other databases, the "
            "server, its files or other servers is not rehearsed there, and on production it "
            "acts on production's server; the gate never applies it and no ignore silences it",
            "take the statement out of the migration and have whoever runs the server do it, "
            "on purpose, outside the release",
            ignorable=False,
        ),
        Rule(
            "not-idempotent",
            "a statement without IF [NOT] EXISTS in a file that runs statement by statement",
            "such a file cannot be rolled back: after a failure half of it stays applied, and "
            "re-running it fails on what already exists",
            "write CREATE … IF NOT EXISTS / DROP … IF EXISTS (or guard it in a DO block)",
        ),
    )
}

IGNORE = re.compile(
    r"--[ \t]*dbgate[ \t]*:[ \t]*ignore[ \t]+(?P<rule>[a-z0-9-]+)"
    r"(?:[ \t]+(?P<reason>\S.*?))?[ \t]*$",
    re.MULTILINE | re.IGNORECASE,
)
VOLATILE = {
    "random",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "clock_timestamp",
    "timeofday",
    "statement_timestamp",
    "nextval",
    "setseed",
    "random_normal",
}
SERIAL_TYPES = {"serial", "bigserial", "smallserial", "serial2", "serial4", "serial8"}
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
    not_null_checks: set[tuple[str, str]] = field(default_factory=set)
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
            action = outside_action(statement)
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
    text = read_sql(migration.path, "migration")
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


Check = tuple[str, str | None, str]


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
            if cmd.name:
                release.not_null_checks.add((_bare(table or ""), cmd.name))
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


def _added_column(definition: ast.ColumnDef, table: str | None) -> Iterator[Check]:
    constraints = [c for c in definition.constraints or () if isinstance(c, ast.Constraint)]
    kinds = {c.contype for c in constraints}
    name = definition.colname
    type_name = _type_name(definition)
    if type_name in SERIAL_TYPES:
        yield "rewriting-column", table, f"{table}.{name} added as {type_name}"
        return
    if ConstrType.CONSTR_IDENTITY in kinds:
        yield "rewriting-column", table, f"{table}.{name} added as an identity column"
        return
    if ConstrType.CONSTR_GENERATED in kinds:
        yield "rewriting-column", table, f"{table}.{name} added as a stored generated column"
        return
    if ConstrType.CONSTR_CHECK in kinds or ConstrType.CONSTR_FOREIGN in kinds:
        what = "CHECK" if ConstrType.CONSTR_CHECK in kinds else "REFERENCES"
        yield (
            "constraint-not-valid",
            table,
            f"{table}.{name} added with a {what} constraint, validated against every row",
        )
    default = next((c for c in constraints if c.contype == ConstrType.CONSTR_DEFAULT), None)
    if default is not None and _volatile(default.raw_expr):
        yield "volatile-default", table, f"{table}.{name} added with a volatile default"
    if ConstrType.CONSTR_NOTNULL in kinds and default is None:
        yield "not-null-without-default", table, f"{table}.{name} added NOT NULL without a default"


def _type_name(definition: ast.ColumnDef) -> str:
    type_name = definition.typeName
    names = [getattr(n, "sval", "") for n in (type_name.names or ())] if type_name else []
    name = names[-1] if names else ""
    return {"int4": "integer", "int8": "bigint", "int2": "smallint"}.get(name, name)


def _volatile(expression: object) -> bool:
    found = False

    def visit(value: object) -> None:
        nonlocal found
        if isinstance(value, ast.FuncCall):
            name = getattr(value.funcname[-1], "sval", "") if value.funcname else ""
            if name in VOLATILE:
                found = True
        if isinstance(value, ast.Node):
            for attribute in value:
                visit(getattr(value, attribute))
        elif isinstance(value, tuple | list):
            for item in value:
                visit(item)

    visit(expression)
    return found


def _has_not_null_check(release: _Release, table: str | None, column: str | None) -> bool:
    """A CHECK (column IS NOT NULL) validated earlier in the release lets SET NOT NULL skip
    the scan; by name we can only tell it was validated, which is what matters."""
    return any(t == _bare(table or "") for t, _ in release.not_null_checks)


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
            if (
                cmd.subtype == AlterTableType.AT_AddConstraint
                and isinstance(definition, ast.Constraint)
                and definition.skip_validation
                and definition.conname
            ):
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
