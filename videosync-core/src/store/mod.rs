//! Object storage: the [`ObjectStore`] contract and its backends.
//!
//! | backend | module | feature | presign |
//! |---|---|---|---|
//! | local filesystem (default) | [`fs`] | always | no |
//! | in-memory | [`memory`] | always | no |
//! | S3-compatible (aws-sdk-s3) | `s3` | `s3` | yes |

use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};

use crate::{Error, Result, Timestamp};

pub mod fs;
mod key;
pub mod memory;
#[cfg(feature = "s3")]
pub mod s3;

pub use key::{KeyError, ObjectKey, MAX_KEY_LEN};

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
    /// backend has one.
    pub etag: Option<String>,
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

/// The HTTP method a presigned URL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresignMethod {
    /// Download the object.
    Get,
    /// Upload the object (a single `PUT` of the whole body).
    Put,
}

/// Object storage.
///
/// # Contract
/// - Writes are atomic: a reader sees the old object or the new one, never a
///   part, also when the writer crashes mid-write. A failed streaming put
///   leaves the old object (or nothing) in place.
/// - [`ObjectStore::list`] returns every object under a prefix (segment-wise,
///   see [`ObjectKey::starts_with`]) in ascending key order.
/// - A missing object is [`Error::NotFound`]; an unsatisfiable range is
///   [`Error::InvalidInput`]; a part number outside `1..=10000`, or a part
///   other than the last smaller than [`MIN_PART_SIZE`], is
///   [`Error::InvalidInput`] (at `put_part` or at `complete_multipart`).
/// - Nothing of a multipart upload is visible until it is completed; an
///   aborted one leaves nothing behind.
/// - [`ObjectStore::presign`] is [`Error::NotSupported`] on backends that
///   cannot sign; a signed URL works with a plain HTTP client.
///
/// # Implementing
/// Convert driver errors at the boundary into the categories above, and
/// implement `Display` with the backend's name and location (`Fs(/data)`,
/// `S3(bucket/prefix)`), which every error message should include. Run
/// `videosync_core::conformance::store` against the backend.
#[async_trait]
pub trait ObjectStore: fmt::Display + fmt::Debug + Send + Sync + 'static {
    /// Writes an object, replacing any object with that key.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the key cannot exist next to another key on
    /// this backend (the filesystem cannot hold both `a` and `a/b`), the
    /// stream's error when the body fails, or a backend error.
    async fn put(&self, key: &ObjectKey, payload: PutPayload) -> Result<ObjectMeta>;

    /// Reads an object or a range of it, streamed.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidInput`] for an unsatisfiable range,
    /// or a backend error.
    async fn get_opts(&self, key: &ObjectKey, opts: GetOptions) -> Result<GetResult>;

    /// The object's metadata.
    ///
    /// # Errors
    /// [`Error::NotFound`] or a backend error.
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta>;

    /// Every object under `prefix` (every object when `None`), in key order.
    ///
    /// # Errors
    /// A backend error.
    async fn list(&self, prefix: Option<&ObjectKey>) -> Result<Vec<ObjectMeta>>;

    /// Deletes an object; deleting a missing object succeeds.
    ///
    /// # Errors
    /// A backend error.
    async fn delete(&self, key: &ObjectKey) -> Result<()>;

    /// Copies `from` to `to`, replacing `to`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when `from` is missing, or a backend error.
    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()>;

    /// Starts a multipart upload to `key`.
    ///
    /// # Errors
    /// A backend error.
    async fn create_multipart(&self, key: &ObjectKey) -> Result<MultipartId>;

    /// Uploads part `number` (1-based) of a multipart upload.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown upload, [`Error::InvalidInput`] for a
    /// bad part number, or a backend error.
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
    /// [`Error::NotFound`] for an unknown upload, [`Error::InvalidInput`] for
    /// missing, misordered or undersized parts, or a backend error.
    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &MultipartId,
        parts: Vec<PartId>,
    ) -> Result<ObjectMeta>;

    /// Abandons a multipart upload and frees its parts. Aborting an unknown
    /// or already-aborted upload succeeds.
    ///
    /// # Errors
    /// A backend error.
    async fn abort_multipart(&self, key: &ObjectKey, upload: &MultipartId) -> Result<()>;

    /// A URL that lets anyone holding it `GET` or `PUT` this object until
    /// `expires_in` has passed (at most [`MAX_PRESIGN_EXPIRY`]).
    ///
    /// # Errors
    /// [`Error::NotSupported`] when the backend cannot sign,
    /// [`Error::InvalidInput`] for an expiry beyond the limit.
    async fn presign(
        &self,
        method: PresignMethod,
        key: &ObjectKey,
        expires_in: Duration,
    ) -> Result<String>;
}

/// Conveniences over [`ObjectStore`], for every store.
#[async_trait]
pub trait ObjectStoreExt: ObjectStore {
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
        self.get_opts(key, GetOptions { range: Some(range) })
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

    /// Deletes every object under `prefix`; returns how many.
    ///
    /// # Errors
    /// The first failing delete.
    async fn delete_prefix(&self, prefix: &ObjectKey) -> Result<usize> {
        let objects = self.list(Some(prefix)).await?;
        for meta in &objects {
            self.delete(&meta.key).await?;
        }
        Ok(objects.len())
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

/// Checks a presign expiry against [`MAX_PRESIGN_EXPIRY`].
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) fn check_presign_expiry(key: &ObjectKey, expires_in: Duration) -> Result<()> {
    if expires_in.is_zero() || expires_in > MAX_PRESIGN_EXPIRY {
        return Err(Error::invalid_input(format!(
            "presigned URL for {key}: expiry of {}s is outside 1s..={}s",
            expires_in.as_secs(),
            MAX_PRESIGN_EXPIRY.as_secs()
        )));
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
pub(crate) fn single_chunk(b: Bytes) -> ByteStream {
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
