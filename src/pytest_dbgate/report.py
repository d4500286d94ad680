"""What the gate found, kept per item and written to the report folder at the end of the run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pytest_dbgate import __version__
from pytest_dbgate.exceptions import Figure


@dataclass
class ItemResult:
    nodeid: str
    stage: str
    name: str
    outcome: str = "not run"
    message: str = ""
    figures: dict[str, Figure] = field(default_factory=dict)
    duration_s: float = 0.0


@dataclass
class Results:
    """Every generated item's verdict, in checklist order."""

    mode: str
    items: dict[str, ItemResult] = field(default_factory=dict)

    def expect(self, nodeid: str, stage: str, name: str) -> None:
        self.items[nodeid] = ItemResult(nodeid, stage, name)

    def record(
        self,
        nodeid: str,
        when: str,
        outcome: str,
        message: str,
        figures: list[tuple[str, object]],
        duration: float,
    ) -> None:
        result = self.items.get(nodeid)
        if result is None:
            return
        result.duration_s += duration
        if when == "setup" and outcome == "passed":
            return
        if when == "teardown" and outcome == "passed":
            return
        if when == "setup" and outcome == "failed":
            outcome = "error"
        result.outcome = outcome
        result.message = message
        result.figures = {str(k): _plain(v) for k, v in figures}

    @property
    def passed(self) -> bool:
        """Every item that ran passed or was skipped, and at least one ran."""
        outcomes = [r.outcome for r in self.items.values() if r.outcome != "not run"]
        return bool(outcomes) and all(o in ("passed", "skipped") for o in outcomes)

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.mode}-results.json"
        document = {
            "plugin_version": __version__,
            "mode": self.mode,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "passed": self.passed,
            "items": [asdict(r) for r in self.items.values()],
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        return path


def _plain(value: object) -> Figure:
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)
