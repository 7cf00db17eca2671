CREATE TABLE counters (
    id INTEGER PRIMARY KEY NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0)
);
CREATE INDEX counters_amount ON counters (amount) WHERE amount > 10;