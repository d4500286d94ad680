"""A secret scanner for the suite: every spelling of a password, in every file and output.

Independent of the plugin's own masking (it does not import it): each password is looked for
raw, percent-encoded (upper- and lower-case hex, ``quote_plus``), JSON- and XML-escaped, with
libpq/SQL quoting, and as UTF-16 and latin-1 bytes, in text and binary files alike.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, quote_plus


def spellings(password: str) -> set[bytes]:
    texts = {
        password,
        quote(password, safe=""),
        quote(password),
        quote(password, safe="").lower(),
        quote_plus(password),
        json.dumps(password)[1:-1],
        json.dumps(password, ensure_ascii=False)[1:-1],
        html.escape(password),
        html.escape(password, quote=False),
        password.replace("\\", "\\\\").replace("'", "\\'"),
        password.replace("'", "''"),
    }
    found = {t.encode() for t in texts}
    for codec in ("utf-16-le", "utf-16-be", "latin-1"):
        try:
            found.add(password.encode(codec))
        except UnicodeEncodeError:
            continue
    return {f for f in found if f}


def leaks(passwords: Iterable[str], texts: Iterable[str], paths: Iterable[Path]) -> list[str]:
    """Where any spelling of any password shows: ``<where>: <spelling>`` for each find."""
    forms = {form: password for password in passwords if password for form in spellings(password)}
    found = []
    blobs = [(f"output {i}", text.encode()) for i, text in enumerate(texts)]
    blobs += [(str(p), p.read_bytes()) for p in paths if p.is_file()]
    for where, blob in blobs:
        for form in forms:
            if form in blob:
                found.append(f"{where}: {form!r}")
    return found


def written_since(root: Path, before: dict[Path, float]) -> list[Path]:
    """Files under ``root`` that are new or changed since ``before`` (from :func:`mtimes`)."""
    return [p for p, t in mtimes(root).items() if before.get(p) != t]


def mtimes(root: Path) -> dict[Path, float]:
    found = {}
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                found[path] = path.stat().st_mtime
        except OSError:
            continue
    return found
