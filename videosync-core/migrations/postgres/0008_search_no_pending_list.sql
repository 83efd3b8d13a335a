-- A GIN index with `fastupdate` (the default) parks new entries in a pending
-- list that every search scans in full until a vacuum or the list's size
-- limit merges it into the index. After a bulk load that made searches over
-- 100 000 videos take up to 150 ms instead of 1-3 ms. Videos are written
-- rarely and searched often, so each insert pays for its index entries now.
ALTER INDEX vs_videos_search SET (fastupdate = off);
ALTER INDEX vs_videos_search_title SET (fastupdate = off);
ALTER INDEX vs_videos_search_tags SET (fastupdate = off);
SELECT gin_clean_pending_list('vs_videos_search'::regclass);
SELECT gin_clean_pending_list('vs_videos_search_title'::regclass);
SELECT gin_clean_pending_list('vs_videos_search_tags'::regclass);
