"""Reading the SQL a user hands over: migrations, seeds, workloads.

Python would raise ``UnicodeDecodeError`` deep inside a run for a file saved as latin-1 or UTF-16,
and PostgreSQL stops reading a statement at a NUL byte, so ``SELECT 1;\\0DROP TABLE t;`` would run
only its first half. Every SQL file is read here once, up front, and anything that is not plain
UTF-8 text stops the run with the file, the line and what to do, before a database is touched.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from pytest_dbgate.config.errors import ConfigError

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)


def read_sql(path: Path, what: str) -> str:
    """The text of a SQL file; a UTF-8 byte-order mark (Windows editors write one) is dropped."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ConfigError.not_text(path, what, "it is a folder, not a file") from None
    except OSError as exc:
        raise ConfigError.not_text(path, what, f"it cannot be read ({exc.strerror})") from None
    if raw.startswith(_UTF16_BOMS):
        raise ConfigError.not_text(path, what, "it is UTF-16 or UTF-32 text, not UTF-8")
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        byte = raw[exc.start : exc.start + 1].hex()
        raise ConfigError.not_text(
            path, what, f"line {line} is not UTF-8 (byte 0x{byte}; latin-1 or binary?)"
        ) from None
    nul = text.find("\0")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise ConfigError.not_text(
            path,
            what,
            f"line {line} holds a NUL byte; PostgreSQL would stop reading the statement there "
            "and run only what comes before it",
        )
    return text
