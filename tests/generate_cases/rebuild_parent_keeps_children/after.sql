CREATE TABLE parents (
    id INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL DEFAULT ''
);
CREATE TABLE children (
    id INTEGER PRIMARY KEY NOT NULL,
    parent_id INTEGER NOT NULL REFERENCES parents(id) ON DELETE CASCADE
);
CREATE INDEX children_parent ON children (parent_id);