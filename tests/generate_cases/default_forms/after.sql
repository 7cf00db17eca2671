-- Same defaults spelled differently (nothing to do for them), plus one new column.
CREATE TABLE t (
    id INTEGER PRIMARY KEY NOT NULL,
    a TEXT DEFAULT 'legacy',
    b TEXT DEFAULT 'x',
    c TEXT DEFAULT "abc"
);
