-- Every feature the snapshot format carries, from nothing.
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    balance REAL NOT NULL DEFAULT 0.5,
    created_at INTEGER NOT NULL DEFAULT (unixepoch()),
    note,
    CONSTRAINT balance_not_negative CHECK (balance >= 0)
);
CREATE TABLE memberships (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    team TEXT NOT NULL CHECK (length(team) > 0),
    role TEXT NOT NULL DEFAULT 'member',
    PRIMARY KEY (account_id, team)
);
CREATE INDEX memberships_team ON memberships (team, role);
CREATE UNIQUE INDEX accounts_admin ON accounts (email) WHERE note = 'admin';
