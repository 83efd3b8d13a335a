//! [`S3Store`]: objects in a bucket of any S3-compatible server (AWS S3,
//! Garage, MinIO, Ceph RGW, Cloudflare R2), through `aws-sdk-s3`.
//!
//! # Configuration
//!
//! [`S3Store::from_url`] takes
//! `s3://bucket[/prefix]?endpoint=URL&region=NAME&public_endpoint=URL` (what
//! [`store_from_url`](super::store_from_url) hands it); credentials come
//! from the usual AWS sources, the `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY` environment variables first. [`S3Store::builder`]
//! takes the same settings, and explicit credentials, from code.
//!
//! # Design
//!
//! - **Path-style addressing.** Requests go to `ENDPOINT/bucket/key`, not to
//!   `bucket.ENDPOINT/key`: S3-compatible servers seldom have the wildcard DNS
//!   and certificates that virtual-hosted addressing needs, and AWS S3 still
//!   answers path-style requests.
//! - **Key prefix.** An optional prefix is put in front of every key (with a
//!   `/`), so several stores can share one bucket; listings strip it again.
//! - **Atomic writes.** S3 makes a `PutObject` and a
//!   `CompleteMultipartUpload` visible all at once, which gives the contract's
//!   atomicity for free. A [`PutPayload::Stream`] is buffered up to
//!   [`STREAM_PART_SIZE`]: a shorter body goes out as one `PutObject`; a
//!   longer one becomes a multipart upload of parts of that size (the next
//!   part is read while the previous one is sent, so at most two parts are in
//!   memory), completed at the end. When the stream or a request fails the
//!   upload is aborted, so the old object stays and nothing half-written is
//!   ever visible; a put whose future is dropped midway aborts its upload in
//!   the background. A streamed object can thus be at most 10 000 parts of
//!   8 MiB (78 GiB).
//! - **Streamed reads.** A get hands out the response body chunk by chunk as
//!   it arrives. The object's size in [`GetResult::meta`] comes from the
//!   response's `Content-Range`, so metadata and body always belong to the
//!   same version of the object. When S3 answers a range with 416, the size
//!   it names (or else a `HEAD`) decides the answer, so that the result
//!   follows [`GetRange::resolve`] exactly (an empty object has an empty
//!   suffix). An empty bounded range is refused before asking: S3 would
//!   ignore it as malformed and send the whole object.
//! - **Multipart checks.** S3 validates parts itself, but S3-compatible
//!   servers differ in how strictly; `complete_multipart` therefore lists the
//!   uploaded parts first and checks the caller's list with the same rules as
//!   every other backend (ascending, known, every part but the last at least
//!   [`MIN_PART_SIZE`](super::MIN_PART_SIZE)).
//! - **Checksums only where required.** Newer SDKs send CRC checksums with
//!   every upload (and put them into presigned URLs); many S3-compatible
//!   servers reject those, so the store asks for them only where the S3 API
//!   requires one.
//! - **Metadata of a write.** S3 does not return an object's size or
//!   modification time from a write. `put` and `complete_multipart` answer
//!   the size they sent and the time the write finished on this process's
//!   [`Clock`] rather than spend a `HEAD` on every write; [`ObjectStore::head`]
//!   and [`ObjectStore::list_stream`] report the server's own time (for a
//!   multipart upload, S3's is when the upload started).
//! - **Attributes and conditions.** A put's content type and cache control
//!   are the object's real `Content-Type` and `Cache-Control` headers (set
//!   when a streamed put creates its multipart upload). [`PutMode::Create`]
//!   sends `If-None-Match: *` and [`PutMode::IfMatch`] sends `If-Match` on
//!   the `PutObject` (or the `CompleteMultipartUpload` of a streamed put), so
//!   the server decides atomically; a server that ignores those headers
//!   would silently overwrite (AWS S3 honours them since 2024; the test
//!   suite checks the server it runs against).
//! - **Listing.** [`ObjectStore::list_stream`] pages through
//!   `ListObjectsV2` lazily, a page per request, from `start-after`; S3
//!   lists in UTF-8 byte order, which is the keys' order.
//! - **Batched deletes.** [`ObjectStore::delete_many`] sends one
//!   `DeleteObjects` per [`DELETE_BATCH`] keys.
//! - **Presigning.** [`S3Store::signer`] signs locally (SigV4 query
//!   parameters) for the *public* endpoint, dated by the store's clock; see
//!   [`sign`].
//! - **Limits.** S3's own: a [`PutPayload::Bytes`] and a copy are single
//!   requests of at most 5 GiB; a stream is at most 10 000 parts.
//!
//! # Errors
//!
//! SDK errors are converted at this boundary:
//!
//! | S3 says | [`Error`] |
//! |---|---|
//! | `NoSuchKey`, `NoSuchUpload`, 404 | `NotFound` |
//! | `InvalidRange`, 416, `EntityTooSmall`, `InvalidPart`, `InvalidPartOrder` | `InvalidInput` |
//! | `PreconditionFailed`, 412, `ConditionalRequestConflict` | `Precondition` (`AlreadyExists` for a create) |
//! | 304 | `NotModified` |
//! | `AccessDenied`, 403 | `PermissionDenied` |
//! | connection failures, timeouts, throttling, 5xx | `Unavailable` |
//! | anything else (`NoSuchBucket`, ...) | `Backend` |
//!
//! Every message says what was being done, with which key, in which store:
//! `get of videos/abc/master.m3u8 from S3(media/prod): no such object`.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::{
    check_completion, check_part_number, payload_stream, same_etag, ByteStream, GetOptions,
    GetRange, GetResult, MultipartId, ObjectKey, ObjectMeta, ObjectStore, PartId, PutMode,
    PutOptions, PutPayload, StoredPart, DELETE_BATCH,
};
use crate::{Clock, Error, Result, Timestamp};

mod builder;
mod error;
mod multipart;
pub mod sign;
mod url;

pub use builder::{ConditionalWrites, S3StoreBuilder};
use error::{is_changed, is_unsatisfiable, sdk_error, unsatisfied_size};
use multipart::completed_part;

/// Size of the parts a streamed put is cut into, and how much of a stream is
/// buffered before a put turns into a multipart upload (8 MiB).
pub const STREAM_PART_SIZE: usize = 8 * 1024 * 1024;

/// How often a ranged get starts over when the object changes between the
/// `HEAD` and the `GET` that a 416 answer calls for.
const RANGE_ATTEMPTS: usize = 3;

/// Objects in a bucket of an S3-compatible server.
///
/// Cheap to clone: clones share one connection pool.
///
/// # Examples
/// ```no_run
/// use videosync_core::store::s3::S3Store;
/// use videosync_core::{ObjectKey, ObjectStoreExt};
///
/// # async fn demo() -> videosync_core::Result<()> {
/// let store = S3Store::builder("media")
///     .prefix(ObjectKey::parse("prod")?)
///     .endpoint("http://garage:3900")
///     .public_endpoint("https://media.example")
///     .region("garage")
///     .credentials("GK...", "secret")
///     .build()
///     .await?;
/// assert_eq!(store.to_string(), "S3(media/prod)");
/// store.put(&ObjectKey::parse("hello.txt")?, "hi".into()).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    /// The client presigned URLs are made with: the same credentials and
    /// region, the public endpoint.
    signing_client: Client,
    bucket: String,
    prefix: Option<ObjectKey>,
    endpoint: Option<String>,
    public_endpoint: Option<String>,
    conditional_writes: ConditionalWrites,
    region: String,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix.as_ref().map(ObjectKey::as_str))
            .field("endpoint", &self.endpoint)
            .field("public_endpoint", &self.public_endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.prefix {
            Some(p) => write!(f, "S3({}/{p})", self.bucket),
            None => write!(f, "S3({})", self.bucket),
        }
    }
}

impl S3Store {
    /// Settings for a store on `bucket`, to be completed and then
    /// [built](S3StoreBuilder::build).
    pub fn builder(bucket: impl Into<String>) -> S3StoreBuilder {
        S3StoreBuilder {
            bucket: bucket.into(),
            prefix: None,
            endpoint: None,
            public_endpoint: None,
            region: None,
            credentials: None,
            path_style: true,
            clock: None,
            conditional_writes: ConditionalWrites::default(),
        }
    }

    /// The store behind
    /// `s3://bucket[/prefix]?endpoint=URL&region=NAME&public_endpoint=URL`.
    ///
    /// Every parameter is optional: without `endpoint` the store talks to
    /// AWS S3, without `region` it takes `AWS_REGION`, else `us-east-1`,
    /// without `public_endpoint` presigned URLs name `endpoint`.
    /// Credentials come from the AWS default chain, the environment
    /// variables `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and
    /// `AWS_SESSION_TOKEN`) first.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a malformed URL: no bucket, a prefix that
    /// is not an [`ObjectKey`], a bad endpoint, an unknown or repeated
    /// parameter, or credentials in the URL.
    pub async fn from_url(url: &str) -> Result<Self> {
        Self::builder_from_url(url)?.build().await
    }

    /// The settings named by an `s3://` URL (see [`S3Store::from_url`]), to
    /// be completed (credentials, path style) and then built.
    ///
    /// # Errors
    /// As [`S3Store::from_url`].
    pub fn builder_from_url(url: &str) -> Result<S3StoreBuilder> {
        url::parse_url(url)
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix every key is stored under, if any.
    pub fn prefix(&self) -> Option<&ObjectKey> {
        self.prefix.as_ref()
    }

    /// This store with every key under `prefix` instead (a clone sharing the
    /// connection pool).
    pub fn with_prefix(&self, prefix: Option<ObjectKey>) -> Self {
        S3Store {
            prefix,
            ..self.clone()
        }
    }

    /// This store dating presigned URLs and write metadata by `clock`.
    pub fn with_clock(&self, clock: Arc<dyn Clock>) -> Self {
        S3Store {
            clock,
            ..self.clone()
        }
    }

    /// The `aws-sdk-s3` client, for what this store does not do.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The signer of presigned URLs for this store's objects (the same as
    /// [`ObjectStore::signer`], without the `Option`).
    pub fn s3_signer(&self) -> sign::S3Signer {
        sign::S3Signer::new(self.clone())
    }

    /// The name of `key` in the bucket.
    fn full_key(&self, key: &ObjectKey) -> String {
        match &self.prefix {
            Some(p) => format!("{p}/{key}"),
            None => key.as_str().to_owned(),
        }
    }

    /// The key of a name listed in the bucket, or `None` for a name outside
    /// the prefix or not a valid key (not written by this store).
    fn key_of(&self, name: &str) -> Option<ObjectKey> {
        let rel = match &self.prefix {
            Some(p) => name.strip_prefix(p.as_str())?.strip_prefix('/')?,
            None => name,
        };
        ObjectKey::parse(rel).ok()
    }

    /// Adds the store's name to an error of the shared checks, which know
    /// only the key.
    fn located(&self, e: Error) -> Error {
        match e {
            Error::InvalidInput { message } => {
                Error::invalid_input(format!("{message} (in {self})"))
            }
            Error::NotFound { message } => Error::not_found(format!("{message} (in {self})")),
            other => other,
        }
    }

    async fn put_bytes(
        &self,
        key: &ObjectKey,
        full: &str,
        data: Bytes,
        opts: &PutOptions,
        what: &str,
    ) -> Result<ObjectMeta> {
        let size = data.len() as u64;
        let (if_none_match, if_match) = conditions(&opts.mode);
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(full)
            .set_content_type(opts.content_type.clone())
            .set_cache_control(opts.cache_control.clone())
            .set_if_none_match(if_none_match)
            .set_if_match(if_match)
            .body(data.into())
            .send()
            .await
            .map_err(|e| conditional_error(&opts.mode, sdk_error(what, e)))?;
        Ok(ObjectMeta {
            content_type: opts.content_type.clone(),
            cache_control: opts.cache_control.clone(),
            ..ObjectMeta::new(key.clone(), size, self.clock.now(), out.e_tag)
        })
    }

    /// Turns a `GetObject` answer into a [`GetResult`] for `range`.
    pub(super) fn get_result(
        &self,
        key: &ObjectKey,
        range: Option<&GetRange>,
        out: GetObjectOutput,
        what: &str,
    ) -> Result<GetResult> {
        let sent_len = size_of(out.content_length());
        let (sent, total) = match out.content_range().and_then(parse_content_range) {
            Some((sent, total)) => (sent, total),
            None => (0..sent_len, sent_len),
        };
        let meta = ObjectMeta {
            key: key.clone(),
            size: total,
            last_modified: timestamp(out.last_modified()),
            etag: out.e_tag().map(str::to_owned),
            content_type: out.content_type().map(str::to_owned),
            cache_control: out.cache_control().map(str::to_owned),
        };
        let wanted = match range {
            Some(r) => r.resolve(total, key).map_err(|e| self.located(e))?,
            None => 0..total,
        };
        if sent != wanted {
            return Err(Error::backend(
                what,
                format!(
                    "the server sent bytes {}..{} of {total} where {}..{} were asked for",
                    sent.start, sent.end, wanted.start, wanted.end
                ),
            ));
        }
        Ok(GetResult {
            meta,
            range: wanted,
            body: body_stream(out.body, format!("reading the body of {what}")),
        })
    }
}

impl S3Store {
    /// [`ConditionalWrites::Checked`]: refuses a write whose condition the
    /// object's current state fails (racy; see there).
    async fn check_condition(&self, key: &ObjectKey, mode: &PutMode, what: &str) -> Result<()> {
        if *mode == PutMode::Overwrite {
            return Ok(());
        }
        let current = match self.head(key).await {
            Ok(meta) => Some(meta.etag),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        match (mode, current) {
            (PutMode::Create, Some(_)) => Err(Error::already_exists(format!(
                "{what}: create-only, and the object exists"
            ))),
            (PutMode::IfMatch(want), None) => Err(Error::precondition(format!(
                "{what}: no object to match etag {want}"
            ))),
            (PutMode::IfMatch(want), Some(etag))
                if !etag.as_deref().is_some_and(|e| same_etag(e, want)) =>
            {
                Err(Error::precondition(format!(
                    "{what}: the etag is {}, not {want}",
                    etag.as_deref().unwrap_or("unknown")
                )))
            }
            _ => Ok(()),
        }
    }
}

/// The `If-None-Match` and `If-Match` headers of a write in `mode`.
fn conditions(mode: &PutMode) -> (Option<String>, Option<String>) {
    match mode {
        PutMode::Overwrite => (None, None),
        PutMode::Create => (Some("*".to_owned()), None),
        PutMode::IfMatch(etag) => (None, Some(etag.clone())),
    }
}

/// A failed conditional write as the contract names it: a create that found
/// the key taken is [`Error::AlreadyExists`]; an `If-Match` on a missing
/// object is a failed [`Error::Precondition`], not a missing object.
fn conditional_error(mode: &PutMode, e: Error) -> Error {
    match (mode, e) {
        (PutMode::Create, Error::Precondition { message }) => Error::already_exists(message),
        (PutMode::IfMatch(_), Error::NotFound { message }) => Error::precondition(message),
        (_, e) => e,
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put_opts(
        &self,
        key: &ObjectKey,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        opts.check(key).map_err(|e| self.located(e))?;
        let what = format!("put of {key} to {self}");
        if self.conditional_writes == ConditionalWrites::Checked {
            self.check_condition(key, &opts.mode, &what).await?;
        }
        let full = self.full_key(key);
        match payload {
            PutPayload::Bytes(data) => self.put_bytes(key, &full, data, &opts, &what).await,
            stream => {
                self.put_stream(key, &full, payload_stream(stream), &opts, &what)
                    .await
            }
        }
    }

    async fn get_opts(&self, key: &ObjectKey, opts: GetOptions) -> Result<GetResult> {
        let what = format!("get of {key} from {self}");
        if let Some(GetRange::Bounded(r)) = &opts.range {
            if r.start >= r.end {
                // S3 ignores a malformed Range header and sends the whole
                // object; an empty range fails whatever the object's size.
                if let Err(e) = GetRange::Bounded(r.clone()).resolve(0, key) {
                    return Err(self.located(e));
                }
            }
        }
        let full = self.full_key(key);
        // What to ask for: the caller's range, or after a 416 the range the
        // HEAD resolved it to, pinned to that version of the object.
        let mut asked = opts.range.clone();
        let mut if_match: Option<String> = None;
        for _ in 0..RANGE_ATTEMPTS {
            let answer = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&full)
                .set_range(asked.as_ref().map(GetRange::to_string))
                .set_if_match(if_match.clone())
                .set_if_none_match(opts.if_none_match.clone())
                .send()
                .await;
            let err = match answer {
                Ok(out) => return self.get_result(key, opts.range.as_ref(), out, &what),
                Err(e) => e,
            };
            let (Some(range), true) = (&opts.range, is_unsatisfiable(&err) || is_changed(&err))
            else {
                return Err(sdk_error(&what, err));
            };
            // The range starts past the end as S3 sees it. Whether that is
            // an error, or an empty body (a suffix of an empty object), or
            // the object changed since, the size decides. A 416 names the
            // size (`Content-Range: bytes */1000`), which settles the usual
            // case, a range past the end, without another request.
            if let Some(size) = unsatisfied_size(&err) {
                range.resolve(size, key).map_err(|e| self.located(e))?;
            }
            let meta = self.head(key).await?;
            let resolved = range.resolve(meta.size, key).map_err(|e| self.located(e))?;
            if resolved.is_empty() {
                return Ok(GetResult {
                    meta,
                    range: resolved,
                    body: futures::stream::empty().boxed(),
                });
            }
            asked = Some(GetRange::Bounded(resolved));
            if_match = meta.etag;
        }
        Err(Error::unavailable(
            what,
            "the object kept changing while its range was read; try again",
        ))
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        let what = format!("head of {key} from {self}");
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| sdk_error(&what, e))?;
        Ok(ObjectMeta {
            key: key.clone(),
            size: size_of(out.content_length()),
            last_modified: timestamp(out.last_modified()),
            content_type: out.content_type().map(str::to_owned),
            cache_control: out.cache_control().map(str::to_owned),
            etag: out.e_tag,
        })
    }

    fn list_stream(
        &self,
        prefix: Option<&ObjectKey>,
        start_after: Option<&ObjectKey>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let what = match prefix {
            Some(p) => format!("listing {p} in {self}"),
            None => format!("listing {self}"),
        };
        // A trailing `/` makes S3's string prefix segment-wise: `a/` does not
        // match `ab`, nor `a` itself.
        let list_prefix = match (prefix, &self.prefix) {
            (Some(p), _) => Some(format!("{}/", self.full_key(p))),
            (None, Some(own)) => Some(format!("{own}/")),
            (None, None) => None,
        };
        // A cursor before the prefix lets everything under it through: it is
        // left out, since Garage answers such a `start-after` with nothing
        // (AWS starts at the prefix). The filter below drops keys at or
        // before the cursor whatever the server does.
        let after_full = start_after.map(|a| self.full_key(a)).filter(|a| {
            list_prefix
                .as_ref()
                .is_none_or(|p| a.as_str() >= p.as_str())
        });
        let pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_prefix(list_prefix)
            .set_start_after(after_full)
            .into_paginator()
            .send();
        let (store, after) = (self.clone(), start_after.cloned());
        // The paginator asks for the next page only when this stream is
        // polled past the current one.
        futures::stream::unfold(pages, |mut pages| async move {
            pages.next().await.map(|page| (page, pages))
        })
        .map(move |page| {
            let page = page.map_err(|e| sdk_error(&what, e))?;
            let metas: Vec<Result<ObjectMeta>> = page
                .contents()
                .iter()
                .filter_map(|object| {
                    let key = object.key().and_then(|name| store.key_of(name))?;
                    // A server that ignores `start-after` must not repeat keys.
                    if after.as_ref().is_some_and(|a| &key <= a) {
                        return None;
                    }
                    Some(Ok(ObjectMeta::new(
                        key,
                        size_of(object.size()),
                        timestamp(object.last_modified()),
                        object.e_tag().map(str::to_owned),
                    )))
                })
                .collect();
            Ok::<_, Error>(futures::stream::iter(metas))
        })
        .try_flatten()
        .boxed()
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let what = format!("delete of {key} from {self}");
        let result = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        // S3 answers a delete of a missing key with success; some compatible
        // servers say 404, which leaves the same state.
        gone_is_ok(result.map(|_| ()).map_err(|e| sdk_error(&what, e)))
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> Result<()> {
        for batch in keys.chunks(DELETE_BATCH) {
            let what = format!(
                "deleting {} objects ({}...) from {self}",
                batch.len(),
                batch.first().map(ObjectKey::as_str).unwrap_or_default()
            );
            let objects = batch
                .iter()
                .map(|k| {
                    ObjectIdentifier::builder()
                        .key(self.full_key(k))
                        .build()
                        .map_err(|e| Error::invalid_input(format!("{what}: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| Error::invalid_input(format!("{what}: {e}")))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| sdk_error(&what, e))?;
            // Quiet mode lists only failures; a missing key is no failure.
            if let Some(failed) = out.errors().iter().find(|e| e.code() != Some("NoSuchKey")) {
                return Err(Error::backend(
                    what,
                    format!(
                        "{} of them failed, first {}: {} {}",
                        out.errors().len(),
                        failed.key().unwrap_or("?"),
                        failed.code().unwrap_or("?"),
                        failed.message().unwrap_or("")
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        let what = format!("copy of {from} to {to} in {self}");
        let source = copy_source(&self.bucket, &self.full_key(from));
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(self.full_key(to))
            .copy_source(source)
            .send()
            .await
            .map_err(|e| match sdk_error(&what, e) {
                // Only the source can be missing; say so.
                Error::NotFound { .. } => {
                    Error::not_found(format!("{what}: no such object {from}"))
                }
                other => other,
            })?;
        Ok(())
    }

    async fn create_multipart(&self, key: &ObjectKey) -> Result<MultipartId> {
        let what = format!("starting a multipart upload to {key} in {self}");
        let id = self
            .start_upload(&self.full_key(key), &PutOptions::default(), &what)
            .await?;
        Ok(MultipartId(id))
    }

    async fn put_part(
        &self,
        key: &ObjectKey,
        upload: &MultipartId,
        number: u32,
        data: Bytes,
    ) -> Result<PartId> {
        check_part_number(key, number).map_err(|e| self.located(e))?;
        let what = format!("upload of part {number} of upload {upload} to {key} in {self}");
        let etag = self
            .send_part(&self.full_key(key), &upload.0, number, data, &what)
            .await?;
        Ok(PartId { number, etag })
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &MultipartId,
        parts: Vec<PartId>,
    ) -> Result<ObjectMeta> {
        let what = format!("completing upload {upload} to {key} in {self}");
        let full = self.full_key(key);
        let uploaded = self.uploaded_parts(&full, &upload.0, &what).await?;
        let known = |p: &PartId| {
            uploaded
                .get(&p.number)
                .filter(|(etag, _)| same_etag(etag, &p.etag))
                .map(|(_, size)| *size)
        };
        let sizes: Vec<Option<u64>> = parts.iter().map(known).collect();
        check_completion(key, &parts, &sizes).map_err(|e| self.located(e))?;
        let size = sizes.iter().flatten().sum();
        let completed = parts
            .iter()
            .map(|p| completed_part(p.number, p.etag.clone()))
            .collect();
        let etag = self
            .finish_upload(&full, &upload.0, completed, &PutMode::Overwrite, &what)
            .await?;
        Ok(ObjectMeta::new(key.clone(), size, self.clock.now(), etag))
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload: &MultipartId) -> Result<()> {
        let what = format!("aborting upload {upload} to {key} in {self}");
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .upload_id(&upload.0)
            .send()
            .await;
        // Aborting an upload that is gone already leaves the same state.
        gone_is_ok(result.map(|_| ()).map_err(|e| sdk_error(&what, e)))
    }

    async fn list_parts(&self, key: &ObjectKey, upload: &MultipartId) -> Result<Vec<StoredPart>> {
        let what = format!("listing the parts of upload {upload} to {key} in {self}");
        let parts = self
            .uploaded_parts(&self.full_key(key), &upload.0, &what)
            .await?;
        let mut parts: Vec<StoredPart> = parts
            .into_iter()
            .map(|(number, (etag, size))| StoredPart {
                id: PartId { number, etag },
                size,
            })
            .collect();
        parts.sort_by_key(|p| p.id.number);
        Ok(parts)
    }

    fn signer(&self) -> Option<Arc<dyn super::sign::Signer>> {
        Some(Arc::new(self.s3_signer()))
    }
}

/// A size from S3; a missing or negative one (no real server sends either)
/// reads as 0.
pub(super) fn size_of(size: Option<i64>) -> u64 {
    size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0)
}

/// A modification time from S3 in milliseconds; a missing one (no real
/// server omits it) reads as the epoch rather than failing the read.
fn timestamp(t: Option<&DateTime>) -> Timestamp {
    Timestamp::from_millis(t.and_then(|t| t.to_millis().ok()).unwrap_or(0))
}

/// The sent range and the whole size from `Content-Range: bytes a-b/size`.
fn parse_content_range(header: &str) -> Option<(Range<u64>, u64)> {
    let rest = header.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    let total: u64 = total.trim().parse().ok()?;
    (first <= last).then_some((first..last.checked_add(1)?, total))
}

/// An SDK body as a [`ByteStream`], chunk by chunk as it arrives.
fn body_stream(body: aws_sdk_s3::primitives::ByteStream, what: String) -> ByteStream {
    futures::stream::try_unfold(body, |mut body| async move {
        Ok(body.try_next().await?.map(|chunk| (chunk, body)))
    })
    // The connection broke mid-body: reading again may work.
    .map_err(move |e: aws_sdk_s3::primitives::ByteStreamError| Error::unavailable(what.clone(), e))
    .boxed()
}

/// The `x-amz-copy-source` of an object: `bucket/key`, percent-encoded but
/// for the `/` separators, as S3 decodes it.
fn copy_source(bucket: &str, full_key: &str) -> String {
    let mut out = String::with_capacity(bucket.len() + full_key.len() + 1);
    for b in bucket.bytes().chain([b'/']).chain(full_key.bytes()) {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Success for an operation whose goal (something is gone) a `NotFound`
/// already meets.
fn gone_is_ok(result: Result<()>) -> Result<()> {
    match result {
        Err(Error::NotFound { .. }) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::error::chain;
    use super::*;
    use crate::{ErrorKind, ObjectStoreExt};

    #[test]
    fn copy_sources_are_percent_encoded() {
        assert_eq!(
            copy_source("b", "p/with space+plus&amp=eq%25.txt"),
            "b/p/with%20space%2Bplus%26amp%3Deq%2525.txt"
        );
        assert_eq!(
            copy_source("b", "x/unicodé;'\"()"),
            "b/x/unicod%C3%A9%3B%27%22%28%29"
        );
    }

    #[test]
    fn content_ranges_are_parsed() {
        assert_eq!(parse_content_range("bytes 0-9/1000"), Some((0..10, 1000)));
        assert_eq!(
            parse_content_range("bytes 990-999/1000"),
            Some((990..1000, 1000))
        );
        assert_eq!(parse_content_range("bytes */1000"), None);
        assert_eq!(parse_content_range("bytes 5-4/10"), None);
    }

    #[test]
    fn etags_compare_with_or_without_quotes() {
        assert!(crate::store::same_etag("\"abc\"", "abc"));
        assert!(!crate::store::same_etag("\"abc\"", "\"abd\""));
    }

    #[tokio::test]
    async fn display_names_bucket_and_prefix() {
        let store = S3Store::builder("media")
            .prefix(ObjectKey::parse("prod/v1").unwrap_or_else(|e| panic!("{e}")))
            .endpoint("http://127.0.0.1:1")
            .region("test")
            .credentials("id", "secret")
            .build()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.to_string(), "S3(media/prod/v1)");
        assert!(!format!("{store:?}").contains("secret"));
        let key = ObjectKey::parse("a/b").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.full_key(&key), "prod/v1/a/b");
        assert_eq!(store.key_of("prod/v1/a/b"), Some(key));
        assert_eq!(store.key_of("prod/v10/a"), None);
    }

    #[tokio::test]
    async fn unreachable_servers_are_unavailable() {
        // Port 1 on localhost refuses connections at once.
        let store = S3Store::builder("b")
            .endpoint("http://127.0.0.1:1")
            .region("test")
            .credentials("id", "secret")
            .build()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let key = ObjectKey::parse("a/b").unwrap_or_else(|e| panic!("{e}"));
        let err = store.head(&key).await.err();
        assert_eq!(
            err.as_ref().map(Error::kind),
            Some(ErrorKind::Unavailable),
            "{err:?}"
        );
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.starts_with("head of a/b from S3(b)"), "{message}");
    }

    /// The test bucket of `VIDEOSYNC_TEST_S3_URL`, under a fresh prefix; `None`
    /// to skip where it is not set (a failure under
    /// `VIDEOSYNC_REQUIRE_SERVICES=1`, as with the conformance suite).
    async fn test_store() -> Option<S3Store> {
        let Ok(url) = std::env::var("VIDEOSYNC_TEST_S3_URL") else {
            assert!(
                !std::env::var("VIDEOSYNC_REQUIRE_SERVICES").is_ok_and(|v| v == "1"),
                "VIDEOSYNC_TEST_S3_URL is not set but VIDEOSYNC_REQUIRE_SERVICES=1"
            );
            return None;
        };
        let mut store = S3Store::from_url(&url)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let prefix = format!("s3-unit/{}", uuid::Uuid::new_v4().simple());
        store.prefix = Some(ObjectKey::parse(&prefix).unwrap_or_else(|e| panic!("{e}")));
        Some(store)
    }

    async fn open_uploads(store: &S3Store) -> usize {
        let prefix = store.prefix.as_ref().map(|p| format!("{p}/"));
        store
            .client
            .list_multipart_uploads()
            .bucket(&store.bucket)
            .set_prefix(prefix)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}", chain(&e)))
            .uploads()
            .len()
    }

    /// Parts uploaded so far to the first open upload under the store's
    /// prefix (zero when there is none).
    async fn parts_uploaded(store: &S3Store) -> usize {
        let prefix = store.prefix.as_ref().map(|p| format!("{p}/"));
        let uploads = store
            .client
            .list_multipart_uploads()
            .bucket(&store.bucket)
            .set_prefix(prefix)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}", chain(&e)));
        let Some(upload) = uploads.uploads().first() else {
            return 0;
        };
        store
            .client
            .list_parts()
            .bucket(&store.bucket)
            .key(upload.key().unwrap_or_default())
            .upload_id(upload.upload_id().unwrap_or_default())
            .send()
            .await
            .map(|r| r.parts().len())
            .unwrap_or(0)
    }

    /// The conformance suite sees that a failed streamed put leaves the old
    /// object; only here can a test see that it leaves no upload behind
    /// either, also when the put is cancelled.
    #[tokio::test]
    async fn failed_and_cancelled_streamed_puts_abort_their_uploads() {
        let Some(store) = test_store().await else {
            return;
        };
        let key = ObjectKey::parse("big").unwrap_or_else(|e| panic!("{e}"));
        let chunk = Bytes::from(vec![1u8; 1024 * 1024]);
        let chunks = || (0..20).map(|_| Ok(chunk.clone())).collect::<Vec<_>>();

        let mut failing = chunks();
        failing.push(Err(Error::unavailable("client went away", "reset")));
        let failing = futures::stream::iter(failing).boxed();
        let err = store.put(&key, PutPayload::Stream(failing)).await.err();
        assert_eq!(err.map(|e| e.kind()), Some(ErrorKind::Unavailable));
        assert_eq!(open_uploads(&store).await, 0);

        // A stream that stalls after two parts' worth: the put is cancelled
        // mid-upload.
        let stalled = futures::stream::iter(chunks())
            .chain(futures::stream::pending())
            .boxed();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let put = {
            let (store, key) = (store.clone(), key.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = store.put(&key, PutPayload::Stream(stalled)) => {}
                    _ = rx => {}
                }
            })
        };
        // Wait (bounded) until a part has landed, so the put holds the
        // upload's id and its abort guard, then cancel the put. (Cancelled
        // between the server creating the upload and the client hearing of
        // it, no client can abort it: that orphan is what a bucket's
        // lifecycle rule for incomplete uploads is for.)
        let mut started = false;
        for _ in 0..200 {
            if parts_uploaded(&store).await > 0 {
                started = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(started, "the streamed put never uploaded a part");
        let _ = tx.send(());
        put.await.unwrap_or_else(|e| panic!("{e}"));
        // The abort runs in the background: wait for it, bounded (10 s).
        let mut left = usize::MAX;
        for _ in 0..200 {
            left = open_uploads(&store).await;
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(left, 0, "the cancelled put's upload was not aborted");
        assert_eq!(
            store.head(&key).await.err().map(|e| e.kind()),
            Some(ErrorKind::NotFound)
        );
    }
}
