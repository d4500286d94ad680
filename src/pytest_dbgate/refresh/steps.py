"""The refresh steps of the staging gate: the staging server, the copy of the source on it (cloned
from the cached snapshot, or dumped and restored afresh, or made by a clone command)."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
import warnings
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from pytest_dbgate.config.model import GateConfig
from pytest_dbgate.core.commands import run_command
from pytest_dbgate.core.errors import DbgateError, ProvisioningError, SafetyError
from pytest_dbgate.core.record import format_period
from pytest_dbgate.core.results import Progress
from pytest_dbgate.core.run import Database
from pytest_dbgate.performance.capture import ensure_extension
from pytest_dbgate.performance.reference import Reference
from pytest_dbgate.pg.binaries import PgBinaries, client_for
from pytest_dbgate.pg.connections import Endpoint, connect, connection
from pytest_dbgate.pg.databases import (
    create_gate_database,
    gate_database_name,
    next_xid,
    server_identity,
)
from pytest_dbgate.pg.gatelock import client_tag, take_gate_lock
from pytest_dbgate.pg.janitor import sweep, temporary_folder
from pytest_dbgate.pg.seed import seed_digest, seed_files
from pytest_dbgate.pg.servers import staging_server
from pytest_dbgate.refresh.cache import Cached, Key, cache_name, find, seal, usable, why_not
from pytest_dbgate.refresh.dumpfile import DumpFile
from pytest_dbgate.refresh.restore import Snapshot, TableCount, count_rows, refresh, restore_file

if TYPE_CHECKING:
    from pytest_dbgate.core.results import Results


class Refreshing:
    """What the staging gate does to get its copy: a mixin of
    :class:`~pytest_dbgate.staging.gate.Gate`, which provides the state and the memoised steps
    declared here."""

    config: GateConfig
    progress: Progress
    results: Results
    binaries: PgBinaries
    dump: DumpFile | None
    reference: Reference | None
    no_reference: str
    # The staging server's next transaction number once the staging copy was made: what the
    # before phase wrote is told from it (see staging.resume).
    staging_xid: int | None
    _stack: contextlib.ExitStack
    _swept: bool

    def source(self) -> Database:
        raise NotImplementedError

    def staging_server(self) -> Database:
        raise NotImplementedError

    def dump_file(self) -> DumpFile:
        raise NotImplementedError

    def source_dbname(self) -> str:
        raise NotImplementedError

    def _sweep(self) -> None:
        """Stop and remove what a killed run left (its servers, its dump folders), once."""
        if self._swept:
            return
        self._swept = True
        for left in sweep():
            self.progress(f"removed what a killed run left: {left}")

    def _open_staging_server(self) -> Database:
        self._sweep()
        cfg = self.config
        source = None if cfg.file_only else self.source()
        throwaway = False
        if cfg.clone_command is not None:
            endpoint = self._clone()
            embedded = False
        elif cfg.staging_url is None:
            endpoint, kept = self._stack.enter_context(
                staging_server(self.binaries, cfg.staging_dir, self.progress)
            )
            embedded, throwaway = True, not kept
        else:
            endpoint = Endpoint.from_url(cfg.staging_url, cfg.staging_url_setting)
            embedded = False
        conn = connect(
            endpoint, "staging", cfg.staging_url_setting, purpose=f"control, {client_tag()}"
        )
        self._stack.callback(conn.close)
        identity = server_identity(conn)
        if source is not None and identity.same_server(source.identity):
            raise SafetyError.staging_is_production(endpoint.display())
        dbname = gate_database_name(self.source_dbname())
        take_gate_lock(conn, dbname, endpoint.display())
        return Database(endpoint, conn, identity, embedded, throwaway)

    def _clone(self) -> Endpoint:
        """Have the clone command provision the staging database; clean it up at the end."""
        cfg = self.config
        command = cfg.clone_command
        assert command is not None
        self.progress(f"provisioning the staging database: `{command}`")
        source = self.source().endpoint
        result = run_command(command, source, cfg.rootdir, variable="PROD_DATABASE_URL")
        lines = [line.strip() for line in result.output.splitlines() if line.strip()]
        if not result.ok:
            raise ProvisioningError.clone_failed(
                command, f"exited with status {result.returncode}", result.output
            )
        if not lines:
            raise ProvisioningError.clone_failed(command, "printed nothing", result.output)
        try:
            endpoint = Endpoint.from_url(lines[-1], "the clone command's output")
        except DbgateError:
            raise ProvisioningError.clone_failed(
                command, "did not print a database URL as its last line", result.output
            ) from None
        self.results.secrets.add(endpoint.password)  # printed by the command, shown nowhere
        cleanup = cfg.clone_cleanup_command
        if cleanup is not None:
            self._stack.callback(self._clean_up_clone, cleanup, endpoint)
        self.progress(f"staging is the clone {endpoint.display()}")
        return endpoint

    def _clean_up_clone(self, command: str, clone: Endpoint) -> None:
        self.progress(f"removing the clone: `{command}`")
        result = run_command(command, clone, self.config.rootdir)
        if not result.ok:
            warnings.warn(
                DbgateCleanupWarning(result.failure("the clone cleanup command")), stacklevel=1
            )

    def _refresh(self) -> Snapshot:
        """Clone the cached snapshot when it still stands for the source (or the dump file);
        else dump and restore (or restore the file) into a new cached snapshot, and clone that.
        With a clone command, the clone is it."""
        staging = self.staging_server()
        cfg = self.config
        if cfg.clone_command is not None:
            self.no_reference = "staging is the clone command's one copy"
            return self._cloned(cfg.clone_command)
        origin = self._origin()
        dbname = gate_database_name(self.source_dbname())
        cache = cache_name(dbname)
        where = staging.endpoint.display()
        if not usable(staging.conn, cache):
            self.progress(f"{cache} belongs to another role: restoring without the snapshot cache")
            self.no_reference = f"the snapshot cache {cache} belongs to another role"
            create_gate_database(staging.conn, dbname, where, origin.encoding)
            return origin.take(dbname)
        cached = find(staging.conn, cache)
        reason = "--dbgate-refresh" if cfg.refresh else why_not(cached, origin.key, origin.max_age)
        if reason is None and cached is not None:
            self._reference(dbname, cached, origin.encoding)
            return self._clone_cached(cached, cache, dbname, origin.encoding)
        self.progress(f"taking a new snapshot ({reason})")
        create_gate_database(
            staging.conn, cache, where, origin.encoding, comment="cached snapshot, being restored"
        )
        # Every clone starts vacuumed and analysed (the restore did both), as production is,
        # and alike: staging and the un-migrated copy beside it share one set of statistics.
        fresh = origin.take(cache)
        counts = {
            (t.schema, t.table): t.source_rows if t.source_rows is not None else t.staging_rows or 0
            for t in fresh.tables
        }
        assert fresh.taken_at is not None
        sealed = Cached(origin.key, fresh.taken_at, counts, fresh.dump_bytes, analyzed=True)
        seal(staging.conn, cache, sealed)
        self._reference(dbname, sealed, origin.encoding)
        started = time.monotonic()
        create_gate_database(
            staging.conn, dbname, where, origin.encoding, template=cache, file_copy=staging.embedded
        )
        clone_seconds = time.monotonic() - started
        self._mark_copy_made(staging.endpoint.with_dbname(dbname))
        self.progress(
            f"kept the snapshot as {cache}; cloned it into {dbname} in {clone_seconds:.1f}s"
        )
        return dataclasses.replace(
            fresh,
            staging=staging.endpoint.with_dbname(dbname),
            clone_seconds=clone_seconds,
            cache_key=sealed.key.identity,
        )

    def _mark_copy_made(self, copy: Endpoint) -> None:
        """What the gate itself writes to the staging copy before the before phase (the
        pg_stat_statements extension the performance stage reads), then the server's next
        transaction number: whatever commits after it is the before phase's doing."""
        if self.config.performance:
            try:
                with connection(copy, "staging", self.config.staging_url_setting) as conn:
                    ensure_extension(conn)
            except DbgateError:
                pass  # the performance stage says why when it starts
        self.staging_xid = next_xid(self.staging_server().conn)

    def _reference(self, dbname: str, cached: Cached, encoding: str) -> None:
        """The snapshot's un-migrated copy, for the after phase to measure staging against."""
        staging = self.staging_server()
        self.reference = Reference(
            staging.conn,
            staging.endpoint.with_dbname(dbname),
            cache_name(dbname),
            encoding,
            file_copy=staging.embedded,
        )
        self._stack.callback(self.reference.drop)
        self.reference.steady = cached.analyzed

    def _origin(self) -> Origin:
        """Where the copy comes from, and what identifies it in the cache."""
        staging = self.staging_server().endpoint
        if self.dump is not None:
            dump = self.dump_file()
            assert dump.checksum is not None

            def restore(dbname: str) -> Snapshot:
                return restore_file(dump, staging.with_dbname(dbname), self.binaries, self.progress)

            # The same bytes restore to the same copy however old they are: no age limit.
            return Origin(Key(f"dump file {dump.checksum}", dump.dbname, ""), "UTF8", None, restore)
        source = self.source()
        row = source.conn.execute(
            "SELECT pg_encoding_to_char(encoding) FROM pg_database"
            " WHERE datname = current_database()"
        ).fetchone()
        encoding = str(row[0]) if row else "UTF8"
        system = source.identity.system_identifier
        if source.embedded:  # a new cluster every run: the seed is what it is a copy of
            system = "seed " + seed_digest(seed_files(self.config.seed))
        key = Key.of(source.conn, system, source.endpoint.dbname)
        return Origin(key, encoding, self.config.snapshot_max_age, self._restore)

    def _cloned(self, command: str) -> Snapshot:
        """The clone service's copy, with its row counts beside the source's (for the report:
        the service copied production at its own moment)."""
        source, staging = self.source(), self.staging_server()
        source_counts = count_rows(source.conn)
        cloned = count_rows(staging.conn)
        tables = tuple(
            TableCount(schema, table, rows, cloned.get((schema, table)))
            for (schema, table), rows in source_counts.items()
        )
        return Snapshot(staging.endpoint, tables, 0, 0.0, 0.0, (), cloned_by=command)

    def _restore(self, dbname: str) -> Snapshot:
        """Dump the source and restore it into ``dbname`` (created, empty) on staging."""
        source = self.source()
        workdir = temporary_folder("dbgate-dump-")
        self._stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        return refresh(
            source.conn,
            source.endpoint,
            self.staging_server().endpoint.with_dbname(dbname),
            client_for(source.identity.major, self.binaries),
            workdir,
            self.progress,
        )

    def _clone_cached(self, cached: Cached, cache: str, dbname: str, encoding: str) -> Snapshot:
        staging = self.staging_server()
        taken = cached.taken_at.strftime("%Y-%m-%d %H:%M %Z")
        self.progress(
            f"reusing the cached snapshot {cache} taken {taken} ({format_period(cached.age())} "
            "old): cloning it, no dump and no restore (--dbgate-refresh takes a new one)"
        )
        started = time.monotonic()
        create_gate_database(
            staging.conn,
            dbname,
            staging.endpoint.display(),
            encoding,
            template=cache,
            file_copy=staging.embedded,
        )
        clone_seconds = time.monotonic() - started
        endpoint = staging.endpoint.with_dbname(dbname)
        with connection(endpoint, "staging", "the staging database") as conn:
            restored = count_rows(conn)
        from_file = str(self.dump.path) if self.dump is not None else None
        tables = tuple(
            TableCount(schema, table, None if from_file else rows, restored.get((schema, table)))
            for (schema, table), rows in cached.counts.items()
        )
        self.progress(f"cloned in {clone_seconds:.1f}s")
        self._mark_copy_made(endpoint)
        return Snapshot(
            endpoint,
            tables,
            cached.dump_bytes,
            0.0,
            clone_seconds,
            (),
            reused=True,
            taken_at=cached.taken_at,
            from_file=from_file,
            clone_seconds=clone_seconds,
            cache_key=cached.key.identity,
        )


@dataclasses.dataclass(frozen=True)
class Origin:
    """What the staging copy is made from: its cache key, and how to make it afresh."""

    key: Key
    encoding: str
    max_age: timedelta | None  # None: the copy cannot go stale (a given dump file)
    take: Callable[[str], Snapshot]  # restore into this (created, empty) staging database


class DbgateCleanupWarning(UserWarning):
    """Something the run could not clean up after itself."""
