-- A table where an index matters at any size: 200,000 events, looked up by account.
CREATE TABLE events (
    id         bigint PRIMARY KEY,
    account_id integer NOT NULL,
    kind       text NOT NULL,
    payload    text NOT NULL
);
INSERT INTO events
SELECT i, (i * 7919) % 5000, CASE WHEN i % 3 = 0 THEN 'click' ELSE 'view' END, repeat('x', 40)
FROM generate_series(1, 200000) AS i;
CREATE INDEX events_account_idx ON events (account_id);
ANALYZE events;

-- What the application calls to label an event: the `function` release makes it slow.
CREATE FUNCTION event_label(kind text, payload text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN kind || ': ' || left(payload, 10);
END
$$;
