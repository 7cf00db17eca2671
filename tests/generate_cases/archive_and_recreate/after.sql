-- The old table is kept under a new name, and a new `users` takes its place, in one step.
CREATE TABLE legacy_users (
    id INTEGER PRIMARY KEY NOT NULL,
    email TEXT NOT NULL
);
CREATE UNIQUE INDEX legacy_users_email ON legacy_users (email);
CREATE TABLE users (
    id INTEGER PRIMARY KEY NOT NULL,
    email TEXT NOT NULL,
    name TEXT
);
CREATE UNIQUE INDEX users_email ON users (email);
