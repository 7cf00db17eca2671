CREATE TABLE readings (
    id INTEGER PRIMARY KEY NOT NULL,
    measurement REAL NOT NULL
);