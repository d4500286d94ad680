"""What the gate found, gathered from pytest's own test reports, and written out for people.

Results are built from reports, not from items, so the same code serves a plain run and the
controller of a pytest-xdist run. At the end: a table in the terminal, ``<mode>-report.md`` (also
appended to ``$GITHUB_STEP_SUMMARY`` in GitHub Actions) and ``<mode>-results.json``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tabulate import tabulate

from pytest_dbgate import __version__
from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.core.errors import Figure
from pytest_dbgate.core.masking import Secrets

# A line of progress for the user, shown live while a long step runs.
Progress = Callable[[str], None]

ROOT = "dbgate"
LINT_SUFFIX = "::lint"
PHASES = ("before", "after")
PROJECT_TESTS = "project tests"
_XDIST_GROUP = re.compile(r"@[\w-]+$")
_PARAM_IDS = re.compile(r"\[(?P<ids>[^\]]*)\]$")
TABLE_WIDTH = 160  # the terminal table's widest line (a CI log's): the key figure is cut to fit


@dataclass
class ItemResult:
    nodeid: str
    stage: str
    name: str
    outcome: str = "not run"
    message: str = ""
    figures: dict[str, Figure] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def phased(self) -> bool:
        """A project test run in a phase, not one of the gate's criteria."""
        return not is_criterion(self.nodeid)

    @property
    def verdict(self) -> str:
        return {"failed": "FAILED", "error": "ERROR"}.get(self.outcome, self.outcome)

    @property
    def key_figure(self) -> str:
        if self.outcome in ("failed", "error", "skipped") and self.message:
            return _first_line(self.message)
        return str(self.figures.get("summary", ""))


def is_criterion(nodeid: str) -> bool:
    """One of the gate's generated items (``dbgate::…``, or a file's ``…::lint``)."""
    return nodeid.startswith(f"{ROOT}::") or nodeid.endswith(LINT_SUFFIX)


def belongs_to_gate(nodeid: str) -> bool:
    """A generated item or a phased test: what must run in order, on one worker."""
    return classify(nodeid, []) is not None


def classify(nodeid: str, properties: list[tuple[str, object]]) -> tuple[str, str] | None:
    """(stage, name) of a gate item or a phased test; ``None`` for the project's other tests."""
    nodeid = _XDIST_GROUP.sub("", nodeid)
    if nodeid.startswith(f"{ROOT}::"):
        _, stage, name = nodeid.split("::", 2)
        return stage, name
    if nodeid.endswith(LINT_SUFFIX):
        return "lint", nodeid
    phase = next((str(v) for k, v in properties if k == "dbgate_phase"), None)
    if phase is None:
        ids = _PARAM_IDS.search(nodeid)
        found = [p for p in PHASES if ids and p in ids.group("ids").split("-")]
        phase = found[0] if len(found) == 1 else None
    return (phase, nodeid) if phase else None


@dataclass
class Results:
    """Every gate item's and phased test's verdict, in the order they ran."""

    mode: str
    items: dict[str, ItemResult] = field(default_factory=dict)
    # The run's passwords: masked in every file written, whatever a test printed.
    secrets: Secrets = field(default_factory=Secrets)
    generated: int = 0
    # What a complete run runs (criteria and phased tests, before selection), and what was kept
    # from it: paths a command-line --ignore skipped, collectors that failed.
    expected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    uncollected: list[str] = field(default_factory=list)

    def record(
        self,
        nodeid: str,
        when: str,
        outcome: str,
        message: str,
        properties: list[tuple[str, object]],
        duration: float,
    ) -> None:
        kind = classify(nodeid, properties)
        if kind is None:
            return
        key = _XDIST_GROUP.sub("", nodeid)
        result = self.items.setdefault(key, ItemResult(key, *kind))
        result.duration_s += duration
        if outcome == "passed" and when != "call":
            return
        if when != "call" and outcome == "failed":
            outcome = "error"
        if result.outcome in ("failed", "error") and outcome == "error":
            return  # a teardown error after a failure: keep the failure
        result.outcome = outcome
        result.message = message
        result.figures = {str(k): _plain(v) for k, v in properties if k != "dbgate_phase"}

    @property
    def ran(self) -> list[ItemResult]:
        return [r for r in self.items.values() if r.outcome != "not run"]

    @property
    def passed(self) -> bool:
        """Every item that ran passed or was skipped, and at least one ran."""
        outcomes = [r.outcome for r in self.ran]
        return bool(outcomes) and all(o in ("passed", "skipped") for o in outcomes)

    def did_not_run(self, stage: str) -> list[str]:
        """What a complete run runs but this one did not (deselected, or the run stopped
        early), apart from ``stage``'s own items: the verdict items' reason to write nothing."""
        own = {r.nodeid for r in self.items.values() if r.stage == stage}
        return [
            nodeid
            for nodeid in self.expected
            if nodeid not in own
            and (nodeid not in self.items or self.items[nodeid].outcome == "not run")
        ]

    def headline(self) -> str:
        gate_items = [r for r in self.ran if not r.phased]
        counts: dict[str, int] = {}
        for r in self.ran:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        tally = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        verdict = "PASSED" if self.passed else "FAILED"
        selected = ""
        if self.generated and len(gate_items) < self.generated:
            selected = f"; only {len(gate_items)} of the {self.generated} criteria ran"
        return f"{self.mode} gate {verdict}: {tally}{selected}"

    def rows(self) -> list[tuple[str, str, str, str]]:
        """One row per criterion; the project's tests folded into one row per phase."""
        rows: list[tuple[str, str, str, str]] = []
        folded: dict[str, list[ItemResult]] = {}
        slots: dict[str, int] = {}
        for r in self.ran:
            if not r.phased:
                rows.append((r.stage, r.name, r.verdict, r.key_figure))
                continue
            if r.stage not in folded:
                slots[r.stage] = len(rows)
                folded[r.stage] = []
                rows.append((r.stage, PROJECT_TESTS, "", ""))
            folded[r.stage].append(r)
        for stage, slot in slots.items():
            rows[slot] = _fold(stage, folded[stage])
        return [
            (st, _short(name), verdict, figure) for st, name, verdict, figure in _fold_history(rows)
        ]

    def table(self, width: int = TABLE_WIDTH) -> str:
        """The terminal table, no wider than ``width``: the key figure gives way."""
        rows = self.rows()
        headers = ("stage", "criterion", "verdict", "key figure")
        text = tabulate(rows, headers=headers, disable_numparse=True)
        excess = max(len(line) for line in text.splitlines()) - width
        if excess <= 0:
            return text
        room = max(max(len(row[3]) for row in rows) - excess, 30)
        cut = [(*row[:3], _cut(row[3], room)) for row in rows]
        return tabulate(cut, headers=headers, disable_numparse=True)

    def markdown(self) -> str:
        lines = [f"# pytest-dbgate: {self.headline()}", ""]
        lines.append(
            tabulate(
                [tuple(_md(c) for c in row) for row in self.rows()],
                headers=("stage", "criterion", "verdict", "key figure"),
                tablefmt="github",
            )
        )
        every = [r for r in self.ran if r.stage == "migrate" and r.name.startswith("applied[")]
        migrations = [r for r in every if not _history(r)]
        if every:
            lines += ["", "## Migrations", ""]
            history = [r for r in every if _history(r)]
            if history:
                lines += [
                    f"{len(history)} already applied before this release "
                    f"(`{history[0].name[8:-1]}` … `{history[-1].name[8:-1]}`): not run.",
                    "",
                ]
            lines.append(
                tabulate(
                    [
                        (
                            f"`{r.figures.get('file', r.name)}`",
                            r.verdict,
                            r.figures.get("transaction", ""),
                            r.figures.get("statements", ""),
                            _seconds(r.figures.get("duration_ms")),
                        )
                        for r in migrations
                    ],
                    headers=("migration", "verdict", "transaction", "statements", "duration"),
                    tablefmt="github",
                )
            )
        locks = [
            r
            for r in self.ran
            if r.stage == "migrate" and r.name.startswith("locks[") and not _history(r)
        ]
        if locks:
            lines += ["", "## Locks", ""]
            lines.append(
                tabulate(
                    [
                        (
                            f"`{r.name[6:-1]}`",
                            r.verdict,
                            _md(str(r.figures.get("locks", ""))) or "none seen",
                            f"{r.figures.get('max_blocked_ms', 0)} ms in "
                            f"{r.figures.get('blocked_probes', 0)} of {r.figures.get('probes', 0)}",
                        )
                        for r in locks
                    ],
                    headers=(
                        "migration",
                        "verdict",
                        "locks held (table, mode, ms)",
                        "traffic blocked",
                    ),
                    tablefmt="github",
                )
            )
        problems = [r for r in self.ran if r.outcome in ("failed", "error")]
        if problems:
            lines += ["", "## Failures"]
            for r in problems:
                lines += ["", f"### {r.nodeid}", "", "```", r.message.rstrip(), "```"]
        return "\n".join(lines) + "\n"

    def write(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        results = folder / f"{self.mode}-results.json"
        document = {
            "plugin_version": __version__,
            "mode": self.mode,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "passed": self.passed,
            "items": [asdict(r) for r in self.ran],
        }
        results.write_text(self.secrets.mask(json.dumps(document, indent=2)) + "\n")
        report = folder / f"{self.mode}-report.md"
        markdown = self.secrets.mask(self.markdown())
        report.write_text(markdown)
        written = [results, report]
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(markdown + "\n")
            written.append(Path(summary))
        return written


def _fold(stage: str, results: list[ItemResult]) -> tuple[str, str, str, str]:
    bad = [r for r in results if r.outcome in ("failed", "error")]
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    figure = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    if bad:
        names = ", ".join(r.nodeid.rsplit("::", 1)[-1] for r in bad[:2])
        figure += f": {names}" + (" …" if len(bad) > 2 else "")
    verdict = "FAILED" if bad else ("passed" if counts.get("passed") else "skipped")
    return (stage, PROJECT_TESTS, verdict, figure)


def _history(result: ItemResult) -> bool:
    """An item about a migration applied before this release (its tool's history says so)."""
    return str(result.figures.get("summary", "")).startswith("already applied")


def _fold_history(rows: list[tuple[str, str, str, str]]) -> list[tuple[str, str, str, str]]:
    """The rows of one kind (``lint``, ``applied``, ``locks``) about migrations applied before
    the release, saying the same, as one row where the first was: a 160-migration history is
    not 480 rows of "already applied"."""
    groups: dict[tuple[str, str, str, str], list[tuple[str, str, str, str]]] = {}
    order: list[tuple[str, str, str, str] | None] = []  # a row, or None for a group's place
    places: list[tuple[str, str, str, str]] = []
    for row in rows:
        if not row[3].startswith("already applied"):
            order.append(row)
            continue
        key = (row[0], _short(row[1]).split("[", 1)[0], row[2], row[3])
        if key not in groups:
            groups[key] = []
            places.append(key)
            order.append(None)
        groups[key].append(row)
    folded: list[tuple[str, str, str, str]] = []
    waiting = iter(places)
    for entry in order:
        if entry is not None:
            folded.append(entry)
            continue
        key = next(waiting)
        members = groups[key]
        if len(members) < 3:
            folded.extend(members)
            continue
        versions = [_short(r[1]).split("[", 1)[-1].split("_", 1)[0] for r in members]
        name = f"{key[1]}[{len(members)} applied before: {versions[0]} … {versions[-1]}]"
        folded.append((key[0], name, key[2], key[3]))
    return folded


def _short(name: str) -> str:
    """A criterion's name, short: a lint item by its migration, not its file's whole path."""
    if not name.endswith(LINT_SUFFIX):
        return name
    path = Path(name.removesuffix(LINT_SUFFIX))
    migration = path.parent.name if path.name == "migration.sql" else path.name
    return f"lint[{migration.removesuffix('.sql').removesuffix('.up')}]"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 100 else line[:99] + "…"


def _seconds(ms: Figure | None) -> str:
    if ms is None or ms == "":
        return ""
    return f"{float(ms) / 1000:.1f}s"


def _md(cell: str) -> str:
    return cell.replace("|", "\\|")


def _plain(value: object) -> Figure:
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)


def check_outputs(report_dir: Path, record: Path | None) -> None:
    """Before anything starts: the report folder (and a staging run's record) can be written.
    Found out at the end, a run would have done all its work and left no report and no record."""
    problem = _unwritable_folder(report_dir)
    if problem is not None:
        raise ConfigError.cannot_write("report folder", report_dir, problem, "--dbgate-report-dir")
    if record is None:
        return
    if record.is_dir():
        problem = "it is a folder; name a file such as gate-record.json"
    else:
        problem = _unwritable_folder(record.parent)
    if problem is not None:
        raise ConfigError.cannot_write("gate record", record, problem, "--dbgate-record")


def _unwritable_folder(folder: Path) -> str | None:
    if folder.exists() and not folder.is_dir():
        return "it is a file, not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".dbgate-probe-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
