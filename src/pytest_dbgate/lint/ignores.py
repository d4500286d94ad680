"""``-- dbgate: ignore <rule> <reason>``: a reviewed exception, with the reason the report shows.

In the comment lines right above a statement it covers that statement; at the top of the file,
separated from the first statement by a blank line, the whole file. squawk's own
``-- squawk-ignore`` comments are squawk's to honour (they silence the finding outright).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.lint.catalog import RULES
from pytest_dbgate.migrations.parse import Migration

IGNORE = re.compile(
    r"--[ \t]*dbgate[ \t]*:[ \t]*ignore[ \t]+(?P<rule>[a-z0-9-]+)"
    r"(?:[ \t]+(?P<reason>\S.*?))?[ \t]*$",
    re.MULTILINE | re.IGNORECASE,
)
WHOLE_FILE = 0


@dataclass(frozen=True)
class Ignores:
    """(rule, statement line or ``WHOLE_FILE``) → reason."""

    reasons: dict[tuple[str, int], str] = field(default_factory=dict)

    def reason(self, rule: str, line: int) -> str | None:
        return self.reasons.get((rule, line), self.reasons.get((rule, WHOLE_FILE)))


def read_ignores(migration: Migration) -> Ignores:
    text = migration.text
    if "ignore" not in text:  # most files: no need to search them
        return Ignores()
    lines = text.splitlines()
    first = migration.statements[0].line
    starts = sorted(s.line for s in migration.statements)
    reasons: dict[tuple[str, int], str] = {}
    for match in IGNORE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        rule, reason = match.group("rule").lower(), match.group("reason")
        if rule not in RULES:
            raise ConfigError.unknown_rule(migration.path, line, rule, sorted(RULES))
        if not reason:
            raise ConfigError.ignore_without_reason(migration.path, line, rule)
        between = lines[line : first - 1]
        if line < first and any(not text_line.strip() for text_line in between):
            reasons[(rule, WHOLE_FILE)] = reason
        else:
            target = next((start for start in starts if start >= line), line)
            reasons[(rule, target)] = reason
    return Ignores(reasons)
