"""The relations a migration touches: named in its statements, in DO blocks and functions, and the
tables worth sending traffic to."""

from __future__ import annotations

from collections.abc import Sequence

from pglast import parse_plpgsql, parse_sql
from pglast.parser import ParseError
from pglast.visitors import Visitor

from pytest_dbgate.migrations.parse import Migration, Statement
from pytest_dbgate.pg.connections import Conn


class _Relations(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def visit_RangeVar(self, parent: object, node: object) -> None:
        schema = getattr(node, "schemaname", None)
        name = str(getattr(node, "relname", ""))
        self.names.append(quoted(schema, name))


def quoted(*parts: str | None) -> str:
    """A relation's name as SQL spells it, each part quoted (``"app"."Document"``), so
    ``to_regclass`` finds exactly the relation the statement named, whatever its case or
    characters. (The parser has already folded unquoted names to lower case.)"""
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts if part)


def touched_relations(migration: Migration) -> list[str]:
    """Relations a migration's statements name, DO blocks' bodies included, in order."""
    found: list[str] = []
    for statement in migration.statements:
        found.extend(_relations_in(statement))
    return list(dict.fromkeys(found))


def _relations_in(statement: Statement) -> list[str]:
    if statement.node == "DoStmt":
        return relations_in_sql(_plpgsql_queries(statement.text))
    if statement.tree is not None:  # parsed at discovery: no need to parse again
        visitor = _Relations()
        visitor(statement.tree)
        return visitor.names
    return relations_in_sql([statement.text])


def relations_in_sql(texts: Sequence[str]) -> list[str]:
    """Relation names in SQL texts; PL/pgSQL expressions are tried as SELECT lists."""
    visitor = _Relations()
    for text in texts:
        for candidate in (text, f"SELECT {text}"):
            try:
                visitor(parse_sql(candidate))
                break
            except ParseError:
                continue
    return visitor.names


def _plpgsql_queries(do_statement: str) -> list[str]:
    """The SQL inside a DO block, as PL/pgSQL's parser sees it."""
    body = do_statement.strip()
    start, end = body.find("$"), body.rfind("$")
    if start < 0 or end <= start:
        return []
    quote_end = body.index("$", start + 1)
    tag = body[start : quote_end + 1]
    inner = body[quote_end + 1 : body.rfind(tag)]
    wrapper = (
        "CREATE FUNCTION dbgate_probe() RETURNS void LANGUAGE plpgsql AS "
        f"$dbgate_body${inner}$dbgate_body$"
    )
    try:
        tree = parse_plpgsql(wrapper)
    except ParseError:
        return []
    queries: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "query" and isinstance(value, str):
                    queries.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    return queries


def biggest_tables(conn: Conn, count: int = 10) -> list[str]:
    """The tables with the most rows: where traffic goes when what a migration touches is not
    known beforehand (the project's own tool runs it)."""
    rows = conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND c.reltuples > 0"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"
        " ORDER BY c.reltuples DESC LIMIT %s",
        (count,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def tables_with_rows(conn: Conn) -> set[str]:
    """Tables that had rows before the migration; locks on new or empty tables harm nobody."""
    rows = conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'm') AND c.reltuples <> 0"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"
    ).fetchall()
    return {str(r[0]) for r in rows}


def statement_relations(statement: Statement) -> list[str]:
    """Relations one statement names (a DO block's body included)."""
    return _relations_in(statement)
