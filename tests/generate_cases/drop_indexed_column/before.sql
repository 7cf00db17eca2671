CREATE TABLE events (
    id INTEGER PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    legacy TEXT
);
CREATE INDEX events_legacy ON events (legacy);
CREATE INDEX events_kind ON events (kind);