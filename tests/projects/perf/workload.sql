-- name: events_of_an_account
SELECT id, kind FROM events WHERE account_id = 4242 ORDER BY id;

-- name: latest_events
SELECT id, account_id FROM events ORDER BY id DESC LIMIT 10;
