"""What the lock watch saw, as typed records: the locks a migration held and for how long, the
probes it blocked, its own waits."""

from __future__ import annotations

from dataclasses import dataclass, field

from pytest_dbgate.migrations.parse import Migration, Statement
from pytest_dbgate.observe.lockmodes import blocks


@dataclass(frozen=True)
class HeldLock:
    relation: str
    mode: str
    held_ms: float
    statement: Statement | None
    has_rows: bool

    @property
    def blocks(self) -> str:
        return blocks(self.mode)

    @property
    def dangerous(self) -> bool:
        return self.has_rows and self.blocks != "nothing"


@dataclass(frozen=True)
class BlockedProbe:
    table: str
    kind: str
    waited_ms: float
    mode: str


@dataclass(frozen=True)
class MigrationWait:
    pid: int
    application: str
    state: str
    query: str
    waited_ms: float


@dataclass
class LockReport:
    """What one migration locked and whom it blocked."""

    migration: Migration
    locks: list[HeldLock] = field(default_factory=list)
    blocked: list[BlockedProbe] = field(default_factory=list)
    waits: list[MigrationWait] = field(default_factory=list)
    blockers_before: list[str] = field(default_factory=list)
    probes: int = 0
    polls: int = 0
    tables: list[str] = field(default_factory=list)
    monitor_error: str | None = None

    @property
    def longest_blocking_ms(self) -> float:
        """The longest a lock that blocks reads or writes of a table with rows was held."""
        return max((lock.held_ms for lock in self.locks if lock.dangerous), default=0.0)

    @property
    def max_blocked_ms(self) -> float:
        return max((b.waited_ms for b in self.blocked), default=0.0)

    def blocked_by_table(self) -> dict[str, tuple[int, float, float]]:
        """table → (blocked probes, longest wait ms, total wait ms)."""
        out: dict[str, tuple[int, float, float]] = {}
        for b in self.blocked:
            count, longest, total = out.get(b.table, (0, 0.0, 0.0))
            out[b.table] = (count + 1, max(longest, b.waited_ms), total + b.waited_ms)
        return out
