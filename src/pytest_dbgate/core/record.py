"""The gate record: what a passing staging run validated, bound to the exact migration files.

A passing ``--dbgate=staging`` run writes it; ``--dbgate=production`` deploys only what it names.
An environment variable saying "staging passed" is easy to set by mistake and says nothing about
*what* passed; the record lists every migration file by checksum, the source it was validated
against (by the server's system identifier, which a replica shares with its primary), when, and
the figures of the run. With ``DBGATE_SIGNING_KEY`` set it carries an HMAC-SHA256 signature, so a
record edited by hand, or made by a run without the key, is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import UnionType
from typing import Union, get_args, get_origin, get_type_hints

from pytest_dbgate.core.errors import Figure, RecordError
from pytest_dbgate.migrations.layouts import version_key
from pytest_dbgate.migrations.parse import Migration

# 2: each migration records how it was read and run (layout, transaction mode, the digest of
# every statement, where staging started), so production runs exactly what staging ran.
FORMAT = 2
# Clocks of two CI runners, or of a runner and a server, may disagree a little; a record or a
# watch from further in the future is wrong.
CLOCK_SKEW = timedelta(minutes=5)
KIND = "pytest-dbgate gate record"
ALGORITHM = "hmac-sha256"


@dataclass(frozen=True)
class RecordedMigration:
    version: str
    name: str
    file: str
    checksum: str
    hold_back: str | None
    staging: str  # what staging did with it: "applied" or "already applied"
    layout: str  # how the folder was read: which part of the file is the migration
    transaction: str  # "single" or "per statement"
    statements: tuple[str, ...]  # the first 16 hex digits of each statement's SHA-256, in order
    executed_from: int = 1  # the first statement staging ran (an earlier run had applied the rest)


@dataclass(frozen=True)
class RecordedServer:
    where: str  # host, port, database and user; never a password
    database: str
    server_version: str
    version_num: int
    system_identifier: str | None
    embedded: bool
    dump_file: str | None = None  # staging restored a dump file: its name and checksum


@dataclass(frozen=True)
class RecordedQuery:
    """A query the staging gate measured, as the watch finds it again on production: by the
    parser's fingerprint, with staging's prediction beside what production will show."""

    key: str  # pytest_dbgate.performance.stats.query_key of its text
    label: str  # the workload's name for it, or its text shortened
    source: str  # "workload" or "tests"
    text: str
    before_ms: float
    after_ms: float
    change: float | None  # after / before - 1 as the verdict estimated it; None: not judged


@dataclass(frozen=True)
class GateRecord:
    created_at: str
    plugin_version: str
    source: RecordedServer
    staging: RecordedServer
    migrations: tuple[RecordedMigration, ...]
    figures: dict[str, Figure]
    checks: tuple[dict[str, str], ...] = ()
    queries: tuple[RecordedQuery, ...] = ()  # what the watch compares production with
    signature: str | None = field(default=None, compare=False)

    # -- writing ---------------------------------------------------------------------------

    def body(self) -> dict[str, object]:
        """Everything but the signature: what the signature covers."""
        document = asdict(self)
        document.pop("signature")
        for side in ("source", "staging"):  # absent unless set: older records still verify
            if document[side]["dump_file"] is None:
                del document[side]["dump_file"]
        if not document["queries"]:
            del document["queries"]
        return {"kind": KIND, "format": FORMAT, "passed": True, **document}

    def signed(self, key: str | None) -> GateRecord:
        if key is None:
            return self
        return replace(self, signature=mac(self.body(), key))

    def write(self, path: Path) -> None:
        document = self.body()
        if self.signature is not None:
            document["signature"] = {"algorithm": ALGORITHM, "value": self.signature}
        write_json(path, document)

    # -- reading ---------------------------------------------------------------------------

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at)

    def age(self, now: datetime) -> timedelta:
        return now - self.created

    def verify(self, key: str | None) -> str:
        """Check the signature against ``key``; return how the record was authenticated."""
        if key is None:
            return (
                "signature not checked (DBGATE_SIGNING_KEY not set)"
                if self.signature
                else ("unsigned")
            )
        if self.signature is None:
            raise RecordError.unsigned()
        if not hmac.compare_digest(self.signature, mac(self.body(), key)):
            raise RecordError.bad_signature()
        return "signature valid"

    def differences(self, migrations: Sequence[Migration], rel: dict[str, str]) -> list[str]:
        """How the migration files differ from what staging validated, one line per file."""
        recorded = {m.version: m for m in self.migrations}
        files = {m.version: m for m in migrations}
        lines: list[str] = []
        for version in sorted(set(recorded) | set(files), key=version_key):
            was, now = recorded.get(version), files.get(version)
            if was is None and now is not None:
                lines.append(f"added after the staging pass: {rel[version]} (not in the record)")
            elif now is None and was is not None:
                lines.append(
                    f"removed after the staging pass: {was.file} (in the record, no such file now)"
                )
            elif was is not None and now is not None:
                if was.checksum != now.checksum:
                    lines.append(
                        f"edited after the staging pass: {rel[version]} (checksum "
                        f"{was.checksum[:12]}… in the record, {now.checksum[:12]}… now)"
                    )
                elif was.name != now.name:
                    lines.append(
                        f"renamed after the staging pass: {was.file} is now {rel[version]}"
                    )
        return lines


def run_differences(
    record: GateRecord,
    pending: Sequence[Migration],
    rel: dict[str, str],
    applied_through: dict[str, int],
) -> list[str]:
    """How this run would apply the pending migrations differently from how staging ran them,
    one line per migration: read another way (layout), run another way (transaction mode),
    other statements, or statements staging did not run (``applied_through``: what production's
    journal says it applied of each)."""
    recorded = {m.version: m for m in record.migrations}
    lines: list[str] = []
    for m in pending:
        was = recorded.get(m.version)
        if was is None:
            continue  # reported by differences()
        where = rel[m.version]
        if was.layout != m.layout:
            lines.append(
                f"{where}: staging read the folder as {was.layout}, this run as {m.layout} "
                "(--dbgate-layout / dbgate_layout): it would run other statements than staging ran"
            )
            continue
        if was.transaction != m.transaction_mode:
            lines.append(
                f"{where}: staging ran it {_mode(was.transaction)}, this run would run it "
                f"{_mode(m.transaction_mode)}"
            )
            continue
        digests = tuple(s.short_digest for s in m.statements)
        if len(digests) != len(was.statements):
            lines.append(
                f"{where}: staging ran {len(was.statements)} statement(s), this run reads "
                f"{len(digests)} in the file"
            )
            continue
        changed = next(
            (i for i, (a, b) in enumerate(zip(was.statements, digests, strict=True)) if a != b),
            None,
        )
        if changed is not None:
            lines.append(
                f"{where}: statement {changed + 1} (line {m.statements[changed].line}) is not the "
                "one staging ran"
            )
            continue
        start = applied_through.get(m.version, 0) + 1
        if start < was.executed_from:
            lines.append(
                f"{where}: production would run statements {start}-{was.executed_from - 1}, which "
                f"staging did not run (it found them applied and started at statement "
                f"{was.executed_from})"
            )
    return lines


def _mode(transaction: str) -> str:
    return "in one transaction" if transaction == "single" else "statement by statement"


def mac(body: dict[str, object], key: str) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key.encode(), canonical, hashlib.sha256).hexdigest()


def write_json(path: Path, document: dict[str, object]) -> None:
    """Write a record whole or not at all: a reader never meets half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    partial.replace(path)


def read_json(path: Path) -> object:
    """A record file's JSON; ``ValueError`` saying why it is not JSON a record can be."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("it is not UTF-8 JSON text") from None
    except RecursionError:
        raise ValueError("it is nested too deep to be a record") from None
    except ValueError as exc:
        raise ValueError(f"it is not JSON: {exc}") from None


def load(path: Path) -> GateRecord:
    """Read a record; :class:`RecordError` when it is missing, unreadable or not a passing one."""
    if path.is_dir():
        raise RecordError.unreadable(path, "it is a folder; name the gate-record.json inside it")
    if not path.is_file():
        raise RecordError.missing(path)
    try:
        document = read_json(path)
    except ValueError as exc:
        raise RecordError.unreadable(path, str(exc)) from None
    try:
        if not isinstance(document, dict) or document.get("kind") != KIND:
            raise ValueError(f'it is not a {KIND} (no "kind": "{KIND}")')
        if document.get("format") != FORMAT:
            raise RecordError.old_format(path, document.get("format"), FORMAT)
        if document.get("passed") is not True:
            raise ValueError("it does not record a passing staging run")
        signature = document.get("signature")
        if signature is not None and not (
            isinstance(signature, dict) and isinstance(signature.get("value"), str)
        ):
            raise ValueError('"signature" is not {"algorithm": …, "value": …}')
        body = {k: v for k, v in document.items() if k not in ("kind", "format", "signature")}
        body.pop("passed")
        record = typed(GateRecord, body, "the record")
        assert isinstance(record, GateRecord)
        record = replace(record, signature=signature["value"] if signature else None)
        created = record.created
        if created.tzinfo is None:
            raise ValueError("created_at has no time zone")
    except ValueError as exc:
        raise RecordError.unreadable(path, str(exc)) from None
    return record


def typed(hint: object, value: object, where: str) -> object:
    """``value`` (parsed JSON) as the type ``hint`` says, or ``ValueError`` naming the place: a
    record is checked key by key and type by type, never trusted to fit the dataclasses."""
    if isinstance(hint, type) and is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"{where} is {_kind(value)}, not an object")
        hints = get_type_hints(hint)
        known = {f.name for f in fields(hint) if f.name != "signature"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"{where} has unknown keys: {', '.join(map(str, unknown))}")
        required = {
            f.name
            for f in fields(hint)
            if f.name in known and f.default is MISSING and f.default_factory is MISSING
        }
        missing = sorted(required - set(value))
        if missing:
            raise ValueError(f"{where} lacks {', '.join(missing)}")
        return hint(**{k: typed(hints[k], v, f"{where}.{k}") for k, v in value.items()})
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):
        for option in args:
            try:
                return typed(option, value, where)
            except ValueError:
                continue
        names = " or ".join(getattr(a, "__name__", str(a)) for a in args)
        raise ValueError(f"{where} is {_kind(value)}, not {names}")
    if origin is tuple:
        if not isinstance(value, list):
            raise ValueError(f"{where} is {_kind(value)}, not a list")
        return tuple(typed(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where} is {_kind(value)}, not an object")
        return {k: typed(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if hint is type(None):
        if value is not None:
            raise ValueError(f"{where} is {_kind(value)}, not null")
        return None
    if hint in (int, float) and isinstance(value, bool):
        raise ValueError(f"{where} is {_kind(value)}, not a number")
    if hint is float and isinstance(value, int):
        return float(value)
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ValueError(f"{where} is {_kind(value)}, not {getattr(hint, '__name__', hint)}")


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def invalidate(path: Path) -> bool:
    """Remove a previous record before a new staging run: a failing run leaves none behind."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def now_utc() -> datetime:
    return datetime.now(UTC)


def format_period(period: timedelta) -> str:
    """``3d 4h``, ``12h``, ``25 min``: how long, readably."""
    seconds = int(period.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h"
    return f"{max(rest // 60, 1)} min"


def run_label(iso: str) -> str:
    """``the run of 2026-11-30 11:32 UTC``: which earlier run a cached result comes from."""
    try:
        return f"the run of {datetime.fromisoformat(iso):%Y-%m-%d %H:%M %Z}"
    except ValueError:
        return f"the run of {iso}"
