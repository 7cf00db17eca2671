-- `a` and `b` swap names; `c` keeps pointing at the table it pointed at, now called `b`.
CREATE TABLE b (
    id INTEGER PRIMARY KEY NOT NULL,
    x TEXT
);
CREATE TABLE a (
    id INTEGER PRIMARY KEY NOT NULL,
    y INTEGER
);
CREATE TABLE c (
    id INTEGER PRIMARY KEY NOT NULL,
    a_id INTEGER REFERENCES b(id)
);
