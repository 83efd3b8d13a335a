-- The platform's entities: accounts, channels with roles, invites, bans,
-- chat, and what videos need beyond the transcode record (channel, metadata,
-- a version for compare-and-set, the fence of the work that owns it).

CREATE TABLE vs_users (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    username      TEXT    NOT NULL,
    username_key  TEXT    NOT NULL UNIQUE,
    email         TEXT,
    email_key     TEXT    UNIQUE,
    display_name  TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    version       INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- Refresh tokens, stored by hash. A family is one login; reuse of a used
-- token revokes the whole family.
CREATE TABLE vs_sessions (
    id          TEXT    PRIMARY KEY,
    user_id     TEXT    NOT NULL REFERENCES vs_users (id) ON DELETE CASCADE,
    family      TEXT    NOT NULL,
    token_hash  TEXT    NOT NULL UNIQUE,
    user_agent  TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX vs_sessions_family ON vs_sessions (family);
CREATE INDEX vs_sessions_user ON vs_sessions (user_id);

CREATE TABLE vs_channels (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    name         TEXT    NOT NULL,
    description  TEXT    NOT NULL DEFAULT '',
    owner_id     TEXT    NOT NULL REFERENCES vs_users (id) ON DELETE CASCADE,
    visibility   TEXT    NOT NULL,
    allow_guests INTEGER NOT NULL DEFAULT 0,
    settings     TEXT    NOT NULL DEFAULT '{}',
    message_seq  INTEGER NOT NULL DEFAULT 0,
    version      INTEGER NOT NULL DEFAULT 1,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX vs_channels_visibility ON vs_channels (visibility, seq);
CREATE INDEX vs_channels_owner ON vs_channels (owner_id);

CREATE TABLE vs_members (
    channel_id TEXT    NOT NULL REFERENCES vs_channels (id) ON DELETE CASCADE,
    user_id    TEXT    NOT NULL REFERENCES vs_users (id) ON DELETE CASCADE,
    role       TEXT    NOT NULL,
    joined_at  INTEGER NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX vs_members_user ON vs_members (user_id, joined_at);
CREATE INDEX vs_members_order ON vs_members (channel_id, joined_at, user_id);

-- Per-channel changes to the default permission matrix.
CREATE TABLE vs_channel_permissions (
    channel_id TEXT    NOT NULL REFERENCES vs_channels (id) ON DELETE CASCADE,
    role       TEXT    NOT NULL,
    permission TEXT    NOT NULL,
    allowed    INTEGER NOT NULL,
    PRIMARY KEY (channel_id, role, permission)
);

CREATE TABLE vs_invites (
    code       TEXT    PRIMARY KEY,
    channel_id TEXT    NOT NULL REFERENCES vs_channels (id) ON DELETE CASCADE,
    created_by TEXT    REFERENCES vs_users (id) ON DELETE SET NULL,
    role       TEXT    NOT NULL,
    max_uses   INTEGER,
    uses       INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER,
    revoked    INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX vs_invites_channel ON vs_invites (channel_id, created_at);

CREATE TABLE vs_bans (
    channel_id TEXT    NOT NULL REFERENCES vs_channels (id) ON DELETE CASCADE,
    user_id    TEXT    NOT NULL REFERENCES vs_users (id) ON DELETE CASCADE,
    banned_by  TEXT    REFERENCES vs_users (id) ON DELETE SET NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (channel_id, user_id)
);

-- Chat, ordered per channel by seq (taken from vs_channels.message_seq in the
-- same transaction).
CREATE TABLE vs_messages (
    channel_id  TEXT    NOT NULL REFERENCES vs_channels (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    author_id   TEXT    REFERENCES vs_users (id) ON DELETE SET NULL,
    author_name TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    edited_at   INTEGER,
    deleted_at  INTEGER,
    PRIMARY KEY (channel_id, seq)
);

CREATE TABLE vs_reactions (
    channel_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    user_id    TEXT    NOT NULL REFERENCES vs_users (id) ON DELETE CASCADE,
    emoji      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (channel_id, seq, user_id, emoji),
    FOREIGN KEY (channel_id, seq) REFERENCES vs_messages (channel_id, seq) ON DELETE CASCADE
);

ALTER TABLE vs_videos ADD COLUMN channel_id TEXT;
ALTER TABLE vs_videos ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE vs_videos ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE vs_videos ADD COLUMN visibility TEXT;
ALTER TABLE vs_videos ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE vs_videos ADD COLUMN fence TEXT;
ALTER TABLE vs_videos ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE vs_videos ADD COLUMN output_prefix TEXT;
CREATE INDEX vs_videos_channel ON vs_videos (channel_id, seq);

-- Full-text search over title, tags and description, kept in step by triggers.
CREATE VIRTUAL TABLE vs_videos_fts USING fts5 (
    title, tags, description,
    content = 'vs_videos', content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO vs_videos_fts (rowid, title, tags, description)
    SELECT seq, title, tags, description FROM vs_videos;
CREATE TRIGGER vs_videos_fts_insert AFTER INSERT ON vs_videos BEGIN
    INSERT INTO vs_videos_fts (rowid, title, tags, description)
        VALUES (new.seq, new.title, new.tags, new.description);
END;
CREATE TRIGGER vs_videos_fts_delete AFTER DELETE ON vs_videos BEGIN
    INSERT INTO vs_videos_fts (vs_videos_fts, rowid, title, tags, description)
        VALUES ('delete', old.seq, old.title, old.tags, old.description);
END;
CREATE TRIGGER vs_videos_fts_update AFTER UPDATE OF title, tags, description ON vs_videos BEGIN
    INSERT INTO vs_videos_fts (vs_videos_fts, rowid, title, tags, description)
        VALUES ('delete', old.seq, old.title, old.tags, old.description);
    INSERT INTO vs_videos_fts (rowid, title, tags, description)
        VALUES (new.seq, new.title, new.tags, new.description);
END;
