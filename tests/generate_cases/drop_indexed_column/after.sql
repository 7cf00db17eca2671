CREATE TABLE events (
    id INTEGER PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL
);
CREATE INDEX events_kind ON events (kind);