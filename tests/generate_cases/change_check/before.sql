CREATE TABLE counter_metadata (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    value INTEGER NOT NULL
);