"""The project's test queries as pg_stat_statements saw them, and query plans.

A *window* is the span of a phase whose queries are measured: counters are read at its start and
end and subtracted, for the staging database only, which measures exactly the queries run in
between without needing the privilege to reset the view. Queries are matched before/after by
normalised text, since query ids change when a table is recreated and differ between servers.
The verdicts are :mod:`pytest_dbgate.performance.verdicts`'; the workload is timed by
:mod:`pytest_dbgate.performance.timing`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import psycopg
import sqlparse
from pglast.parser import fingerprint
from psycopg import sql
from psycopg.rows import class_row

from pytest_dbgate.pg.connections import Conn

MARKER = "/* dbgate */"
SNAPSHOT_QUERY = f"""
SELECT {MARKER} s.userid, s.queryid, s.query, s.calls, s.total_exec_time, s.mean_exec_time,
       s.stddev_exec_time, s.rows, s.shared_blks_hit, s.shared_blks_read,
       {{since}} AS stats_since
FROM {{view}} s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.toplevel
"""
DATA_QUERY = re.compile(r"\s*(select|insert|update|delete|with|values|table|merge)\b")
# What may come before a query's first word: comments (sqlc's "-- name: …", an ORM's
# "/* controller:… */") and the parentheses of "(SELECT …) UNION …".
LEADING = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.S)
PARAM = re.compile(r"\$(\d+)")


def normalise(text: str) -> str:
    """Comparable text: comments gone, whitespace folded, lower case."""
    stripped = sqlparse.format(text, strip_comments=True, strip_whitespace=True)
    return " ".join(stripped.split()).lower().rstrip(";").strip()


def query_key(text: str) -> str:
    """What identifies a query across servers whatever its constants: PostgreSQL's own parser's
    fingerprint, so the workload's ``WHERE id = 42`` matches production's ``WHERE id = $1``;
    the normalised text for what the parser cannot read."""
    try:
        return str(fingerprint(text))
    except Exception:  # pglast raises its own ParseError, and more on odd input
        return "text:" + hashlib.sha256(normalise(text).encode()).hexdigest()[:16]


def short_text(text: str, width: int = 80) -> str:
    """A query on one line, cut to ``width`` characters: what names it in an item or a table."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def is_application_query(text: str) -> bool:
    """A data query someone other than the gate ran (not the gate's own bookkeeping)."""
    lowered = text.lower()
    start = LEADING.match(lowered)
    return (
        bool(DATA_QUERY.match(lowered, start.end() if start else 0))
        and MARKER not in text
        and "pg_stat_statements" not in lowered
    )


@dataclass(frozen=True)
class Counter:
    """pg_stat_statements' cumulative counters for one entry."""

    text: str
    calls: int
    total_ms: float
    sumsq_ms: float
    rows: int
    hit: int
    read: int

    def minus(self, earlier: Counter | None) -> Counter:
        # Fewer calls than at the start: pg_stat_statements deallocated the entry (it keeps
        # pg_stat_statements.max of them) and made it anew during the window; what it holds now
        # is what ran since.
        if earlier is None or self.calls < earlier.calls:
            return self
        return Counter(
            self.text,
            self.calls - earlier.calls,
            self.total_ms - earlier.total_ms,
            self.sumsq_ms - earlier.sumsq_ms,
            self.rows - earlier.rows,
            self.hit - earlier.hit,
            self.read - earlier.read,
        )

    def plus(self, other: Counter) -> Counter:
        return Counter(
            self.text,
            self.calls + other.calls,
            self.total_ms + other.total_ms,
            self.sumsq_ms + other.sumsq_ms,
            self.rows + other.rows,
            self.hit + other.hit,
            self.read + other.read,
        )


Snapshot = dict[tuple[int, int], Counter]


def read_counters(conn: Conn) -> Snapshot:
    """The staging database's pg_stat_statements entries, by (user, query id)."""
    return read_entries(conn).counters


@dataclass(frozen=True)
class Entries:
    """One read of pg_stat_statements."""

    counters: Snapshot
    # When each entry was made (PostgreSQL 17 and later keep it; empty before).
    made: dict[tuple[int, int], datetime]
    hidden: int  # entries of other roles whose text and id this role may not see


def read_entries(conn: Conn, schema: str | None = None) -> Entries:
    """A database's pg_stat_statements entries in one pass over the view; ``schema``: where
    the extension was created, when it is not on the search path."""
    counters: Snapshot = {}
    made: dict[tuple[int, int], datetime] = {}
    hidden = 0
    view = sql.Identifier(schema, "pg_stat_statements") if schema else sql.SQL("pg_stat_statements")
    since = sql.SQL("s.stats_since" if conn.info.server_version >= 170000 else "NULL::timestamptz")
    query = sql.SQL(SNAPSHOT_QUERY).format(view=view, since=since)
    with conn.cursor(row_factory=class_row(_Entry)) as cur:
        for e in cur.execute(query):
            if e.queryid is None or e.query is None:
                hidden += 1
                continue
            if e.stats_since is not None:
                made[(e.userid, e.queryid)] = e.stats_since
            counters[(e.userid, e.queryid)] = Counter(
                text=e.query,
                calls=e.calls,
                total_ms=e.total_exec_time,
                sumsq_ms=(e.stddev_exec_time**2 + e.mean_exec_time**2) * e.calls,
                rows=e.rows,
                hit=e.shared_blks_hit,
                read=e.shared_blks_read,
            )
    return Entries(counters, made, hidden)


@dataclass(frozen=True)
class _Entry:
    """A row of :data:`SNAPSHOT_QUERY`."""

    userid: int
    queryid: int | None  # None: another role's entry, hidden from this one
    query: str | None
    calls: int
    total_exec_time: float
    mean_exec_time: float
    stddev_exec_time: float
    rows: int
    shared_blks_hit: int
    shared_blks_read: int
    stats_since: datetime | None


@dataclass(frozen=True)
class QueryStats:
    """What one query did during one window."""

    text: str
    calls: int
    mean_ms: float
    stddev_ms: float
    rows_per_call: float
    blocks_hit_per_call: float
    blocks_read_per_call: float

    @property
    def blocks_per_call(self) -> float:
        return self.blocks_hit_per_call + self.blocks_read_per_call

    @classmethod
    def of(cls, counter: Counter) -> QueryStats:
        n = max(counter.calls, 1)
        mean = counter.total_ms / n
        variance = max(counter.sumsq_ms / n - mean**2, 0.0)
        return cls(
            text=counter.text,
            calls=counter.calls,
            mean_ms=mean,
            stddev_ms=math.sqrt(variance),
            rows_per_call=counter.rows / n,
            blocks_hit_per_call=counter.hit / n,
            blocks_read_per_call=counter.read / n,
        )


def window(start: Snapshot, end: Snapshot) -> dict[str, QueryStats]:
    """Application queries run between two snapshots, merged by normalised text."""
    merged: dict[str, Counter] = {}
    for key, counter in end.items():
        delta = counter.minus(start.get(key))
        if delta.calls <= 0 or not is_application_query(delta.text):
            continue
        text = normalise(delta.text)
        merged[text] = merged[text].plus(delta) if text in merged else delta
    return {text: QueryStats.of(counter) for text, counter in merged.items()}


# -- plans ---------------------------------------------------------------------------------


def plan_nodes(plan: Mapping[str, object]) -> list[str]:
    """The scans of a JSON plan, readable: ``Index Scan using recipes_pkey on recipes``."""
    found: list[str] = []
    node_type = str(plan.get("Node Type", ""))
    index = plan.get("Index Name")
    relation = plan.get("Relation Name")
    if index or relation:
        text = node_type
        if index:
            text += f" using {index}"
        if relation:
            text += f" on {relation}"
        found.append(text)
    children = plan.get("Plans") or []
    assert isinstance(children, list)
    for child in children:
        found.extend(plan_nodes(child))
    return found


def explain(conn: Conn, text: str) -> list[str] | None:
    """The scans of a query's plan: with literal parameters as written, or, for a normalised
    query with ``$n`` placeholders, its generic plan. ``None`` when it cannot be planned."""
    count = max((int(n) for n in PARAM.findall(text)), default=0)
    try:
        with conn.transaction(force_rollback=True):
            if count == 0:
                row = conn.execute(
                    sql.SQL("EXPLAIN (FORMAT JSON) {}").format(sql.SQL(text))
                ).fetchone()
            else:
                conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                conn.execute(sql.SQL("PREPARE dbgate_plan AS {}").format(sql.SQL(text)))
                try:
                    nulls = sql.SQL(", ").join([sql.NULL] * count)
                    row = conn.execute(
                        sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE dbgate_plan({})").format(nulls)
                    ).fetchone()
                finally:
                    conn.execute("DEALLOCATE dbgate_plan")
    except psycopg.Error:
        return None
    if row is None:
        return None
    document = row[0]
    if isinstance(document, str):
        document = json.loads(document)
    return plan_nodes(document[0]["Plan"])  # type: ignore[index]


def plan_change(before: list[str] | None, after: list[str] | None) -> str:
    """``Index Scan using recipes_title_trgm on recipes → Seq Scan on recipes``, or ``""``."""
    if before is None or after is None or sorted(before) == sorted(after):
        return ""
    gone = [n for n in dict.fromkeys(before) if n not in after]
    new = [n for n in dict.fromkeys(after) if n not in before]
    return f"{', '.join(gone) or '(same scans)'} → {', '.join(new) or '(same scans)'}"
