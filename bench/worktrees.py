"""Another version of the plugin beside this one, for benchmarks that compare the two."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def worktree(ref: str | None) -> Iterator[Path | None]:
    """The repository at ``ref``, checked out in a temporary git worktree, removed after; its
    ``src`` goes first on ``PYTHONPATH`` to run that version. ``None`` without a ref."""
    if ref is None:
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="dbgate-version-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(path), ref], cwd=REPO, check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=REPO, check=False)
