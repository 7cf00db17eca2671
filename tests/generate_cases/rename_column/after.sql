CREATE TABLE counters (
    id INTEGER PRIMARY KEY NOT NULL,
    total INTEGER NOT NULL CHECK (total >= 0)
);
CREATE INDEX counters_amount ON counters (total) WHERE total > 10;