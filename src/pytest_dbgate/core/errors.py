"""Errors that say what went wrong and what to do about it.

Every error a user can cause or meet (bad configuration, a missing tool, an unreachable server,
a malformed migration) is raised through a named constructor here, so the wording, and above all
the remedy, lives in one place and never contains a password.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

Figure = str | int | float | bool


class DbgateError(Exception):
    """A problem the user can fix; ``str()`` is the whole message: what is wrong, what to do."""

    def __init__(self, problem: str, remedy: str) -> None:
        self.problem = problem
        self.remedy = remedy
        super().__init__(f"{problem}\n  what to do: {remedy}")


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
