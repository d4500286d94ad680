"""Bad configuration and bad input files: said before anything starts, with what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from pytest_dbgate.core.errors import DbgateError


def nearest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean a or b?)`` for a misspelt name, or nothing."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


class ConfigError(DbgateError):
    """The gate's configuration or input files are wrong; nothing has been touched yet."""

    @classmethod
    def no_production_target(cls, mode: str) -> ConfigError:
        return cls(
            "--dbgate=production has no database to deploy to"
            if mode == "production"
            else f"--dbgate={mode} has no production database to watch",
            "set PROD_DATABASE_URL (or --dbgate-production-url / dbgate_production_url) to the "
            "production database the staging gate was run against",
        )

    @classmethod
    def bad_value(cls, option: str, value: str, expected: str) -> ConfigError:
        return cls(f"{option} has an invalid value {value!r}", f"give {expected}")

    @classmethod
    def bad_lint_rule(cls, option: str, entry: str, rule: str, known: Iterable[str]) -> ConfigError:
        return cls(
            f"{option} has an invalid entry {entry!r}{nearest(rule, known)}",
            "give entries like prefer-robust-stmts=off: a rule id from the README's *Lint* "
            "section, then fail, report or off",
        )

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
            f"{path}:{line}: `-- dbgate: ignore {rule}` names no lint rule{nearest(rule, known)}",
            "the README's *Lint* section lists every rule id (squawk's and the gate's)",
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


def _period(period: timedelta) -> str:
    """``7d``, ``36h``: a hold-back as its directive would say it."""
    hours = int(period.total_seconds() // 3600)
    if hours and hours % 24 == 0:
        return f"{hours // 24}d"
    return f"{hours}h"
