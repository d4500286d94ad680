def test_account_has_events(dbgate_db):
    for account in (42, 4242, 77):
        count = dbgate_db.execute(
            "SELECT count(*) FROM events WHERE account_id = %s", (account,)
        ).fetchone()[0]
        assert count == 40
