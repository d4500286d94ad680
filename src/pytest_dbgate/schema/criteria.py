"""Criteria on the migrated schema, shared by staging and production: constraints validated,
indexes valid and ready, migrations recorded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from psycopg import sql
from psycopg.rows import scalar_row

from pytest_dbgate.core.criterion import USER_SCHEMAS, Criterion, Figures
from pytest_dbgate.core.errors import CriterionFailed
from pytest_dbgate.core.run import Run
from pytest_dbgate.migrations.outcomes import Status
from pytest_dbgate.migrations.parse import Migration
from pytest_dbgate.migrations.tracking import MIGRATIONS
from pytest_dbgate.pg.connections import Conn
from pytest_dbgate.staging.gate import Gate

UNVALIDATED = f"""
SELECT CASE WHEN c.conrelid <> 0 THEN c.conrelid::regclass::text
            ELSE format_type(c.contypid, NULL) END,
       quote_ident(c.conname),
       c.contype::text,
       c.conrelid <> 0
FROM pg_constraint c
JOIN pg_namespace n ON n.oid = c.connamespace
WHERE c.contype IN ('f', 'u', 'c') AND NOT c.convalidated AND {USER_SCHEMAS}
ORDER BY 1, 2
"""

CONSTRAINT_COUNT = f"""
SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
WHERE c.contype IN ('f', 'u', 'c') AND {USER_SCHEMAS}
"""

KINDS = {"f": "foreign key", "u": "unique", "c": "check"}


@dataclass(frozen=True)
class ConstraintsValidated(Criterion[Run]):
    stage: ClassVar[str] = "schema"

    def check(self, gate: Run) -> Figures:
        conn = gate.target_connection()
        rows = conn.execute(UNVALIDATED).fetchall()
        checked = _count(conn, CONSTRAINT_COUNT)
        figures: Figures = {
            "summary": f"{checked} checked, {len(rows)} not valid{_partly_migrated(gate)}",
            "constraints": checked,
            "not_validated": len(rows),
        }
        if rows:
            listed = "\n".join(
                f"    {owner}.{name} ({KINDS.get(str(kind), str(kind))})"
                for owner, name, kind, _ in rows
            )
            fixes = "\n".join(
                f"    ALTER {'TABLE' if on_table else 'DOMAIN'} {owner} VALIDATE CONSTRAINT {name};"
                for owner, name, _, on_table in rows
            )
            raise CriterionFailed(
                f"{len(rows)} constraint(s) are NOT VALID: existing rows were never checked "
                f"against them\n{listed}\n"
                "  fix: validate them in a migration (VALIDATE takes SHARE UPDATE EXCLUSIVE: "
                f"reads and writes go on)\n{fixes}",
                figures,
            )
        return figures


def _partly_migrated(gate: Run) -> str:
    """Said beside a schema check's figure when a migration failed: what it judged is the
    schema the release reached, not the one it meant to reach (the failure is its item's)."""
    unapplied = [
        o
        for o in gate.outcomes()
        if o.status in (Status.FAILED, Status.NOT_APPLIED, Status.CHECKSUM_CHANGED)
    ]
    if not unapplied:
        return ""
    return f"; judged on a partly migrated schema ({len(unapplied)} migration(s) not applied)"


BROKEN_INDEXES = f"""
SELECT i.indexrelid::regclass::text, i.indrelid::regclass::text, i.indisvalid, i.indisready,
       pg_get_indexdef(i.indexrelid)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT (i.indisvalid AND i.indisready) AND {USER_SCHEMAS}
ORDER BY 1
"""

INDEX_COUNT = f"""
SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMAS}
"""


@dataclass(frozen=True)
class IndexesValid(Criterion[Run]):
    stage: ClassVar[str] = "schema"

    def check(self, gate: Run) -> Figures:
        conn = gate.target_connection()
        rows = conn.execute(BROKEN_INDEXES).fetchall()
        checked = _count(conn, INDEX_COUNT)
        figures: Figures = {
            "summary": f"{checked} checked, {len(rows)} not valid or not ready"
            f"{_partly_migrated(gate)}",
            "indexes": checked,
            "broken": len(rows),
        }
        if rows:
            lines = []
            for index, table, valid, _ready, definition in rows:
                state = "not valid" if not valid else "not ready"
                concurrent = str(definition).replace(" INDEX ", " INDEX CONCURRENTLY ", 1)
                lines.append(
                    f"    {index} on {table} ({state}; usually a CREATE INDEX CONCURRENTLY that "
                    f"failed or was cancelled)\n"
                    f"      fix: REINDEX INDEX CONCURRENTLY {index};\n"
                    f"       or: DROP INDEX CONCURRENTLY {index}; {concurrent};"
                )
            raise CriterionFailed(
                f"{len(rows)} index(es) are not valid and ready: queries cannot use them, "
                "writes still maintain them\n" + "\n".join(lines),
                figures,
            )
        return figures


@dataclass(frozen=True)
class MigrationsRecorded(Criterion[Gate]):
    stage: ClassVar[str] = "schema"
    migrations: tuple[Migration, ...] = ()

    def check(self, gate: Gate) -> Figures:
        conn = gate.staging_connection()
        rows = conn.execute(
            sql.SQL("SELECT version, checksum, success FROM {} ORDER BY version").format(MIGRATIONS)
        ).fetchall()
        recorded = {str(v): (str(c), bool(s)) for v, c, s in rows}
        outcomes = {o.migration.version: o for o in gate.outcomes()}
        files = {m.version for m in self.migrations}
        problems = []
        by_tool: set[str] = set()
        unapplied = 0
        for m in self.migrations:
            outcome = outcomes.get(m.version)
            if outcome is not None and not outcome.ok:
                unapplied += 1  # its own item says why: one cause fails once
                continue
            if outcome is not None and outcome.recorded_by is not None:
                by_tool.add(outcome.recorded_by)
                continue  # applied before, by the project's tool, which records it
            entry = recorded.get(m.version)
            if entry is None:
                problems.append(f"    {m.id}: not recorded")
            elif not entry[1]:
                problems.append(f"    {m.id}: recorded as failed")
            elif entry[0] != m.checksum:
                problems.append(
                    f"    {m.id}: recorded checksum {entry[0][:12]}… differs from the file's "
                    f"{m.checksum[:12]}…"
                )
        orphans = sorted(v for v in recorded if v not in files)
        ok_count = len(self.migrations) - unapplied - len(problems)
        tables = ", ".join(["dbgate.migrations", *sorted(by_tool)])
        figures: Figures = {
            "summary": f"{ok_count} of {len(self.migrations)} recorded with their checksums "
            f"({tables})",
            "files": len(self.migrations),
            "recorded": ok_count,
            "tracking_table": tables,
        }
        if unapplied:
            figures["summary"] = f"{figures['summary']}{_partly_migrated(gate)}"
            figures["not_applied"] = unapplied
        if orphans:
            figures["recorded_without_file"] = ", ".join(orphans)
        if problems:
            raise CriterionFailed(
                f"{len(problems)} migration(s) are not recorded as applied in dbgate.migrations "
                "with the file's checksum:\n" + "\n".join(problems[:15]),
                figures,
            )
        return figures


def _count(conn: Conn, query: str) -> int:
    with conn.cursor(row_factory=scalar_row) as cur:
        found = cur.execute(query).fetchone()
    return int(found or 0)
