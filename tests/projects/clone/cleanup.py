"""Removes the clone named by $DATABASE_URL, as a thin-clone service's delete call would."""

import os

import psycopg

clone = os.environ["DATABASE_URL"]
base, _, name = clone.rpartition("/")
with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
    conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
print(f"removed {name}")
