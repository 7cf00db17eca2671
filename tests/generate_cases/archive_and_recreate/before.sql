CREATE TABLE users (
    id INTEGER PRIMARY KEY NOT NULL,
    email TEXT NOT NULL
);
CREATE UNIQUE INDEX users_email ON users (email);
