-- The key-value store (videosync_core::kv::sql::SqlKv).
--
-- Versions come from one sequence, so they only ever grow, whatever is
-- deleted or swept. Times are milliseconds on the store's clock; a row whose
-- expires_at is not after now is expired (invisible) until a sweep deletes it.
CREATE SEQUENCE vs_kv_version;

-- A value (`value` set) or a counter (`counter` set).
CREATE TABLE vs_kv (
    key        TEXT   PRIMARY KEY,
    value      BYTEA,
    counter    BIGINT,
    version    BIGINT NOT NULL,
    expires_at BIGINT
);

CREATE INDEX vs_kv_expiry ON vs_kv (expires_at) WHERE expires_at IS NOT NULL;

-- Set members; `prev_expires_at` is the expiry a re-add replaced, which the
-- add reads back to tell a new member from a refreshed one.
CREATE TABLE vs_kv_members (
    key             TEXT   NOT NULL,
    member          TEXT   NOT NULL,
    expires_at      BIGINT NOT NULL,
    prev_expires_at BIGINT,
    PRIMARY KEY (key, member)
);

CREATE INDEX vs_kv_members_expiry ON vs_kv_members (expires_at);
