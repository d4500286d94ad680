"""The one rule catalog: every rule the lint reports, squawk's and the gate's own, with what it is
about (its kind), whether it fails by default, and why and how to do it safely. The lock watch
shows its fixes from here too, so a lint finding and a measured lock give the same advice.

squawk's rules keep squawk's ids, so ``.squawk.toml``, ``-- squawk-ignore`` and what a team
already knows keep working; where squawk's own text says it well, the catalog leaves ``why`` and
``fix`` empty and the finding shows squawk's message and help.
"""

from __future__ import annotations

from pytest_dbgate.lint.rule import Kind, Rule


def _squawk(rule_id: str, kind: Kind, title: str, why: str = "", fix: str = "") -> Rule:
    return Rule(rule_id, kind, title, why, fix, "report" if kind == "style" else "fail")


SQUAWK_RULES: tuple[Rule, ...] = (
    _squawk(
        "require-concurrent-index-creation",
        "lock",
        "CREATE INDEX without CONCURRENTLY on an existing table",
        "CREATE INDEX holds SHARE on the table for the whole build: every write waits",
        "CREATE INDEX CONCURRENTLY, in a file of its own (it cannot run in a transaction)",
    ),
    _squawk(
        "require-concurrent-index-deletion",
        "lock",
        "DROP INDEX without CONCURRENTLY",
        "DROP INDEX holds ACCESS EXCLUSIVE on the table: reads and writes wait",
        "DROP INDEX CONCURRENTLY, in a file of its own",
    ),
    _squawk(
        "require-concurrent-reindex",
        "lock",
        "REINDEX without CONCURRENTLY",
        "REINDEX holds ACCESS EXCLUSIVE on the index and SHARE on the table for the build",
        "REINDEX … CONCURRENTLY, in a file of its own",
    ),
    _squawk(
        "require-concurrent-partition-detach",
        "lock",
        "DETACH PARTITION without CONCURRENTLY",
        "it holds ACCESS EXCLUSIVE on the parent table: every query on it waits",
        "DETACH PARTITION … CONCURRENTLY, in a file of its own",
    ),
    _squawk(
        "constraint-missing-not-valid",
        "lock",
        "a constraint added without NOT VALID, or validated in the transaction that added it",
        "adding it checks every existing row while holding a lock that blocks writes (a CHECK: "
        "reads too); validated in the same transaction, the ADD's lock is held through the scan",
        "ADD CONSTRAINT … NOT VALID, then ALTER TABLE … VALIDATE CONSTRAINT … in a later "
        "migration (SHARE UPDATE EXCLUSIVE: reads and writes go on)",
    ),
    _squawk(
        "adding-foreign-key-constraint",
        "lock",
        "a foreign key added without NOT VALID",
        "adding it validates every row while holding SHARE ROW EXCLUSIVE on both tables",
        "ADD CONSTRAINT … FOREIGN KEY … NOT VALID, then VALIDATE CONSTRAINT in a later migration",
    ),
    _squawk(
        "disallowed-unique-constraint",
        "lock",
        "a UNIQUE constraint built directly on an existing table",
        "it builds its index under ACCESS EXCLUSIVE: reads and writes wait for the whole build",
        "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT … UNIQUE USING INDEX …",
    ),
    _squawk(
        "adding-serial-primary-key-field",
        "lock",
        "a PRIMARY KEY built directly on an existing table",
        "it builds its index (and checks NOT NULL) under ACCESS EXCLUSIVE",
        "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD PRIMARY KEY USING INDEX …",
    ),
    _squawk(
        "adding-field-with-default",
        "lock",
        "a column added with a volatile default, or a stored generated or identity column",
        "filling it rewrites the whole table under ACCESS EXCLUSIVE",
        "add the column without a default (or with a constant one), backfill it in batches, "
        "then SET DEFAULT for new rows",
    ),
    _squawk(
        "adding-not-nullable-field",
        "lock",
        "SET NOT NULL without a validated CHECK (column IS NOT NULL)",
        "SET NOT NULL scans the whole table under ACCESS EXCLUSIVE to check it",
        "ADD CONSTRAINT … CHECK (col IS NOT NULL) NOT VALID, VALIDATE it in a later migration, "
        "then SET NOT NULL (PostgreSQL skips the scan) and drop the check",
    ),
    _squawk(
        "changing-column-type",
        "lock",
        "a column type change",
        "ALTER COLUMN … TYPE rewrites the table and its indexes under ACCESS EXCLUSIVE (only a "
        "few changes, like varchar(n) to text or a longer varchar, do not)",
        "add a column of the new type, backfill it in batches, switch the application, drop "
        "the old one in a held-back migration",
    ),
    _squawk(
        "ban-alter-domain-with-add-constraint",
        "lock",
        "a constraint added to a domain",
        "it checks every column of that domain in every table, holding their locks",
    ),
    _squawk(
        "prefer-repack",
        "lock",
        "VACUUM FULL or CLUSTER",
        "it rewrites the table under ACCESS EXCLUSIVE: reads and writes wait",
    ),
    _squawk(
        "adding-required-field",
        "compat",
        "a NOT NULL column without a default added to an existing table",
        "it fails on a table with rows, and the release still running does not write the column",
        "add it nullable, backfill it, then add the NOT NULL the safe way",
    ),
    _squawk(
        "renaming-column",
        "compat",
        "a column renamed",
        "the release still running uses the old name: its queries fail from the moment the "
        "migration commits",
        "add the new column alongside, keep both in sync, switch the application, drop the old "
        "one in a held-back migration",
    ),
    _squawk(
        "renaming-table",
        "compat",
        "a table renamed",
        "the release still running uses the old name: its queries fail from the moment the "
        "migration commits",
        "rename it and leave a view under the old name, switch the application, drop the view "
        "in a held-back migration",
    ),
    _squawk(
        "ban-drop-column",
        "compat",
        "a column dropped",
        "the release still running reads it: its queries fail once the migration commits",
        "drop it in a migration held back until the old release is gone "
        "(`-- dbgate: hold-back 7d`)",
    ),
    _squawk(
        "ban-drop-table",
        "compat",
        "a table dropped",
        "the release still running reads it: its queries fail once the migration commits",
        "drop it in a migration held back until the old release is gone "
        "(`-- dbgate: hold-back 7d`)",
    ),
    _squawk(
        "ban-drop-not-null",
        "compat",
        "a NOT NULL dropped",
        "the release still running relies on the column never being null",
    ),
    _squawk("ban-drop-database", "compat", "a database dropped"),
    _squawk(
        "ban-truncate-cascade",
        "compat",
        "TRUNCATE … CASCADE",
        "it empties every table that references this one, under ACCESS EXCLUSIVE on all of them",
        "delete what must go explicitly, table by table, in batches",
    ),
    _squawk(
        "ban-concurrent-index-creation-in-transaction",
        "transaction",
        "CREATE INDEX CONCURRENTLY inside a transaction",
    ),
    _squawk(
        "transaction-nesting",
        "transaction",
        "BEGIN inside a transaction that is already open",
        "a nested BEGIN is ignored with a warning and its COMMIT ends the outer transaction: the "
        "file does not do what it says",
        "one BEGIN … COMMIT pair, or none (the gate runs a file in one transaction already)",
    ),
    _squawk("ban-uncommitted-transaction", "transaction", "a transaction left open"),
    *(
        _squawk(rule_id, "style", title)
        for rule_id, title in (
            ("prefer-robust-stmts", "a statement that cannot be re-run after a partial failure"),
            ("prefer-bigint-over-int", "an int column (bigint does not run out)"),
            ("prefer-bigint-over-smallint", "a smallint column (bigint does not run out)"),
            ("prefer-identity", "a serial column (an identity column is simpler to manage)"),
            ("prefer-text-field", "a varchar(n) column (text with a CHECK changes freely)"),
            ("prefer-timestamp-tz", "a timestamp without time zone"),
            ("ban-char-field", "a char(n) column"),
            ("require-timeout-settings", "no lock_timeout or statement_timeout in the file"),
            ("require-lock-timeout", "a strong lock taken with no lock_timeout set in the file"),
            ("require-statement-timeout", "a slow statement with no statement_timeout set"),
            ("require-enum-value-ordering", "ADD VALUE without BEFORE or AFTER"),
            ("require-table-schema", "a table named without its schema"),
            ("identifier-too-long", "an identifier longer than PostgreSQL keeps"),
            ("unused-ignore", "a squawk-ignore comment that silences nothing"),
            ("ban-create-domain-with-constraint", "a domain created with a constraint"),
        )
    ),
    # Drops and moves the release still running may depend on: they fail, as squawk means them.
    *(
        _squawk(rule_id, "compat", title)
        for rule_id, title in (
            ("ban-drop-view", "a view dropped"),
            ("ban-drop-function", "a function dropped"),
            ("ban-drop-type", "a type dropped"),
            ("ban-drop-schema", "a schema dropped"),
            ("ban-drop-sequence", "a sequence dropped"),
            ("ban-drop-domain", "a domain dropped"),
            ("ban-drop-extension", "an extension dropped"),
            ("ban-drop-generated-expression", "a generated column's expression dropped"),
            ("ban-set-schema", "a relation moved to another schema"),
            ("ban-alter-identity", "an identity column altered or dropped"),
        )
    ),
    # Dropping a constraint relaxes a guarantee and renaming an index or a constraint breaks no
    # query: worth a look, reported.
    Rule("ban-drop-constraint", "style", "a constraint dropped", severity="report"),
    Rule(
        "renaming-object",
        "style",
        "an index, constraint or other object renamed",
        severity="report",
    ),
    # squawk's opt-in rules (`included_rules` in .squawk.toml): a team that turns one on wants
    # it enforced, so they fail; squawk's message says what each is about.
    *(
        _squawk(rule_id, "compat", rule_id.replace("-", " "))
        for rule_id in (
            "ban-add-column",
            "ban-add-composite-attribute",
            "ban-add-enum-value",
            "ban-alter-database-options",
            "ban-alter-extension",
            "ban-alter-function-options",
            "ban-alter-generated-expression",
            "ban-alter-policy-condition",
            "ban-alter-policy-roles",
            "ban-alter-role-options",
            "ban-alter-row-level-security",
            "ban-alter-sequence-values",
            "ban-alter-system-options",
            "ban-alter-view-options",
            "ban-create-policy",
            "ban-detach-inheritance",
            "ban-disable-trigger",
            "ban-drop-index",
            "ban-drop-policy",
            "ban-drop-trigger",
            "ban-new-write-restriction",
            "ban-replace-view-function",
            "ban-replica-identity",
            "ban-revoke",
            "ban-set-default",
        )
    ),
)


def _catalog() -> dict[str, Rule]:
    from pytest_dbgate.lint.rules import OWN_RULES

    rules = {rule.id: rule for rule in SQUAWK_RULES}
    for own in OWN_RULES:
        assert own.RULE.id not in rules, f"{own.RULE.id} is squawk's id"
        rules[own.RULE.id] = own.RULE
    return rules


RULES: dict[str, Rule] = _catalog()


def unknown(rule_id: str, message: str, help_text: str | None) -> Rule:
    """A rule of a newer squawk than this catalog knows: reported with squawk's own text."""
    return Rule(rule_id, "style", message, message, help_text or "", "report")
