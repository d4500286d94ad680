"""Errors that say what went wrong and what to do about it.

Every error a user can cause or meet (bad configuration, a missing tool, an unreachable server,
a malformed migration) is raised through a named constructor here, so the wording, and above all
the remedy, lives in one place and never contains a password.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path

Figure = str | int | float | bool


class DbgateError(Exception):
    """A problem the user can fix; ``str()`` is the whole message: what is wrong, what to do."""

    def __init__(self, problem: str, remedy: str) -> None:
        self.problem = problem
        self.remedy = remedy
        super().__init__(f"{problem}\n  what to do: {remedy}")


class ConfigError(DbgateError):
    """The gate's configuration or input files are wrong; nothing has been touched yet."""

    @classmethod
    def no_production_target(cls) -> ConfigError:
        return cls(
            "--dbgate=production has no database to deploy to",
            "set PROD_DATABASE_URL (or --dbgate-production-url / dbgate_production_url) to the "
            "production database the staging gate was run against",
        )

    @classmethod
    def bad_value(cls, option: str, value: str, expected: str) -> ConfigError:
        return cls(f"{option} has an invalid value {value!r}", f"give {expected}")

    @classmethod
    def bad_url(cls, option: str, reason: str) -> ConfigError:
        return cls(
            f"{option} is not a valid PostgreSQL connection URL ({reason})",
            "use the form postgresql://user@host:port/dbname (password from the environment)",
        )

    @classmethod
    def password_in_ini(cls, option: str) -> ConfigError:
        return cls(
            f"the ini setting {option} contains a password; configuration files end up in the "
            "repository, secrets must not",
            "remove the password from the ini file and provide it through the environment "
            "(PGPASSWORD, ~/.pgpass, or the whole URL in PROD_DATABASE_URL / STAGING_DATABASE_URL)",
        )

    @classmethod
    def staging_is_source(cls) -> ConfigError:
        return cls(
            "the staging URL is the same as the source (production) URL; the gate would restore "
            "and migrate the production database",
            "point --dbgate-staging-url / STAGING_DATABASE_URL at a separate staging server, or "
            "leave it unset to use an embedded staging server",
        )

    @classmethod
    def clone_and_staging(cls) -> ConfigError:
        return cls(
            "both a clone command and a staging URL are set: the clone command provisions the "
            "staging database itself",
            "unset STAGING_DATABASE_URL / dbgate_staging_url, or drop dbgate_clone_command",
        )

    @classmethod
    def clone_and_snapshot(cls) -> ConfigError:
        return cls(
            "both a clone command and a dump file (--dbgate-snapshot) are set: the clone command "
            "provisions the staging database itself, there is nothing to restore",
            "drop --dbgate-snapshot / dbgate_snapshot, or dbgate_clone_command",
        )

    @classmethod
    def snapshot_missing(cls, path: Path) -> ConfigError:
        return cls(
            f"the dump file {path} does not exist",
            "point --dbgate-snapshot / dbgate_snapshot at a dump pg_dump wrote (plain SQL, "
            "possibly gzipped; custom; directory; or tar format)",
        )

    @classmethod
    def snapshot_unreadable(cls, path: Path, reason: str) -> ConfigError:
        return cls(
            f"the dump file {path} cannot be restored: {reason}",
            "check that it is a whole file pg_dump wrote (a copy cut short or damaged on the way "
            "reads like this); take it again or copy it again",
        )

    @classmethod
    def snapshot_truncated(cls, path: Path) -> ConfigError:
        return cls(
            f"the plain SQL dump {path} is truncated: it does not end with pg_dump's "
            "'-- PostgreSQL database dump complete' line, so tables, data or indexes are missing",
            "take the dump again, or copy the whole file again (a full disk or an interrupted "
            "transfer cuts dumps short)",
        )

    @classmethod
    def snapshot_is_cluster_dump(cls, path: Path) -> ConfigError:
        return cls(
            f"{path} is a pg_dumpall dump of a whole cluster, not of one database",
            "dump the production database alone with pg_dump (custom format, -Fc, restores in "
            "parallel) and pass that file",
        )

    @classmethod
    def no_source(cls) -> ConfigError:
        return cls(
            "there is no source database to gate against: no source URL and no seed for an "
            "embedded source",
            "set PROD_DATABASE_URL (or --dbgate-source-url / dbgate_source_url), or name the SQL "
            "files that build an embedded source with --dbgate-seed / dbgate_seed",
        )

    @classmethod
    def seed_missing(cls, path: Path) -> ConfigError:
        return cls(
            f"the seed path {path} does not exist",
            "point --dbgate-seed / dbgate_seed at a .sql file or a folder of .sql files",
        )

    @classmethod
    def migrations_missing(cls, path: Path) -> ConfigError:
        return cls(
            f"the migrations folder {path} does not exist",
            "create it, or point --dbgate-migrations / dbgate_migrations at the folder that "
            "holds the release's migration files",
        )

    @classmethod
    def migrations_empty(cls, path: Path) -> ConfigError:
        return cls(
            f"the migrations folder {path} holds no migration files (<version>_<name>.sql)",
            "add the release's migrations, or point --dbgate-migrations at the right folder",
        )

    @classmethod
    def not_a_migration(cls, path: Path, layout: str, example: str) -> ConfigError:
        return cls(
            f"{path} is not a migration of the {layout} layout the folder uses (e.g. {example})",
            "rename it like the others, move it out of the migrations folder, or set "
            "dbgate_layout if the layout was detected wrongly",
        )

    @classmethod
    def mixed_layouts(cls, path: Path, layouts: Iterable[str]) -> ConfigError:
        return cls(
            f"the migrations folder {path} mixes layouts: {', '.join(layouts)}",
            "keep one tool's migrations in the folder, or name the layout with dbgate_layout",
        )

    @classmethod
    def duplicate_version(cls, version: str, paths: Iterable[Path]) -> ConfigError:
        names = ", ".join(str(p) for p in paths)
        return cls(
            f"migration version {version} is used by more than one file: {names}",
            "give each migration its own version",
        )

    @classmethod
    def malformed_migration(cls, path: Path, line: int, message: str) -> ConfigError:
        return cls(
            f"{path}:{line}: the migration does not parse: {message}",
            "fix the SQL; no migration was applied",
        )

    @classmethod
    def bad_directive(cls, path: Path, line: int, text: str, known: Iterable[str]) -> ConfigError:
        return cls(
            f"{path}:{line}: unknown or malformed dbgate directive {text!r}",
            f"use one of: {', '.join(known)}",
        )

    @classmethod
    def unknown_rule(cls, path: Path, line: int, rule: str, known: Iterable[str]) -> ConfigError:
        return cls(
            f"{path}:{line}: `-- dbgate: ignore {rule}` names no lint rule",
            f"use one of: {', '.join(known)}",
        )

    @classmethod
    def ignore_without_reason(cls, path: Path, line: int, rule: str) -> ConfigError:
        return cls(
            f"{path}:{line}: `-- dbgate: ignore {rule}` gives no reason",
            f"say why it is safe here: `-- dbgate: ignore {rule} <reason>` (the report shows it)",
        )

    @classmethod
    def unknown_migration(cls, option: str, key: str, known: Iterable[str]) -> ConfigError:
        names = ", ".join(known)
        return cls(
            f"{option} names {key!r}, which is not a migration of this release",
            f"name a migration by version or name (one of: {names})",
        )

    @classmethod
    def holdback_shortened(
        cls, key: str, migration: str, own: timedelta, configured: timedelta
    ) -> ConfigError:
        return cls(
            f"dbgate_holdbacks gives {key} a hold-back of {_period(configured)}, but the file "
            f"{migration} holds itself back {_period(own)}: configuration may add or lengthen a "
            "hold-back, never shorten one",
            f"remove the entry or make it {_period(own)} or more; to deploy a held-back "
            f"migration early on purpose, say so for this run: --dbgate-release-early={key}",
        )

    @classmethod
    def not_held_back(cls, key: str, migration: str) -> ConfigError:
        return cls(
            f"--dbgate-release-early names {migration}, which is not held back",
            "name only migrations with a hold-back (`-- dbgate: hold-back` or dbgate_holdbacks); "
            "the others are applied without it",
        )

    @classmethod
    def one_off_in_addopts(cls, flag: str) -> ConfigError:
        return cls(
            f"{flag} is in the ini file's addopts: it is a decision for one run, and there it "
            "would apply to every later run",
            f"remove it from addopts and give it on the command line of the run that needs it "
            f"({flag}=…)",
        )

    @classmethod
    def command_mode_in_production(cls) -> ConfigError:
        return cls(
            "--dbgate=production applies SQL migrations itself, exactly once and exactly as "
            "staging ran them; with dbgate_migrate_command set, the project's own tool applies "
            "them, and it keeps its own record of what it applied",
            "deploy with the tool itself once the staging gate passed (its record names the "
            "command and what it applied), or unset dbgate_migrate_command for SQL migrations",
        )

    @classmethod
    def release_early_outside_production(cls) -> ConfigError:
        return cls(
            "--dbgate-release-early only means something to --dbgate=production (staging "
            "validates held-back migrations like any other)",
            "drop it from this run, and give it to the production run that should release the "
            "migration early",
        )

    @classmethod
    def partial_deploy(cls, left_out: Iterable[str]) -> ConfigError:
        listed = "\n".join(f"    {nodeid}" for nodeid in left_out)
        return cls(
            "--dbgate=production runs all of its checklist or nothing, but this selection "
            f"leaves out:\n{listed}",
            "drop -k, -m, --deselect, --lf, --sw and the like from the production run; a deploy "
            "applies exactly the release staging passed, checks before and after included",
        )

    @classmethod
    def workload_missing(cls, path: Path) -> ConfigError:
        return cls(
            f"the workload file {path} does not exist",
            "point --dbgate-workload / dbgate_workload at a .sql file of representative queries",
        )

    @classmethod
    def workload_malformed(cls, path: Path, line: int, message: str) -> ConfigError:
        return cls(
            f"{path}:{line}: the workload is not usable: {message}",
            "write one data query per statement, with literal parameters (`-- name: <label>` "
            "above a query names it)",
        )

    @classmethod
    def not_text(cls, path: Path, what: str, problem: str) -> ConfigError:
        return cls(
            f"the {what} {path} is not readable SQL text: {problem}",
            "save it as UTF-8 text (without NUL bytes), or point the setting at the right file; "
            "nothing was applied",
        )

    @classmethod
    def seed_empty(cls, path: Path) -> ConfigError:
        return cls(
            f"the seed folder {path} holds no .sql file",
            "add the SQL that builds the source database, or point --dbgate-seed at it",
        )

    @classmethod
    def cannot_write(cls, what: str, path: Path, problem: str, setting: str) -> ConfigError:
        return cls(
            f"the {what} {path} cannot be written: {problem}",
            f"point {setting} at a folder this run may write to; nothing was started",
        )

    @classmethod
    def empty_migration(cls, path: Path) -> ConfigError:
        return cls(
            f"{path} holds no SQL statement",
            "add the migration's statements or remove the file",
        )


class ToolError(DbgateError):
    """A PostgreSQL program the gate needs is missing or unusable."""

    @classmethod
    def binary_missing(cls, names: str, tried: Iterable[str]) -> ToolError:
        where = "; ".join(tried) or "nowhere"
        return cls(
            f"the PostgreSQL programs the gate needs ({names}) were not found together in any "
            f"of: {where}",
            "install the PostgreSQL server and client packages (Debian/Ubuntu: "
            "`apt-get install postgresql postgresql-contrib`), or point --dbgate-pg-bindir at the "
            "folder that holds pg_ctl, pg_dump and pg_restore",
        )

    @classmethod
    def client_too_old(cls, name: str, client_major: int, server_major: int) -> ToolError:
        return cls(
            f"{name} {client_major} cannot dump or restore a PostgreSQL {server_major} server",
            f"install the PostgreSQL {server_major} client programs (Debian/Ubuntu: "
            f"postgresql-client-{server_major}) or point --dbgate-pg-bindir at them",
        )


class ProvisioningError(DbgateError):
    """An embedded PostgreSQL server could not be set up."""

    @classmethod
    def no_server_user(cls, name: str) -> ProvisioningError:
        return cls(
            f"PostgreSQL refuses to run as root and there is no unprivileged account {name!r} to "
            "run the embedded servers as",
            f"create it (`useradd --system {name}`; installing the postgresql package does this), "
            "or run pytest as an unprivileged user",
        )

    @classmethod
    def cluster_failed(cls, role: str, reason: str, log_tail: str) -> ProvisioningError:
        log = f"\n  server log:\n{log_tail}" if log_tail else ""
        return cls(
            f"the embedded {role} server did not start: {reason}{log}",
            "check that the PostgreSQL server package (and postgresql-contrib, for "
            "pg_stat_statements) is installed and that /tmp is writable",
        )

    @classmethod
    def clone_failed(cls, command: str, why: str, output: str) -> ProvisioningError:
        shown = f"\n  its output:\n{_indent(output)}" if output.strip() else ""
        return cls(
            f"the clone command `{command}` {why}{shown}",
            "make it print the new database's URL (postgresql://user@host:port/db) as its last "
            "line and exit 0; the password may come from the environment",
        )

    @classmethod
    def seed_failed(cls, path: Path, line: int | None, message: str) -> ProvisioningError:
        where = f"{path}:{line}" if line else str(path)
        return cls(
            f"loading the seed into the embedded source failed at {where}: {message}",
            "fix the seed SQL (dbgate_seed)",
        )


class ConnectError(DbgateError):
    """A server could not be reached or refused the gate's credentials."""

    @classmethod
    def unreachable(cls, role: str, where: str, cause: str, setting: str) -> ConnectError:
        lowered = cause.lower()
        if "password authentication failed" in lowered or "no password supplied" in lowered:
            remedy = f"check the user and password of {setting} (or PGPASSWORD / ~/.pgpass)"
        elif "does not exist" in lowered and "database" in lowered:
            remedy = f"check the database name in {setting}"
        elif "timeout" in lowered or "refused" in lowered or "could not translate" in lowered:
            remedy = (
                f"check host and port in {setting}, and that the server is running and reachable"
            )
        else:
            remedy = f"check {setting} and that the server accepts connections from this machine"
        first_line = cause.strip().splitlines()[0] if cause.strip() else "no reason given"
        return cls(f"cannot connect to the {role} database {where}: {first_line}", remedy)


class SafetyError(DbgateError):
    """The gate refuses to do something that could damage data it does not own."""

    @classmethod
    def staging_is_production(cls, where: str) -> SafetyError:
        return cls(
            f"the staging server {where} is the production (source) server; the gate refuses to "
            "create, restore or migrate databases there",
            "point the staging URL at a separate server, or leave it unset to use an embedded "
            "staging server",
        )

    @classmethod
    def database_not_ours(cls, dbname: str, where: str) -> SafetyError:
        return cls(
            f"the database {dbname!r} already exists on {where} and was not created by "
            "pytest-dbgate",
            "drop or rename it yourself if it is disposable, or use another staging server",
        )

    @classmethod
    def gate_running(cls, where: str, holder: str, remedy: str) -> SafetyError:
        held = f": {holder}" if holder else ""
        return cls(f"another pytest-dbgate run holds the gate lock on {where}{held}", remedy)

    @classmethod
    def cannot_create_database(cls, where: str, cause: str) -> SafetyError:
        return cls(
            f"the staging role cannot create the gate's database on {where}: {cause}",
            "grant the role CREATEDB on the staging server (ALTER ROLE … CREATEDB)",
        )


class RefreshError(DbgateError):
    """Dumping the source or restoring the snapshot failed."""

    @classmethod
    def dump_failed(cls, where: str, stderr: str) -> RefreshError:
        return cls(
            f"pg_dump of {where} failed:\n{_indent(stderr)}",
            "check that the source role may read every table (pg_read_all_data) and that "
            "pg_dump's version is at least the server's",
        )

    @classmethod
    def restore_failed(cls, where: str, stderr: str, program: str = "pg_restore") -> RefreshError:
        return cls(
            f"{program} into {where} failed:\n{_indent(stderr)}",
            "make sure the staging server has the extensions and the PostgreSQL major version "
            "the source uses",
        )

    @classmethod
    def dump_file_damaged(cls, where: str, reason: str) -> RefreshError:
        return cls(
            f"the dump file {where} is damaged or truncated: {reason}",
            "take the dump again, or copy the whole file again; the half-restored copy is not "
            "kept as a snapshot",
        )


class PerformanceError(DbgateError):
    """Query statistics cannot be captured on the staging server."""

    @classmethod
    def not_preloaded(cls) -> PerformanceError:
        return cls(
            "pg_stat_statements is not loaded on the staging server, so query times cannot be "
            "measured",
            "add it to shared_preload_libraries (postgresql.conf: shared_preload_libraries = "
            "'pg_stat_statements') and restart the server; on a managed service, enable it in "
            "the instance's parameters. Or turn the performance stage off with "
            "dbgate_max_regression = off",
        )

    @classmethod
    def cannot_create(cls, cause: str) -> PerformanceError:
        return cls(
            f"the pg_stat_statements extension is missing in the staging database and the "
            f"staging role may not create it ({cause})",
            "have an administrator run CREATE EXTENSION pg_stat_statements on the source (the "
            "snapshot then brings it), or use a superuser for staging",
        )

    @classmethod
    def unavailable(cls, cause: str) -> PerformanceError:
        return cls(
            f"pg_stat_statements cannot be read on the staging server: {cause}",
            "install the PostgreSQL contrib package on the staging server and preload "
            "pg_stat_statements, or set dbgate_max_regression = off",
        )

    @classmethod
    def not_measured(cls, label: str) -> PerformanceError:
        return cls(
            f"the workload query {label} was not measured after the migrations",
            "run the after phase's capture (dbgate::after::after_captured) with the "
            "performance items",
        )

    @classmethod
    def no_reference(cls, cause: str) -> PerformanceError:
        return cls(
            f"the un-migrated copy to measure staging against could not be made: {cause}",
            "free space on the staging server or let the staging role create databases; "
            "--dbgate-refresh retakes the cached snapshot it is cloned from",
        )

    @classmethod
    def migrations_first(cls) -> PerformanceError:
        return cls(
            "the performance baseline must be captured before the migrations, but they already "
            "started",
            "run the gate in order (do not select migration items without "
            "dbgate::before::baseline_captured)",
        )


class HistoryError(DbgateError):
    """The migration tool's own history is in a state the tool itself would stop at."""

    @classmethod
    def unfinished(cls, table: str, what: str, command: str) -> HistoryError:
        return cls(
            f"the migration tool's history {table} records a migration that did not finish: "
            f"{what}; what it left is unknown, to the tool and to the gate",
            f"settle it with the tool: {command}; then re-run",
        )

    @classmethod
    def not_the_tools(cls, table: str, layout: str, missing: Iterable[str]) -> HistoryError:
        return cls(
            f"{table} is not the {layout} history the migrations folder calls for (it has no "
            f"column {', '.join(missing)}): another tool's table of the same name?",
            "point --dbgate-migrations at the folder of the tool that owns it, or set "
            "--dbgate-layout to that tool's layout",
        )


class RecordError(DbgateError):
    """The gate record production needs is missing, unreadable, untrusted or does not fit."""

    @classmethod
    def missing(cls, path: Path) -> RecordError:
        return cls(
            f"there is no gate record at {path}: production deploys only what a staging run passed",
            "run `pytest --dbgate=staging` against this production database first and pass its "
            "record (.dbgate/gate-record.json) to this job, e.g. as a CI artifact; or point "
            "--dbgate-record at it",
        )

    @classmethod
    def unreadable(cls, path: Path, reason: str) -> RecordError:
        return cls(
            f"{path} is not a usable gate record ({reason})",
            "use the gate-record.json a passing `pytest --dbgate=staging` run wrote, unedited",
        )

    @classmethod
    def old_format(cls, path: Path, found: object, expected: int) -> RecordError:
        return cls(
            f"{path} is a gate record of format {found}, written by another version of "
            f"pytest-dbgate; this one reads format {expected}, which binds the exact statements "
            "staging ran",
            "re-run `pytest --dbgate=staging` with this version of pytest-dbgate and deploy with "
            "its record",
        )

    @classmethod
    def runs_differ(cls, differences: Iterable[str]) -> RecordError:
        listed = "\n".join(f"    {line}" for line in differences)
        return cls(
            f"this run would not apply the migrations the way staging ran them:\n{listed}",
            "deploy exactly what staging ran: run production with the same layout and files as "
            "staging, or re-run `pytest --dbgate=staging` to validate the release as it is now",
        )

    @classmethod
    def unsigned(cls) -> RecordError:
        return cls(
            "the gate record is not signed, but DBGATE_SIGNING_KEY is set here",
            "set the same DBGATE_SIGNING_KEY in the staging job and re-run it, so its record is "
            "signed",
        )

    @classmethod
    def bad_signature(cls) -> RecordError:
        return cls(
            "the gate record's signature does not match: the record was changed after staging "
            "wrote it, or signed with another key",
            "re-run `pytest --dbgate=staging` with the same DBGATE_SIGNING_KEY as this job and "
            "pass its record unchanged",
        )

    @classmethod
    def expired(cls, age: str, created: str, limit: str) -> RecordError:
        return cls(
            f"the gate record is {age} old (written {created}), older than dbgate_record_max_age "
            f"({limit}): production has changed since staging validated the release",
            "re-run `pytest --dbgate=staging` to validate the release against a fresh snapshot, "
            "or raise --dbgate-record-max-age",
        )

    @classmethod
    def future(cls, created: str) -> RecordError:
        return cls(
            f"the gate record says it was written at {created}, which is in the future",
            "check the clocks of the staging and production runners, and re-run staging",
        )

    @classmethod
    def files_differ(cls, differences: Iterable[str]) -> RecordError:
        listed = "\n".join(f"    {line}" for line in differences)
        return cls(
            f"the migration files are not the ones staging validated:\n{listed}",
            "deploy exactly what staging passed: restore the files, or re-run "
            "`pytest --dbgate=staging` to validate the changed release",
        )

    @classmethod
    def other_target(cls, recorded: str, target: str, reason: str) -> RecordError:
        return cls(
            f"the gate record validated the release against {recorded}, not against this "
            f"production database {target} ({reason})",
            "run the staging gate with PROD_DATABASE_URL pointing at this production database "
            "(a replica of it will do), then deploy with its record",
        )

    @classmethod
    def not_validated(cls, names: Iterable[str]) -> RecordError:
        listed = ", ".join(names)
        return cls(
            f"staging did not apply {listed}: they were already applied in the snapshot it "
            "restored, but production has not applied them",
            "re-run `pytest --dbgate=staging` against this production database so staging "
            "validates them",
        )


class CriterionFailed(Exception):
    """A release criterion does not hold: a verdict, not a crash.

    It carries the figures measured on the way, so they land in the JUnit report of the failing
    item as well as of the passing ones.
    """

    def __init__(self, message: str, figures: Mapping[str, Figure] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.figures: dict[str, Figure] = dict(figures or {})


def _indent(text: str, prefix: str = "    ") -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(prefix + line for line in lines[-20:])


def _period(period: timedelta) -> str:
    """``7d``, ``36h``: a hold-back as its directive would say it."""
    hours = int(period.total_seconds() // 3600)
    if hours and hours % 24 == 0:
        return f"{hours // 24}d"
    return f"{hours}h"
