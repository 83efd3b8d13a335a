//! Object storage: the [`ObjectStore`] contract and its backends.
//!
//! | backend | module | feature | [`Signer`](sign::Signer) |
//! |---|---|---|---|
//! | local filesystem (default) | [`fs`] | always | no |
//! | in-memory | [`memory`] | always | no |
//! | S3-compatible (aws-sdk-s3) | `s3` | `s3` | yes |
//!
//! Writes take [`PutOptions`] (a [`PutMode`] for create-only and
//! compare-and-swap writes, a content type and a cache policy that reads
//! return); reads take [`GetOptions`] (a byte range, `If-None-Match`);
//! listings are streams in key order that can start after a cursor.
//! Presigned URLs come from a separate contract, [`sign::Signer`], which a
//! store that can sign hands out through [`ObjectStore::signer`].

use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};

use crate::{Error, Result, Timestamp};

pub mod fs;
mod key;
pub mod memory;
#[cfg(feature = "s3")]
pub mod s3;
pub mod sign;

pub use key::{KeyError, ObjectKey, MAX_KEY_LEN, MAX_SEGMENT_LEN};

/// A stream of bytes, as read from or written to a store.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + 'static>>;

/// Smallest size of every part of a multipart upload but the last (5 MiB).
///
/// This is S3's rule; every backend enforces it so that code tested on the
/// filesystem backend also works on S3.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// Highest part number of a multipart upload.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// Longest lifetime of a presigned URL (seven days, S3's limit).
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Most keys one [`ObjectStore::delete_many`] call hands a backend at once
/// (S3's `DeleteObjects` limit); [`ObjectStoreExt::delete_prefix`] batches
/// by it.
pub const DELETE_BATCH: usize = 1000;

/// What a store knows about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: ObjectKey,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written. From `head`, `get` and `list` this is the
    /// backend's own record; from `put` and `complete_multipart` it may be
    /// the writer's clock (S3 does not return it from a write), so compare
    /// it loosely.
    pub last_modified: Timestamp,
    /// An opaque version tag that changes when the content changes, where the
    /// backend has one. [`PutMode::IfMatch`] and
    /// [`GetOptions::if_none_match`] compare against it.
    pub etag: Option<String>,
    /// The `Content-Type` the object was written with
    /// ([`PutOptions::content_type`]); `None` when none was given, and in a
    /// [`ObjectStore::list_stream`] listing (S3 lists no headers).
    pub content_type: Option<String>,
    /// The `Cache-Control` the object was written with
    /// ([`PutOptions::cache_control`]); `None` as for `content_type`.
    pub cache_control: Option<String>,
}

impl ObjectMeta {
    /// Metadata with no content type and no cache policy.
    pub fn new(key: ObjectKey, size: u64, last_modified: Timestamp, etag: Option<String>) -> Self {
        ObjectMeta {
            key,
            size,
            last_modified,
            etag,
            content_type: None,
            cache_control: None,
        }
    }
}

/// How a put treats an object that already has the key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PutMode {
    /// Replace it (or create the object).
    #[default]
    Overwrite,
    /// Create the object only if the key is free: [`Error::AlreadyExists`]
    /// otherwise. Of two concurrent creates, exactly one wins.
    Create,
    /// Replace the object only if its current etag is this one (an
    /// [`ObjectMeta::etag`] read earlier): [`Error::Precondition`] otherwise,
    /// also when the object is gone. Compare-and-swap: of two concurrent
    /// updates from the same etag, exactly one wins.
    IfMatch(String),
}

/// Options of [`ObjectStore::put_opts`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// What to do when the key is taken.
    pub mode: PutMode,
    /// The `Content-Type` to store with the object and hand back from
    /// `head` and `get` (S3 serves it; delivery answers with it).
    pub content_type: Option<String>,
    /// The `Cache-Control` to store with the object, as `content_type`
    /// (`public, max-age=31536000, immutable` for a segment).
    pub cache_control: Option<String>,
}

impl PutOptions {
    /// Create-only: [`PutMode::Create`] with no attributes.
    pub fn create() -> Self {
        PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        }
    }

    /// Compare-and-swap: [`PutMode::IfMatch`] with no attributes.
    pub fn if_match(etag: impl Into<String>) -> Self {
        PutOptions {
            mode: PutMode::IfMatch(etag.into()),
            ..PutOptions::default()
        }
    }

    /// Checks the attributes: printable ASCII (they travel as HTTP header
    /// values) and at most 1 KiB each.
    pub(crate) fn check(&self, key: &ObjectKey) -> Result<()> {
        for (name, value) in [
            ("content type", &self.content_type),
            ("cache control", &self.cache_control),
        ] {
            let Some(value) = value else { continue };
            let ok = !value.is_empty()
                && value.len() <= 1024
                && value.bytes().all(|b| (0x20..0x7f).contains(&b));
            if !ok {
                return Err(Error::invalid_input(format!(
                    "put of {key}: the {name} `{}` is empty, longer than 1024 bytes or not printable ASCII",
                    value.escape_debug()
                )));
            }
        }
        if let PutMode::IfMatch(etag) = &self.mode {
            if etag.is_empty() || etag.len() > 1024 || etag.chars().any(char::is_control) {
                return Err(Error::invalid_input(format!(
                    "put of {key}: the etag to match `{}` is empty, too long or has control characters",
                    etag.escape_debug()
                )));
            }
        }
        Ok(())
    }
}

/// The body of a put.
pub enum PutPayload {
    /// Bytes already in memory.
    Bytes(Bytes),
    /// A stream, written as it arrives with bounded memory.
    Stream(ByteStream),
}

impl fmt::Debug for PutPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutPayload::Bytes(b) => write!(f, "PutPayload::Bytes({} bytes)", b.len()),
            PutPayload::Stream(_) => f.write_str("PutPayload::Stream"),
        }
    }
}

impl From<Bytes> for PutPayload {
    fn from(b: Bytes) -> Self {
        PutPayload::Bytes(b)
    }
}

impl From<Vec<u8>> for PutPayload {
    fn from(b: Vec<u8>) -> Self {
        PutPayload::Bytes(Bytes::from(b))
    }
}

impl From<&'static [u8]> for PutPayload {
    fn from(b: &'static [u8]) -> Self {
        PutPayload::Bytes(Bytes::from_static(b))
    }
}

impl From<&'static str> for PutPayload {
    fn from(b: &'static str) -> Self {
        PutPayload::Bytes(Bytes::from_static(b.as_bytes()))
    }
}

/// Which bytes of an object to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetRange {
    /// `start..end`, clamped to the object's end.
    Bounded(Range<u64>),
    /// From this offset to the end.
    From(u64),
    /// The last `n` bytes (all of them when the object is shorter).
    Suffix(u64),
}

impl GetRange {
    /// Resolves this range against an object of `size` bytes.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the range is empty or starts at or past the
    /// end of a non-empty object (HTTP's "416 Range Not Satisfiable").
    pub fn resolve(&self, size: u64, key: &ObjectKey) -> Result<Range<u64>> {
        let range = match self {
            GetRange::Bounded(r) => {
                if r.start >= r.end {
                    return Err(Error::invalid_input(format!(
                        "range {}..{} of {key} is empty",
                        r.start, r.end
                    )));
                }
                r.start..r.end.min(size)
            }
            GetRange::From(start) => *start..size,
            GetRange::Suffix(n) => size.saturating_sub(*n)..size,
        };
        if range.start >= size && !(size == 0 && matches!(self, GetRange::Suffix(_))) {
            return Err(Error::invalid_input(format!(
                "range {self} of {key} is not satisfiable: the object has {size} bytes"
            )));
        }
        Ok(range)
    }
}

impl fmt::Display for GetRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetRange::Bounded(r) => write!(f, "bytes={}-{}", r.start, r.end.saturating_sub(1)),
            GetRange::From(s) => write!(f, "bytes={s}-"),
            GetRange::Suffix(n) => write!(f, "bytes=-{n}"),
        }
    }
}

/// Options of [`ObjectStore::get_opts`].
#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    /// Read only these bytes; the whole object when `None`.
    pub range: Option<GetRange>,
    /// Answer [`Error::NotModified`] instead of the body when the object's
    /// etag is this one (HTTP's `If-None-Match`, so delivery can answer
    /// 304). `*` matches any existing object.
    pub if_none_match: Option<String>,
}

impl GetOptions {
    /// Only these bytes.
    pub fn range(range: GetRange) -> Self {
        GetOptions {
            range: Some(range),
            ..GetOptions::default()
        }
    }
}

/// Whether `current` (an object's etag) satisfies `If-None-Match: wanted`,
/// that is whether the reader's copy is current. Quotes and a weak `W/`
/// prefix do not count; `*` matches anything.
pub fn etag_matches(wanted: &str, current: Option<&str>) -> bool {
    let bare = |e: &str| {
        e.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    match current {
        None => false,
        Some(_) if wanted.trim() == "*" => true,
        Some(current) => wanted.split(',').any(|w| bare(w) == bare(current)),
    }
}

/// What a get returns: the object's metadata, the byte range being sent and
/// the body as a stream.
pub struct GetResult {
    /// The whole object's metadata.
    pub meta: ObjectMeta,
    /// The bytes of the object the body holds.
    pub range: Range<u64>,
    /// The body.
    pub body: ByteStream,
}

impl fmt::Debug for GetResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetResult")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl GetResult {
    /// Reads the whole body into memory.
    ///
    /// # Errors
    /// Whatever the body stream fails with.
    pub async fn bytes(self) -> Result<Bytes> {
        let capacity = usize::try_from(self.range.end - self.range.start).unwrap_or(0);
        let mut buf = BytesMut::with_capacity(capacity.min(64 * 1024 * 1024));
        let mut body = self.body;
        while let Some(chunk) = body.try_next().await? {
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }
}

/// The identifier of a multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MultipartId(pub String);

impl fmt::Display for MultipartId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One uploaded part of a multipart upload, as [`ObjectStore::complete_multipart`]
/// wants it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartId {
    /// The part's number, from 1 to [`MAX_PART_NUMBER`].
    pub number: u32,
    /// The backend's tag for the part's content.
    pub etag: String,
}

/// A part stored so far in a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    /// Its number and tag, as completion takes them.
    pub id: PartId,
    /// Its size in bytes.
    pub size: u64,
}

/// Object storage.
///
/// # Contract
/// - Writes are atomic: a reader sees the old object or the new one, never a
///   part, also when the writer crashes mid-write. A failed or cancelled
///   streaming put leaves the old object (or nothing) in place.
/// - [`PutMode::Create`] and [`PutMode::IfMatch`] are atomic with respect to
///   every other write through the store: of two concurrent creates of one
///   key exactly one succeeds, the other gets [`Error::AlreadyExists`]; an
///   `IfMatch` whose etag is no longer current gets [`Error::Precondition`].
/// - The content type and cache control a put was given come back from
///   `head` and `get` (and from the put itself).
/// - [`ObjectStore::list_stream`] yields every object under a prefix
///   (segment-wise, see [`ObjectKey::starts_with`]; never the prefix itself)
///   in ascending key order, only keys after the cursor when one is given.
/// - A missing object is [`Error::NotFound`]; an unsatisfiable range is
///   [`Error::InvalidInput`]; a matching `If-None-Match` is
///   [`Error::NotModified`]; a part number outside `1..=10000`, a part other
///   than the last smaller than [`MIN_PART_SIZE`], a part named with an etag
///   that is not the latest upload of that number, or parts out of order are
///   [`Error::InvalidInput`] (at `put_part` or at `complete_multipart`).
/// - Nothing of a multipart upload is visible until it is completed; an
///   aborted one leaves nothing behind; an upload id only works with the key
///   it was created for; after completion or abort the id is unknown
///   ([`Error::NotFound`]).
/// - Stores that can presign URLs hand out a [`sign::Signer`] from
///   [`ObjectStore::signer`]; the others answer `None`.
///
/// # Cancel safety
/// Dropping a put's future (a client that went away, a timeout) leaves the
/// old object or nothing, never a partial one, and leaves no temporary data
/// behind that the backend does not clean up itself (the filesystem removes
/// its temporary file at once; S3 aborts the multipart upload in the
/// background). Dropping `complete_multipart` midway leaves either the
/// completed object or the upload still open, to be completed or aborted
/// again.
///
/// # Implementing
/// Convert driver errors at the boundary into the categories above, and
/// implement `Display` with the backend's name and location (`Fs(/data)`,
/// `S3(bucket/prefix)`), which every error message should include. Run
/// `videosync_core::conformance::store` against the backend. Conveniences
/// (`put`, `list`, `get_bytes`, `delete_prefix`...) live in
/// [`ObjectStoreExt`] and go through these methods, so each backend has one
/// implementation of each operation.
#[async_trait]
pub trait ObjectStore: fmt::Display + fmt::Debug + Send + Sync + 'static {
    /// Writes an object as `opts` say: replacing, create-only or
    /// compare-and-swap, with the content type and cache control to store.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] for [`PutMode::Create`] on a taken key,
    /// [`Error::Precondition`] for [`PutMode::IfMatch`] with a stale etag (or
    /// no object), [`Error::Conflict`] when the key cannot exist next to
    /// another key on this backend (the filesystem cannot hold both `a` and
    /// `a/b`), [`Error::InvalidInput`] for malformed attributes, the stream's
    /// error when the body fails, or a backend error.
    ///
    /// # Cancel safety
    /// See the trait's: a dropped put leaves the old object and no garbage.
    async fn put_opts(
        &self,
        key: &ObjectKey,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<ObjectMeta>;

    /// Reads an object or a range of it, streamed.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::NotModified`] when
    /// [`GetOptions::if_none_match`] matches, [`Error::InvalidInput`] for an
    /// unsatisfiable range, or a backend error.
    async fn get_opts(&self, key: &ObjectKey, opts: GetOptions) -> Result<GetResult>;

    /// The object's metadata.
    ///
    /// # Errors
    /// [`Error::NotFound`] or a backend error.
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta>;

    /// Every object under `prefix` (every object when `None`) whose key sorts
    /// after `start_after` (all when `None`), in ascending key order, read
    /// lazily: a page (S3) or a directory (filesystem) at a time.
    ///
    /// To resume a listing, pass the last key seen as `start_after`.
    /// Metadata from a listing has no content type or cache control.
    ///
    /// # Errors
    /// The stream yields a backend error and then ends.
    fn list_stream(
        &self,
        prefix: Option<&ObjectKey>,
        start_after: Option<&ObjectKey>,
    ) -> BoxStream<'static, Result<ObjectMeta>>;

    /// Deletes an object; deleting a missing object succeeds.
    ///
    /// # Errors
    /// A backend error.
    async fn delete(&self, key: &ObjectKey) -> Result<()>;

    /// Deletes these objects (missing ones succeed), at most
    /// [`DELETE_BATCH`] at a time in one request where the backend has a
    /// batch delete (S3's `DeleteObjects`).
    ///
    /// This is an override point, not a convenience: the provided body
    /// deletes one key after another, which is what the filesystem and
    /// memory backends want.
    ///
    /// # Errors
    /// The first failure; keys before it may be deleted already.
    async fn delete_many(&self, keys: &[ObjectKey]) -> Result<()> {
        for key in keys {
            self.delete(key).await?;
        }
        Ok(())
    }

    /// Copies `from` to `to`, replacing `to`, with its content type and
    /// cache control.
    ///
    /// # Errors
    /// [`Error::NotFound`] when `from` is missing, or a backend error.
    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()>;

    /// Starts a multipart upload to `key`.
    ///
    /// # Errors
    /// A backend error.
    async fn create_multipart(&self, key: &ObjectKey) -> Result<MultipartId>;

    /// Uploads part `number` (1-based) of a multipart upload. Sending a
    /// number again replaces the part: the upload that finishes last wins,
    /// and only its [`PartId`] completes the upload.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown upload (or one to another key),
    /// [`Error::InvalidInput`] for a bad part number, or a backend error.
    async fn put_part(
        &self,
        key: &ObjectKey,
        upload: &MultipartId,
        number: u32,
        data: Bytes,
    ) -> Result<PartId>;

    /// Assembles the parts, in the order given, into the object.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown upload (completed or aborted
    /// already, or one to another key), [`Error::InvalidInput`] for missing,
    /// stale, misordered or undersized parts, or a backend error.
    ///
    /// # Cancel safety
    /// A dropped completion leaves the object completed or the upload still
    /// open; completing again after a lost reply answers
    /// [`Error::NotFound`] when the first attempt went through (check with
    /// `head`).
    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &MultipartId,
        parts: Vec<PartId>,
    ) -> Result<ObjectMeta>;

    /// The parts stored so far (also by clients on presigned part URLs), by
    /// number: what a client resuming an upload need not send again.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown upload (completed or aborted, or
    /// one to another key), or a backend error.
    async fn list_parts(&self, key: &ObjectKey, upload: &MultipartId) -> Result<Vec<StoredPart>>;

    /// Abandons a multipart upload and frees its parts. Aborting an unknown
    /// or already-aborted upload succeeds.
    ///
    /// # Errors
    /// A backend error.
    async fn abort_multipart(&self, key: &ObjectKey, upload: &MultipartId) -> Result<()>;

    /// The signer of presigned URLs for this store's objects, or `None` when
    /// the store cannot sign (filesystem, memory). A capability query, not a
    /// convenience: stores that sign override it.
    fn signer(&self) -> Option<Arc<dyn sign::Signer>> {
        None
    }
}

/// Conveniences over [`ObjectStore`], for every store.
#[async_trait]
pub trait ObjectStoreExt: ObjectStore {
    /// Writes an object, replacing any object with that key, with no content
    /// type or cache control.
    ///
    /// # Errors
    /// As [`ObjectStore::put_opts`].
    ///
    /// # Cancel safety
    /// As [`ObjectStore::put_opts`].
    async fn put(&self, key: &ObjectKey, payload: PutPayload) -> Result<ObjectMeta> {
        self.put_opts(key, payload, PutOptions::default()).await
    }

    /// Every object under `prefix` (every object when `None`), in key order,
    /// collected from [`ObjectStore::list_stream`].
    ///
    /// # Errors
    /// The listing's first error.
    async fn list(&self, prefix: Option<&ObjectKey>) -> Result<Vec<ObjectMeta>> {
        self.list_stream(prefix, None).try_collect().await
    }

    /// Reads a whole object.
    ///
    /// # Errors
    /// As [`ObjectStore::get_opts`].
    async fn get(&self, key: &ObjectKey) -> Result<GetResult> {
        self.get_opts(key, GetOptions::default()).await
    }

    /// Reads a whole object into memory.
    ///
    /// # Errors
    /// As [`ObjectStore::get_opts`].
    async fn get_bytes(&self, key: &ObjectKey) -> Result<Bytes> {
        self.get_opts(key, GetOptions::default())
            .await?
            .bytes()
            .await
    }

    /// Reads a range of an object into memory.
    ///
    /// # Errors
    /// As [`ObjectStore::get_opts`].
    async fn get_range(&self, key: &ObjectKey, range: GetRange) -> Result<Bytes> {
        self.get_opts(key, GetOptions::range(range))
            .await?
            .bytes()
            .await
    }

    /// Whether the object exists.
    ///
    /// # Errors
    /// A backend error other than [`Error::NotFound`].
    async fn exists(&self, key: &ObjectKey) -> Result<bool> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes every object under `prefix`; returns how many. The listing
    /// is streamed and deleted in batches of [`DELETE_BATCH`] through
    /// [`ObjectStore::delete_many`] (one `DeleteObjects` request each on S3).
    ///
    /// # Errors
    /// The first failing listing or delete.
    async fn delete_prefix(&self, prefix: &ObjectKey) -> Result<usize> {
        let mut listing = self.list_stream(Some(prefix), None).chunks(DELETE_BATCH);
        let mut deleted = 0;
        while let Some(batch) = listing.next().await {
            let keys = batch
                .into_iter()
                .map(|m| m.map(|m| m.key))
                .collect::<Result<Vec<_>>>()?;
            self.delete_many(&keys).await?;
            deleted += keys.len();
        }
        Ok(deleted)
    }
}

impl<T: ObjectStore + ?Sized> ObjectStoreExt for T {}

/// A store shared between tasks.
pub type DynObjectStore = Arc<dyn ObjectStore>;

/// Checks a part number against `1..=MAX_PART_NUMBER`.
pub(crate) fn check_part_number(key: &ObjectKey, number: u32) -> Result<()> {
    if (1..=MAX_PART_NUMBER).contains(&number) {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "part number {number} of the upload to {key} is outside 1..={MAX_PART_NUMBER}"
        )))
    }
}

/// Checks the part list of a completion: strictly ascending numbers, each
/// known, every part but the last at least [`MIN_PART_SIZE`]. `sizes`
/// holds, in the order of `parts`, each uploaded part's size, or `None` for
/// a part that was not uploaded (or not with that etag).
pub(crate) fn check_completion(
    key: &ObjectKey,
    parts: &[PartId],
    sizes: &[Option<u64>],
) -> Result<()> {
    if parts.is_empty() {
        return Err(Error::invalid_input(format!(
            "completion of the upload to {key} names no parts"
        )));
    }
    let mut previous = 0;
    for (i, part) in parts.iter().enumerate() {
        check_part_number(key, part.number)?;
        if part.number <= previous {
            return Err(Error::invalid_input(format!(
                "completion of the upload to {key}: part {} follows part {previous}; parts must be in ascending order",
                part.number
            )));
        }
        previous = part.number;
        let size = sizes.get(i).copied().flatten().ok_or_else(|| {
            Error::invalid_input(format!(
                "completion of the upload to {key} names part {} (etag {}), which was not uploaded",
                part.number, part.etag
            ))
        })?;
        let last = i + 1 == parts.len();
        if !last && size < MIN_PART_SIZE as u64 {
            return Err(Error::invalid_input(format!(
                "part {} of the upload to {key} has {size} bytes; every part but the last needs at least {MIN_PART_SIZE}",
                part.number
            )));
        }
    }
    Ok(())
}

/// A payload as a stream, whichever form it came in.
pub(crate) fn payload_stream(payload: PutPayload) -> ByteStream {
    match payload {
        PutPayload::Bytes(b) => single_chunk(b),
        PutPayload::Stream(s) => s,
    }
}

/// A stream of one chunk of bytes.
pub fn single_chunk(b: Bytes) -> ByteStream {
    futures::stream::once(async move { Ok(b) }).boxed()
}

/// The store behind a URL: `file:///abs/path` (or a plain path), `memory://`,
/// or `s3://bucket[/prefix]?endpoint=...&region=...` (credentials from the
/// usual `AWS_*` environment variables).
///
/// # Errors
/// [`Error::InvalidInput`] for an unknown scheme or a malformed URL, and what
/// the backend's constructor fails with.
pub async fn store_from_url(url: &str) -> Result<DynObjectStore> {
    let (scheme, _) = url.split_once("://").unwrap_or(("file", url));
    match scheme {
        "file" => {
            let path = url.strip_prefix("file://").unwrap_or(url);
            Ok(Arc::new(fs::FsStore::open(path).await?))
        }
        "memory" => Ok(Arc::new(memory::MemoryStore::new())),
        #[cfg(feature = "s3")]
        "s3" => Ok(Arc::new(s3::S3Store::from_url(url).await?)),
        other => Err(Error::invalid_input(format!(
            "unknown object store URL scheme `{}` in `{}`; expected file, memory{}",
            other.escape_debug(),
            crate::redact_url(url),
            if cfg!(feature = "s3") {
                " or s3"
            } else {
                " (s3 needs the `s3` feature)"
            }
        ))),
    }
}

/// Whether `key` belongs in a listing of `prefix` that starts after
/// `start_after`.
pub(crate) fn listed(
    key: &ObjectKey,
    prefix: Option<&ObjectKey>,
    start_after: Option<&ObjectKey>,
) -> bool {
    prefix.is_none_or(|p| key.starts_with(p)) && start_after.is_none_or(|a| key > a)
}

/// Whether two etags name the same content; servers differ in whether they
/// quote them.
pub(crate) fn same_etag(a: &str, b: &str) -> bool {
    a.trim_matches('"') == b.trim_matches('"')
}
