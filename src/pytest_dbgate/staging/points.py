"""Restore points: the staging database after each migration, kept so a re-run resumes.

The loop a team lives in is "a migration fails, fix it, run the gate again". Every migration
before the fixed one is unchanged, and so is what it did to the copy; applying them again under
the lock watch costs the same minutes each time. So after each migration the staging run applies,
the staging database is cloned into a *restore point* (``CREATE DATABASE … TEMPLATE``, a file
copy on the server), and the point's comment keeps what that migration's items found (its
outcome, the lock watch's report and decision, the rows its lint findings met) with a key: a
digest of everything the state and the verdicts depend on — the plugin version, the snapshot
(its source and when it was taken), the options that judge, and the checksums of every
migration up to this one, in order. A later run whose first ``j`` migrations have the same keys
starts from point ``j``: it clones it as its staging database (after the before-phase ran on the
un-migrated copy, as always) and its items for those migrations report the cached results,
saying which run they came from. Any change upstream changes every key after it; a new snapshot
(``--dbgate-refresh``, a changed seed, an expired one) changes them all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from psycopg import sql

from pytest_dbgate import __version__
from pytest_dbgate.migrations.outcomes import Outcome, Status
from pytest_dbgate.migrations.parse import Migration
from pytest_dbgate.observe.timeline import BlockedProbe, HeldLock, LockReport, MigrationWait
from pytest_dbgate.pg.connections import Conn
from pytest_dbgate.pg.databases import MARKER, regex_literal

PREFIX = f"{MARKER}: restore point "
FORMAT = 1


def _prefix(dbname: str) -> str:
    # Short enough that a point's name (prefix and four digits, at most 52 characters) is never
    # cut when a half-made copy of it is named (see pg.databases.create_gate_database).
    return f"{dbname[:42]}_point"


def point_name(dbname: str, index: int) -> str:
    """The database holding the state after migration ``index`` (1-based)."""
    return f"{_prefix(dbname)}{index:04d}"


def points_pattern(dbname: str) -> str:
    """Every point's name, as a regular expression (see pg.databases.sweep_half_made)."""
    return regex_literal(_prefix(dbname)) + "[0-9]{4}"


def chain(base: str, migrations: Sequence[Migration]) -> list[str]:
    """The key of each point: ``base`` and every migration's checksum up to it, in order."""
    keys: list[str] = []
    digest = hashlib.sha256(base.encode())
    for migration in migrations:
        # What runs, not only the file's bytes: the same file read in another layout, or with
        # another transaction mode, applies other statements, another way.
        ran = ",".join(s.short_digest for s in migration.statements)
        digest.update(
            f"\0{migration.version}\0{migration.checksum}\0{migration.layout}"
            f"\0{migration.transaction_mode}\0{ran}".encode()
        )
        keys.append(digest.copy().hexdigest()[:32])
    return keys


def base_key(parts: dict[str, object]) -> str:
    """What every point of a run depends on besides the migrations themselves."""
    document = json.dumps({"plugin": __version__, "format": FORMAT, **parts}, sort_keys=True)
    return hashlib.sha256(document.encode()).hexdigest()


@dataclass
class Found:
    """What one migration's items found, kept for a run that starts after it."""

    run: str  # when the run that applied the migration started (ISO, UTC)
    migration: str  # its id, for the reader
    outcome: dict[str, object]
    sizes: dict[str, int] = field(default_factory=dict)
    report: dict[str, object] | None = None
    decided: bool = False  # the report is what the locks item decided by (after re-measuring)
    measurements: str = ""  # the locks item's note on its measurements


@dataclass
class Point:
    """One restore point: the key it was made for and what the items of every migration up to
    it found (a point may be skipped where the copy costs far more than re-applying)."""

    index: int
    key: str
    found: list[Found]
    # The last migration's point, made after the after phase's VACUUM ANALYZE and compaction:
    # the tables it compacted (see performance.compaction.Compacted); None: made before them.
    steady: list[dict[str, object]] | None = None

    def comment(self) -> str:
        return f"{MARKER}: {self.description()}"

    def description(self) -> str:
        """The comment after the gate's mark: what a database made as this point carries."""
        return PREFIX[len(MARKER) + 2 :] + json.dumps(
            asdict(self), separators=(",", ":"), sort_keys=True
        )

    @classmethod
    def parse(cls, comment: str) -> Point | None:
        if not comment.startswith(PREFIX):
            return None
        try:
            data = json.loads(comment[len(PREFIX) :])
            found = [Found(**f) for f in data.pop("found")]
            point = cls(**data, found=found)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return None
        return point if len(point.found) == point.index else None


def read_points(conn: Conn, dbname: str) -> dict[int, tuple[str, Point]]:
    """The points the gate kept for ``dbname``, by index: (database name, point)."""
    found: dict[int, tuple[str, Point]] = {}
    for name, comment in _named_as_points(conn, dbname):
        point = Point.parse(comment)
        if point is not None and name == point_name(dbname, point.index):
            found[point.index] = (name, point)
    return found


def stray_points(conn: Conn, dbname: str) -> list[str]:
    """Databases the gate made under a point's name that hold no finished point: a run killed
    while copying, or before it wrote the point's comment. Nothing can resume from them."""
    kept = {name for name, _ in read_points(conn, dbname).values()}
    return [
        name
        for name, comment in _named_as_points(conn, dbname)
        if name not in kept and comment.startswith(MARKER)
    ]


def _named_as_points(conn: Conn, dbname: str) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database"
        " WHERE starts_with(datname, %s)",
        (_prefix(dbname),),
    ).fetchall()
    return [(str(name), str(comment)) for name, comment in rows]


def usable_point(points: dict[int, tuple[str, Point]], keys: Sequence[str]) -> int:
    """The point after the last unchanged migration: the highest one made for exactly this key
    chain (its key covers every migration up to it); 0 when there is none. A point prepared for
    the after phase (vacuumed, compacted) serves only as the last: a migration after it must meet
    the tables as the migrations before it left them, dead rows and all, as on production."""
    return max(
        (
            i
            for i, (_, p) in points.items()
            if i <= len(keys) and p.key == keys[i - 1] and (p.steady is None or i == len(keys))
        ),
        default=0,
    )


def comment_on(conn: Conn, name: str, point: Point) -> None:
    conn.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(name), sql.Literal(point.comment())
        )
    )


def total_bytes(conn: Conn, names: Sequence[str]) -> int:
    if not names:
        return 0
    row = conn.execute(
        "SELECT coalesce(sum(pg_database_size(datname)), 0)::bigint FROM pg_database"
        " WHERE datname = ANY(%s)",
        (list(names),),
    ).fetchone()
    return int(row[0]) if row and isinstance(row[0], int) else 0


# -- what the items found, kept and given back ---------------------------------------------------


def outcome_document(outcome: Outcome) -> dict[str, object]:
    return {
        "status": outcome.status.value,
        "duration_ms": outcome.duration_ms,
        "statements_run": outcome.statements_run,
        "resumed_after": outcome.resumed_after,
        "notes": list(outcome.notes),
        "lock_timeouts": len(outcome.attempts),
        "recorded_by": outcome.recorded_by,
    }


def cached_outcome(migration: Migration, point: Found) -> Outcome:
    """The outcome a point recorded, as this run's, marked with the run it came from."""
    data = point.outcome
    notes = data.get("notes", [])
    return Outcome(
        migration,
        Status(str(data["status"])),
        duration_ms=float(str(data.get("duration_ms", 0.0))),
        statements_run=int(str(data.get("statements_run", 0))),
        resumed_after=int(str(data.get("resumed_after", 0))),
        notes=tuple(str(n) for n in notes) if isinstance(notes, list) else (),
        cached_from=point.run,
        recorded_by=str(data["recorded_by"]) if data.get("recorded_by") else None,
    )


def report_document(report: LockReport) -> dict[str, object]:
    """A lock report as JSON: statements by their position in the file."""
    statements = report.migration.statements

    def position(lock: HeldLock) -> int | None:
        if lock.statement is None:
            return None
        return next((i for i, s in enumerate(statements) if s is lock.statement), None)

    return {
        "locks": [
            [lock.relation, lock.mode, lock.held_ms, position(lock), lock.has_rows]
            for lock in report.locks
        ],
        "blocked": [asdict(b) for b in report.blocked],
        "waits": [asdict(w) for w in report.waits],
        "blockers_before": list(report.blockers_before),
        "probes": report.probes,
        "polls": report.polls,
        "tables": list(report.tables),
        "monitor_error": report.monitor_error,
    }


def report_from(document: dict[str, object], migration: Migration) -> LockReport | None:
    """The lock report a point kept, tied to the migration as it is read now."""
    try:
        locks = document["locks"]
        blocked = document["blocked"]
        waits = document["waits"]
        assert isinstance(locks, list) and isinstance(blocked, list) and isinstance(waits, list)
        return LockReport(
            migration,
            locks=[
                HeldLock(
                    str(relation),
                    str(mode),
                    float(held),
                    migration.statements[at] if isinstance(at, int) else None,
                    bool(rows),
                )
                for relation, mode, held, at, rows in locks
            ],
            blocked=[BlockedProbe(**b) for b in blocked],
            waits=[MigrationWait(**w) for w in waits],
            blockers_before=_texts(document.get("blockers_before")),
            probes=int(str(document.get("probes", 0))),
            polls=int(str(document.get("polls", 0))),
            tables=_texts(document.get("tables")),
            monitor_error=None
            if document.get("monitor_error") is None
            else str(document["monitor_error"]),
        )
    except (KeyError, TypeError, ValueError, IndexError, AssertionError):
        return None


def _texts(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []
