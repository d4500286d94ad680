"""SIGTERM and Ctrl-C while production applies migrations: stop where everything is recorded.

Outside a deploy, SIGTERM interrupts the run at once (see :mod:`pytest_dbgate.plugin`). During
one, an interruption must never fall between a statement's commit and its journal row, where the
next run could not know whether the statement took effect. So the runner holds interruptions
while it applies: a signal cancels the statement in flight on the server (its transaction rolls
back, or a concurrent index build fails: either way a known outcome), except a statement that
commits as it goes (a batched backfill), which is let finish, since cancelling it would leave part
of it applied; then the runner stops at the next point where everything is recorded. A second
signal interrupts at once, as a person pressing Ctrl-C twice means.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The deploy stopped at a recorded point because it was asked to."""


class Interruptions:
    """Signals received while migrations are applied, acted on at the runner's boundaries."""

    def __init__(self, progress: Callable[[str], None]) -> None:
        self.received: signal.Signals | None = None
        self._progress = progress
        self._cancel: Callable[[], None] | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold SIGINT and SIGTERM for the duration (only the main thread can)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
        for sig in SIGNALS:
            signal.signal(sig, self._handle)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextmanager
    def statement(self, cancel: Callable[[], None] | None) -> Iterator[None]:
        """A statement is in flight; ``cancel`` (if any) asks the server to cancel it."""
        self._cancel = cancel
        try:
            yield
        finally:
            self._cancel = None

    def check(self, where: str) -> None:
        """At a recorded point: stop here if a signal came."""
        if self.received is not None:
            raise Interrupted(
                f"{self.received.name}: the deploy stopped {where}; everything applied is "
                "recorded, and the next production run resumes there"
            )

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        self.received = signal.Signals(signum)
        cancel = self._cancel
        self._progress(
            f"{self.received.name} received: "
            + (
                "cancelling the statement in flight, then stopping"
                if cancel is not None
                else "stopping at the next recorded point"
            )
            + " (a second signal stops at once)"
        )
        if cancel is not None:
            cancel()
