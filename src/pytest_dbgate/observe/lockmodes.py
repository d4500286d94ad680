"""Lock modes: which blocks which, and what each one blocks (PostgreSQL's conflict table)."""

from __future__ import annotations

# PostgreSQL's table-level lock conflict table (docs: "Explicit Locking").
CONFLICTS: dict[str, frozenset[str]] = {
    "AccessShareLock": frozenset({"AccessExclusiveLock"}),
    "RowShareLock": frozenset({"ExclusiveLock", "AccessExclusiveLock"}),
    "RowExclusiveLock": frozenset(
        {"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}
    ),
    "ShareUpdateExclusiveLock": frozenset(
        {
            "ShareUpdateExclusiveLock",
            "ShareLock",
            "ShareRowExclusiveLock",
            "ExclusiveLock",
            "AccessExclusiveLock",
        }
    ),
    "ShareLock": frozenset(
        {
            "RowExclusiveLock",
            "ShareUpdateExclusiveLock",
            "ShareRowExclusiveLock",
            "ExclusiveLock",
            "AccessExclusiveLock",
        }
    ),
    "ShareRowExclusiveLock": frozenset(
        {
            "RowExclusiveLock",
            "ShareUpdateExclusiveLock",
            "ShareLock",
            "ShareRowExclusiveLock",
            "ExclusiveLock",
            "AccessExclusiveLock",
        }
    ),
    "ExclusiveLock": frozenset(
        {
            "RowShareLock",
            "RowExclusiveLock",
            "ShareUpdateExclusiveLock",
            "ShareLock",
            "ShareRowExclusiveLock",
            "ExclusiveLock",
            "AccessExclusiveLock",
        }
    ),
}
CONFLICTS["AccessExclusiveLock"] = frozenset({*CONFLICTS, "AccessExclusiveLock"})


def blocks(mode: str) -> str:
    """What ordinary traffic a lock mode stops: ``reads and writes``, ``writes`` or ``nothing``."""
    conflicts = CONFLICTS.get(mode, frozenset())
    if "AccessShareLock" in conflicts:
        return "reads and writes"
    if "RowExclusiveLock" in conflicts:
        return "writes"
    return "nothing"


def sql_mode(mode: str) -> str:
    """``ShareRowExclusiveLock`` → ``SHARE ROW EXCLUSIVE``, as LOCK TABLE spells it."""
    words: list[str] = []
    for char in mode.removesuffix("Lock"):
        if char.isupper() and words:
            words.append(" ")
        words.append(char.upper())
    return "".join(words)


# Weakest to strongest, as PostgreSQL numbers them (AccessShareLock = 1 … AccessExclusiveLock = 8):
# "the strongest lock a migration held" must not depend on the order a dict was written in.
STRENGTH: tuple[str, ...] = (
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)


def strength(mode: str) -> int:
    """1 (ACCESS SHARE) to 8 (ACCESS EXCLUSIVE); 0 for a mode that is not a table lock's."""
    return STRENGTH.index(mode) + 1 if mode in STRENGTH else 0
