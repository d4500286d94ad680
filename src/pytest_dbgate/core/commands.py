"""The project's own commands: an external test suite, a post-migrate step (ORM regeneration).

They run through the shell, from the project root, with the database's URL in ``DATABASE_URL``
(password included: it is the app's own connection), and their output is kept, with the password
taken out, to show when they fail.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pytest_dbgate.pg.connections import Endpoint

TAIL_LINES = 40


@dataclass(frozen=True)
class CommandResult:
    command: str
    returncode: int
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = TAIL_LINES) -> str:
        kept = self.output.rstrip().splitlines()[-lines:]
        return "\n".join("    " + line for line in kept) or "    (no output)"

    def failure(self, what: str) -> str:
        return (
            f"{what} `{self.command}` exited with status {self.returncode} after "
            f"{self.seconds:.1f}s; its last output:\n{self.tail()}"
        )


def run_command(
    command: str, database: Endpoint, cwd: Path, variable: str = "DATABASE_URL"
) -> CommandResult:
    """Run ``command`` with ``DATABASE_URL`` (or ``variable``) set to ``database``; a failure
    is a result."""
    env = database.subprocess_env()
    env[variable] = database.url()
    started = time.monotonic()
    try:
        proc = subprocess.run(
            command,
            shell=True,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            check=False,
        )
        returncode, output = proc.returncode, proc.stdout
    except OSError as error:
        returncode, output = 127, str(error)
    return CommandResult(command, returncode, database.redact(output), time.monotonic() - started)
