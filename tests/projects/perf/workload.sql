-- name: events_of_an_account
SELECT id, kind FROM events WHERE account_id = 4242 ORDER BY id;

-- name: latest_events
SELECT id, account_id FROM events ORDER BY id DESC LIMIT 10;

-- name: event_labels
SELECT id, event_label(kind, payload) FROM events WHERE account_id = 4242 ORDER BY id;

-- name: edit_events
UPDATE events SET kind = kind WHERE id BETWEEN 1000 AND 1019;
