-- The counter schema as it should be now: the source of truth for `python -m tools.migrations generate`.
-- Edit this file, then generate a migration; never write migration SQL by hand.
-- Timestamps are integer milliseconds since the Unix epoch (UTC); the API renders them as RFC 3339.

-- One row: the counter this file holds. `name` is the counter ID itself, so fleet tools can say
-- which counter a hashed file belongs to.
CREATE TABLE counter_metadata (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    name TEXT NOT NULL,
    value INTEGER NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- The audit log: one row per operation, written in the same transaction as the change.
CREATE TABLE counter_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    op TEXT NOT NULL,
    amount INTEGER,
    value_after INTEGER NOT NULL,
    at INTEGER NOT NULL,
    request_id TEXT
);

-- Idempotency keys live in the counter's own file, stored in the same transaction as the change,
-- so a retried request can never double-count.
CREATE TABLE idempotency_keys (
    key TEXT PRIMARY KEY NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
