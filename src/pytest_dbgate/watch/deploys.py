"""``dbgate.deploys``: one row per production run that applied something, with its baseline.

It lives on production beside the tracking tables, so a watch run from any machine, days
later, finds the deploy it judges without an artefact being passed along. A row holds the two
readings of production's counters (just before applying: the end of the baseline window; just
after: the start of the period the watch judges) and the staging gate's figures for the queries
it measured. Readings are a few hundred kilobytes on a busy server; only the latest few deploys
keep theirs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from pytest_dbgate.core.record import RecordedQuery, typed
from pytest_dbgate.migrations.tracking import SCHEMA
from pytest_dbgate.pg.connections import Conn
from pytest_dbgate.watch.reading import Reading

DEPLOYS = sql.Identifier(SCHEMA, "deploys")
DEPLOYS_NAME = f"{SCHEMA}.deploys"
KEEP_READINGS = 5

CREATE = sql.SQL(
    """
    CREATE SCHEMA IF NOT EXISTS {schema};
    CREATE TABLE IF NOT EXISTS {deploys} (
        id                bigserial PRIMARY KEY,
        deployed_at       timestamptz NOT NULL DEFAULT now(),
        applied           text[] NOT NULL,
        applied_by        text NOT NULL,
        record_created_at text NOT NULL,
        before_reading    jsonb,
        after_reading     jsonb,
        staging_queries   jsonb NOT NULL
    );
    """
).format(schema=sql.Identifier(SCHEMA), deploys=DEPLOYS)

INSERT = sql.SQL(
    """
    INSERT INTO {deploys} (applied, applied_by, record_created_at, before_reading,
                           after_reading, staging_queries)
    VALUES (%s, %s, %s, %s, %s, %s)
    RETURNING id, deployed_at
    """
).format(deploys=DEPLOYS)

PRUNE = sql.SQL(
    "UPDATE {deploys} SET before_reading = NULL, after_reading = NULL "
    "WHERE id <= %s AND before_reading IS NOT NULL"
).format(deploys=DEPLOYS)

LATEST = sql.SQL(
    """
    SELECT id, deployed_at, applied, applied_by, record_created_at,
           before_reading, after_reading, staging_queries
    FROM {deploys} ORDER BY id DESC LIMIT 1
    """
).format(deploys=DEPLOYS)


@dataclass(frozen=True)
class Deploy:
    """A deploy as the watch and the next production run read it."""

    id: int
    deployed_at: datetime
    applied: tuple[str, ...]
    before: Reading | None  # None: pruned, or not readable
    after: Reading | None
    staging: tuple[RecordedQuery, ...]
    damaged: bool = False  # a reading is there but is not one (edited by hand?)

    def describe(self) -> str:
        return f"deploy #{self.id} of {self.deployed_at:%Y-%m-%d %H:%M %Z}"


@dataclass(frozen=True)
class _Row:
    id: int
    deployed_at: datetime
    applied: list[str]
    applied_by: str
    record_created_at: str
    before_reading: object
    after_reading: object
    staging_queries: object


def record_deploy(
    conn: Conn,
    applied: list[str],
    applied_by: str,
    record_created_at: str,
    before: Reading,
    after: Reading,
    staging: tuple[RecordedQuery, ...],
) -> tuple[int, datetime]:
    """Write a deploy's row (creating the table the first time); its id and time."""
    with conn.transaction():
        conn.execute(CREATE)
        row = conn.execute(
            INSERT,
            (
                applied,
                applied_by,
                record_created_at,
                Jsonb(before.document()),
                Jsonb(after.document()),
                Jsonb([asdict(q) for q in staging]),
            ),
        ).fetchone()
        assert row is not None
        deploy_id, deployed_at = row
        assert isinstance(deploy_id, int) and isinstance(deployed_at, datetime)
        conn.execute(PRUNE, (deploy_id - KEEP_READINGS,))
    return deploy_id, deployed_at


def latest_deploy(conn: Conn) -> Deploy | None:
    """The latest deploy recorded on production; ``None`` when none is (nothing was created:
    the watch reads only)."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (DEPLOYS_NAME,)).fetchone()
    if not row or not row[0]:
        return None
    with conn.cursor(row_factory=class_row(_Row)) as cur:
        found = cur.execute(LATEST).fetchone()
    if found is None:
        return None
    before, after = _reading(found.before_reading), _reading(found.after_reading)
    return Deploy(
        id=found.id,
        deployed_at=found.deployed_at,
        applied=tuple(found.applied),
        before=before,
        after=after,
        staging=_queries(found.staging_queries),
        damaged=(before is None and found.before_reading is not None)
        or (after is None and found.after_reading is not None),
    )


def _reading(document: object) -> Reading | None:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except (ValueError, RecursionError):
            return None
    if not isinstance(document, dict):
        return None
    try:
        return Reading.from_document(document)
    except ValueError:
        return None


def _queries(document: object) -> tuple[RecordedQuery, ...]:
    if isinstance(document, str):
        document = json.loads(document)
    try:
        found = typed(tuple[RecordedQuery, ...], document, "staging_queries")
    except ValueError:
        return ()
    assert isinstance(found, tuple)
    return found
