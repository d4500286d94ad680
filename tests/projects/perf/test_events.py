def test_account_has_events(dbgate_db):
    # Six calls per phase: enough for the performance stage to judge this query's mean.
    for account in (42, 4242, 77, 1, 2, 3):
        count = dbgate_db.execute(
            "SELECT count(*) FROM events WHERE account_id = %s", (account,)
        ).fetchone()[0]
        assert count == 40
