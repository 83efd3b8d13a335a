//! [`S3Store`]: objects in a bucket of any S3-compatible server (AWS S3,
//! Garage, MinIO, Ceph RGW, Cloudflare R2), through `aws-sdk-s3`.
//!
//! # Configuration
//!
//! [`S3Store::from_url`] takes `s3://bucket[/prefix]?endpoint=URL&region=NAME`
//! (what [`store_from_url`](super::store_from_url) hands it); credentials come
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
//!   and [`ObjectStore::list`] report the server's own time (for a
//!   multipart upload, S3's is when the upload started).
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
//! | connection failures, timeouts, throttling, 5xx | `Unavailable` |
//! | anything else (`AccessDenied`, `NoSuchBucket`, ...) | `Backend` |
//!
//! Every message says what was being done, with which key, in which store:
//! `get of videos/abc/master.m3u8 from S3(media/prod): no such object`.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use super::{
    check_completion, check_part_number, check_presign_expiry, payload_stream, ByteStream,
    GetOptions, GetRange, GetResult, MultipartId, ObjectKey, ObjectMeta, ObjectStore, PartId,
    PresignMethod, PutPayload, MAX_PART_NUMBER,
};
use crate::{BoxError, Clock, Error, ErrorKind, Result, SystemClock, Timestamp};

/// Size of the parts a streamed put is cut into, and how much of a stream is
/// buffered before a put turns into a multipart upload (8 MiB).
pub const STREAM_PART_SIZE: usize = 8 * 1024 * 1024;

/// Region used when neither the URL, the builder nor `AWS_REGION` names one.
const DEFAULT_REGION: &str = "us-east-1";

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
/// use videosync_core::{ObjectKey, ObjectStore};
///
/// # async fn demo() -> videosync_core::Result<()> {
/// let store = S3Store::builder("media")
///     .prefix(ObjectKey::parse("prod")?)
///     .endpoint("http://127.0.0.1:3900")
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
    bucket: String,
    prefix: Option<ObjectKey>,
    endpoint: Option<String>,
    region: String,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix.as_ref().map(ObjectKey::as_str))
            .field("endpoint", &self.endpoint)
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

/// Settings of an [`S3Store`], made by [`S3Store::builder`].
#[derive(Clone)]
pub struct S3StoreBuilder {
    bucket: String,
    prefix: Option<ObjectKey>,
    endpoint: Option<String>,
    region: Option<String>,
    credentials: Option<Credentials>,
    path_style: bool,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for S3StoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Credentials`' own Debug redacts the secret.
        f.debug_struct("S3StoreBuilder")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix.as_ref().map(ObjectKey::as_str))
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("credentials", &self.credentials)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

impl S3StoreBuilder {
    /// Puts every key under `prefix` (followed by `/`) in the bucket.
    pub fn prefix(mut self, prefix: ObjectKey) -> Self {
        self.prefix = Some(prefix);
        self
    }

    /// Talks to the server at `endpoint` (`http://127.0.0.1:3900`) instead of
    /// AWS S3.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Signs requests for `region`; without it, `AWS_REGION`, else
    /// `us-east-1`.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Uses this access key instead of the AWS default credential chain
    /// (environment, profile files, web identity, container and instance
    /// roles).
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.credentials = Some(Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "videosync",
        ));
        self
    }

    /// Uses these temporary credentials (an access key with its session
    /// token) instead of the AWS default credential chain.
    pub fn session_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: impl Into<String>,
    ) -> Self {
        self.credentials = Some(Credentials::new(
            access_key_id,
            secret_access_key,
            Some(session_token.into()),
            None,
            "videosync",
        ));
        self
    }

    /// Whether to address the bucket in the path (`ENDPOINT/bucket/key`, the
    /// default, which every S3-compatible server understands) or in the host
    /// name (`bucket.ENDPOINT/key`).
    pub fn path_style(mut self, path_style: bool) -> Self {
        self.path_style = path_style;
        self
    }

    /// Stamps the metadata that writes return with `clock` (the system clock
    /// by default).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Makes the store. Nothing is sent to the server yet: a wrong endpoint
    /// or credentials show up at the first request.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty or malformed bucket name, an
    /// endpoint that is not an `http` or `https` URL, or an empty region.
    pub async fn build(self) -> Result<S3Store> {
        check_bucket(&self.bucket)?;
        if let Some(endpoint) = &self.endpoint {
            check_endpoint(endpoint)?;
        }
        let region = match self.region {
            Some(r) if r.trim().is_empty() => {
                return Err(Error::invalid_input(format!(
                    "S3 store for bucket {}: the region is empty",
                    self.bucket
                )))
            }
            Some(r) => r,
            None => std::env::var("AWS_REGION")
                .ok()
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_REGION.to_owned()),
        };
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.clone()));
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(credentials) = self.credentials {
            loader = loader.credentials_provider(credentials);
        }
        let sdk_config = loader.load().await;
        let config = aws_sdk_s3::config::Builder::from(&sdk_config)
            .force_path_style(self.path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Ok(S3Store {
            client: Client::from_conf(config),
            bucket: self.bucket,
            prefix: self.prefix,
            endpoint: self.endpoint,
            region,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock::new())),
        })
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
            region: None,
            credentials: None,
            path_style: true,
            clock: None,
        }
    }

    /// The store behind `s3://bucket[/prefix]?endpoint=URL&region=NAME`.
    ///
    /// Both parameters are optional: without `endpoint` the store talks to
    /// AWS S3, without `region` it takes `AWS_REGION`, else `us-east-1`.
    /// Credentials come from the AWS default chain, the environment
    /// variables `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and
    /// `AWS_SESSION_TOKEN`) first.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a malformed URL: no bucket, a prefix that
    /// is not an [`ObjectKey`], a bad endpoint, an unknown or repeated
    /// parameter, or credentials in the URL.
    pub async fn from_url(url: &str) -> Result<Self> {
        parse_url(url)?.build().await
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix every key is stored under, if any.
    pub fn prefix(&self) -> Option<&ObjectKey> {
        self.prefix.as_ref()
    }

    /// The `aws-sdk-s3` client, for what this store does not do.
    pub fn client(&self) -> &Client {
        &self.client
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
        what: &str,
    ) -> Result<ObjectMeta> {
        let size = data.len() as u64;
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(full)
            .body(data.into())
            .send()
            .await
            .map_err(|e| sdk_error(what, e))?;
        Ok(ObjectMeta {
            key: key.clone(),
            size,
            last_modified: self.clock.now(),
            etag: out.e_tag,
        })
    }

    /// Writes a stream: one `PutObject` when it fits in one part, a multipart
    /// upload otherwise (see the module docs).
    async fn put_stream(
        &self,
        key: &ObjectKey,
        full: &str,
        mut body: ByteStream,
        what: &str,
    ) -> Result<ObjectMeta> {
        let mut buf = BytesMut::new();
        if fill(&mut body, &mut buf, STREAM_PART_SIZE).await? {
            return self.put_bytes(key, full, buf.freeze(), what).await;
        }
        let upload_id = self.start_upload(full, what).await?;
        let mut guard = AbortOnDrop {
            store: Some((self.clone(), full.to_owned(), upload_id.clone())),
        };
        let result = self
            .stream_parts(key, full, &upload_id, body, buf, what)
            .await;
        guard.store = None;
        if result.is_err() {
            self.abort_quietly(full, &upload_id).await;
        }
        result
    }

    async fn stream_parts(
        &self,
        key: &ObjectKey,
        full: &str,
        upload_id: &str,
        mut body: ByteStream,
        mut buf: BytesMut,
        what: &str,
    ) -> Result<ObjectMeta> {
        let mut parts = Vec::new();
        let mut size = 0u64;
        let mut ended = false;
        loop {
            // Here the buffer holds more than a part, or the stream has ended.
            if ended && buf.len() <= STREAM_PART_SIZE {
                if !buf.is_empty() {
                    let number = next_part_number(&parts, what)?;
                    let data = buf.split().freeze();
                    size += data.len() as u64;
                    let etag = self.send_part(full, upload_id, number, data, what).await?;
                    parts.push(completed_part(number, etag));
                }
                break;
            }
            let number = next_part_number(&parts, what)?;
            let data = buf.split_to(STREAM_PART_SIZE).freeze();
            size += data.len() as u64;
            let etag = if ended {
                self.send_part(full, upload_id, number, data, what).await?
            } else {
                // Read the next part while this one is on the wire.
                let (etag, now_ended) = tokio::try_join!(
                    self.send_part(full, upload_id, number, data, what),
                    fill(&mut body, &mut buf, STREAM_PART_SIZE),
                )?;
                ended = now_ended;
                etag
            };
            parts.push(completed_part(number, etag));
        }
        let etag = self.finish_upload(full, upload_id, parts, what).await?;
        Ok(ObjectMeta {
            key: key.clone(),
            size,
            last_modified: self.clock.now(),
            etag,
        })
    }

    async fn start_upload(&self, full: &str, what: &str) -> Result<String> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .send()
            .await
            .map_err(|e| sdk_error(what, e))?;
        out.upload_id
            .ok_or_else(|| Error::backend(what, "the server returned no upload id"))
    }

    async fn send_part(
        &self,
        full: &str,
        upload_id: &str,
        number: u32,
        data: Bytes,
        what: &str,
    ) -> Result<String> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .part_number(part_number_i32(number))
            .body(data.into())
            .send()
            .await
            .map_err(|e| sdk_error(what, e))?;
        out.e_tag.ok_or_else(|| {
            Error::backend(
                what,
                format!("the server returned no ETag for part {number}"),
            )
        })
    }

    async fn finish_upload(
        &self,
        full: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
        what: &str,
    ) -> Result<Option<String>> {
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_error(what, e))?;
        Ok(out.e_tag)
    }

    /// Aborts an upload after a failure; the failure is what the caller
    /// hears about, so an abort that fails too is only logged.
    async fn abort_quietly(&self, full: &str, upload_id: &str) {
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(e) = result {
            tracing::warn!(
                store = %self,
                key = full,
                upload_id,
                error = %chain(&e),
                "aborting a failed multipart upload failed; its parts stay until the bucket's lifecycle rules remove them"
            );
        }
    }

    /// The parts uploaded so far: number to (ETag, size).
    async fn uploaded_parts(
        &self,
        full: &str,
        upload_id: &str,
        what: &str,
    ) -> Result<HashMap<u32, (String, u64)>> {
        let mut parts = HashMap::new();
        let mut pages = self
            .client
            .list_parts()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error(what, e))?;
            for part in page.parts() {
                let (Some(number), Some(etag)) = (part.part_number(), part.e_tag()) else {
                    continue;
                };
                let Ok(number) = u32::try_from(number) else {
                    continue;
                };
                parts.insert(number, (etag.to_owned(), size_of(part.size())));
            }
        }
        Ok(parts)
    }

    /// Turns a `GetObject` answer into a [`GetResult`] for `range`.
    fn get_result(
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

/// Aborts a multipart upload in the background when a streamed put is
/// dropped before it finished (its future cancelled), so that its parts do
/// not linger.
struct AbortOnDrop {
    store: Option<(S3Store, String, String)>,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some((store, full, upload_id)) = self.store.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { store.abort_quietly(&full, &upload_id).await });
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &ObjectKey, payload: PutPayload) -> Result<ObjectMeta> {
        let what = format!("put of {key} to {self}");
        let full = self.full_key(key);
        match payload {
            PutPayload::Bytes(data) => self.put_bytes(key, &full, data, &what).await,
            stream => {
                self.put_stream(key, &full, payload_stream(stream), &what)
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
            etag: out.e_tag,
        })
    }

    async fn list(&self, prefix: Option<&ObjectKey>) -> Result<Vec<ObjectMeta>> {
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
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_prefix(list_prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error(&what, e))?;
            for object in page.contents() {
                let Some(key) = object.key().and_then(|name| self.key_of(name)) else {
                    continue;
                };
                out.push(ObjectMeta {
                    key,
                    size: size_of(object.size()),
                    last_modified: timestamp(object.last_modified()),
                    etag: object.e_tag().map(str::to_owned),
                });
            }
        }
        // S3 lists in UTF-8 byte order, which is the keys' order too; sorting
        // keeps the contract with servers that do not.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
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
        let id = self.start_upload(&self.full_key(key), &what).await?;
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
            .finish_upload(&full, &upload.0, completed, &what)
            .await?;
        Ok(ObjectMeta {
            key: key.clone(),
            size,
            last_modified: self.clock.now(),
            etag,
        })
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

    async fn presign(
        &self,
        method: PresignMethod,
        key: &ObjectKey,
        expires_in: Duration,
    ) -> Result<String> {
        check_presign_expiry(key, expires_in).map_err(|e| self.located(e))?;
        let what = format!("presigning a {method:?} of {key} in {self}");
        let config = PresigningConfig::expires_in(expires_in)
            .map_err(|e| Error::invalid_input(format!("{what}: {e}")))?;
        let full = self.full_key(key);
        let request = match method {
            PresignMethod::Get => self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(full)
                .presigned(config)
                .await
                .map_err(|e| sdk_error(&what, e))?,
            PresignMethod::Put => self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(full)
                .presigned(config)
                .await
                .map_err(|e| sdk_error(&what, e))?,
        };
        Ok(request.uri().to_owned())
    }
}

/// Reads from `body` into `buf` until it holds more than `want` bytes or the
/// body ends; returns whether it ended.
async fn fill(body: &mut ByteStream, buf: &mut BytesMut, want: usize) -> Result<bool> {
    while buf.len() <= want {
        match body.try_next().await? {
            Some(chunk) => buf.extend_from_slice(&chunk),
            None => return Ok(true),
        }
    }
    Ok(false)
}

/// The number of the part after `parts`.
///
/// # Errors
/// [`Error::InvalidInput`] when the stream needs more than
/// [`MAX_PART_NUMBER`] parts.
fn next_part_number(parts: &[CompletedPart], what: &str) -> Result<u32> {
    let number = u32::try_from(parts.len() + 1).unwrap_or(u32::MAX);
    if number > MAX_PART_NUMBER {
        return Err(Error::invalid_input(format!(
            "{what}: the stream is longer than {MAX_PART_NUMBER} parts of {STREAM_PART_SIZE} bytes"
        )));
    }
    Ok(number)
}

fn completed_part(number: u32, etag: String) -> CompletedPart {
    CompletedPart::builder()
        .part_number(part_number_i32(number))
        .e_tag(etag)
        .build()
}

/// A part number as the SDK wants it; numbers are checked against
/// `1..=10000` before they get here.
fn part_number_i32(number: u32) -> i32 {
    i32::try_from(number).unwrap_or(i32::MAX)
}

/// Whether two ETags name the same content; servers differ in whether they
/// quote them.
fn same_etag(a: &str, b: &str) -> bool {
    a.trim_matches('"') == b.trim_matches('"')
}

/// A size from S3; a missing or negative one (no real server sends either)
/// reads as 0.
fn size_of(size: Option<i64>) -> u64 {
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

fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

fn is_unsatisfiable<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    status(err) == Some(416) || err.code() == Some("InvalidRange")
}

/// The object's size from the `Content-Range: bytes */size` of a 416.
fn unsatisfied_size<E>(err: &SdkError<E, HttpResponse>) -> Option<u64> {
    let response = err.raw_response().filter(|r| r.status().as_u16() == 416)?;
    let header = response.headers().get("content-range")?;
    header.trim().strip_prefix("bytes */")?.trim().parse().ok()
}

fn is_changed<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    status(err) == Some(412) || err.code() == Some("PreconditionFailed")
}

/// An SDK error, with what S3 said, kept as the `source` of an [`Error`].
#[derive(Debug)]
struct S3Failure {
    detail: String,
    source: BoxError,
}

impl fmt::Display for S3Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for S3Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// The category of an SDK error (see the table in the module docs).
fn category<E>(err: &SdkError<E, HttpResponse>, code: Option<&str>) -> ErrorKind {
    match code {
        Some("NoSuchKey" | "NoSuchUpload" | "NotFound") => return ErrorKind::NotFound,
        Some("InvalidRange" | "EntityTooSmall" | "InvalidPart" | "InvalidPartOrder") => {
            return ErrorKind::InvalidInput
        }
        Some(
            "SlowDown"
            | "ServiceUnavailable"
            | "InternalError"
            | "RequestTimeout"
            | "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded",
        ) => return ErrorKind::Unavailable,
        _ => {}
    }
    match status(err) {
        // A missing bucket is a configuration error, not a missing object.
        Some(404) if code != Some("NoSuchBucket") => ErrorKind::NotFound,
        Some(416) => ErrorKind::InvalidInput,
        Some(429 | 500..) => ErrorKind::Unavailable,
        Some(_) => ErrorKind::Backend,
        None => match err {
            SdkError::TimeoutError(_) => ErrorKind::Unavailable,
            SdkError::DispatchFailure(d) if !d.is_user() => ErrorKind::Unavailable,
            _ => ErrorKind::Backend,
        },
    }
}

/// An error and its sources, `: `-separated (SDK errors say little on their
/// own: "dispatch failure").
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

/// Converts an SDK error into an [`Error`] whose message starts with `what`.
fn sdk_error<E>(what: &str, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().map(str::to_owned);
    let kind = category(&err, code.as_deref());
    let detail = match (code.as_deref(), status(&err)) {
        (Some("NoSuchKey"), _) => "no such object".to_owned(),
        (Some("NoSuchUpload"), _) => "no such multipart upload".to_owned(),
        (None | Some("NotFound"), Some(404)) => "no such object".to_owned(),
        (Some(code), status) => {
            let status = status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
            match err.message() {
                Some(m) => format!("{code}{status}: {m}"),
                None => format!("{code}{status}"),
            }
        }
        // A HEAD's error has no body, so no code to tell.
        (None, Some(403)) if matches!(err, SdkError::ServiceError(_)) => {
            "HTTP 403: access denied (check the credentials, the region and the bucket's permissions)"
                .to_owned()
        }
        (None, Some(status)) if matches!(err, SdkError::ServiceError(_)) => {
            format!("HTTP {status}")
        }
        (None, Some(status)) => format!("HTTP {status}: {}", chain(&err)),
        (None, None) => chain(&err),
    };
    match kind {
        ErrorKind::NotFound => Error::not_found(format!("{what}: {detail}")),
        ErrorKind::InvalidInput => Error::invalid_input(format!("{what}: {detail}")),
        ErrorKind::Unavailable => Error::unavailable(
            what,
            S3Failure {
                detail,
                source: Box::new(err),
            },
        ),
        _ => Error::backend(
            what,
            S3Failure {
                detail,
                source: Box::new(err),
            },
        ),
    }
}

/// Checks a bucket name enough that it cannot break a request's URL; the
/// server checks the rest.
fn check_bucket(bucket: &str) -> Result<()> {
    let ok = !bucket.is_empty()
        && bucket.len() <= 255
        && bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "S3 bucket name `{}` is empty or has characters other than letters, digits, `-`, `.` and `_`",
            bucket.escape_debug()
        )))
    }
}

/// Checks that an endpoint is an `http` or `https` URL of a host.
fn check_endpoint(endpoint: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid_input(format!(
            "S3 endpoint `{}` {why}",
            crate::redact_url(endpoint).escape_debug()
        )))
    };
    let Ok(url) = url::Url::parse(endpoint) else {
        return bad("is not a URL");
    };
    if !matches!(url.scheme(), "http" | "https") {
        return bad("is not an http or https URL");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return bad("names no host");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return bad("has a query or fragment");
    }
    Ok(())
}

/// Reads `s3://bucket[/prefix]?endpoint=URL&region=NAME` into a builder.
fn parse_url(raw: &str) -> Result<S3StoreBuilder> {
    let shown = || crate::redact_url(raw);
    let bad = |why: String| Error::invalid_input(format!("S3 URL `{}`: {why}", shown()));
    let url = url::Url::parse(raw).map_err(|e| bad(format!("not a URL ({e})")))?;
    if url.scheme() != "s3" {
        return Err(bad(format!("the scheme is `{}`, not `s3`", url.scheme())));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials do not go in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                .to_owned(),
        ));
    }
    if url.port().is_some() {
        return Err(bad(
            "a bucket has no port; give the server as `?endpoint=http://host:port`".to_owned(),
        ));
    }
    let bucket = match url.host_str() {
        Some(b) if !b.is_empty() => b.to_owned(),
        _ => return Err(bad("no bucket: expected s3://bucket[/prefix]".to_owned())),
    };
    let mut builder = S3Store::builder(bucket);
    let path = url.path().trim_matches('/');
    if !path.is_empty() {
        let decoded = percent_decode(path).ok_or_else(|| {
            bad(format!(
                "the prefix `{path}` is not valid percent-encoded UTF-8"
            ))
        })?;
        let prefix = ObjectKey::parse(&decoded)
            .map_err(|e| bad(format!("the prefix is not a valid key: {e}")))?;
        builder = builder.prefix(prefix);
    }
    let (mut endpoint, mut region) = (None, None);
    for (name, value) in url.query_pairs() {
        let slot = match name.as_ref() {
            "endpoint" => &mut endpoint,
            "region" => &mut region,
            other => {
                return Err(bad(format!(
                    "unknown parameter `{}`; expected endpoint or region",
                    other.escape_debug()
                )))
            }
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(bad(format!("parameter `{name}` is given twice")));
        }
    }
    if let Some(endpoint) = endpoint {
        check_endpoint(&endpoint).map_err(|e| bad(e.to_string()))?;
        builder = builder.endpoint(endpoint);
    }
    if let Some(region) = region {
        if region.trim().is_empty() {
            return Err(bad("the region is empty".to_owned()));
        }
        builder = builder.region(region);
    }
    Ok(builder)
}

/// Decodes `%XX` escapes; `None` for a broken escape or bytes that are not
/// UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
    use super::*;

    fn parsed(url: &str) -> S3StoreBuilder {
        parse_url(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn refused(url: &str) -> String {
        match parse_url(url) {
            Ok(b) => panic!("{url} was accepted: {b:?}"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}: {e}");
                e.to_string()
            }
        }
    }

    #[test]
    fn urls_are_read() {
        let b = parsed("s3://videosync-test?endpoint=http://127.0.0.1:3900&region=garage");
        assert_eq!(b.bucket, "videosync-test");
        assert_eq!(b.prefix, None);
        assert_eq!(b.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(b.region.as_deref(), Some("garage"));
        assert!(b.path_style);

        let b = parsed("s3://media/prod/v%C3%A9/x/");
        assert_eq!(b.bucket, "media");
        assert_eq!(b.prefix.as_ref().map(ObjectKey::as_str), Some("prod/vé/x"));
        assert_eq!(b.endpoint, None);
        assert_eq!(b.region, None);
    }

    #[test]
    fn malformed_urls_say_what_is_wrong() {
        let cases = [
            ("s3://", "no bucket"),
            ("s3:///prefix", "no bucket"),
            ("s3://b?endpoint=ftp://x", "not an http or https URL"),
            ("s3://b?endpoint=nonsense", "is not a URL"),
            ("s3://b?bogus=1", "unknown parameter `bogus`"),
            ("s3://b?region=a&region=b", "given twice"),
            ("s3://b?region=", "region is empty"),
            ("s3://b/a%5Cb", "not a valid key"),
            ("s3://b:9000", "no port"),
            ("s3://b/%ZZ", "percent-encoded"),
        ];
        for (url, why) in cases {
            let err = refused(url);
            assert!(err.contains(why), "{url}: {err}");
        }
        let err = refused("s3://key:hunter2@b");
        assert!(!err.contains("hunter2"), "the secret is redacted: {err}");
        assert!(err.contains("credentials"), "{err}");
    }

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
        assert!(same_etag("\"abc\"", "abc"));
        assert!(!same_etag("\"abc\"", "\"abd\""));
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
