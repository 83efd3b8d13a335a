//! The foundation of videosync: identifiers and domain types, one error type,
//! and the five contracts everything else stands on.
//!
//! | contract | what it is for | backends |
//! |---|---|---|
//! | [`ObjectStore`] | where bytes live | filesystem (default), memory, S3 (`s3`) |
//! | [`JobQueue`] | how work is handed out | SQLite (default), Postgres (`postgres`), Redis (`redis`) |
//! | [`EventBus`] | how events reach other processes | in-process (default), Redis (`redis`) |
//! | [`EventLog`] | ordered, replayable events per topic | in-process, SQLite (default), Postgres (`postgres`), Redis Streams (`redis`) |
//! | [`Clock`] | what time it is | [`SystemClock`], [`ManualClock`] |
//! | [`Catalog`] | what videos exist and their state | SQLite (default), Postgres (`postgres`) |
//! | [`UploadSessions`] | resumable uploads (tus) | state in SQL, bytes in any [`ObjectStore`] |
//! | [`KeyValue`] | shared state with versions and expiry: presence, rate limits, room state | in-process, SQLite, Postgres, Redis (`redis`) |
//!
//! Each contract is a small object-safe trait held as `Arc<dyn Trait>`;
//! conveniences live in an `...Ext` trait. Every backend passes the same
//! conformance suite ([`conformance`], feature `conformance`).
//!
//! # Features
//! - `sqlite` (default): the embedded queue and catalog.
//! - `postgres`: queue and catalog on PostgreSQL.
//! - `redis`: queue and event bus on Redis.
//! - `s3`: object storage on any S3-compatible server.
//! - `conformance`: the conformance suites, for backend authors.
//!
//! # Examples
//! ```
//! use std::sync::Arc;
//! use videosync_core::{store::memory::MemoryStore, ObjectKey, ObjectStore, ObjectStoreExt};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
//! let key = ObjectKey::parse("videos/intro/master.m3u8")?;
//! store.put(&key, "#EXTM3U\n".into()).await?;
//! assert_eq!(store.get_bytes(&key).await?, "#EXTM3U\n");
//! # Ok::<(), videosync_core::Error>(())
//! # }).unwrap();
//! ```

pub mod bus;
pub mod catalog;
pub mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod db;
mod error;
pub mod eventlog;
mod ids;
pub mod kv;
pub mod page;
pub mod queue;
#[cfg(feature = "sql")]
pub mod sql;
pub mod store;
pub mod uploads;

pub use bus::{EventBus, EventBusExt, Topic};
pub use catalog::{Catalog, NewVideo, Rendition, SourceMeta, Video, VideoStatus};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use eventlog::{EventLog, EventLogExt, LogOptions, Recovery, StreamPosition};
pub use ids::{ChannelId, JobId, SessionId, UserId, VideoId};
pub use kv::KeyValue;
pub use page::{Cursor, Page};
pub use queue::{JobQueue, JobQueueExt, NewJob, RetryPolicy};
pub use store::{KeyError, ObjectKey, ObjectStore, ObjectStoreExt};
pub use uploads::{NewUpload, UploadId, UploadInfo, UploadSessions, UploadState};

/// `url` with any password replaced by `***`, for error messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        // Unparsable: hide everything between the scheme and the last `@`,
        // where a password would be.
        Err(_) => match (url.split_once("://"), url.rfind('@')) {
            (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
            _ => url.to_owned(),
        },
    }
}

/// The URL schemes of the SQL backends compiled in plus `others`, for "unknown
/// scheme" messages.
pub(crate) fn sql_schemes_hint(others: &[&str]) -> String {
    let mut schemes: Vec<&str> = Vec::new();
    if cfg!(feature = "sqlite") {
        schemes.push("sqlite");
    }
    if cfg!(feature = "postgres") {
        schemes.push("postgres");
    }
    for other in others {
        let feature_on = *other != "redis" || cfg!(feature = "redis");
        if feature_on {
            schemes.push(other);
        }
    }
    match schemes.as_slice() {
        [] => "none: this build has no backend for it".to_owned(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(super::redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(
            super::redact_url("redis://u:pa:ss@[bad-host:1"),
            "redis://***@[bad-host:1"
        );
    }
}
