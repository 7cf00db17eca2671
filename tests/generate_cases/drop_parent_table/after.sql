CREATE TABLE children (
    id INTEGER PRIMARY KEY NOT NULL,
    parent_id INTEGER,
    label TEXT
);