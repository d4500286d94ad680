"""What a column definition does to an existing table: volatile defaults, rewriting types, NOT NULL
without a default."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import (
    ConstrType,
)

from pytest_dbgate.lint.rules import Check

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
