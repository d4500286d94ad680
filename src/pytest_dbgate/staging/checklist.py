"""The staging checklist: every criterion of the gate, in runbook order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_dbgate.core.criterion import Criterion
from pytest_dbgate.core.run import migration_step
from pytest_dbgate.lint.criteria import lint_checklist
from pytest_dbgate.migrations.criteria import MigrationApplied
from pytest_dbgate.observe.criteria import LocksHeldBriefly
from pytest_dbgate.performance.criteria import (
    AfterCaptured,
    BaselineCaptured,
    QueryNotSlower,
    TestQueriesNotSlower,
)
from pytest_dbgate.pg.criteria import PoolHeadroom, StagingReachable
from pytest_dbgate.refresh.criteria import (
    DumpFileRead,
    ExtensionAvailable,
    SnapshotRestored,
    SourceReachable,
    VersionsMatch,
)
from pytest_dbgate.schema.criteria import ConstraintsValidated, IndexesValid, MigrationsRecorded
from pytest_dbgate.staging.commands import (
    ExternalTestsAfter,
    ExternalTestsBefore,
    PostMigrateCommand,
)
from pytest_dbgate.staging.gate import (
    AFTER_CAPTURE,
    BASELINE,
    COMMAND,
    DUMP_FILE,
    MIGRATED,
    PERFORMANCE,
    RUNNER,
    SNAPSHOT,
    SOURCE,
    STAGING_SERVER,
    Gate,
)
from pytest_dbgate.staging.verdict import GateRecordWritten


def staging_checklist(gate: Gate, extensions: Sequence[str]) -> list[Criterion[Any]]:
    """Every criterion of a staging gate, in the order a release engineer reads them."""
    source = (DUMP_FILE,) if gate.config.file_only else (SOURCE,)
    return [
        *lint_checklist(gate),
        *_refresh(gate, extensions),
        *_migrate(gate),
        *_schema(gate),
        *_after(gate),
        GateRecordWritten("gate_record", gate.config.record, (*source, STAGING_SERVER)),
    ]


def _refresh(gate: Gate, extensions: Sequence[str]) -> list[Criterion[Any]]:
    """The copy, the servers and the connections to spare."""
    where = gate.config.migrations
    file_only = gate.config.file_only
    # What the source-side checks read: the source database, or only the dump file.
    source = (DUMP_FILE,) if file_only else (SOURCE,)
    restored_from = (gate.origin,) if file_only else (SOURCE, gate.origin)
    checklist: list[Criterion[Any]] = []
    if not file_only:
        checklist.append(SourceReachable("source_reachable", where, owns=(SOURCE,)))
    if gate.dump is not None:
        checklist.append(DumpFileRead("dump_file", gate.dump.path, owns=(DUMP_FILE,)))
    checklist += [
        SnapshotRestored(
            "snapshot_restored", where, (*dict.fromkeys(restored_from), STAGING_SERVER), (SNAPSHOT,)
        ),
        VersionsMatch("versions_match", where, (*source, STAGING_SERVER)),
        *(
            ExtensionAvailable(f"extension[{name}]", where, (*source, SNAPSHOT), extension=name)
            for name in extensions
        ),
        StagingReachable("staging_reachable", where, (SNAPSHOT,), (STAGING_SERVER,)),
        PoolHeadroom("pool_headroom", where, (STAGING_SERVER,), pool_size=gate.config.pool_size),
    ]
    return checklist


def _migrate(gate: Gate) -> list[Criterion[Any]]:
    """Each migration applied and watched (or the project's migrate command), then the tests
    command's before phase and the baseline."""
    config, where = gate.config, gate.config.migrations
    checklist: list[Criterion[Any]] = []
    if config.migrate_command is not None:
        from pytest_dbgate.staging.command_items import CommandLocksHeldBriefly, MigrateCommandRan

        checklist += [
            MigrateCommandRan("command", where, (SNAPSHOT,), (COMMAND,)),
            CommandLocksHeldBriefly("locks[command]", where, (SNAPSHOT, COMMAND)),
        ]
    for index, migration in enumerate(() if config.migrate_command else gate.migrations):
        owns = (migration_step(migration),) + ((RUNNER,) if index == 0 else ())
        checklist.append(
            MigrationApplied(
                f"applied[{migration.id}]",
                migration.path,
                (SNAPSHOT, RUNNER),
                owns,
                migration=migration,
                index=index,
            )
        )
        checklist.append(
            LocksHeldBriefly(
                f"locks[{migration.id}]",
                migration.path,
                (SNAPSHOT, RUNNER),
                migration=migration,
                index=index,
            )
        )
    if config.test_command:
        checklist.append(
            ExternalTestsBefore("test_command", where, (SNAPSHOT,), command=config.test_command)
        )
    if gate.performance is not None:
        checklist.append(BaselineCaptured("baseline_captured", where, (SNAPSHOT,), (BASELINE,)))
    return checklist


def _schema(gate: Gate) -> list[Criterion[Any]]:
    config, where = gate.config, gate.config.migrations
    schema_needs = (SNAPSHOT, COMMAND if config.migrate_command else RUNNER)
    checklist: list[Criterion[Any]] = [
        ConstraintsValidated("constraints_validated", where, schema_needs, needs_migrations=True),
        IndexesValid("indexes_valid_and_ready", where, schema_needs, needs_migrations=True),
    ]
    if config.migrate_command is None:  # the tool keeps its own history
        checklist.append(
            MigrationsRecorded(
                "migrations_recorded",
                where,
                schema_needs,
                needs_migrations=True,
                migrations=tuple(gate.migrations),
            )
        )
    return checklist


def _after(gate: Gate) -> list[Criterion[Any]]:
    """The after phase: post-migrate command, the tests command, the performance verdicts."""
    config, where = gate.config, gate.config.migrations
    checklist: list[Criterion[Any]] = []
    if config.post_migrate_command:
        checklist.append(PostMigrateCommand("post_migrate_command", where, owns=(MIGRATED,)))
    if config.test_command:
        checklist.append(
            ExternalTestsAfter("test_command", where, (MIGRATED,), command=config.test_command)
        )
    if gate.performance is not None:
        checklist.append(AfterCaptured("after_captured", where, (MIGRATED,), (AFTER_CAPTURE,)))
        perf_needs = (BASELINE, AFTER_CAPTURE, PERFORMANCE)
        workload_path = config.workload or where
        checklist += [
            QueryNotSlower(f"query[{q.label}]", workload_path, perf_needs, label=q.label)
            for q in gate.performance.workload
        ]
        checklist.append(TestQueriesNotSlower("test_queries", where, perf_needs))
    return checklist
