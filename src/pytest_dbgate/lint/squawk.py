"""squawk, the rule engine: run once per release on exactly what the runner will run.

Each migration is written to a scratch folder as the runner applies it (a dbmate file's up
section only, its other lines blank, so line numbers stay the file's), and squawk reads them all
in at most two runs: the files the runner wraps in one transaction with
``--assume-in-transaction``, the others without. The server's PostgreSQL version goes with
``--pg-version``, and the project's ``.squawk.toml`` with ``--config``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_dbgate.config.errors import ConfigError, nearest
from pytest_dbgate.core.errors import DbgateError
from pytest_dbgate.pg.janitor import PREFIX, temporary_folder

CONFIG_NAME = ".squawk.toml"
INSTALL = "pip install 'squawk-cli>=2.70,<3' (a dependency of pytest-dbgate)"


class SquawkFailed(DbgateError):
    """squawk could not lint the release: missing, or it stopped without an answer."""


@dataclass(frozen=True)
class Raw:
    """One finding as squawk reported it, its line and column 1-based."""

    file: int  # index of the text in the list given to :func:`run`
    line: int
    column: int
    rule: str
    message: str
    help: str | None


@dataclass(frozen=True)
class SquawkConfig:
    """The project's ``.squawk.toml``, where it is, and what the gate reads of it."""

    path: Path | None
    pg_version: str | None = None


def read_config(rootdir: Path, migrations: Path) -> SquawkConfig:
    """The ``.squawk.toml`` nearest the migrations folder, up to the project root."""
    folder = migrations.resolve()
    root = rootdir.resolve()
    for candidate in (folder, *folder.parents):
        path = candidate / CONFIG_NAME
        if path.is_file():
            return _parse(path)
        if candidate == root:
            break
    path = root / CONFIG_NAME
    return _parse(path) if path.is_file() else SquawkConfig(None)


def _parse(path: Path) -> SquawkConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"{path} cannot be read as TOML: {exc}", "fix the file (squawk reads it too)"
        ) from None
    excluded = data.get("excluded_rules", [])
    version = data.get("pg_version")
    if not isinstance(excluded, list) or not all(isinstance(r, str) for r in excluded):
        raise ConfigError(
            f"{path}: excluded_rules must be a list of rule names",
            'write it as excluded_rules = ["prefer-robust-stmts"]',
        )
    for rule in excluded:
        _known(path, rule)
    return SquawkConfig(path, str(version) if version is not None else None)


def _known(path: Path, rule: str) -> None:
    """squawk stops on a rule it does not know: say so before anything starts."""
    from pytest_dbgate.lint.catalog import RULES

    found = RULES.get(rule)
    if found is not None and found.source == "squawk":
        return
    if found is not None:
        raise ConfigError(
            f"{path}: {rule} is the gate's own rule, which squawk does not know",
            f"turn it off with dbgate_lint_rules = {rule}=off instead",
        )
    raise ConfigError(
        f"{path}: excluded_rules names {rule!r}, which is no squawk rule{nearest(rule, RULES)}",
        "use rule ids from the README's *Lint* section",
    )


def binary() -> str:
    """The squawk installed with this Python (the wheel puts it beside the interpreter's
    scripts), else one on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / ("squawk.exe" if os.name == "nt" else "squawk")
    if beside.is_file():
        return str(beside)
    found = shutil.which("squawk")
    if found is None:
        raise SquawkFailed("the lint needs squawk, which is not installed", INSTALL)
    return found


def run(
    texts: Sequence[tuple[str, bool]], pg_version: str | None, config: SquawkConfig
) -> list[list[Raw]]:
    """squawk's findings for each text (SQL, whether the runner wraps it in a transaction)."""
    found: list[list[Raw]] = [[] for _ in texts]
    if not texts:
        return found
    # Marked as this run's, so a run killed right now leaves no copy of the release behind.
    scratch = temporary_folder(PREFIX + "lint-")
    try:
        folder = str(scratch)
        groups: dict[bool, list[str]] = {True: [], False: []}
        for index, (text, wrapped) in enumerate(texts):
            path = Path(folder) / f"{index:06d}.sql"
            path.write_text(text, encoding="utf-8")
            groups[wrapped].append(path.name)
        program = binary()
        running = [
            (_start(program, folder, names, wrapped, pg_version, config), names)
            for wrapped, names in groups.items()
            if names
        ]
        for process, names in running:
            for raw in _read(process, names):
                found[raw.file].append(raw)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return found


def _start(
    program: str,
    folder: str,
    names: list[str],
    wrapped: bool,
    pg_version: str | None,
    config: SquawkConfig,
) -> subprocess.Popen[bytes]:
    command = [program, "--reporter", "json", "--no-error-on-unmatched-pattern"]
    command.append("--assume-in-transaction" if wrapped else "--no-assume-in-transaction")
    if pg_version is not None:
        command.append(f"--pg-version={pg_version}")
    if config.path is not None:
        command.append(f"--config={config.path}")
    # squawk never needs the user's environment: no secret reaches it.
    env = {"PATH": os.environ.get("PATH", ""), "NO_COLOR": "1"}
    try:
        return subprocess.Popen(
            [*command, *names],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise SquawkFailed(f"squawk could not be started: {exc}", INSTALL) from None


def _read(process: subprocess.Popen[bytes], names: list[str]) -> list[Raw]:
    out, err = process.communicate()
    # 0: nothing found; 1: findings (or, with no JSON, an error it explains on stderr).
    try:
        reported = json.loads(out.decode("utf-8", "replace") or "null")
    except json.JSONDecodeError:
        reported = None
    if process.returncode not in (0, 1) or not isinstance(reported, list):
        said = " ".join(err.decode("utf-8", "replace").split())[:400] or "(nothing on stderr)"
        raise SquawkFailed(
            f"squawk stopped without linting the release (exit {process.returncode}): {said}",
            f"check the project's {CONFIG_NAME}, or reinstall squawk: {INSTALL}",
        )
    index = {name: int(name.split(".")[0]) for name in names}
    found: list[Raw] = []
    for entry in reported:
        name = Path(str(entry.get("file", ""))).name
        if name not in index or not isinstance(entry.get("rule_name"), str):
            continue
        found.append(
            Raw(
                file=index[name],
                line=int(entry.get("line") or 0) + 1,  # squawk counts lines from 0
                column=int(entry.get("column") or 0) + 1,
                rule=entry["rule_name"],
                message=str(entry.get("message") or ""),
                help=entry.get("help"),
            )
        )
    return found
