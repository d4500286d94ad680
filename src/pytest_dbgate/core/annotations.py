"""GitHub Actions annotations: under ``GITHUB_ACTIONS=true`` every lint finding (an error when
it fails, a warning when reported) and every failing item about one migration file shows on the
file's line in the pull request, through the workflow commands GitHub reads from the log."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pytest_dbgate.lint.judge import Judged

LINE_IN_MESSAGE = re.compile(r"\bline (\d+)\b|:(\d+):")


@dataclass(frozen=True)
class Annotation:
    level: str  # error, warning
    file: str
    line: int
    title: str
    message: str
    column: int | None = None

    def command(self) -> str:
        place = f"file={_property(self.file)},line={self.line}"
        if self.column is not None:
            place += f",col={self.column}"
        return f"::{self.level} {place},title={_property(self.title)}::{_data(self.message)}"


def of_findings(judged: Iterable[Judged], rel: Callable[[Path], str]) -> list[Annotation]:
    found = []
    for verdict in judged:
        finding = verdict.finding
        message = finding.detail
        if verdict.because:
            message += f" ({verdict.because})"
        if verdict.fails and finding.fix:
            message += f"\nfix: {finding.fix}"
        found.append(
            Annotation(
                verdict.level,
                rel(finding.migration.path),
                finding.line,
                finding.rule.id,
                message,
                finding.column,
            )
        )
    return found


def of_item(file: str, title: str, message: str) -> Annotation:
    """A failing item about one migration file, on the line its message names (else line 1)."""
    match = LINE_IN_MESSAGE.search(message)
    line = int(next(g for g in match.groups() if g)) if match else 1
    return Annotation("error", file, line, title, message)


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def commands(
    judged: Iterable[Judged],
    failed: Iterable[tuple[Path, str, str]],
    rel: Callable[[Path], str],
    mask: Callable[[str], str],
) -> list[str]:
    """Every annotation's workflow command: the lint's findings, then the failing items
    ``(file, item name, message)`` about one migration file."""
    found = of_findings(judged, rel)
    found += [of_item(rel(path), name, message) for path, name, message in failed]
    return [mask(annotation.command()) for annotation in found]
