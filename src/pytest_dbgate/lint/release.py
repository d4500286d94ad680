"""What the release did so far, statement by statement: the context squawk cannot have, since it
reads one file at a time. A table the release created, a column it added, an index it built on
such a table: the release still running never used them, so locking or dropping them harms
nobody. And the constraints it left NOT VALID."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, NullTestType, ObjectType

from pytest_dbgate.migrations.parse import Migration, Statement


def relation_name(relation: ast.RangeVar | None) -> str | None:
    """A relation as the statement named it, schema included when given (``app.Document``)."""
    if relation is None:
        return None
    return f"{relation.schemaname}.{relation.relname}" if relation.schemaname else relation.relname


def commands(node: ast.Node | None, subtype: AlterTableType) -> Iterator[tuple[str | None, object]]:
    """(table, definition) of each ``ALTER TABLE`` command of ``subtype`` in the statement."""
    if not isinstance(node, ast.AlterTableStmt):
        return
    table = relation_name(node.relation)
    for cmd in node.cmds or ():
        if isinstance(cmd, ast.AlterTableCmd) and cmd.subtype == subtype:
            yield table, cmd.def_


def bare(name: str) -> str:
    return name.split(".")[-1]


def target(node: ast.Node | None) -> str | None:
    """The relation a statement acts on: the one whose size and age decide what its lock costs."""
    relation = getattr(node, "relation", None)
    if isinstance(relation, ast.RangeVar):
        return relation_name(relation)
    if isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_TABLE:
        for obj in node.objects or ():
            if isinstance(obj, tuple):
                return ".".join(getattr(n, "sval", "") for n in obj)
    if isinstance(node, ast.VacuumStmt):
        for rel in node.rels or ():
            return relation_name(getattr(rel, "relation", None))
    if isinstance(node, ast.TruncateStmt):
        for relation in node.relations or ():
            return relation_name(relation)
    return None


@dataclass
class Release:
    """What the release did so far."""

    created: set[str] = field(default_factory=set)
    # Columns the release added to tables that existed, and indexes it built (by name, the
    # table they are on).
    added_columns: set[tuple[str, str]] = field(default_factory=set)
    index_tables: dict[str, str] = field(default_factory=dict)
    # Constraints added NOT VALID: (table, name) → where, until a VALIDATE names them.
    not_valid: dict[tuple[str, str], tuple[Migration, Statement]] = field(default_factory=dict)
    # (table, column) with a validated CHECK (column IS NOT NULL): SET NOT NULL skips its scan;
    # and such checks added NOT VALID, (table, name) → column, until validated.
    not_null_checks: set[tuple[str, str]] = field(default_factory=set)
    not_null_candidates: dict[tuple[str, str], str] = field(default_factory=dict)

    def existing(self, table: str | None) -> bool:
        return table is not None and bare(table) not in self.created

    def is_new(self, node: ast.Node | None) -> bool:
        """Whether the statement acts only on what the release itself made: a table it created
        (or renamed from one it created), a column it added, an index it built on such a table."""
        if isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_INDEX:
            tables = [
                self.index_tables.get(bare(".".join(getattr(n, "sval", "") for n in obj)))
                for obj in node.objects or ()
                if isinstance(obj, tuple)
            ]
            return bool(tables) and all(t is not None and not self.existing(t) for t in tables)
        table = target(node)
        if table is None:
            return False
        if not self.existing(table):
            return True
        if isinstance(node, ast.AlterTableStmt):
            dropped = [
                cmd.name
                for cmd in node.cmds or ()
                if isinstance(cmd, ast.AlterTableCmd)
                and cmd.subtype == AlterTableType.AT_DropColumn
            ]
            return bool(dropped) and all(
                (bare(table), name or "") in self.added_columns for name in dropped
            )
        if isinstance(node, ast.RenameStmt) and node.renameType == ObjectType.OBJECT_COLUMN:
            return (bare(table), node.subname or "") in self.added_columns
        return False

    def scan_skipped(self, node: ast.Node | None) -> str | None:
        """Why a SET NOT NULL does not scan: a CHECK (column IS NOT NULL) of that very column was
        validated before it in the release (PostgreSQL then trusts the check)."""
        if not isinstance(node, ast.AlterTableStmt):
            return None
        table = bare(relation_name(node.relation) or "")
        columns = [
            cmd.name or ""
            for cmd in node.cmds or ()
            if isinstance(cmd, ast.AlterTableCmd) and cmd.subtype == AlterTableType.AT_SetNotNull
        ]
        if columns and all((table, column) in self.not_null_checks for column in columns):
            return (
                f"a CHECK ({', '.join(columns)} IS NOT NULL) was validated earlier in the release: "
                "PostgreSQL skips the scan"
            )
        return None

    def remember(self, node: ast.Node | None, migration: Migration, statement: Statement) -> None:
        if isinstance(node, ast.AlterTableStmt):
            self._altered(node, migration, statement)
        elif isinstance(node, ast.IndexStmt) and node.idxname:
            self.index_tables[node.idxname] = relation_name(node.relation) or ""
        elif (
            isinstance(node, ast.RenameStmt)
            and node.renameType == ObjectType.OBJECT_TABLE
            and node.newname
            and not self.existing(relation_name(node.relation))
        ):
            self.created.add(node.newname)  # a table the release made, under its new name
        elif isinstance(node, ast.CreateStmt):
            self.created.add(bare(relation_name(node.relation) or ""))
        elif isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
            self.created.add(bare(relation_name(node.into.rel) or ""))

    def _altered(
        self, node: ast.AlterTableStmt, migration: Migration, statement: Statement
    ) -> None:
        table = bare(relation_name(node.relation) or "")
        for cmd in node.cmds or ():
            if not isinstance(cmd, ast.AlterTableCmd):
                continue
            definition = cmd.def_
            if cmd.subtype == AlterTableType.AT_AddConstraint and isinstance(
                definition, ast.Constraint
            ):
                column = _not_null_column(definition)
                if column is not None and not definition.skip_validation:
                    self.not_null_checks.add((table, column))
                elif column is not None and definition.conname:
                    self.not_null_candidates[(table, definition.conname)] = column
                if definition.skip_validation and definition.conname:
                    self.not_valid[(table, definition.conname)] = (migration, statement)
            elif cmd.subtype == AlterTableType.AT_ValidateConstraint and cmd.name:
                self.not_valid.pop((table, cmd.name), None)
                column = self.not_null_candidates.get((table, cmd.name))
                if column is not None:
                    self.not_null_checks.add((table, column))
            elif (
                cmd.subtype == AlterTableType.AT_AddColumn
                and isinstance(definition, ast.ColumnDef)
                and definition.colname
            ):
                self.added_columns.add((table, definition.colname))


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
