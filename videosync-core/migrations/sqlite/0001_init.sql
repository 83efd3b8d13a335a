-- Jobs of every queue. `state` is ready, running or dead; a ready job whose
-- run_at is in the future is reported as scheduled.
CREATE TABLE vs_jobs (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    queue        TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    priority     INTEGER NOT NULL,
    dedupe_key   TEXT,
    state        TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at       INTEGER NOT NULL,
    lease_token  TEXT,
    lease_until  INTEGER,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE INDEX vs_jobs_due ON vs_jobs (queue, state, priority DESC, run_at, seq);

-- Dedupe: one live (not dead) job per key and queue.
CREATE UNIQUE INDEX vs_jobs_dedupe ON vs_jobs (queue, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state <> 'dead';

CREATE TABLE vs_videos (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT    NOT NULL UNIQUE,
    owner          TEXT,
    title          TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    failure_reason TEXT,
    source_key     TEXT,
    source_meta    TEXT,
    renditions     TEXT    NOT NULL DEFAULT '[]',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE INDEX vs_videos_owner ON vs_videos (owner, seq);
CREATE INDEX vs_videos_status ON vs_videos (status, seq);
