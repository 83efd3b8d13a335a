-- The platform's entities: accounts, channels with roles, invites, bans,
-- chat, and what videos need beyond the transcode record (channel, metadata,
-- a version for compare-and-set, the fence of the work that owns it).

CREATE TABLE vs_users (
    seq           BIGSERIAL PRIMARY KEY,
    id            TEXT    NOT NULL UNIQUE,
    username      TEXT    NOT NULL,
    username_key  TEXT    NOT NULL UNIQUE,
    email         TEXT,
    email_key     TEXT    UNIQUE,
    display_name  TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    is_admin      BIGINT NOT NULL DEFAULT 0,
    version       BIGINT NOT NULL DEFAULT 1,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- Refresh tokens, stored by hash. A family is one login; reuse of a used
-- token revokes the whole family.
CREATE TABLE vs_sessions (
    id          TEXT    PRIMARY KEY,
    user_id     TEXT    NOT NULL REFERENCES vs_users (id) ON DELETE CASCADE,
    family      TEXT    NOT NULL,
    token_hash  TEXT    NOT NULL UNIQUE,
    user_agent  TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX vs_sessions_family ON vs_sessions (family);
CREATE INDEX vs_sessions_user ON vs_sessions (user_id);

CREATE TABLE vs_channels (
    seq          BIGSERIAL PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    name         TEXT    NOT NULL,
    description  TEXT    NOT NULL DEFAULT '',
    owner_id     TEXT    NOT NULL REFERENCES vs_users (id) ON DELETE CASCADE,
    visibility   TEXT    NOT NULL,
    allow_guests BIGINT NOT NULL DEFAULT 0,
    settings     TEXT    NOT NULL DEFAULT '{}',
    message_seq  BIGINT NOT NULL DEFAULT 0,
    version      BIGINT NOT NULL DEFAULT 1,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX vs_channels_visibility ON vs_channels (visibility, seq);
CREATE INDEX vs_channels_owner ON vs_channels (owner_id);

CREATE TABLE vs_members (
    channel_id TEXT    NOT NULL REFERENCES vs_channels (id) ON DELETE CASCADE,
    user_id    TEXT    NOT NULL REFERENCES vs_users (id) ON DELETE CASCADE,
    role       TEXT    NOT NULL,
    joined_at  BIGINT NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX vs_members_user ON vs_members (user_id, joined_at);
CREATE INDEX vs_members_order ON vs_members (channel_id, joined_at, user_id);

-- Per-channel changes to the default permission matrix.
CREATE TABLE vs_channel_permissions (
    channel_id TEXT    NOT NULL REFERENCES vs_channels (id) ON DELETE CASCADE,
    role       TEXT    NOT NULL,
    permission TEXT    NOT NULL,
    allowed    BIGINT NOT NULL,
    PRIMARY KEY (channel_id, role, permission)
);

CREATE TABLE vs_invites (
    code       TEXT    PRIMARY KEY,
    channel_id TEXT    NOT NULL REFERENCES vs_channels (id) ON DELETE CASCADE,
    created_by TEXT    REFERENCES vs_users (id) ON DELETE SET NULL,
    role       TEXT    NOT NULL,
    max_uses   BIGINT,
    uses       BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT,
    revoked    BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX vs_invites_channel ON vs_invites (channel_id, created_at);

CREATE TABLE vs_bans (
    channel_id TEXT    NOT NULL REFERENCES vs_channels (id) ON DELETE CASCADE,
    user_id    TEXT    NOT NULL REFERENCES vs_users (id) ON DELETE CASCADE,
    banned_by  TEXT    REFERENCES vs_users (id) ON DELETE SET NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    PRIMARY KEY (channel_id, user_id)
);

-- Chat, ordered per channel by seq (taken from vs_channels.message_seq in the
-- same transaction).
CREATE TABLE vs_messages (
    channel_id  TEXT    NOT NULL REFERENCES vs_channels (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    author_id   TEXT    REFERENCES vs_users (id) ON DELETE SET NULL,
    author_name TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    edited_at   BIGINT,
    deleted_at  BIGINT,
    PRIMARY KEY (channel_id, seq)
);

CREATE TABLE vs_reactions (
    channel_id TEXT    NOT NULL,
    seq        BIGINT NOT NULL,
    user_id    TEXT    NOT NULL REFERENCES vs_users (id) ON DELETE CASCADE,
    emoji      TEXT    NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (channel_id, seq, user_id, emoji),
    FOREIGN KEY (channel_id, seq) REFERENCES vs_messages (channel_id, seq) ON DELETE CASCADE
);

ALTER TABLE vs_videos ADD COLUMN channel_id TEXT;
ALTER TABLE vs_videos ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE vs_videos ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE vs_videos ADD COLUMN visibility TEXT;
ALTER TABLE vs_videos ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE vs_videos ADD COLUMN fence TEXT;
ALTER TABLE vs_videos ADD COLUMN attempt BIGINT NOT NULL DEFAULT 0;
ALTER TABLE vs_videos ADD COLUMN output_prefix TEXT;
CREATE INDEX vs_videos_channel ON vs_videos (channel_id, seq);

-- Full-text search over title, tags and description: a generated tsvector
-- (weights A, B, C) behind a GIN index. The `simple` configuration keeps
-- words as written (no stemming), the same as SQLite's unicode61 tokenizer.
ALTER TABLE vs_videos ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', title), 'A') ||
    setweight(to_tsvector('simple', tags), 'B') ||
    setweight(to_tsvector('simple', description), 'C')
) STORED;
CREATE INDEX vs_videos_search ON vs_videos USING GIN (search);
