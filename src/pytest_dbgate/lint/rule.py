"""A lint rule: what it is about, whether it fails by default, why it is unsafe and the safe way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# What a rule is about, which decides what the gate's context can say about a finding:
# - lock: a lock that blocks reads or writes for as long as the table is big (a scan, a rewrite,
#   an index build): harmless on a table the release created, or one small when it runs;
# - compat: breaks the release still running (a rename, a drop): harmless only on what the
#   release itself created (and a held-back drop is the sanctioned way);
# - transaction: the file will not run as written; nothing makes it harmless;
# - style: robustness and type advice, reported;
# - outside: acts outside the migrated database; nothing silences it.
Kind = Literal["lock", "compat", "transaction", "style", "outside"]
Severity = Literal["fail", "report", "off"]
SEVERITIES: tuple[Severity, ...] = ("fail", "report", "off")


@dataclass(frozen=True)
class Rule:
    id: str
    kind: Kind
    title: str
    why: str = ""  # empty: squawk's message says it
    fix: str = ""  # empty: squawk's help says it
    severity: Severity = "fail"  # by default; dbgate_lint_rules changes it per rule
    source: Literal["squawk", "dbgate"] = "squawk"
    ignorable: bool = True  # whether an ignore (`-- dbgate: ignore`, `-- squawk-ignore`) works
    # The staging criterion that judges the same hazard on the migrated database: in staging
    # the finding is reported and that criterion fails, so one cause fails one item.
    judged_by: str | None = None


# A finding as an own rule reports it: (rule id, the relation or None, what it found).
Check = tuple[str, str | None, str]
