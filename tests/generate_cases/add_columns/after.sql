CREATE TABLE events (
    id INTEGER PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    source TEXT DEFAULT 'api'
);
CREATE INDEX events_kind ON events (kind);