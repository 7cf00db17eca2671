CREATE TABLE grants (
    user_id INTEGER NOT NULL,
    scope TEXT NOT NULL,
    PRIMARY KEY (user_id)
);