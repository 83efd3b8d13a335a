-- Queue: acked ('done') and cancelled jobs are kept for a retention window
-- and then vacuumed; `finished_at` says when a job became done, cancelled or
-- dead (dead letters are listed in that order).
ALTER TABLE vs_jobs ADD COLUMN finished_at INTEGER;
UPDATE vs_jobs SET finished_at = updated_at WHERE state = 'dead';

-- Dedupe: a done job keeps holding its key for the retention window; dead
-- and cancelled jobs release it.
DROP INDEX vs_jobs_dedupe;
CREATE UNIQUE INDEX vs_jobs_dedupe ON vs_jobs (queue, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state NOT IN ('dead', 'cancelled');

-- Vacuum and the dead-letter listing.
CREATE INDEX vs_jobs_finished ON vs_jobs (queue, state, finished_at, seq);
