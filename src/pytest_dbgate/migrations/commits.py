"""How each statement of a migration commits, and how to learn afterwards whether it did.

Exactly-once rests on this. A statement that can share a transaction commits together with its
journal row, so after a crash the journal says for certain whether it ran. A statement that
cannot (``CREATE INDEX CONCURRENTLY``, ``VACUUM``, a ``DO`` block that ``COMMIT``s, a ``CALL``)
commits on its own: if the run dies between its commit and its journal row, only the database
itself can tell. For some statements the catalog can (an index that is there and valid was
built); for the rest a person must look, and the deploy stops and says so instead of guessing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from pglast import ast
from pglast.enums import DiscardMode, ObjectType, TransactionStmtKind, VariableSetKind
from pglast.parser import ParseError, parse_plpgsql_json

Control = Literal["begin", "commit", "rollback", "savepoint", "prepare", "prepared"]
# What a statement does to the session: sets something that outlives it, or resets it all.
Session = Literal["set", "reset"]

_CONTROL: dict[TransactionStmtKind, Control] = {
    TransactionStmtKind.TRANS_STMT_BEGIN: "begin",
    TransactionStmtKind.TRANS_STMT_START: "begin",
    TransactionStmtKind.TRANS_STMT_COMMIT: "commit",
    TransactionStmtKind.TRANS_STMT_ROLLBACK: "rollback",
    TransactionStmtKind.TRANS_STMT_SAVEPOINT: "savepoint",
    TransactionStmtKind.TRANS_STMT_RELEASE: "savepoint",
    TransactionStmtKind.TRANS_STMT_ROLLBACK_TO: "savepoint",
    TransactionStmtKind.TRANS_STMT_PREPARE: "prepare",
    TransactionStmtKind.TRANS_STMT_COMMIT_PREPARED: "prepared",
    TransactionStmtKind.TRANS_STMT_ROLLBACK_PREPARED: "prepared",
}


@dataclass(frozen=True)
class Recheck:
    """What the catalog says about a statement that committed on its own, after a crash.

    ``index created``: the index is there and valid when the statement took effect; there but
    invalid when it failed halfway (drop it, run it again); absent when it never started.
    ``index dropped``: absent when it took effect. ``repeatable``: running it twice does what
    running it once does (VACUUM, REINDEX, ALTER SYSTEM …), so it is simply run again.
    """

    kind: Literal["index created", "index dropped", "repeatable"]
    names: tuple[tuple[str, ...], ...] = ()  # the indexes, as (schema, name) or (name,)
    table: tuple[str, ...] = ()  # the table an index is created on: (schema, table) or (table,)


def transaction_control(node: ast.Node) -> Control | None:
    """What a transaction-control statement (``BEGIN``, ``COMMIT`` …) does, or ``None``."""
    if isinstance(node, ast.TransactionStmt) and node.kind is not None:
        return _CONTROL.get(node.kind)
    return None


def session_effect(node: ast.Node) -> Session | None:
    """``set`` for a statement whose setting outlives it (``SET search_path``, ``SET ROLE``; not
    ``SET LOCAL``), ``reset`` for ``RESET ALL`` and ``DISCARD ALL``: a run that resumes a file
    on a new session replays the first, and after the second the gate's own settings (its
    lock_timeout) are put back."""
    if isinstance(node, ast.DiscardStmt) and node.target == DiscardMode.DISCARD_ALL:
        return "reset"
    if isinstance(node, ast.VariableSetStmt) and not node.is_local:
        return "reset" if node.kind == VariableSetKind.VAR_RESET_ALL else "set"
    return None


def chained(node: ast.Node) -> bool:
    """``COMMIT AND CHAIN`` / ``ROLLBACK AND CHAIN``: the block goes on in a new transaction."""
    return isinstance(node, ast.TransactionStmt) and bool(node.chain)


def commits_itself(node: ast.Node) -> bool:
    """Whether a statement may commit part of its work before it ends: a ``DO`` block whose
    body ``COMMIT``s, ``ROLLBACK``s or ``CALL``s a procedure (or whose body cannot be read), or
    a ``CALL`` (a procedure may commit). Such a statement cannot share a transaction with its
    journal row, and if it fails or is interrupted, part of it may be applied."""
    if isinstance(node, ast.CallStmt):
        return True
    if not isinstance(node, ast.DoStmt):
        return False
    language: str | None = "plpgsql"
    body: str | None = None
    for arg in node.args or ():
        if isinstance(arg, ast.DefElem) and isinstance(arg.arg, ast.String):
            if arg.defname == "language":
                language = arg.arg.sval
            elif arg.defname == "as":
                body = arg.arg.sval
    if (language or "").lower() != "plpgsql" or body is None:
        return True  # another language may do anything: assume the worst
    try:
        tree = parse_plpgsql_json(f"DO $dbgate$ {body} $dbgate$")
    except (ParseError, ValueError):
        return True
    return _has_transaction_control(json.loads(tree))


# COMMIT and ROLLBACK in the body, and CALL: the procedure it calls may commit.
_COMMITTING = ("PLpgSQL_stmt_commit", "PLpgSQL_stmt_rollback", "PLpgSQL_stmt_call")


def _has_transaction_control(tree: object) -> bool:
    if isinstance(tree, dict):
        if any(kind in tree for kind in _COMMITTING):
            return True
        return any(_has_transaction_control(v) for v in tree.values())
    if isinstance(tree, list):
        return any(_has_transaction_control(v) for v in tree)
    return False


def recheck(node: ast.Node) -> Recheck | None:
    """How to settle a statement's outcome from the catalog, when it commits on its own."""
    if isinstance(node, ast.IndexStmt) and node.concurrent and node.idxname and node.relation:
        relation = node.relation
        table = tuple(p for p in (relation.schemaname, relation.relname) if p)
        schema = (relation.schemaname,) if relation.schemaname else ()
        return Recheck("index created", ((*schema, node.idxname),), table)
    if (
        isinstance(node, ast.DropStmt)
        and node.concurrent
        and node.removeType == ObjectType.OBJECT_INDEX
    ):
        names = tuple(
            tuple(part.sval for part in name if isinstance(part, ast.String) and part.sval)
            for name in node.objects or ()
        )
        return Recheck("index dropped", names)
    if isinstance(
        node,
        ast.VacuumStmt
        | ast.ReindexStmt
        | ast.ClusterStmt
        | ast.AlterSystemStmt
        | ast.CheckPointStmt,
    ):
        return Recheck("repeatable")
    return None
