"""Staging made steady for the after phase, once, and kept so in the last restore point.

A backfill's dead rows are vacuumed on production soon after a deploy, and the space they leave
is reused: neither is a regression of the release's queries, so the after phase measures
staging vacuumed, analysed and with grown tables compacted (see
:mod:`pytest_dbgate.performance.compaction`). That preparation is done once per run; when the
last migration's restore point is made after it, a re-run of the same release starts from a
state that needs none of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import psycopg
from psycopg import sql

from pytest_dbgate.core.run import StepFailed
from pytest_dbgate.observe.relations import touched_relations
from pytest_dbgate.performance.compaction import Compacted, Table, compact_grown, table_sizes
from pytest_dbgate.performance.sidebyside import Side
from pytest_dbgate.staging.shared import GatePart

if TYPE_CHECKING:
    from pytest_dbgate.pg.connections import Conn, Endpoint

T = TypeVar("T")
STEADY = "steady"  # the migrated copy vacuumed, analysed and compacted for the after phase
REFERENCE = "reference"  # a session on the un-migrated copy


class Steadying(GatePart):
    """The gate's preparation of the after phase."""

    resumed_steady: list[Compacted] | None
    steady_s: float  # what making staging steady took, counted in the after capture
    steady_whole: bool  # vacuumed and compacted against the un-migrated copy: a point may keep it
    _sizes_before: dict[int, Table]  # without a reference: staging's, at baseline

    if TYPE_CHECKING:  # Run's, which comes after this mixin: no stub may shadow it

        def _once(self, step: str, work: Callable[[], T]) -> T: ...

    def staging_connection(self, purpose: str = "check") -> Conn:
        raise NotImplementedError

    def _reference_session(self, endpoint: Endpoint) -> Conn:
        raise NotImplementedError

    def steady(self) -> list[Compacted]:
        """Staging vacuumed, analysed and compacted, once: the tables compacted."""
        return self._once(STEADY, self._make_steady)

    def steady_for_point(self) -> list[Compacted] | None:
        if self.performance is None or self.config.post_migrate_command is not None:
            return None  # nothing to prepare, or the command changes staging after the point
        try:
            compacted = self.steady()
        except (StepFailed, psycopg.Error):
            return None  # the after items say why
        return compacted if self.steady_whole else None

    def _make_steady(self) -> list[Compacted]:
        # A post-migrate command runs after the point was made and may change what it holds.
        if self.resumed_steady is not None and self.config.post_migrate_command is None:
            self.progress(
                "the restore point is vacuumed, analysed and compacted as the run that made it "
                "left it: not again"
            )
            return self.resumed_steady
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=1) as pool:
            # The un-migrated copy is a file copy on the server, the VACUUM ANALYZE work on its
            # CPU: made side by side, the slower of the two is all the wait.
            side = pool.submit(self._before_side) if self.reference is not None else None
            conn = self.staging_connection(purpose="vacuum")
            self._vacuum_touched(conn)
            before, whole = self._sizes_before, True
            if side is not None:
                try:
                    before = table_sizes(side.result().conn)
                except StepFailed:
                    # No copy to compare sizes with (the after capture says why the copy could
                    # not be made): nothing is compacted, and the point is not made steady.
                    before, whole = {}, False
        compacted = compact_grown(conn, before, self.progress)
        self.steady_s = time.monotonic() - started
        self.steady_whole = whole
        return compacted

    def _before_side(self) -> Side:
        """A session on the un-migrated copy, made on first use."""
        assert self.reference is not None
        reference = self.reference
        return self._once(
            REFERENCE,
            lambda: Side("before", reference.make(self._reference_session, self.progress)),
        )

    def _vacuum_touched(self, conn: Conn) -> None:
        """VACUUM ANALYZE what the release touched (the cached snapshot was vacuumed and
        analysed before it was kept, so the rest is steady already); everything, when the
        project's own tool migrated and what it touched is not known."""
        if self.config.migrate_command is not None:
            self.progress("VACUUM ANALYZE on staging before measuring the after phase")
            conn.execute("VACUUM (ANALYZE)")
            return
        names = list(dict.fromkeys(r for m in self.migrations for r in touched_relations(m)))
        rows = conn.execute(
            "SELECT DISTINCT n.nspname, c.relname FROM unnest(%s::text[]) AS t(name)"
            " JOIN pg_class c ON c.oid = to_regclass(t.name)"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'm')",
            (names,),
        ).fetchall()
        tables = [sql.Identifier(str(schema), str(name)) for schema, name in rows]
        if not tables:
            return
        self.progress(
            f"VACUUM ANALYZE on the {len(tables)} table(s) the release touched, before "
            "measuring the after phase"
        )
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.SQL(", ").join(tables)))
