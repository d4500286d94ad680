-- dbgate: hold-back 7d
-- The old application still writes events.at: drop it a week after the release.
ALTER TABLE events DROP COLUMN at;
