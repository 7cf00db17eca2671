CREATE TABLE events (
    id INTEGER PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    seen_at INTEGER NOT NULL DEFAULT (unixepoch())
);