-- Search answers in tiers (every word in the title, else every word in the
-- tags, else anywhere), newest first, each tier a walk in row order that
-- stops at the page. A full-text index per field makes the title and tags
-- tiers walk only their own matches: a column filter on the combined index
-- walks every document holding the words anywhere and drops most of them.
-- Prefix indexes (2 to 8 characters) let a prefix query stream its matches
-- instead of merging the posting lists of every word that starts with it.
DROP TRIGGER vs_videos_fts_insert;
DROP TRIGGER vs_videos_fts_delete;
DROP TRIGGER vs_videos_fts_update;
DROP TABLE vs_videos_fts;

CREATE VIRTUAL TABLE vs_videos_fts USING fts5 (
    title, tags, description,
    content = 'vs_videos', content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3 4 5 6 7 8'
);
CREATE VIRTUAL TABLE vs_videos_fts_title USING fts5 (
    title,
    content = 'vs_videos', content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3 4 5 6 7 8'
);
CREATE VIRTUAL TABLE vs_videos_fts_tags USING fts5 (
    tags,
    content = 'vs_videos', content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3 4 5 6 7 8'
);
INSERT INTO vs_videos_fts (vs_videos_fts) VALUES ('rebuild');
INSERT INTO vs_videos_fts_title (vs_videos_fts_title) VALUES ('rebuild');
INSERT INTO vs_videos_fts_tags (vs_videos_fts_tags) VALUES ('rebuild');

CREATE TRIGGER vs_videos_fts_insert AFTER INSERT ON vs_videos BEGIN
    INSERT INTO vs_videos_fts (rowid, title, tags, description)
        VALUES (new.seq, new.title, new.tags, new.description);
    INSERT INTO vs_videos_fts_title (rowid, title) VALUES (new.seq, new.title);
    INSERT INTO vs_videos_fts_tags (rowid, tags) VALUES (new.seq, new.tags);
END;
CREATE TRIGGER vs_videos_fts_delete AFTER DELETE ON vs_videos BEGIN
    INSERT INTO vs_videos_fts (vs_videos_fts, rowid, title, tags, description)
        VALUES ('delete', old.seq, old.title, old.tags, old.description);
    INSERT INTO vs_videos_fts_title (vs_videos_fts_title, rowid, title)
        VALUES ('delete', old.seq, old.title);
    INSERT INTO vs_videos_fts_tags (vs_videos_fts_tags, rowid, tags)
        VALUES ('delete', old.seq, old.tags);
END;
CREATE TRIGGER vs_videos_fts_update AFTER UPDATE OF title, tags, description ON vs_videos BEGIN
    INSERT INTO vs_videos_fts (vs_videos_fts, rowid, title, tags, description)
        VALUES ('delete', old.seq, old.title, old.tags, old.description);
    INSERT INTO vs_videos_fts (rowid, title, tags, description)
        VALUES (new.seq, new.title, new.tags, new.description);
    INSERT INTO vs_videos_fts_title (vs_videos_fts_title, rowid, title)
        VALUES ('delete', old.seq, old.title);
    INSERT INTO vs_videos_fts_title (rowid, title) VALUES (new.seq, new.title);
    INSERT INTO vs_videos_fts_tags (vs_videos_fts_tags, rowid, tags)
        VALUES ('delete', old.seq, old.tags);
    INSERT INTO vs_videos_fts_tags (rowid, tags) VALUES (new.seq, new.tags);
END;
