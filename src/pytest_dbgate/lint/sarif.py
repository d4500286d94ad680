"""The lint findings as SARIF 2.1.0, the format GitHub code scanning (and most CI dashboards)
read: one result per finding, its rule from the catalog, where it is, and an in-source
suppression with the reason for a finding a `-- dbgate: ignore` accepted."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from pytest_dbgate import __version__
from pytest_dbgate.lint.judge import Judged
from pytest_dbgate.lint.rule import Rule

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
HOME = "https://pypi.org/project/pytest-dbgate/"


def sarif(judged: Iterable[Judged], rel: Callable[[Path], str]) -> dict[str, object]:
    """The SARIF log; ``rel`` gives a file's path relative to the project root."""
    results: list[dict[str, object]] = []
    rules: dict[str, Rule] = {}
    for verdict in judged:
        finding = verdict.finding
        rules.setdefault(finding.rule.id, finding.rule)
        text = finding.detail
        if verdict.because:
            text += f" ({verdict.because})"
        if finding.fix:
            text += f". Fix: {finding.fix}"
        result: dict[str, object] = {
            "ruleId": finding.rule.id,
            "level": "error" if verdict.fails else "warning",
            "message": {"text": text},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {
                            "uri": Path(rel(finding.migration.path)).as_posix(),
                            "uriBaseId": "%SRCROOT%",
                        },
                        "region": {"startLine": finding.line, "startColumn": finding.column},
                    }
                }
            ],
        }
        if finding.ignored is not None and finding.rule.ignorable:
            result["suppressions"] = [{"kind": "inSource", "justification": finding.ignored}]
        results.append(result)
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "pytest-dbgate",
                        "version": __version__,
                        "informationUri": HOME,
                        "rules": [_descriptor(rule) for rule in rules.values()],
                    }
                },
                "results": results,
            }
        ],
    }


def _descriptor(rule: Rule) -> dict[str, object]:
    descriptor: dict[str, object] = {
        "id": rule.id,
        "shortDescription": {"text": rule.title},
        "defaultConfiguration": {"level": "error" if rule.severity == "fail" else "warning"},
        "properties": {"source": rule.source, "kind": rule.kind},
    }
    if rule.why:
        descriptor["fullDescription"] = {"text": rule.why}
    if rule.fix:
        descriptor["help"] = {"text": rule.fix}
    return descriptor


def write_sarif(
    path: Path, judged: Iterable[Judged], rel: Callable[[Path], str], mask: Callable[[str], str]
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(mask(json.dumps(sarif(judged, rel), indent=2)) + "\n", encoding="utf-8")
    return path
