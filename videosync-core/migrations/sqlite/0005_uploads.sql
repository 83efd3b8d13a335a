-- Upload sessions (tus). The bytes live in the object store: full parts in a
-- multipart upload (`multipart_id`, `parts` as JSON [{number, etag, size}]),
-- the rest as tail segments under the staging prefix (`tail` as JSON
-- [{name, size}]). `upload_offset` is the sum of both and only ever counts
-- bytes already stored. A writer holds the row through `lease_token` until
-- `lease_until`; every change it makes is guarded by its token.
CREATE TABLE vs_uploads (
    id            TEXT    PRIMARY KEY,
    object_key    TEXT    NOT NULL,
    total         INTEGER,
    upload_offset INTEGER NOT NULL DEFAULT 0,
    metadata      TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    part_size     INTEGER NOT NULL,
    multipart_id  TEXT,
    parts         TEXT    NOT NULL DEFAULT '[]',
    next_part     INTEGER NOT NULL DEFAULT 1,
    tail          TEXT    NOT NULL DEFAULT '[]',
    lease_token   TEXT,
    lease_until   INTEGER,
    ttl_ms        INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    result        TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE INDEX vs_uploads_expiry ON vs_uploads (expires_at);
