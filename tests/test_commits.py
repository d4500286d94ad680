"""How each statement commits, and how its outcome is settled after a crash (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_dbgate.migrations.commits import Recheck
from pytest_dbgate.migrations.parse import Statement, discover


def statements(tmp_path: Path, text: str) -> tuple[Statement, ...]:
    (tmp_path / "1_m.sql").write_text(text)
    (migration,) = discover(tmp_path)
    return migration.statements


@pytest.mark.parametrize(
    ("text", "alone", "commits_itself"),
    [
        ("UPDATE t SET n = n + 1", False, False),
        ("DO $$ BEGIN UPDATE t SET n = 1; END $$", False, False),
        ("DO $$ BEGIN UPDATE t SET n = 1; COMMIT; END $$", True, True),
        ("DO $$ BEGIN LOOP ROLLBACK; EXIT; END LOOP; END $$", True, True),
        ("DO LANGUAGE plpython3u $$ plpy.execute('select 1') $$", True, True),
        ("CALL backfill(1000)", True, True),
        ("DO $$ BEGIN FOR i IN 0..1 LOOP CALL plus_batch(i); END LOOP; END $$", True, True),
        ("DO $$ BEGIN BEGIN PERFORM 1; EXCEPTION WHEN OTHERS THEN COMMIT; END; END $$", True, True),
        ("CREATE INDEX CONCURRENTLY i ON t (n)", True, False),
        ("VACUUM t", True, False),
        ("CREATE INDEX i ON t (n)", False, False),
    ],
)
def test_what_can_share_a_transaction_with_its_journal_row(
    tmp_path: Path, text: str, alone: bool, commits_itself: bool
) -> None:
    (statement,) = statements(tmp_path, text + ";")
    assert statement.alone is alone
    assert statement.commits_itself is commits_itself


def test_transaction_control_is_told_apart(tmp_path: Path) -> None:
    found = statements(
        tmp_path,
        "BEGIN; SAVEPOINT s; ROLLBACK TO SAVEPOINT s; RELEASE s; COMMIT AND CHAIN; ROLLBACK; "
        "START TRANSACTION; COMMIT; SELECT 1;",
    )
    assert [s.control for s in found] == [
        "begin",
        "savepoint",
        "savepoint",
        "savepoint",
        "commit",
        "rollback",
        "begin",
        "commit",
        None,
    ]
    assert not any(s.alone for s in found)  # the file's own blocks: journaled inside them


def test_rechecks_keep_quoted_names_as_postgresql_stores_them(tmp_path: Path) -> None:
    create, drop, vacuum, plain = statements(
        tmp_path,
        'CREATE INDEX CONCURRENTLY "Doc_Title_idx" ON app."Document" ("Title");\n'
        'DROP INDEX CONCURRENTLY IF EXISTS app."Old idx";\n'
        "VACUUM (ANALYZE) app.t;\n"
        "UPDATE t SET n = 1;",
    )
    assert create.recheck == Recheck(
        "index created", (("app", "Doc_Title_idx"),), ("app", "Document")
    )
    assert drop.recheck == Recheck("index dropped", (("app", "Old idx"),))
    assert vacuum.recheck == Recheck("repeatable")
    assert plain.recheck is None


def test_an_unnamed_concurrent_index_cannot_be_rechecked(tmp_path: Path) -> None:
    (statement,) = statements(tmp_path, "CREATE INDEX CONCURRENTLY ON t (n);")
    assert statement.alone and statement.recheck is None


def test_digests_bind_the_text_as_sent_not_the_comments_around_it(tmp_path: Path) -> None:
    first, second, third = statements(tmp_path, "SELECT 1;\n-- a comment\nSELECT 1;\nSELECT  1;")
    assert first.digest == second.digest  # a comment between statements is not sent
    assert first.digest != third.digest  # whitespace inside a statement is
    assert len(first.digest) == 64 and first.short_digest == first.digest[:16]
