"""The refresh stage's criteria: the source read, the copy restored, versions and extensions."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pytest_dbgate.core.criterion import Criterion, DbgateWarning, Figures
from pytest_dbgate.core.errors import CriterionFailed, Figure
from pytest_dbgate.core.record import (
    format_period,
    now_utc,
)
from pytest_dbgate.core.run import Database
from pytest_dbgate.pg.connections import Conn
from pytest_dbgate.refresh.dumpfile import size
from pytest_dbgate.staging.gate import Gate


@dataclass(frozen=True)
class SourceReachable(Criterion[Gate]):
    stage: ClassVar[str] = "refresh"

    def check(self, gate: Gate) -> Figures:
        source = gate.source()
        row = source.conn.execute("SHOW transaction_read_only").fetchone()
        read_only = row is not None and str(row[0]) == "on"
        figures: Figures = {
            "summary": f"{source.where}, PostgreSQL {source.identity.version.split()[0]}",
            "source": source.where,
            "server_version": source.identity.version,
            "read_only": read_only,
        }
        if not read_only:
            raise CriterionFailed(
                f"the session on the source {source.where} is not read only: the connection "
                "path drops startup options (a transaction-mode pooler does this)\n"
                "  connect the gate to the source directly, or through a session-mode pool",
                figures,
            )
        return figures


@dataclass(frozen=True)
class DumpFileRead(Criterion[Gate]):
    """The dump given with --dbgate-snapshot: its format and header were checked when the run
    started; this reads it whole once, for the checksum that keys the cached snapshot."""

    stage: ClassVar[str] = "refresh"

    def check(self, gate: Gate) -> Figures:
        dump = gate.dump_file()
        taken = dump.created_at.strftime("%Y-%m-%d %H:%M %Z")
        version = f"PostgreSQL {dump.server_version}" if dump.server_version else "version unknown"
        return {
            "summary": f"{dump.path.name}: {dump.format}, {size(dump.size)}, dumped {taken} "
            f"from {version}",
            "dump_file": str(dump.path),
            "format": dump.format,
            "dump_bytes": dump.size,
            "dumped_at": dump.created_at.isoformat(timespec="seconds"),
            "server_version": dump.server_version or "unknown",
            "checksum": dump.checksum or "",
        }


@dataclass(frozen=True)
class SnapshotRestored(Criterion[Gate]):
    stage: ClassVar[str] = "refresh"

    def check(self, gate: Gate) -> Figures:
        snap = gate.snapshot()
        if snap.cloned_by is not None:
            made = f"provisioned by `{snap.cloned_by}` (counts as of its copy)"
        elif snap.reused and snap.from_file is not None:
            made = (
                f"cloned the cached snapshot of {Path(snap.from_file).name} "
                f"in {snap.restore_seconds:.1f}s"
            )
        elif snap.reused and snap.taken_at is not None:
            made = (
                f"cloned the cached snapshot ({format_period(now_utc() - snap.taken_at)} old) "
                f"in {snap.restore_seconds:.1f}s"
            )
        elif snap.from_file is not None:
            made = f"restored from {Path(snap.from_file).name} in {snap.restore_seconds:.1f}s"
        else:
            made = f"dump {snap.dump_seconds:.1f}s, restore {snap.restore_seconds:.1f}s"
        figures: Figures = {
            "summary": f"{snap.staging_rows:,} rows in {len(snap.tables)} tables; {made}",
            "reused_snapshot": snap.reused,
            "from_file": snap.from_file or "",
            "staging_database": snap.staging.display(),
            "tables": len(snap.tables),
            "rows_source": snap.source_rows if snap.source_rows is not None else "not counted",
            "rows_staging": snap.staging_rows,
            "dump_bytes": snap.dump_bytes,
            "dump_seconds": round(snap.dump_seconds, 3),
            "restore_seconds": round(snap.restore_seconds, 3),
        }
        if snap.restore_warnings:
            figures["restore_warnings"] = len(snap.restore_warnings)
        wrong = snap.mismatched
        if wrong:
            lines = [
                f"    {t.qualified}: source {t.source_rows} rows, staging "
                + ("missing" if t.staging_rows is None else f"{t.staging_rows} rows")
                for t in wrong[:15]
            ]
            more = f"\n    … and {len(wrong) - 15} more" if len(wrong) > 15 else ""
            raise CriterionFailed(
                f"{len(wrong)} restored table(s) do not have the source's row count:\n"
                + "\n".join(lines)
                + more
                + "\n  check pg_restore's messages above and that the staging role may create "
                "every object the source has",
                figures,
            )
        return figures


@dataclass(frozen=True)
class VersionsMatch(Criterion[Gate]):
    stage: ClassVar[str] = "refresh"

    def check(self, gate: Gate) -> Figures:
        staging = gate.staging_server().identity
        if gate.config.file_only:
            dumped = gate.dump_file().identity
            if dumped is None:
                return {
                    "summary": f"dump file does not say its server's version; staging "
                    f"{staging.version.split()[0]}",
                    "staging_version": staging.version,
                }
            source = dumped
        else:
            source = gate.source().identity
        figures: Figures = {
            "summary": f"source {source.version.split()[0]}, staging {staging.version.split()[0]}",
            "source_version": source.version,
            "staging_version": staging.version,
            "client_version": gate.binaries.major,
        }
        if source.major != staging.major:
            raise CriterionFailed(
                f"the source runs PostgreSQL {source.version} and staging {staging.version}: "
                "the major versions must match, or staging proves nothing about production\n"
                f"  run staging on PostgreSQL {source.major} (embedded: install its server "
                "package and point --dbgate-pg-bindir at it)",
                figures,
            )
        if source.version_num != staging.version_num:
            figures["minor_mismatch"] = True
            warnings.warn(
                DbgateWarning(
                    f"minor versions differ: source {source.version}, staging {staging.version}"
                ),
                stacklevel=1,
            )
        return figures


EXTENSION_STATUS = """
SELECT
    (SELECT extversion FROM pg_extension WHERE extname = %(name)s),
    (SELECT default_version FROM pg_available_extensions WHERE name = %(name)s),
    coalesce((SELECT bool_or(trusted) FROM pg_available_extension_versions
              WHERE name = %(name)s), false),
    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
    has_database_privilege(current_database(), 'CREATE'),
    current_user, current_database()
"""


@dataclass(frozen=True)
class ExtensionAvailable(Criterion[Gate]):
    stage: ClassVar[str] = "refresh"
    extension: str = ""

    def check(self, gate: Gate) -> Figures:
        staging_conn = gate.staging_connection()
        figures: Figures = {}
        problems: list[str] = []
        sides: list[tuple[str, Conn, Database]] = [("staging", staging_conn, gate.staging_server())]
        file_only = gate.config.file_only
        if file_only:
            in_dump = self.extension in gate.dump_file().extensions
            figures["source_installed"] = "in the dump" if in_dump else "no"
        else:
            source = gate.source()
            sides.insert(0, ("source", source.conn, source))
        for side, conn, database in sides:
            installed, available, problem = extension_status(conn, self.extension, side, database)
            figures[f"{side}_installed"] = installed
            figures[f"{side}_available"] = available
            if problem:
                problems.append(problem)
        if problems:
            raise CriterionFailed("\n  ".join(problems), figures)
        staging = _installed(figures["staging_installed"])
        if file_only:
            made = "the dump creates it" if in_dump else "the dump does not create it"
            figures["summary"] = f"{made}; staging {staging}"
        else:
            figures["summary"] = (
                f"source {_installed(figures['source_installed'])}, staging {staging}"
            )
        if (
            not file_only
            and figures["source_installed"] != "no"
            and figures["staging_installed"] != "no"
            and figures["source_installed"] != figures["staging_installed"]
        ):
            warnings.warn(
                DbgateWarning(
                    f"extension {self.extension}: source has version "
                    f"{figures['source_installed']}, staging {figures['staging_installed']}"
                ),
                stacklevel=1,
            )
        return figures


def extension_status(
    conn: Conn, name: str, side: str, database: Database
) -> tuple[str, str, str | None]:
    """(installed version or "no", available version or "no", the problem if the extension is
    neither installed nor creatable by this role)."""
    installed, available, trusted, superuser, may_create, user, dbname = (
        conn.execute(EXTENSION_STATUS, {"name": name}).fetchone() or (None,) * 7
    )
    problem = None
    if not installed and not available:
        problem = (
            f"{name} is not installed on the {side} server {database.where} and cannot be: the "
            f"server has no such extension\n"
            f"    install the package that provides it on that server (Debian: "
            f"postgresql-contrib, or postgresql-{database.identity.major}-{name})"
        )
    elif not installed and not (superuser or (trusted and may_create)):
        problem = (
            f"{name} is not installed in {dbname} on the {side} server {database.where}, and "
            f"role {user} may not create it (not a superuser"
            + ("" if trusted else f"; {name} is not a trusted extension")
            + ")\n"
            f'    have an administrator run CREATE EXTENSION "{name}" there'
        )
    return str(installed or "no"), str(available or "no"), problem


def _installed(version: Figure) -> str:
    return "can create it" if version == "no" else f"has {version}"
