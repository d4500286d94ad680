"""Passwords never shown, however they are spelt.

Replacing the password's raw text is not enough: in a URL it is percent-encoded (``p%40ss`` for
``p@ss``, in either case of hex digit, or only partly), a libpq ``key=value`` string escapes its
quotes and backslashes, a JSON artefact escapes ``"`` and ``\\``, the JUnit XML escapes ``&``,
``<`` and quotes. One pattern per password matches every character in any of its spellings, so
whatever a user's test prints, in whichever form it got the URL, comes out as ``***``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

MASK = "***"

# How one character may be written besides itself: SQL and libpq quoting, JSON and XML escapes.
_ESCAPES: dict[str, tuple[str, ...]] = {
    "'": (r"\'", "''", "&apos;", "&#39;", "&#x27;", r"\u0027"),
    '"': (r"\"", "&quot;", "&#34;", "&#x22;", r"\u0022"),
    "\\": (r"\\",),
    "&": ("&amp;", "&#38;", "&#x26;", r"\u0026"),
    "<": ("&lt;", "&#60;", "&#x3c;", r"\u003c"),
    ">": ("&gt;", "&#62;", "&#x3e;", r"\u003e"),
    " ": ("+", "&#32;"),
}


@functools.lru_cache(maxsize=64)
def spelling(password: str) -> re.Pattern[str]:
    """A pattern matching ``password`` with each character raw, percent-encoded or escaped."""
    parts = []
    for char in password:
        options = [re.escape(char)]
        # %40 or %4a/%4A (any case of hex digit, byte by byte for multi-byte characters); a URL
        # may percent-encode even a letter.
        options.append("".join(f"%(?i:{byte:02x})" for byte in char.encode()))
        options.extend(re.escape(e) for e in _ESCAPES.get(char, ()))
        if char.isprintable() and ord(char) > 0x7E:
            options.append(re.escape(f"\\u{ord(char):04x}"))
        parts.append(options[0] if len(options) == 1 else f"(?:{'|'.join(options)})")
    return re.compile("".join(parts))


def mask(text: str, password: str | None) -> str:
    """``text`` with every spelling of ``password`` replaced by ``***``."""
    if not password or not text:
        return text
    return spelling(password).sub(MASK, text)


@dataclass
class Secrets:
    """The passwords a run knows of: the URLs' and ``$PGPASSWORD``. Every artefact, every
    report section and every progress line goes through :meth:`mask` before anyone sees it."""

    passwords: set[str] = field(default_factory=set)

    def add(self, *passwords: str | None) -> None:
        self.passwords.update(p for p in passwords if p)

    def mask(self, text: str) -> str:
        # The longest first, so a password that holds another is masked whole.
        for password in sorted(self.passwords, key=len, reverse=True):
            text = mask(text, password)
        return text
