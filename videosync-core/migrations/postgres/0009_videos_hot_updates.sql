-- A video changes status a few times early in its life (pending, processing,
-- ready). With `status` in an index none of those updates could be HOT: each
-- wrote a new entry into every index of the table, the three GIN indexes of
-- search included, and left a dead row version that searches step over (in
-- the primary key, in GIN posting lists, on heap pages) until a vacuum. Over
-- the server benchmark's 100 000 videos, seeded without a vacuum, the primary
-- key and the GIN indexes held three entries per video, and a walk of the
-- newest videos fetched 2.7 row versions for each.
--
-- Nothing in the server lists videos by status (the catalog's listing can
-- filter by it, and then walks the primary key), and search tests status only
-- on rows it has already found, so the index goes. Pages keep a fifth of their
-- space free, so that a status change usually fits beside the old version on
-- the same page: a HOT update, which adds no index entry and whose dead
-- version a later read of the page may prune.
DROP INDEX vs_videos_status;
ALTER TABLE vs_videos SET (fillfactor = 80);
