"""The watch record: what the latest ``--dbgate=watch`` found, for production to act on.

The watch reads production and writes nothing there, so its verdict travels as a file, like the
gate record (the same CI artefact carries both). A watch run removes the previous file when it
starts and writes a new one when it has judged everything, passing or not: a failed, partial or
crashed watch leaves no passing record behind. With ``DBGATE_SIGNING_KEY`` set it is signed,
and production refuses an unsigned or edited one.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

from pytest_dbgate.core.record import mac, read_json, typed, write_json

KIND = "pytest-dbgate watch record"
FORMAT = 1


@dataclass(frozen=True)
class WatchRecord:
    watched_at: str  # ISO time, by production's clock
    plugin_version: str
    production: str  # host, port, database and user; never a password
    database: str
    system_identifier: str | None
    deploy_id: int
    deployed_at: str
    passed: bool
    queries_judged: int
    queries_slower: int
    signals_worse: int
    failures: tuple[str, ...] = ()  # one line per item that did not pass
    signature: str | None = field(default=None, compare=False)

    @property
    def watched(self) -> datetime:
        return datetime.fromisoformat(self.watched_at)

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"the watch of {self.watched:%Y-%m-%d %H:%M %Z} {verdict} ({self.queries_judged} "
            f"queries judged, {self.queries_slower} slower; {self.signals_worse} signals worse)"
        )

    def body(self) -> dict[str, object]:
        document = asdict(self)
        document.pop("signature")
        return {"kind": KIND, "format": FORMAT, **document}

    def signed(self, key: str | None) -> WatchRecord:
        return self if key is None else replace(self, signature=mac(self.body(), key))

    def write(self, path: Path) -> None:
        document = self.body()
        if self.signature is not None:
            document["signature"] = self.signature
        write_json(path, document)

    def authentic(self, key: str | None) -> str | None:
        """Why the record cannot be trusted with ``key`` set; ``None`` when it can."""
        if key is None:
            return None
        if self.signature is None:
            return "it is unsigned, and DBGATE_SIGNING_KEY is set"
        if not hmac.compare_digest(self.signature, mac(self.body(), key)):
            return "its signature does not match (edited, or written without this key)"
        return None


def load_watch(path: Path) -> WatchRecord:
    """Read a watch record; ``ValueError`` saying what is wrong with it."""
    if not path.is_file():
        raise ValueError(f"there is no watch record at {path}")
    try:
        document = read_json(path)
    except ValueError as exc:
        raise ValueError(f"the watch record {path} is not JSON a record can be: {exc}") from None
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise ValueError(f"{path} is not a {KIND}")
    if document.get("format") != FORMAT:
        raise ValueError(f"{path} is a watch record of format {document.get('format')}")
    body = {k: v for k, v in document.items() if k not in ("kind", "format", "signature")}
    signature = document.get("signature")
    try:
        found = typed(WatchRecord, body, "the watch record")
        assert isinstance(found, WatchRecord)
        if found.watched.tzinfo is None:
            raise ValueError("watched_at has no time zone")
    except ValueError as exc:
        raise ValueError(f"{path} is not a readable watch record: {exc}") from None
    return replace(found, signature=signature if isinstance(signature, str) else None)
