"""The production checklist: preflight, deploy, post-deploy.

Every preflight check is a step the deploy requires
(see :mod:`pytest_dbgate.production.deployment`): a
missing, stale, unsigned or mismatched gate record, the wrong target, a version or extension
problem, too little headroom or a session in the way each fail their own item, and every
migration item is then skipped pointing at it, with nothing applied.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

from pytest_dbgate.core.criterion import Criterion, DbgateWarning, Figures
from pytest_dbgate.core.errors import CriterionFailed, RecordError
from pytest_dbgate.core.record import CLOCK_SKEW, format_period, now_utc, run_differences
from pytest_dbgate.core.run import migration_step
from pytest_dbgate.migrations.criteria import MigrationApplied
from pytest_dbgate.observe.relations import touched_relations
from pytest_dbgate.pg.criteria import pool_headroom
from pytest_dbgate.production.deployment import (
    DEPLOY_BASELINE,
    LONG_TRANSACTION_MS,
    MIGRATED,
    PRODUCTION,
    RECORD,
    RUNNER,
    Deployment,
    preflight_step,
    sessions_in_the_way,
)
from pytest_dbgate.refresh.criteria import extension_status
from pytest_dbgate.schema.criteria import ConstraintsValidated, IndexesValid
from pytest_dbgate.staging.commands import PostMigrateCommand
from pytest_dbgate.watch.deploys import DEPLOYS_NAME


@dataclass(frozen=True)
class PreflightCheck(Criterion[Deployment]):
    """A check that must pass before anything is applied; the deploy requires it too."""

    stage: ClassVar[str] = "preflight"

    def check(self, gate: Deployment) -> Figures:
        return gate.preflight(self)

    def verify(self, run: Deployment) -> Figures:
        raise NotImplementedError


@dataclass(frozen=True)
class ProductionReachable(PreflightCheck):
    def verify(self, run: Deployment) -> Figures:
        database = run.production()
        row = database.conn.execute("SELECT current_user, current_database()").fetchone()
        user, dbname = (str(row[0]), str(row[1])) if row else ("", "")
        return {
            "summary": f"{database.where}, PostgreSQL {database.identity.version.split()[0]}",
            "production": database.where,
            "user": user,
            "database": dbname,
            "server_version": database.identity.version,
        }


@dataclass(frozen=True)
class RecordValid(PreflightCheck):
    def verify(self, run: Deployment) -> Figures:
        record = run.record()
        authenticated = record.verify(run.config.signing_key)
        return {
            "summary": f"{len(record.migrations)} migrations, written {record.created_at}; "
            f"{authenticated}",
            "record": str(run.config.record),
            "created_at": record.created_at,
            "migrations": len(record.migrations),
            "signature": authenticated,
            "record_plugin_version": record.plugin_version,
        }


@dataclass(frozen=True)
class RecordFresh(PreflightCheck):
    def verify(self, run: Deployment) -> Figures:
        record = run.record()
        age = record.age(now_utc())
        limit = run.config.record_max_age
        figures: Figures = {
            "summary": f"{format_period(max(age, timedelta()))} old, limit {format_period(limit)}",
            "age_s": round(age.total_seconds()),
            "max_age_s": round(limit.total_seconds()),
        }
        if age < -CLOCK_SKEW:
            raise _failed(RecordError.future(record.created_at), figures)
        if age > limit:
            raise _failed(
                RecordError.expired(format_period(age), record.created_at, format_period(limit)),
                figures,
            )
        return figures


@dataclass(frozen=True)
class RecordMatchesMigrations(PreflightCheck):
    def verify(self, run: Deployment) -> Figures:
        record = run.record()
        rel = {m.version: run.rel(m) for m in run.migrations}
        pending = run.pending()
        figures: Figures = {
            "summary": f"{len(run.migrations)} files as validated, {len(pending)} pending",
            "files": len(run.migrations),
            "pending": len(pending),
        }
        differences = record.differences(run.migrations, rel)
        if differences:
            raise _failed(RecordError.files_differ(differences), figures)
        staged = {m.version: m.staging for m in record.migrations}
        unvalidated = [m.id for m in pending if staged.get(m.version) != "applied"]
        if unvalidated:
            raise _failed(RecordError.not_validated(unvalidated), figures)
        journal = run.journal()
        through = {
            version: max((e.ordinal for e in entries if e.applied), default=0)
            for version, entries in journal.items()
        }
        differ = run_differences(record, pending, rel, through)
        if differ:
            raise _failed(RecordError.runs_differ(differ), figures)
        figures["statements_pending"] = sum(
            len(m.statements) - through.get(m.version, 0) for m in pending
        )
        return figures


@dataclass(frozen=True)
class RecordMatchesTarget(PreflightCheck):
    def verify(self, run: Deployment) -> Figures:
        source = run.record().source
        production = run.production()
        ours = production.identity.system_identifier
        figures: Figures = {
            "summary": f"validated against {source.where}",
            "record_source": source.where,
            "record_system_identifier": source.system_identifier or "unknown",
            "system_identifier": ours or "unknown",
        }
        target = production.where
        if source.embedded:
            raise _failed(
                RecordError.other_target(
                    source.where,
                    target,
                    "staging ran against an embedded source built from "
                    "the seed, not against production",
                ),
                figures,
            )
        if source.system_identifier and ours and source.system_identifier != ours:
            raise _failed(
                RecordError.other_target(
                    source.where,
                    target,
                    f"system identifier {source.system_identifier} in the record, {ours} here",
                ),
                figures,
            )
        if source.database != production.endpoint.dbname:
            raise _failed(
                RecordError.other_target(
                    source.where,
                    target,
                    f"database {source.database} in the record, {production.endpoint.dbname} here",
                ),
                figures,
            )
        if source.dump_file is not None:
            figures["summary"] = (
                f"database {source.database}; staging restored the dump file "
                f"{source.dump_file}, which carries no system identifier, so only the database "
                "name was compared"
            )
        elif not (source.system_identifier and ours):
            figures["summary"] = (
                f"database {source.database}; system identifier unreadable (needs pg_monitor or "
                "superuser), so only the database name was compared"
            )
        return figures


@dataclass(frozen=True)
class VersionsMatchStaging(PreflightCheck):
    def verify(self, run: Deployment) -> Figures:
        staging = run.record().staging
        production = run.production().identity
        figures: Figures = {
            "summary": f"production {production.version.split()[0]}, staging "
            f"{staging.server_version.split()[0]}",
            "production_version": production.version,
            "staging_version": staging.server_version,
        }
        if production.major != staging.version_num // 10000:
            raise CriterionFailed(
                f"production runs PostgreSQL {production.version} but staging validated the "
                f"release on {staging.server_version}: the major versions must match\n"
                f"  re-run the staging gate on PostgreSQL {production.major}",
                figures,
            )
        if production.version_num != staging.version_num:
            figures["minor_mismatch"] = True
            warnings.warn(
                DbgateWarning(
                    f"minor versions differ: production {production.version}, staging "
                    f"{staging.server_version}"
                ),
                stacklevel=1,
            )
        return figures


@dataclass(frozen=True)
class ExtensionPresent(PreflightCheck):
    extension: str = ""

    def verify(self, run: Deployment) -> Figures:
        database = run.production()
        installed, available, problem = extension_status(
            database.conn, self.extension, "production", database
        )
        figures: Figures = {
            "summary": f"has {installed}" if installed != "no" else "can create it",
            "production_installed": installed,
            "production_available": available,
        }
        if problem:
            raise CriterionFailed(problem, figures)
        return figures


@dataclass(frozen=True)
class ProductionHeadroom(PreflightCheck):
    def verify(self, run: Deployment) -> Figures:
        # The application's pool is already connected on production: count it in use.
        return pool_headroom(run.production(), "production", 0)


@dataclass(frozen=True)
class NoBlockingSessions(PreflightCheck):
    def verify(self, run: Deployment) -> Figures:
        pending = run.pending()
        relations = list(dict.fromkeys(r for m in pending for r in touched_relations(m)))
        found = sessions_in_the_way(run, relations)
        figures: Figures = {
            "summary": f"{len(found)} session(s) in the way",
            "sessions": len(found),
        }
        if found:
            listed = "\n".join(f"    {line}" for line in found[:10])
            raise CriterionFailed(
                f"{len(found)} session(s) on production would hold up the migrations (a "
                f"transaction open over {LONG_TRANSACTION_MS // 1000} s, or idle in transaction "
                f"over {run.config.max_idle_in_transaction_ms / 1000:g} s):\n{listed}\n"
                "  end them (SELECT pg_terminate_backend(pid)) or wait for them, then re-run; "
                "idle_in_transaction_session_timeout keeps them from coming back",
                figures,
            )
        return figures


def _failed(error: RecordError, figures: Figures) -> CriterionFailed:
    return CriterionFailed(str(error), figures)


# -- deploy and after --------------------------------------------------------------------


@dataclass(frozen=True)
class Deployed(MigrationApplied):
    stage: ClassVar[str] = "deploy"


@dataclass(frozen=True)
class DeployPostMigrateCommand(PostMigrateCommand):
    stage: ClassVar[str] = "deploy"


@dataclass(frozen=True)
class BaselineRecorded(Criterion[Deployment]):
    """The deploy's baseline, for the watch: production's counters before and after applying,
    and the staging gate's figures for the queries it measured."""

    stage: ClassVar[str] = "postdeploy"

    def check(self, gate: Deployment) -> Figures:
        found = gate.deploy_baseline()
        if found is None:
            return {
                "summary": "nothing applied in this run: no new deploy, the watch goes on "
                "judging the latest one",
                "deploy_id": "none",
            }
        figures: Figures = {
            "summary": f"deploy #{found.id} in {DEPLOYS_NAME}: a baseline of "
            f"{found.statements:,} queries; {found.staging_queries_seen} of the "
            f"{found.staging_queries} queries staging measured seen on production",
            "deploy_id": found.id,
            "deployed_at": found.deployed_at.isoformat(timespec="seconds"),
            "applied": ", ".join(found.applied),
            "baseline_statements": found.statements,
            "staging_queries": found.staging_queries,
            "staging_queries_seen": found.staging_queries_seen,
        }
        if found.hidden:
            blind = (
                f"{found.hidden:,} pg_stat_statements entries of other roles are hidden from the "
                "deploy role, so the baseline lacks them and the watch cannot judge them: GRANT "
                "pg_read_all_stats to the deploy role"
            )
            figures["summary"] = f"{figures['summary']}; {blind}"
            warnings.warn(DbgateWarning(blind), stacklevel=1)
        if found.no_statements:
            figures["summary"] = (
                f"deploy #{found.id} in {DEPLOYS_NAME}: database signals only; "
                f"{found.no_statements}"
            )
            warnings.warn(DbgateWarning(found.no_statements), stacklevel=1)
        return figures


@dataclass(frozen=True)
class ConstraintsValidatedOnProduction(ConstraintsValidated):
    stage: ClassVar[str] = "postdeploy"


@dataclass(frozen=True)
class IndexesValidOnProduction(IndexesValid):
    stage: ClassVar[str] = "postdeploy"


def preflight_checks(run: Deployment) -> list[PreflightCheck]:
    """What must hold before anything is applied; applying requires every one of them."""
    where = run.config.migrations
    record = run.config.record
    extensions = list(
        dict.fromkeys(
            [*(run.config.extensions or ()), *(e for m in run.migrations for e in m.extensions)]
        )
    )
    preflight: list[PreflightCheck] = [
        ProductionReachable(
            "production_reachable", where, owns=(PRODUCTION, preflight_step("production_reachable"))
        ),
        RecordValid("record_valid", record, owns=(RECORD, preflight_step("record_valid"))),
        RecordFresh("record_fresh", record, (RECORD,), (preflight_step("record_fresh"),)),
        RecordMatchesMigrations(
            "record_matches_migrations",
            where,
            (RECORD, PRODUCTION),
            (preflight_step("record_matches_migrations"),),
        ),
        RecordMatchesTarget(
            "record_matches_target",
            record,
            (RECORD, PRODUCTION),
            (preflight_step("record_matches_target"),),
        ),
        VersionsMatchStaging(
            "versions_match", where, (RECORD, PRODUCTION), (preflight_step("versions_match"),)
        ),
        *(
            ExtensionPresent(
                f"extension[{name}]",
                where,
                (PRODUCTION,),
                (preflight_step(f"extension[{name}]"),),
                extension=name,
            )
            for name in extensions
        ),
        ProductionHeadroom(
            "pool_headroom", where, (PRODUCTION,), (preflight_step("pool_headroom"),)
        ),
        NoBlockingSessions(
            "no_blocking_sessions", where, (PRODUCTION,), (preflight_step("no_blocking_sessions"),)
        ),
    ]
    return preflight


def production_checklist(
    run: Deployment, preflight: Sequence[PreflightCheck]
) -> list[Criterion[Any]]:
    """Preflight, one item per migration, post-deploy checks."""
    where = run.config.migrations
    checklist: list[Criterion[Any]] = list(preflight)
    for index, migration in enumerate(run.migrations):
        owns = (migration_step(migration),) + ((RUNNER,) if index == 0 else ())
        checklist.append(
            Deployed(
                f"applied[{migration.id}]",
                migration.path,
                (RUNNER,),
                owns,
                migration=migration,
                index=index,
            )
        )
    if run.config.post_migrate_command:
        checklist.append(DeployPostMigrateCommand("post_migrate_command", where, owns=(MIGRATED,)))
    checklist.append(
        BaselineRecorded("baseline_recorded", where, (RUNNER,), owns=(DEPLOY_BASELINE,))
    )
    checklist += [
        ConstraintsValidatedOnProduction(
            "constraints_validated", where, (PRODUCTION,), needs_migrations=True
        ),
        IndexesValidOnProduction(
            "indexes_valid_and_ready", where, (PRODUCTION,), needs_migrations=True
        ),
    ]
    return checklist
