"""Migration files: found in version order, parsed by PostgreSQL's own parser, checksummed.

Parsing happens up front, before any database is touched, so a file that does not parse stops
the run with its line number and nothing half-applied. The syntax tree also tells which files
must run statement by statement: PostgreSQL refuses ``CREATE INDEX CONCURRENTLY`` and kin inside
a transaction block, and a file with its own ``BEGIN``/``COMMIT`` manages its transactions itself.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path

from pglast import ast, parse_sql
from pglast.enums import AlterTableType, ConstrType, ObjectType, ReindexObjectType
from pglast.parser import ParseError

from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.config.model import parse_period
from pytest_dbgate.migrations.commits import (
    Control,
    Recheck,
    Session,
    chained,
    commits_itself,
    recheck,
    session_effect,
    transaction_control,
)
from pytest_dbgate.migrations.layouts import Source, find
from pytest_dbgate.migrations.outside import outside_action

# `-- dbgate: …`, however it is spelt (`-- DBGATE : hold-back 7d`): a directive must never be
# missed for a typo; one that does not parse is an error. Block comments cannot hold one.
DIRECTIVE = re.compile(r"^\s*--\s*dbgate\s*:\s*(?P<body>.*?)\s*$", re.MULTILINE | re.IGNORECASE)
# CREATE/ALTER ROLE … PASSWORD '…' (and ENCRYPTED PASSWORD): never shown in a message.
PASSWORD = re.compile(r"(?P<keyword>\bPASSWORD\s+)'(?:[^']|'')*'", re.IGNORECASE)
BLOCK_DIRECTIVE = re.compile(r"/\*\s*dbgate\s*:", re.IGNORECASE)
SERIAL_TYPES = frozenset({"serial", "bigserial", "smallserial", "serial2", "serial4", "serial8"})
KNOWN_DIRECTIVES = ("no-transaction", "hold-back <N>d|h|w", "ignore <lint rule> <reason>")


@dataclass(frozen=True)
class Statement:
    """One SQL statement of a migration, with where it starts in the file."""

    text: str
    line: int
    node: str
    autocommit_reason: str | None
    extension: str | None = None
    concurrent_index: str | None = None
    lock_rule: str | None = None  # the rule whose fix the lock watch shows when it held long
    digest: str = ""  # SHA-256 of the text as it is sent: what the record and the journal bind
    control: Control | None = None  # BEGIN, COMMIT …: the file manages its own transactions
    chain: bool = False  # COMMIT AND CHAIN: the file's block goes on
    session: Session | None = None  # SET (replayed on resume), RESET ALL (gate settings back)
    commits_itself: bool = False  # a DO block that COMMITs, a CALL: part may be applied
    recheck: Recheck | None = None  # how the catalog settles its outcome after a crash
    # What it would do outside the migrated database (see migrations.outside): never applied.
    outside: str | None = None
    # PostgreSQL's parse tree of the statement, so the linter and the lock watch need not parse
    # it again.
    tree: ast.Node | None = field(default=None, compare=False, repr=False)

    def line_of(self, position: int) -> int:
        """File line of a 1-based character ``position`` inside this statement."""
        return self.line + self.text.count("\n", 0, max(position - 1, 0))

    @property
    def alone(self) -> bool:
        """Whether it must run outside any transaction block, so it commits on its own."""
        return self.control is None and (self.autocommit_reason is not None or self.commits_itself)

    @property
    def short_digest(self) -> str:
        """The first 16 hex digits of the digest: what the gate record keeps per statement."""
        return self.digest[:16]

    def excerpt(self, width: int = 160) -> str:
        """The statement on one line, shortened, its passwords masked: what messages show."""
        flat = PASSWORD.sub(r"\g<keyword>'***'", " ".join(self.text.split()))
        return flat if len(flat) <= width else flat[: width - 1] + "…"


@dataclass(frozen=True)
class Migration:
    """One migration file of the release."""

    version: str
    name: str
    path: Path
    checksum: str
    statements: tuple[Statement, ...]
    no_transaction: bool
    hold_back: timedelta | None
    layout: str = "flat"  # how the folder was read: which part of the file is the migration
    # The text its directives are read from (a dbmate file: up to its down section), read once.
    text: str = field(default="", repr=False, compare=False)
    # The SQL the runner applies, lines where the file has them (a dbmate file's up section,
    # the rest blank): what the linter reads.
    sql: str = field(default="", repr=False, compare=False)

    @property
    def id(self) -> str:
        return f"{self.version}_{self.name}"

    @property
    def transactional(self) -> bool:
        return self.autocommit_reason is None

    @cached_property
    def autocommit_reason(self) -> str | None:
        """Why the file runs statement by statement, or ``None`` when it runs in one transaction.
        Kept once found: the runner asks for every statement of files of 20,000 statements."""
        if self.no_transaction:
            return "the file says `-- dbgate: no-transaction`"
        for statement in self.statements:
            if statement.autocommit_reason:
                return f"{statement.autocommit_reason} (line {statement.line})"
        return None

    @property
    def transaction_mode(self) -> str:
        """``single`` (one transaction) or ``per statement``: how every run applies it."""
        return "single" if self.transactional else "per statement"

    @property
    def extensions(self) -> tuple[str, ...]:
        """Extensions the migration creates: the release needs them on every server."""
        return tuple(s.extension for s in self.statements if s.extension)


def discover(folder: Path, layout: str = "auto") -> list[Migration]:
    """Every migration in ``folder``, in version order, parsed; ``ConfigError`` on bad input."""
    chosen, sources = find(folder, layout)
    return [parse_migration(source, chosen) for source in sources]


def parse_migration(source: Source, layout: str = "flat") -> Migration:
    raw = source.path.read_bytes()
    text = source.header or source.text
    no_transaction, hold_back = _directives(source.path, text)
    return Migration(
        version=source.version,
        name=source.name,
        path=source.path,
        checksum=hashlib.sha256(raw).hexdigest(),
        statements=tuple(split_statements(source.path, source.text)),
        no_transaction=no_transaction or source.no_transaction,
        hold_back=hold_back,
        layout=layout,
        text=text,
        sql=source.text,
    )


@dataclass(frozen=True)
class Chunk:
    """One statement of a SQL file as the parser cut it: tree, text, where it starts."""

    node: ast.Node
    body: str
    line: int
    start: int


def chunks(
    path: Path, text: str, malformed: Callable[[Path, int, str], ConfigError]
) -> list[Chunk]:
    """A SQL file's statements as PostgreSQL's parser sees them (dollar quoting, comments and
    all); ``malformed`` makes the error for a file that does not parse, with its line."""
    try:
        raw_statements = parse_sql(text)
    except ParseError as exc:
        message, index = (*exc.args, 0)[:2]
        line = text.count("\n", 0, int(index)) + 1
        raise malformed(path, line, str(message)) from None
    found: list[Chunk] = []
    # Lines are counted on from the previous statement, never from the top of the file: a file
    # of 20,000 statements is read in linear time.
    counted, line = 0, 1
    for raw in raw_statements:
        start = raw.stmt_location or 0
        end = start + raw.stmt_len if raw.stmt_len else len(text)
        piece = text[start:end]
        begins = start + len(piece) - len(piece.lstrip())
        line += text.count("\n", counted, begins)
        counted = begins
        assert raw.stmt is not None  # the parser gives every raw statement a node
        found.append(Chunk(raw.stmt, piece.strip().rstrip(";").strip(), line, start))
    return found


def split_statements(path: Path, text: str) -> list[Statement]:
    """A migration's statements, with what the runner and the lock watch need to know."""
    statements: list[Statement] = []
    for chunk in chunks(path, text, ConfigError.malformed_migration):
        node, body, line = chunk.node, chunk.body, chunk.line
        statements.append(
            Statement(
                text=body,
                line=line,
                node=type(node).__name__,
                autocommit_reason=_autocommit_reason(node),
                extension=node.extname if isinstance(node, ast.CreateExtensionStmt) else None,
                concurrent_index=(
                    node.idxname or "(unnamed)"
                    if isinstance(node, ast.IndexStmt) and node.concurrent
                    else None
                ),
                lock_rule=lock_rule(node),
                outside=outside_action(node, body),
                digest=hashlib.sha256(body.encode()).hexdigest(),
                control=transaction_control(node),
                chain=chained(node),
                session=session_effect(node),
                commits_itself=commits_itself(node),
                recheck=recheck(node),
                tree=node,
            )
        )
    if not statements:
        raise ConfigError.empty_migration(path)
    return statements


def _autocommit_reason(node: ast.Node) -> str | None:
    """Why PostgreSQL would refuse this statement inside a transaction block, if it would."""
    if isinstance(node, ast.IndexStmt) and node.concurrent:
        return "CREATE INDEX CONCURRENTLY cannot run inside a transaction"
    if isinstance(node, ast.DropStmt) and node.concurrent:
        return "DROP INDEX CONCURRENTLY cannot run inside a transaction"
    if isinstance(node, ast.ReindexStmt):
        if _concurrently(node):
            return "REINDEX … CONCURRENTLY cannot run inside a transaction"
        if node.kind in (
            ReindexObjectType.REINDEX_OBJECT_SCHEMA,
            ReindexObjectType.REINDEX_OBJECT_SYSTEM,
            ReindexObjectType.REINDEX_OBJECT_DATABASE,
        ):
            return "REINDEX SCHEMA/DATABASE/SYSTEM cannot run inside a transaction"
    if isinstance(node, ast.VacuumStmt) and node.is_vacuumcmd:
        return "VACUUM cannot run inside a transaction"
    if isinstance(node, ast.ClusterStmt) and node.relation is None:
        return "CLUSTER without a table cannot run inside a transaction"
    if isinstance(node, ast.CreatedbStmt | ast.DropdbStmt):
        return "CREATE/DROP DATABASE cannot run inside a transaction"
    if isinstance(node, ast.CreateTableSpaceStmt | ast.DropTableSpaceStmt):
        return "CREATE/DROP TABLESPACE cannot run inside a transaction"
    if isinstance(node, ast.AlterSystemStmt):
        return "ALTER SYSTEM cannot run inside a transaction"
    if isinstance(node, ast.TransactionStmt):
        return "the file manages its own transactions (BEGIN/COMMIT)"
    if isinstance(node, ast.AlterTableStmt):
        for cmd in node.cmds or ():
            if (
                isinstance(cmd, ast.AlterTableCmd)
                and cmd.subtype == AlterTableType.AT_DetachPartition
                and isinstance(cmd.def_, ast.PartitionCmd)
                and cmd.def_.concurrent
            ):
                return "DETACH PARTITION CONCURRENTLY cannot run inside a transaction"
    if isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_DATABASE:
        return "DROP DATABASE cannot run inside a transaction"
    return None


def lock_rule(node: ast.Node) -> str | None:
    """The rule (in :data:`pytest_dbgate.lint.catalog.RULES`, whose fix the lock watch shows)
    for a statement that holds a strong lock for long, when there is a safe way to do it."""
    if isinstance(node, ast.IndexStmt):
        return None if node.concurrent else "require-concurrent-index-creation"
    if isinstance(node, ast.ReindexStmt):
        return None if _concurrently(node) else "require-concurrent-reindex"
    if isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_INDEX:
        return None if node.concurrent else "require-concurrent-index-deletion"
    if isinstance(node, ast.UpdateStmt | ast.DeleteStmt):
        return "large-write"
    if isinstance(node, ast.VacuumStmt | ast.ClusterStmt):
        return "rewrite-command"
    if not isinstance(node, ast.AlterTableStmt):
        return None
    for cmd in node.cmds or ():
        if isinstance(cmd, ast.AlterTableCmd):
            found = _alter_rule(cmd)
            if found is not None:
                return found
    return None


def _alter_rule(cmd: ast.AlterTableCmd) -> str | None:
    definition = cmd.def_
    if cmd.subtype == AlterTableType.AT_AddConstraint and isinstance(definition, ast.Constraint):
        kind = definition.contype
        if kind == ConstrType.CONSTR_FOREIGN and not definition.skip_validation:
            return "adding-foreign-key-constraint"
        if kind == ConstrType.CONSTR_CHECK and not definition.skip_validation:
            return "constraint-missing-not-valid"
        if kind == ConstrType.CONSTR_UNIQUE and not definition.indexname:
            return "disallowed-unique-constraint"
        if kind == ConstrType.CONSTR_PRIMARY and not definition.indexname:
            return "adding-serial-primary-key-field"
        if kind == ConstrType.CONSTR_EXCLUSION:
            return "exclusion-constraint"
    if cmd.subtype == AlterTableType.AT_AddColumn and isinstance(definition, ast.ColumnDef):
        if column_type(definition) in SERIAL_TYPES:
            return "adding-serial-column"
        kinds = {getattr(c, "contype", None) for c in definition.constraints or ()}
        if kinds & {
            ConstrType.CONSTR_GENERATED,
            ConstrType.CONSTR_IDENTITY,
            ConstrType.CONSTR_DEFAULT,
        }:
            return "adding-field-with-default"
    if cmd.subtype == AlterTableType.AT_AlterColumnType:
        return "changing-column-type"
    if cmd.subtype == AlterTableType.AT_SetNotNull:
        return "adding-not-nullable-field"
    return None


def column_type(definition: ast.ColumnDef) -> str:
    """A column definition's type as written, without its schema (``bigserial``, ``int4``)."""
    names = [getattr(n, "sval", "") for n in getattr(definition.typeName, "names", None) or ()]
    return names[-1] if names else ""


def _concurrently(node: ast.IndexStmt | ast.ReindexStmt) -> bool:
    """``CONCURRENTLY``, or ``(CONCURRENTLY)`` / ``(CONCURRENTLY true)``; not ``false``."""
    if isinstance(node, ast.IndexStmt):
        return bool(node.concurrent)
    return any(
        getattr(p, "defname", None) == "concurrently" and option_on(p) for p in node.params or ()
    )


def option_on(option: ast.DefElem) -> bool:
    """``(FULL)``, ``(CONCURRENTLY true)`` or ``1`` are on; ``false``, ``off``, ``0`` are off."""
    arg = option.arg
    if arg is None:
        return True
    if isinstance(arg, ast.Integer):
        return bool(arg.ival)
    if isinstance(arg, ast.Boolean):
        return bool(arg.boolval)
    return str(getattr(arg, "sval", "")).lower() not in ("false", "off", "no", "0")


def hold_backs(
    migrations: list[Migration], configured: tuple[tuple[str, timedelta], ...]
) -> dict[str, timedelta]:
    """Each held-back migration's period, by version: the files' directives, then the
    configuration (``dbgate_holdbacks``), which names a migration by version, name or file and
    may add a hold-back or lengthen one, never shorten one: a file's ``-- dbgate: hold-back``
    is what its author decided the release needs."""
    found = {m.version: m.hold_back for m in migrations if m.hold_back is not None}
    for key, period in configured:
        migration = _named(migrations, key, "dbgate_holdbacks")
        own = migration.hold_back
        if own is not None and period < own:
            raise ConfigError.holdback_shortened(key, migration.id, own, period)
        found[migration.version] = max(period, found.get(migration.version, period))
    return found


def released_early(
    migrations: list[Migration], names: tuple[str, ...], held: dict[str, timedelta]
) -> frozenset[str]:
    """The versions ``--dbgate-release-early`` names; each must be a held-back migration."""
    versions = set()
    for key in names:
        migration = _named(migrations, key, "--dbgate-release-early")
        if migration.version not in held:
            raise ConfigError.not_held_back(key, migration.id)
        versions.add(migration.version)
    return frozenset(versions)


def _named(migrations: list[Migration], key: str, option: str) -> Migration:
    named = [m for m in migrations if key in (m.version, m.name, m.id, m.path.name)]
    if not named:
        raise ConfigError.unknown_migration(option, key, [m.id for m in migrations])
    return named[0]


def _directives(path: Path, text: str) -> tuple[bool, timedelta | None]:
    no_transaction = False
    hold_back: timedelta | None = None
    block = BLOCK_DIRECTIVE.search(text)
    if block is not None:
        line = text.count("\n", 0, block.start()) + 1
        raise ConfigError.bad_directive(
            path,
            line,
            text[block.start() : text.find("\n", block.start())].strip(),
            ("the same, as a line comment: -- dbgate: …", *KNOWN_DIRECTIVES),
        )
    for match in DIRECTIVE.finditer(text):
        body = " ".join(match.group("body").split())
        keyword, _, rest = body.partition(" ")
        body = " ".join(filter(None, (keyword.lower(), rest)))
        line = text.count("\n", 0, match.start()) + 1
        if body == "no-transaction":
            no_transaction = True
            continue
        if body.startswith("ignore"):
            continue  # a lint rule's exception: checked by the linter, which knows the rules
        if body.startswith("hold-back "):
            hold_back = parse_period(body.removeprefix("hold-back "))
            if hold_back:  # a period, and not zero: "hold-back 0d" holds nothing back
                continue
        raise ConfigError.bad_directive(path, line, match.group(0).strip(), KNOWN_DIRECTIVES)
    return no_transaction, hold_back


def extensions_in(sql_text: str) -> list[str]:
    """Extension names a chunk of SQL creates (``CREATE EXTENSION``), parsed, not grepped."""
    try:
        statements = parse_sql(sql_text)
    except ParseError:
        return []
    return [
        raw.stmt.extname
        for raw in statements
        if isinstance(raw.stmt, ast.CreateExtensionStmt) and raw.stmt.extname
    ]
