-- `a` and `b` swap names: each keeps its values and its type.
CREATE TABLE t (
    id INTEGER PRIMARY KEY NOT NULL,
    b TEXT,
    a INTEGER
);
