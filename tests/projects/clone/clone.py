"""A stand-in for a thin-clone service: copies $PROD_DATABASE_URL into a new database on the
server in $CLONE_SERVER_URL and prints the new database's URL, as such services do."""

import os
import subprocess
import sys
import uuid

import psycopg

server = os.environ["CLONE_SERVER_URL"]
name = f"clone_{uuid.uuid4().hex[:8]}"
with psycopg.connect(server, autocommit=True) as conn:
    conn.execute(f'CREATE DATABASE "{name}"')
base, _, _ = server.rpartition("/")
clone = f"{base}/{name}"
dump = subprocess.run(
    ["pg_dump", "--format=custom", os.environ["PROD_DATABASE_URL"]], capture_output=True, check=True
)
subprocess.run(["pg_restore", "--no-owner", f"--dbname={clone}"], input=dump.stdout, check=True)
print("clone ready", file=sys.stderr)
print(f"provisioned {name}")
print(clone)
