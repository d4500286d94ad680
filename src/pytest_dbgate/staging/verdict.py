"""The verdict: the gate record, written when every criterion passed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from pytest_dbgate import __version__
from pytest_dbgate.core.criterion import Criterion, Figures
from pytest_dbgate.core.errors import Figure
from pytest_dbgate.core.record import (
    GateRecord,
    RecordedMigration,
    RecordedQuery,
    RecordedServer,
    format_period,
    now_utc,
)
from pytest_dbgate.core.run import Database
from pytest_dbgate.performance.stats import query_key, short_text
from pytest_dbgate.refresh.dumpfile import DumpFile
from pytest_dbgate.staging.gate import Gate


@dataclass(frozen=True)
class GateRecordWritten(Criterion[Gate]):
    """Every criterion passed: write the record production deploys from.

    It runs last and reads the verdicts of everything before it, so a run where anything
    failed, errored or was deselected writes no record (the item is skipped, saying why: the
    failures are already reported where they happened).
    """

    stage: ClassVar[str] = "verdict"

    def check(self, gate: Gate) -> Figures:
        results = gate.results
        criteria = [r for r in results.items.values() if r.stage != self.stage and not r.phased]
        ran = [r for r in criteria if r.outcome != "not run"]
        not_passed = [r for r in ran if r.outcome != "passed"]
        tests = [r for r in results.items.values() if r.phased]
        # A skipped test is not a passing one: the record vouches for tests green before and
        # after, every one of them.
        failed_tests = [r for r in tests if r.outcome in ("failed", "error", "skipped")]
        missing = results.did_not_run(self.stage)
        figures: Figures = {
            "criteria_passed": len(ran) - len(not_passed),
            "criteria_total": results.generated - 1,
            "project_tests_passed": sum(1 for r in tests if r.outcome == "passed"),
            "project_tests_skipped": sum(1 for r in tests if r.outcome == "skipped"),
        }
        problems = [f"    {r.nodeid}: {r.outcome}" for r in not_passed[:15]]
        problems += [f"    {r.nodeid}: {r.outcome}" for r in failed_tests[:15]]
        problems += [f"    {nodeid}: did not run" for nodeid in missing[:15]]
        if len(missing) > 15:
            problems.append(
                f"    … and {len(missing) - 15} more did not run (deselected, or the run "
                "stopped early)"
            )
        problems += [
            f"    {path}: not collected (--ignore for this run)" for path in results.ignored[:15]
        ]
        problems += [
            f"    {nodeid}: not collected"
            if nodeid.endswith("(skipped whole)")
            else f"    {nodeid}: could not be collected"
            for nodeid in results.uncollected[:15]
        ]
        if problems:
            # Not a failure of its own: what did not pass already failed (or was deselected).
            pytest.skip(
                "no gate record written: production deploys only a release whose every "
                "criterion passed and whose tests all ran, before and after, and "
                f"{len(problems)} did not:\n" + "\n".join(problems)
            )
        record = build_record(gate).signed(gate.config.signing_key)
        record.write(gate.config.record)
        signed = "signed" if record.signature else "unsigned (DBGATE_SIGNING_KEY not set)"
        figures.update(
            {
                "summary": f"{gate.shown(gate.config.record)}: {len(record.migrations)} "
                f"migrations, {signed}",
                "record": str(gate.config.record),
                "migrations": len(record.migrations),
                "signed": record.signature is not None,
            }
        )
        return figures


def build_record(gate: Gate) -> GateRecord:
    """What this passing run validated: files by checksum, the source, the figures."""
    outcomes = {o.migration.version: o for o in gate.outcomes()}
    figures_extra: dict[str, Figure] = {}
    if gate.config.migrate_command is not None:
        done = gate.command()
        figures_extra = {
            "migrate_command": done.result.command,
            "applied_by_command": ", ".join(done.applied),
        }
    held = gate.hold_backs
    staging = gate.staging_server()
    checks = tuple(
        {"id": r.nodeid, "outcome": r.outcome, "summary": str(r.figures.get("summary", ""))}
        for r in gate.results.items.values()
        if not r.phased and r.outcome != "not run"
    )
    figures: dict[str, Figure] = {
        "criteria": len(checks),
        "project_tests": sum(1 for r in gate.results.items.values() if r.phased),
    }
    figures["rows_restored"] = gate.snapshot().staging_rows
    if gate.decided_locks:
        longest = max(report.longest_blocking_ms for report in gate.decided_locks.values())
        figures["longest_blocking_lock_ms"] = round(longest, 1)
    figures.update(figures_extra)
    return GateRecord(
        created_at=now_utc().isoformat(timespec="seconds"),
        plugin_version=__version__,
        source=_recorded_dump(gate.dump_file())
        if gate.config.file_only
        else _recorded_server(gate.source()),
        staging=_recorded_server(staging),
        migrations=tuple(
            RecordedMigration(
                version=m.version,
                name=m.name,
                file=gate.rel(m),
                checksum=m.checksum,
                hold_back=format_period(held[m.version]) if m.version in held else None,
                staging=outcomes[m.version].status.value,
                layout=m.layout,
                transaction=m.transaction_mode,
                statements=tuple(s.short_digest for s in m.statements),
                executed_from=outcomes[m.version].resumed_after + 1,
            )
            for m in gate.migrations
            if m.version in outcomes  # in command mode the tool applied them: none here
        ),
        figures=figures,
        checks=checks,
        queries=_recorded_queries(gate),
    )


def _recorded_queries(gate: Gate) -> tuple[RecordedQuery, ...]:
    """What staging measured, for the watch to compare production with after the deploy."""
    if gate.performance is None:
        return ()
    return tuple(
        RecordedQuery(
            key=query_key(c.sql),
            label=c.label if c.source == "workload" else short_text(c.sql),
            source=c.source,
            text=" ".join(c.sql.split())[:2000],
            before_ms=round(c.before.ms, 4),
            after_ms=round(c.after.ms, 4),
            change=round(c.ratio.estimate - 1, 4) if c.ratio is not None else None,
        )
        for c in gate.comparisons()
        if c.before is not None and c.after is not None
    )


def _recorded_dump(dump: DumpFile) -> RecordedServer:
    """A dump file stands for the source: its database name and version, no identifier."""
    identity = dump.identity
    return RecordedServer(
        where=f"dump file {dump.path.name}",
        database=dump.dbname,
        server_version=identity.version if identity else "unknown",
        version_num=identity.version_num if identity else 0,
        system_identifier=None,
        embedded=False,
        dump_file=f"{dump.path.name} ({dump.checksum})",
    )


def _recorded_server(database: Database) -> RecordedServer:
    return RecordedServer(
        where=database.endpoint.display(),
        database=database.endpoint.dbname,
        server_version=database.identity.version,
        version_num=database.identity.version_num,
        system_identifier=database.identity.system_identifier,
        embedded=database.embedded,
    )
