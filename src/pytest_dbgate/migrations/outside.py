"""Statements that act outside the migrated database: the one thing staging cannot rehearse.

Staging is a copy of one database. ``DROP DATABASE IF EXISTS other`` is a no-op there (there is no
``other``) and drops a database on production; ``ALTER SYSTEM`` changes the staging server's
configuration, not production's; ``COPY … PROGRAM`` runs a shell command on whichever server;
``dblink_exec`` or a foreign server reaches another database, possibly the production source
itself. Their effect on production cannot be judged from staging, so the gate never applies them
(on either side) and the lint item fails on them, whatever an ignore says. The parser records
it on each :class:`~pytest_dbgate.migrations.parse.Statement` (``outside``); the linter and the
runner read it there.
"""

from __future__ import annotations

import re

from pglast import ast
from pglast.enums import ObjectType

# Functions whose effect reaches beyond the database they are called in. Looked for in the text
# (a DO block or a function body is a string to the parser): a call in plpgsql counts too.
FUNCTIONS: dict[str, str] = {
    "dblink": "connects from the database server to another database (dblink)",
    "pg_terminate_backend": "ends other sessions on the server, of any database",
    "pg_cancel_backend": "cancels other sessions' queries on the server, of any database",
    "pg_reload_conf": "reloads the server's configuration",
    "pg_rotate_logfile": "rotates the server's log file",
    "pg_promote": "promotes a standby server",
    "pg_switch_wal": "switches the server's WAL file",
    "lo_import": "reads a file of the database server's file system",
    "lo_export": "writes a file to the database server's file system",
    "pg_read_file": "reads a file of the database server's file system",
    "pg_read_binary_file": "reads a file of the database server's file system",
    "pg_ls_dir": "lists a folder of the database server's file system",
    "pg_file_write": "writes a file to the database server's file system",
    "pg_file_unlink": "removes a file from the database server's file system",
    "pg_file_rename": "renames a file on the database server's file system",
    "pg_create_physical_replication_slot": "creates a replication slot on the server",
    "pg_create_logical_replication_slot": "creates a replication slot on the server",
    "pg_drop_replication_slot": "drops a replication slot of the server",
}
CALL = re.compile(
    r"\b(?P<name>dblink\w*|" + "|".join(n for n in FUNCTIONS if n != "dblink") + r")\s*\(",
    re.IGNORECASE,
)


def outside_action(node: ast.Node, text: str) -> str | None:
    """What a statement (its syntax tree and text) would do beyond the migrated database, or
    ``None``; found once, when the file is parsed."""
    found = _statement_action(node)
    if found is not None:
        return found
    call = CALL.search(text)
    if call is not None:
        name = call["name"].lower()
        what = FUNCTIONS["dblink" if name.startswith("dblink") else name]
        return f"calls {name}(): {what}"
    return None


def _statement_action(node: ast.Node) -> str | None:
    if isinstance(node, ast.CreatedbStmt):
        return f"creates the database {node.dbname} on the server"
    if isinstance(node, ast.DropdbStmt):
        return (
            f"drops the database {node.dbname} on the server (on staging it is absent or "
            "another one: the drop there proves nothing)"
        )
    if isinstance(node, ast.AlterDatabaseStmt | ast.AlterDatabaseSetStmt):
        return f"changes the database {node.dbname} itself, which staging's copy is not"
    if isinstance(node, ast.RenameStmt) and node.renameType == ObjectType.OBJECT_DATABASE:
        return f"renames the database {node.subname} on the server"
    if isinstance(node, ast.AlterSystemStmt):
        return "changes the server's configuration (postgresql.auto.conf)"
    if isinstance(node, ast.CopyStmt) and node.filename is not None:
        if node.is_program:
            return f"runs the shell command {node.filename!r} on the database server"
        direction = "reads" if node.is_from else "writes"
        return f"{direction} the file {node.filename!r} on the database server"
    if isinstance(
        node,
        ast.CreateForeignServerStmt
        | ast.AlterForeignServerStmt
        | ast.CreateUserMappingStmt
        | ast.AlterUserMappingStmt
        | ast.ImportForeignSchemaStmt,
    ):
        return "reaches another server through a foreign data wrapper"
    if isinstance(node, ast.CreateSubscriptionStmt | ast.AlterSubscriptionStmt):
        return "connects to another server for logical replication"
    if isinstance(node, ast.CreateTableSpaceStmt | ast.DropTableSpaceStmt):
        return "creates or drops a tablespace, a folder of the database server"
    if isinstance(node, ast.LoadStmt):
        return f"loads the library {node.filename!r} into the server"
    return None
