"""The rule catalog: each rule's id, what it flags, why it is unsafe and the safe alternative (one
catalog, shown by lint findings and the lock watch's fixes alike)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    why: str
    fix: str
    # "fail": a finding fails the lint item; "report": shown, never failing.
    severity: str = "fail"
    ignorable: bool = True  # whether `-- dbgate: ignore <rule> <reason>` silences it


RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule(
            "index-not-concurrent",
            "CREATE INDEX, DROP INDEX or REINDEX without CONCURRENTLY on an existing table",
            "CREATE INDEX holds SHARE (blocks writes) and DROP INDEX / REINDEX hold ACCESS "
            "EXCLUSIVE (block reads and writes) on the table for the whole build or drop",
            "add CONCURRENTLY, in a file of its own (it cannot run in a transaction)",
        ),
        Rule(
            "concurrently-in-transaction",
            "a CONCURRENTLY statement inside BEGIN … COMMIT",
            "PostgreSQL refuses CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY and DETACH "
            "PARTITION CONCURRENTLY inside a transaction block: the migration fails",
            "remove the BEGIN/COMMIT around it; the gate runs such a file statement by statement",
        ),
        Rule(
            "constraint-not-valid",
            "a foreign key or check constraint added without NOT VALID to an existing table",
            "adding it validates every existing row while holding SHARE ROW EXCLUSIVE (a foreign "
            "key, on both tables) or ACCESS EXCLUSIVE (a check): writes, or everything, wait",
            "ADD CONSTRAINT … NOT VALID, then ALTER TABLE … VALIDATE CONSTRAINT … in a later "
            "migration (SHARE UPDATE EXCLUSIVE: reads and writes go on)",
        ),
        Rule(
            "constraint-left-not-valid",
            "a constraint added NOT VALID and never validated in the release",
            "existing rows were never checked against it, and the gate's own criterion "
            "(every constraint validated) fails on the migrated database",
            "ALTER TABLE … VALIDATE CONSTRAINT … in a later migration of the same release",
        ),
        Rule(
            "unique-constraint-directly",
            "a UNIQUE or PRIMARY KEY constraint added directly to an existing table",
            "it builds its index under ACCESS EXCLUSIVE: reads and writes wait for the whole build",
            "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT … UNIQUE USING INDEX …",
        ),
        Rule(
            "exclusion-constraint",
            "an EXCLUDE constraint added to an existing table",
            "it builds its index and checks every row under ACCESS EXCLUSIVE, and cannot be "
            "added NOT VALID",
            "create the table with it, or accept a maintenance window for the build",
        ),
        Rule(
            "volatile-default",
            "a column added with a volatile default",
            "a volatile default (random(), gen_random_uuid(), clock_timestamp(), nextval() …) "
            "rewrites the whole table under ACCESS EXCLUSIVE",
            "add the column without a default (or with a constant one), backfill it in batches, "
            "then SET DEFAULT for new rows",
        ),
        Rule(
            "not-null-without-default",
            "a NOT NULL column added to an existing table without a default",
            "it fails on a table with rows, and a release still running does not write the column",
            "add it nullable, backfill it, then add the NOT NULL the safe way (see set-not-null)",
        ),
        Rule(
            "set-not-null",
            "SET NOT NULL without a validated CHECK (column IS NOT NULL)",
            "SET NOT NULL scans the whole table under ACCESS EXCLUSIVE to check it",
            "ADD CONSTRAINT … CHECK (col IS NOT NULL) NOT VALID, VALIDATE it in a later migration, "
            "then SET NOT NULL (PostgreSQL skips the scan) and drop the check",
        ),
        Rule(
            "type-change-rewrite",
            "a column type change that rewrites the table",
            "ALTER COLUMN … TYPE rewrites the table and its indexes under ACCESS EXCLUSIVE "
            "(only a few changes, like varchar(n) to text or a longer varchar, do not)",
            "add a column of the new type, backfill it in batches, switch the application, drop "
            "the old one in a held-back migration",
        ),
        Rule(
            "rewriting-column",
            "a serial, identity or stored generated column added to an existing table",
            "filling it rewrites the whole table under ACCESS EXCLUSIVE",
            "add a plain nullable column, backfill it in batches, then attach the sequence or "
            "default for new rows",
        ),
        Rule(
            "rename",
            "a table or column renamed",
            "the release still running uses the old name: its queries fail from the moment the "
            "migration commits",
            "add the new name alongside (a view, or a new column kept in sync), switch the "
            "application, drop the old name in a held-back migration",
        ),
        Rule(
            "drop",
            "a column, table or database dropped, or a NOT NULL dropped",
            "the release still running reads (or relies on) it: its queries fail once the "
            "migration commits",
            "drop it in a migration held back until the old release is gone "
            "(`-- dbgate: hold-back 7d`)",
        ),
        Rule(
            "truncate-cascade",
            "TRUNCATE … CASCADE",
            "it empties every table that references this one, under ACCESS EXCLUSIVE on all of "
            "them",
            "delete what must go explicitly, table by table, in batches",
        ),
        Rule(
            "detach-not-concurrent",
            "DETACH PARTITION without CONCURRENTLY",
            "it holds ACCESS EXCLUSIVE on the parent table: every query on it waits",
            "DETACH PARTITION … CONCURRENTLY, in a file of its own",
        ),
        Rule(
            "domain-constraint",
            "a constraint added to a domain without NOT VALID",
            "it checks every column of that domain in every table, holding their locks",
            "ALTER DOMAIN … ADD CONSTRAINT … NOT VALID, then VALIDATE CONSTRAINT later",
        ),
        Rule(
            "no-lock-timeout",
            "a lock that blocks reads or writes taken with no lock_timeout set in the file",
            "waiting for the lock, the statement queues every later query on the table behind it",
            "`SET lock_timeout = '500ms'` at the top of the file; `--dbgate=production` sets it "
            "for you (dbgate_lock_timeout), so this is reported, not failed",
            severity="report",
        ),
        Rule(
            "transaction-nesting",
            "BEGIN inside a transaction, or a transaction left open",
            "a nested BEGIN is ignored with a warning (its COMMIT ends the outer transaction), "
            "and an unterminated one is rolled back: the file does not do what it says",
            "one BEGIN … COMMIT pair, or none (the gate runs a file in one transaction already)",
        ),
        Rule(
            "large-write",
            "an UPDATE or DELETE of a whole existing table in one statement",
            "it locks every row it changes until the transaction commits, and writes them all "
            "in one go: the application's writes to those rows wait, and replicas fall behind",
            "do it in batches, each committed on its own (`-- dbgate: no-transaction` and a DO "
            "loop that COMMITs), so no row or table stays locked for long",
            severity="report",
        ),
        Rule(
            "outside-database",
            "a statement that acts outside the migrated database",
            "staging is a copy of one database: what the statement does to other databases, the "
            "server, its files or other servers is not rehearsed there, and on production it "
            "acts on production's server; the gate never applies it and no ignore silences it",
            "take the statement out of the migration and have whoever runs the server do it, "
            "on purpose, outside the release",
            ignorable=False,
        ),
        Rule(
            "not-idempotent",
            "a statement without IF [NOT] EXISTS in a file that runs statement by statement",
            "such a file cannot be rolled back: after a failure half of it stays applied, and "
            "re-running it fails on what already exists",
            "write CREATE … IF NOT EXISTS / DROP … IF EXISTS (or guard it in a DO block)",
        ),
    )
}


# A finding as a rule reports it: (rule id, the table or None, what it found).
Check = tuple[str, str | None, str]
