ALTER TABLE events ADD COLUMN note text;
CREATE TABLE event_tags (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id bigint NOT NULL,
    tag      text NOT NULL
);
