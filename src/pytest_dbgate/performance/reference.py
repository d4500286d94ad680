"""The un-migrated copy the after phase measures staging against.

The cached snapshot is production as it was before the release, on the staging server already;
a clone of it (``CREATE DATABASE … TEMPLATE``, a file copy) next to the migrated staging database
lets every workload query run on both in alternation, on the same server at the same moments.
It is in the same steady state as staging after its ``VACUUM (ANALYZE)``: the snapshot was
vacuumed and analysed before it was kept (an older one's clone is vacuumed and analysed here), so
both sides' statistics are samples of the same rows. It is dropped when the run ends (a run
killed before that leaves it; the next run replaces it, as it does the staging database). It is
not kept for the next run, although that would save a copy: the workload's writes are rolled
back, but each leaves dead rows behind, and a copy measured run after run would grow slower
than the one it stands for, hiding a slowdown of staging's side.

There is no such copy when staging comes from a clone command or when the cache belongs to another
role: then the workload is measured on staging before and after migrating, and the verdict says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import psycopg

from pytest_dbgate.core.errors import PerformanceError
from pytest_dbgate.core.results import Progress
from pytest_dbgate.pg.connections import Conn, Endpoint
from pytest_dbgate.pg.databases import create_gate_database, drop_gate_database


def reference_name(gate_database: str) -> str:
    """``dbgate_<source>_before``, within PostgreSQL's 63 bytes."""
    return (gate_database[:56] + "_before")[:63]


class Reference:
    """One run's un-migrated copy: made on first use, dropped when the run ends."""

    def __init__(
        self, server: Conn, endpoint: Endpoint, template: str, encoding: str, file_copy: bool
    ) -> None:
        self._server = server
        self._template = template
        self._encoding = encoding
        self._file_copy = file_copy
        self.endpoint = endpoint.with_dbname(reference_name(endpoint.dbname))
        self._made = False
        # The snapshot was vacuumed and analysed before it was kept (snapshots this version
        # took): a clone of it needs neither. An older snapshot's clone gets both here.
        self.steady = False

    @property
    def name(self) -> str:
        return self.endpoint.dbname

    def make(self, connect: Callable[[Endpoint], Conn], progress: Progress) -> Conn:
        """Clone the snapshot, vacuum and analyse it; a session on it for measuring."""
        progress(f"cloning the snapshot as {self.name}, the un-migrated copy")
        try:
            create_gate_database(
                self._server,
                self.name,
                self.endpoint.display(),
                self._encoding,
                template=self._template,
                comment="un-migrated copy, measured side by side with staging",
                file_copy=self._file_copy,
            )
        except psycopg.Error as exc:
            raise PerformanceError.no_reference(_first_line(exc)) from None
        self._made = True
        conn = connect(self.endpoint)
        if not self.steady:
            conn.execute("VACUUM (ANALYZE)")  # what staging got after migrating
        return conn

    def drop(self) -> None:
        if self._made:
            with contextlib.suppress(psycopg.Error):
                drop_gate_database(self._server, self.name, self.endpoint.display())
            self._made = False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
