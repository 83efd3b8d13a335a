-- The key-value store (videosync_core::kv::sql::SqlKv).
--
-- A key's version grows by one per write. So that a key deleted (or expired
-- and swept) and created again never reuses an old version, every deleted
-- row raises `vs_kv_floor` to its version (the trigger below, in the same
-- statement as the delete), and a new row starts above the floor. Times are
-- milliseconds on the store's clock; a row whose expires_at is not after now
-- is expired (invisible) until a sweep deletes it.
CREATE TABLE vs_kv_floor (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    floor INTEGER NOT NULL
);

INSERT INTO vs_kv_floor (id, floor) VALUES (1, 0);

-- A value (`value` set) or a counter (`counter` set).
CREATE TABLE vs_kv (
    key        TEXT    PRIMARY KEY,
    value      BLOB,
    counter    INTEGER,
    version    INTEGER NOT NULL,
    expires_at INTEGER
);

CREATE INDEX vs_kv_expiry ON vs_kv (expires_at) WHERE expires_at IS NOT NULL;

CREATE TRIGGER vs_kv_deleted AFTER DELETE ON vs_kv
BEGIN
    UPDATE vs_kv_floor SET floor = max(floor, OLD.version) WHERE id = 1;
END;

-- Set members; `prev_expires_at` is the expiry a re-add replaced, which the
-- add reads back to tell a new member from a refreshed one.
CREATE TABLE vs_kv_members (
    key             TEXT    NOT NULL,
    member          TEXT    NOT NULL,
    expires_at      INTEGER NOT NULL,
    prev_expires_at INTEGER,
    PRIMARY KEY (key, member)
);

CREATE INDEX vs_kv_members_expiry ON vs_kv_members (expires_at);
