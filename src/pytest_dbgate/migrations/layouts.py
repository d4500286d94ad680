"""Where migration files are and what they are called, in the layouts teams already have.

* ``flat``: ``<version>_<name>.sql`` in one folder;
* ``prisma``: ``<version>_<name>/migration.sql``;
* ``flyway``: ``V<version>__<name>.sql`` (``V1_2__x.sql`` is version 1.2; undo files ignored);
* ``golang-migrate``: ``<version>_<name>.up.sql`` (the ``.down.sql`` files are ignored);
* ``dbmate``: ``<version>_<name>.sql`` with ``-- migrate:up`` and ``-- migrate:down`` sections
  (only the up section is applied; ``-- migrate:up transaction:false`` runs it statement by
  statement).

The layout is detected from the folder's contents unless ``dbgate_layout`` names it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pytest_dbgate.config.errors import ConfigError
from pytest_dbgate.migrations.sqltext import read_sql

FLAT = re.compile(r"^(?P<version>\d+)_(?P<name>[^/]+)\.sql$")
GOLANG = re.compile(r"^(?P<version>\d+)_(?P<name>[^/]+)\.up\.sql$")
GOLANG_DOWN = re.compile(r"^\d+_[^/]+\.down\.sql$")
FLYWAY = re.compile(r"^V(?P<version>\d+(?:[._]\d+)*)__(?P<name>[^/]+)\.sql$")
FLYWAY_UNDO = re.compile(r"^U\d+(?:[._]\d+)*__.+\.sql$")
DBMATE_UP = re.compile(r"^--\s*migrate:up(?P<options>[^\n]*)$", re.MULTILINE)
DBMATE_DOWN = re.compile(r"^--\s*migrate:down\b", re.MULTILINE)

EXAMPLES = {
    "flat": "20250115150000_add_categories.sql",
    "prisma": "20250115150000_add_categories/migration.sql",
    "flyway": "V2__add_categories.sql",
    "golang-migrate": "20250115150000_add_categories.up.sql",
    "dbmate": "20250115150000_add_categories.sql with -- migrate:up / -- migrate:down",
}


@dataclass(frozen=True)
class Source:
    """One migration as found on disk: what to parse, and how."""

    version: str
    name: str
    path: Path
    text: str  # the SQL to apply (for dbmate, the up section only; lines keep their numbers)
    no_transaction: bool = False
    # Where `-- dbgate:` directives are read: the text, or for dbmate all before the down
    # section (a hold-back written above `-- migrate:up` is the file's).
    header: str | None = None


def version_key(version: str) -> tuple[int, ...]:
    """Versions in numeric order, dotted ones (Flyway's 1.10 after 1.9) included."""
    return tuple(int(part) for part in re.split(r"[._]", version) if part.isdigit())


def find(folder: Path, layout: str = "auto") -> tuple[str, list[Source]]:
    """The layout used and the migrations in ``folder``, in version order."""
    if not folder.is_dir():
        raise ConfigError.migrations_missing(folder)
    chosen = detect(folder) if layout == "auto" else layout
    sources = _READERS[chosen](folder)
    if not sources:
        raise ConfigError.migrations_empty(folder)
    seen: dict[str, Path] = {}
    for source in sources:
        if source.version in seen:
            raise ConfigError.duplicate_version(source.version, (seen[source.version], source.path))
        seen[source.version] = source.path
    return chosen, sorted(sources, key=lambda s: version_key(s.version))


def detect(folder: Path) -> str:
    """The layout the folder's contents show; flat when nothing else fits."""
    names = [p.name for p in folder.iterdir()]
    found = set()
    if any((folder / n / "migration.sql").is_file() for n in names):
        found.add("prisma")
    if any(FLYWAY.match(n) for n in names):
        found.add("flyway")
    if any(GOLANG.match(n) for n in names):
        found.add("golang-migrate")
    flat = [folder / n for n in names if FLAT.match(n) and not GOLANG.match(n)]
    if flat and "golang-migrate" not in found:
        dbmate = any(DBMATE_UP.search(p.read_text(errors="replace")) for p in flat if p.is_file())
        found.add("dbmate" if dbmate else "flat")
    if len(found) > 1:
        raise ConfigError.mixed_layouts(folder, sorted(found))
    return found.pop() if found else "flat"


def _named(
    folder: Path, layout: str, pattern: re.Pattern[str], skip: re.Pattern[str] | None = None
) -> list[Source]:
    """A layout whose file names carry the version and name; ``skip`` matches files to ignore."""
    sources = []
    for path in sorted(folder.glob("*.sql")):
        if skip is not None and skip.match(path.name):
            continue
        match = pattern.match(path.name)
        if match is None:
            raise ConfigError.not_a_migration(path, layout, EXAMPLES[layout])
        version = match["version"].replace("_", ".")  # Flyway's V1_2 is version 1.2
        sources.append(Source(version, match["name"], path, read_sql(path, "migration")))
    return sources


def _flat(folder: Path) -> list[Source]:
    return _named(folder, "flat", FLAT)


def _golang(folder: Path) -> list[Source]:
    return _named(folder, "golang-migrate", GOLANG, skip=GOLANG_DOWN)


def _flyway(folder: Path) -> list[Source]:
    return _named(folder, "flyway", FLYWAY, skip=FLYWAY_UNDO)


def _prisma(folder: Path) -> list[Source]:
    sources = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file():
            continue  # migration_lock.toml and the like
        match = FLAT.match(entry.name + ".sql")
        sql_file = entry / "migration.sql"
        if match is None or not sql_file.is_file():
            raise ConfigError.not_a_migration(entry, "prisma", EXAMPLES["prisma"])
        text = read_sql(sql_file, "migration")
        sources.append(Source(match["version"], match["name"], sql_file, text))
    return sources


def _dbmate(folder: Path) -> list[Source]:
    sources = []
    for path in sorted(folder.glob("*.sql")):
        match = FLAT.match(path.name)
        text = read_sql(path, "migration")
        up = DBMATE_UP.search(text)
        if match is None or up is None:
            raise ConfigError.not_a_migration(path, "dbmate", EXAMPLES["dbmate"])
        down = DBMATE_DOWN.search(text, up.end())
        end = down.start() if down else len(text)
        # Blank what is not the up section, keeping line numbers as they are in the file.
        kept = _blank(text[: up.start()]) + text[up.start() : end] + _blank(text[end:])
        no_transaction = "transaction:false" in up["options"].replace(" ", "")
        sources.append(
            Source(match["version"], match["name"], path, kept, no_transaction, text[:end])
        )
    return sources


def _blank(text: str) -> str:
    return "\n" * text.count("\n")


_READERS = {
    "flat": _flat,
    "prisma": _prisma,
    "flyway": _flyway,
    "golang-migrate": _golang,
    "dbmate": _dbmate,
}
