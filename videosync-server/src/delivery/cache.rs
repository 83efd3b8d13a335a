//! What media delivery keeps in memory: which videos are ready and open
//! (for a second), and the bytes of small ladder files.
//!
//! Every file of a ladder is immutable: a transcode writes a new attempt
//! folder, and a file is only served once its video is ready with that
//! folder as its output. So a file's bytes, once read, stay right for as
//! long as its video is served; the video lookup decides that, and it is
//! kept for [`LOOKUP_TTL_MS`] only (a video deleted or made private stops
//! being served within that time on every instance).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use videosync_core::store::ObjectMeta;
use videosync_core::{Timestamp, Video};

/// How long a video lookup is reused, in milliseconds.
pub const LOOKUP_TTL_MS: i64 = 1000;

/// Files up to this size are kept (playlists, init segments, segments of
/// the lower rungs, images).
pub const MAX_FILE_BYTES: u64 = 2 * 1024 * 1024;

/// Lookups kept at most; past it the oldest half is dropped.
const MAX_LOOKUPS: usize = 10_000;

/// A ready video and whether its media is open to anyone.
pub type Lookup = Arc<(Video, bool)>;

/// The memory of media delivery; cheap to share.
#[derive(Debug, Default)]
pub struct MediaCache {
    budget: u64,
    lookups: Mutex<HashMap<String, (Timestamp, Lookup)>>,
    files: Mutex<Files>,
}

#[derive(Debug, Default)]
struct Files {
    by_key: HashMap<String, (ObjectMeta, Bytes)>,
    /// Insertion order, for eviction (first in, first out).
    order: VecDeque<String>,
    bytes: u64,
}

impl MediaCache {
    /// A cache holding at most `budget` bytes of files (0: none; lookups
    /// are kept either way).
    pub fn new(budget: u64) -> Self {
        MediaCache {
            budget,
            ..MediaCache::default()
        }
    }

    /// The lookup of video `id` made less than [`LOOKUP_TTL_MS`] before `now`.
    pub fn lookup(&self, id: &str, now: Timestamp) -> Option<Lookup> {
        let map = self.lookups.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(id)
            .filter(|(at, _)| (now.as_millis() - at.as_millis()) < LOOKUP_TTL_MS)
            .map(|(_, l)| l.clone())
    }

    /// Keeps the lookup of video `id`, made at `now`.
    pub fn keep_lookup(&self, id: &str, now: Timestamp, lookup: Lookup) {
        let mut map = self.lookups.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_LOOKUPS {
            let cutoff = now.as_millis() - LOOKUP_TTL_MS;
            map.retain(|_, (at, _)| at.as_millis() >= cutoff);
            if map.len() >= MAX_LOOKUPS {
                map.clear();
            }
        }
        map.insert(id.to_owned(), (now, lookup));
    }

    /// Whether a file of `size` bytes would be kept.
    pub fn keeps(&self, size: u64) -> bool {
        size <= MAX_FILE_BYTES && size <= self.budget
    }

    /// The file at `key`, when it was kept.
    pub fn file(&self, key: &str) -> Option<(ObjectMeta, Bytes)> {
        let files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        files.by_key.get(key).cloned()
    }

    /// Keeps the file at `key`, evicting the oldest past the budget.
    pub fn keep_file(&self, key: &str, meta: ObjectMeta, bytes: Bytes) {
        let size = bytes.len() as u64;
        if !self.keeps(size) {
            return;
        }
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        if files.by_key.contains_key(key) {
            return;
        }
        while files.bytes + size > self.budget {
            let Some(old) = files.order.pop_front() else {
                break;
            };
            if let Some((_, b)) = files.by_key.remove(&old) {
                files.bytes -= b.len() as u64;
            }
        }
        files.bytes += size;
        files.order.push_back(key.to_owned());
        files.by_key.insert(key.to_owned(), (meta, bytes));
    }

    /// Bytes of files kept.
    pub fn file_bytes(&self) -> u64 {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use videosync_core::ObjectKey;

    fn meta(key: &str, size: u64) -> ObjectMeta {
        ObjectMeta::new(
            ObjectKey::parse(key).unwrap(),
            size,
            Timestamp::from_millis(0),
            Some("e".to_owned()),
        )
    }

    #[test]
    fn files_stay_within_the_budget_oldest_out_first() {
        let c = MediaCache::new(10);
        c.keep_file("a", meta("a", 4), Bytes::from_static(b"aaaa"));
        c.keep_file("b", meta("b", 4), Bytes::from_static(b"bbbb"));
        c.keep_file("c", meta("c", 4), Bytes::from_static(b"cccc"));
        assert!(c.file("a").is_none());
        assert_eq!(c.file("c").unwrap().1, Bytes::from_static(b"cccc"));
        assert_eq!(c.file_bytes(), 8);
        // Larger than the whole budget: not kept, nothing evicted.
        c.keep_file("d", meta("d", 11), Bytes::from(vec![0; 11]));
        assert!(c.file("d").is_none());
        assert_eq!(c.file_bytes(), 8);
        // No budget, no files.
        let none = MediaCache::new(0);
        none.keep_file("a", meta("a", 1), Bytes::from_static(b"a"));
        assert!(none.file("a").is_none());
    }
}
