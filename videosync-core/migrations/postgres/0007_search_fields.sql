-- Search answers in tiers (every word in the title, else every word in the
-- tags, else anywhere), newest first, each tier an index walk that stops at
-- the page. A tsvector per field, each behind its own GIN index, gives the
-- planner true statistics per field: weight-restricted matches on the
-- combined vector cannot be estimated, and a wrong estimate turns a
-- stop-early walk into a scan of the whole table.
ALTER TABLE vs_videos ADD COLUMN search_title tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', title)) STORED;
ALTER TABLE vs_videos ADD COLUMN search_tags tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', tags)) STORED;
CREATE INDEX vs_videos_search_title ON vs_videos USING GIN (search_title);
CREATE INDEX vs_videos_search_tags ON vs_videos USING GIN (search_tags);
