//! Upload sessions: resumable uploads of any chunk size, continued on any
//! instance after a restart. What a tus 1.0 server stands on.
//!
//! | implementation | state | bytes | feature |
//! |---|---|---|---|
//! | [`StoreUploads`] | SQL ([`crate::sql::Database`], SQLite or Postgres) | any [`crate::ObjectStore`] (multipart + a durable tail) | `sqlite` or `postgres` |
//!
//! An upload is created for a final object key, with an optional total
//! length (or one declared later, tus' `creation-defer-length`). Clients
//! append bytes at the current offset, in chunks of any size; the upload
//! keeps only what is durably stored, so after a crash [`UploadSessions::get`]
//! tells the client where to resume. [`UploadSessions::finish`] turns the
//! bytes into the object in one atomic step.
//!
//! # Examples
//! ```no_run
//! # async fn demo(uploads: std::sync::Arc<dyn videosync_core::uploads::UploadSessions>) -> videosync_core::Result<()> {
//! use videosync_core::uploads::NewUpload;
//! use videosync_core::ObjectKey;
//!
//! let key = ObjectKey::parse("uploads/intro.mp4")?;
//! let info = uploads.create(NewUpload::new(key).total(11)).await?;
//! let body = Box::pin(futures::stream::iter([Ok(bytes::Bytes::from_static(b"hello world"))]));
//! let offset = uploads.append(&info.id, 0, body).await?;
//! assert_eq!(offset, 11);
//! let meta = uploads.finish(&info.id).await?;
//! assert_eq!(meta.size, 11);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::store::{ByteStream, ObjectMeta};
use crate::{Error, ObjectKey, Result, Timestamp};

#[cfg(feature = "sql")]
mod session;
#[cfg(feature = "sql")]
pub use session::{StoreUploads, UploadOptions, MAX_TAIL_SEGMENTS};

/// Most metadata entries an upload carries.
pub const MAX_METADATA_ENTRIES: usize = 32;

/// Longest metadata key, in bytes.
pub const MAX_METADATA_KEY_LEN: usize = 64;

/// Largest metadata, all keys and values together, in bytes.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;

/// Identifies an upload session: 32 lowercase hexadecimal digits, safe in a
/// URL path and an object key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UploadId(String);

impl UploadId {
    /// A fresh random identifier.
    pub fn new() -> Self {
        UploadId(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Checks `s` and makes it an identifier.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] unless `s` is 32 lowercase hexadecimal digits.
    pub fn parse(s: &str) -> Result<Self> {
        let valid = s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if valid {
            Ok(UploadId(s.to_owned()))
        } else {
            Err(Error::invalid_input(format!(
                "`{}` is not a valid upload id: expected 32 lowercase hexadecimal digits",
                s.chars().take(64).collect::<String>().escape_debug()
            )))
        }
    }

    /// The identifier as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for UploadId {
    fn default() -> Self {
        UploadId::new()
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for UploadId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        UploadId::parse(s)
    }
}

impl TryFrom<String> for UploadId {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        UploadId::parse(&s)
    }
}

impl From<UploadId> for String {
    fn from(id: UploadId) -> Self {
        id.0
    }
}

/// An upload to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUpload {
    /// The object the bytes become when the upload finishes.
    pub key: ObjectKey,
    /// The total length in bytes, when known; otherwise declare it later with
    /// [`UploadSessions::declare_length`].
    pub total: Option<u64>,
    /// Free-form metadata (tus' `Upload-Metadata`), bounded by
    /// [`MAX_METADATA_ENTRIES`], [`MAX_METADATA_KEY_LEN`] and
    /// [`MAX_METADATA_BYTES`].
    pub metadata: BTreeMap<String, String>,
    /// How long the upload may sit idle before [`UploadSessions::expire`]
    /// removes it; every append that stores bytes starts the period again.
    /// The implementation's default when `None`.
    pub ttl: Option<Duration>,
}

impl NewUpload {
    /// An upload to `key` of unknown length, no metadata, the default expiry.
    pub fn new(key: ObjectKey) -> Self {
        NewUpload {
            key,
            total: None,
            metadata: BTreeMap::new(),
            ttl: None,
        }
    }

    /// This upload with a known total length.
    pub fn total(mut self, total: u64) -> Self {
        self.total = Some(total);
        self
    }

    /// This upload with one more metadata entry.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// This upload with its own idle expiry.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Checks the metadata bounds and the expiry.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the rule broken.
    pub fn validate(&self) -> Result<()> {
        let what = format!("upload to {}", self.key);
        if self.metadata.len() > MAX_METADATA_ENTRIES {
            return Err(Error::invalid_input(format!(
                "{what} has {} metadata entries; the limit is {MAX_METADATA_ENTRIES}",
                self.metadata.len()
            )));
        }
        let mut bytes = 0;
        for (k, v) in &self.metadata {
            // tus forbids spaces and commas in keys (they separate entries on
            // the wire); control characters have no business in either.
            let key_ok = !k.is_empty()
                && k.len() <= MAX_METADATA_KEY_LEN
                && k.bytes().all(|b| b.is_ascii_graphic() && b != b',');
            if !key_ok {
                return Err(Error::invalid_input(format!(
                    "{what}: metadata key `{}` must be 1 to {MAX_METADATA_KEY_LEN} printable ASCII characters without spaces or commas",
                    k.chars().take(80).collect::<String>().escape_debug()
                )));
            }
            if v.chars().any(char::is_control) {
                return Err(Error::invalid_input(format!(
                    "{what}: the value of metadata key `{k}` has a control character"
                )));
            }
            bytes += k.len() + v.len();
        }
        if bytes > MAX_METADATA_BYTES {
            return Err(Error::invalid_input(format!(
                "{what} has {bytes} bytes of metadata; the limit is {MAX_METADATA_BYTES}"
            )));
        }
        if self.ttl.is_some_and(|t| t.is_zero()) {
            return Err(Error::invalid_input(format!("{what}: the expiry is zero")));
        }
        Ok(())
    }
}

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadState {
    /// Taking bytes.
    Open,
    /// Its object is complete; [`UploadSessions::finish`] answers its
    /// metadata again.
    Finished,
    /// Given up: its bytes are removed; appends and finish answer
    /// [`Error::NotFound`].
    Aborted,
}

impl UploadState {
    /// The state's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Open => "open",
            UploadState::Finished => "finished",
            UploadState::Aborted => "aborted",
        }
    }

    /// The state named `s`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unknown name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "open" => Ok(UploadState::Open),
            "finished" => Ok(UploadState::Finished),
            "aborted" => Ok(UploadState::Aborted),
            other => Err(Error::invalid_input(format!(
                "`{}` is not an upload state",
                other.escape_debug()
            ))),
        }
    }
}

impl fmt::Display for UploadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known about an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    /// Its identifier.
    pub id: UploadId,
    /// The object it becomes.
    pub key: ObjectKey,
    /// How many bytes are durably stored: where the next append starts.
    pub offset: u64,
    /// The total length, when known.
    pub total: Option<u64>,
    /// Its metadata, as given at creation.
    pub metadata: BTreeMap<String, String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it expires unless bytes arrive before.
    pub expires_at: Timestamp,
    /// Where it stands.
    pub state: UploadState,
}

/// Resumable upload sessions.
///
/// # Contract
/// - [`UploadSessions::append`] at an offset other than the current one is
///   [`Error::Conflict`] naming both offsets, and stores nothing. Bytes past
///   the total length are [`Error::InvalidInput`]; nothing of that append
///   past its last stored part is kept (see the implementation for what a
///   long append keeps).
/// - The offset only ever counts durably stored bytes: after a crash at any
///   point, [`UploadSessions::get`] reports an offset whose bytes are all
///   stored, and appending from it and finishing produces exactly the bytes
///   sent.
/// - Two appends to one upload never interleave: while one runs, another is
///   refused with [`Error::Conflict`] (or, when it lost the upload midway, it
///   ends with [`Error::Precondition`] and its uncommitted bytes are dropped).
/// - Any instance sharing the state and the store continues any upload.
/// - [`UploadSessions::finish`] works only when the offset equals the total
///   ([`Error::Conflict`] otherwise) and makes the object appear atomically;
///   finishing a finished upload answers the same [`ObjectMeta`] again.
/// - An aborted upload's bytes are gone; appending to it or finishing it is
///   [`Error::NotFound`]. [`UploadSessions::expire`] aborts uploads idle past
///   their expiry and removes their state.
///
/// # Implementing
/// Write the bytes durably before the offset that counts them; fence
/// concurrent writers with a lock or a compare-and-set on the state. Convert
/// driver errors at the boundary, and implement `Display` naming the state
/// and byte backends. Run `videosync_core::conformance::uploads` against it.
#[async_trait]
pub trait UploadSessions: fmt::Display + fmt::Debug + Send + Sync + 'static {
    /// Starts an upload.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for metadata out of bounds, a zero expiry or a
    /// total over the implementation's limit; a backend error.
    async fn create(&self, new: NewUpload) -> Result<UploadInfo>;

    /// Appends `body` at offset `at`, which must be the current offset;
    /// returns the new offset. The body is consumed as it arrives; memory
    /// stays bounded whatever its length or chunk sizes.
    ///
    /// When `body` fails midway, what it delivered before the failure is
    /// kept (as tus servers do; a client re-reads the offset), and the
    /// body's error is returned.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown, aborted or expired upload;
    /// [`Error::Conflict`] for a wrong offset, a finished upload or an append
    /// running elsewhere; [`Error::InvalidInput`] for bytes past the total;
    /// [`Error::Precondition`] when another writer took the upload over
    /// midway; the body's own error; a backend error.
    ///
    /// # Cancel safety
    /// Dropping the future keeps the upload at its last stored offset; bytes
    /// received since are lost, and the client resumes from
    /// [`UploadSessions::get`].
    async fn append(&self, id: &UploadId, at: u64, body: ByteStream) -> Result<u64>;

    /// Sets the total length of an upload created without one. Declaring the
    /// same length again succeeds.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] when another length is set,
    /// the upload is finished or an append runs; [`Error::InvalidInput`]
    /// when `total` is below the offset or over the limit.
    async fn declare_length(&self, id: &UploadId, total: u64) -> Result<UploadInfo>;

    /// The upload's state and offset.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown (or expired and removed) upload.
    async fn get(&self, id: &UploadId) -> Result<UploadInfo>;

    /// Turns the upload's bytes into its object; idempotent.
    ///
    /// # Errors
    /// [`Error::Conflict`] while bytes are missing, the length is unknown or
    /// an append runs; [`Error::NotFound`] for an unknown or aborted upload;
    /// a backend error.
    ///
    /// # Cancel safety
    /// Dropping the future leaves the upload open or finished, never
    /// half-assembled; finishing again completes it.
    async fn finish(&self, id: &UploadId) -> Result<ObjectMeta>;

    /// Gives up an upload and removes its bytes; aborting an aborted upload
    /// succeeds.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown upload, [`Error::Conflict`] for a
    /// finished one, a backend error.
    async fn abort(&self, id: &UploadId) -> Result<()>;

    /// Aborts every open upload whose expiry is at or before `now` and
    /// removes its state and bytes; forgets finished and aborted uploads
    /// past their expiry (a finished upload's object stays). Returns how
    /// many open uploads were aborted.
    ///
    /// # Errors
    /// A backend error (what was removed before it stays removed).
    async fn expire(&self, now: Timestamp) -> Result<u64>;
}

/// Upload sessions shared between tasks.
pub type DynUploadSessions = Arc<dyn UploadSessions>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn ids_are_checked() {
        let id = UploadId::new();
        assert_eq!(UploadId::parse(id.as_str()).ok(), Some(id));
        for bad in ["", "../x", "ABCDEF0123456789ABCDEF0123456789", "0123"] {
            assert_eq!(
                UploadId::parse(bad).err().map(|e| e.kind()),
                Some(ErrorKind::InvalidInput),
                "{bad}"
            );
        }
    }

    #[test]
    fn metadata_is_bounded() {
        let key = ObjectKey::parse("a/b").unwrap_or_else(|e| panic!("{e}"));
        assert!(NewUpload::new(key.clone())
            .meta("filename", "clip.mp4")
            .validate()
            .is_ok());
        let bad_key = NewUpload::new(key.clone()).meta("file name", "x");
        assert!(bad_key.validate().is_err());
        let huge = NewUpload::new(key.clone()).meta("k", "v".repeat(MAX_METADATA_BYTES));
        assert!(huge.validate().is_err());
        let mut many = NewUpload::new(key.clone());
        for i in 0..=MAX_METADATA_ENTRIES {
            many = many.meta(format!("k{i}"), "v");
        }
        assert!(many.validate().is_err());
        assert!(NewUpload::new(key).ttl(Duration::ZERO).validate().is_err());
    }
}
