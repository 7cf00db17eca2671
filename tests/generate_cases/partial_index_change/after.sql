CREATE TABLE jobs (
    id INTEGER PRIMARY KEY NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX jobs_open ON jobs (state) WHERE state IN ('open', 'retry');