CREATE TABLE users (
    id INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    handle TEXT UNIQUE
);
CREATE INDEX users_name ON users (name);