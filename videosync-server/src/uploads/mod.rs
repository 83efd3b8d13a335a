//! Resumable uploads by the tus 1.0 protocol (core, creation,
//! creation-with-upload, creation-defer-length, termination, checksum,
//! expiration) over the core's upload sessions, so standard clients
//! (tus-js-client, tuspy) work unchanged.
//!
//! - `OPTIONS /api/v1/uploads`: what the server supports.
//! - `POST /api/v1/uploads`: starts an upload (bearer token; metadata
//!   `channel` and `title`, optionally `description` and `filename`);
//!   answers its URL in `Location` and the video it becomes in
//!   `Videosync-Video-Id`.
//! - `HEAD`, `PATCH`, `DELETE /api/v1/uploads/{id}`: where it stands, more
//!   bytes, give up. Only the uploader reaches an upload; anyone else gets
//!   404.
//!
//! Bytes stream to the store as they arrive (memory bounded per upload by
//! the core); any instance continues an upload another started, also after
//! a restart. The first bytes must look like a media container the
//! configuration allows, or the upload ends at once with 415. When the
//! last byte is stored the video appears, `pending`, with a transcode job
//! on the queue ([`crate::processing`]).

pub mod direct;
pub mod sniff;
pub mod tus;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::options;
use axum::Router;
use bytes::BytesMut;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;
use tower_http::set_header::SetResponseHeaderLayer;
use videosync_core::db::{Permission, User};
use videosync_core::store::ByteStream;
use videosync_core::uploads::{NewUpload, UploadId, UploadInfo, UploadState};
use videosync_core::{ChannelId, ErrorKind, ObjectKey, UserId, Video, VideoId};

use crate::auth::{Authed, Caller};
use crate::channels::load;
use crate::error::{code, ApiError, ApiResult};
use crate::state::{App, AppState};

/// Metadata keys the server keeps for itself (clients may not send them).
const OWN_PREFIX: &str = "vs.";
const META_USER: &str = "vs.user";
const META_VIDEO: &str = "vs.video";

/// The routes of this capability.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/uploads", options(capabilities).post(create))
        .route(
            "/api/v1/uploads/{id}",
            axum::routing::head(status).patch(append).delete(terminate),
        )
        .layer(SetResponseHeaderLayer::overriding(
            tus::TUS_RESUMABLE,
            HeaderValue::from_static(tus::VERSION),
        ))
}

/// `OPTIONS`: the protocol version, extensions, size limit and checksums.
async fn capabilities(State(app): State<AppState>) -> Response {
    let mut h = HeaderMap::new();
    h.insert(tus::TUS_VERSION, HeaderValue::from_static(tus::VERSION));
    h.insert(
        tus::TUS_EXTENSION,
        HeaderValue::from_static(tus::EXTENSIONS),
    );
    h.insert(tus::TUS_MAX_SIZE, app.upload_limits.max_size_bytes.into());
    h.insert(
        tus::TUS_CHECKSUM_ALGORITHM,
        HeaderValue::from_static(tus::CHECKSUM_ALGORITHMS),
    );
    (StatusCode::NO_CONTENT, h).into_response()
}

/// What a client asks an upload to become.
#[derive(Debug)]
struct Intent {
    channel: ChannelId,
    title: String,
    description: String,
}

impl Intent {
    fn from_metadata(m: &BTreeMap<String, String>) -> ApiResult<Intent> {
        if let Some(k) = m.keys().find(|k| k.starts_with(OWN_PREFIX)) {
            return Err(ApiError::bad_request(format!(
                "Upload-Metadata: `{}` is reserved (keys starting `{OWN_PREFIX}`)",
                k.escape_debug()
            )));
        }
        let channel = m
            .get("channel")
            .ok_or_else(|| ApiError::bad_request("Upload-Metadata must name the `channel`"))?
            .parse()
            .map_err(|_| ApiError::bad_request("Upload-Metadata: `channel` is not a channel id"))?;
        let title = match m.get("title").map(|t| t.trim()) {
            Some(t) if !t.is_empty() => t.to_owned(),
            _ => title_from_filename(m.get("filename").map(String::as_str)),
        };
        Ok(Intent {
            channel,
            title,
            description: m.get("description").cloned().unwrap_or_default(),
        })
    }
}

/// A title from a file name: its stem, without path or control
/// characters, at most 300 characters; "Untitled" when nothing is left.
fn title_from_filename(name: Option<&str>) -> String {
    let name = name.unwrap_or_default();
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let stem = match base.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => base,
    };
    let clean: String = stem.chars().filter(|c| !c.is_control()).take(300).collect();
    match clean.trim() {
        "" => "Untitled".to_owned(),
        t => t.to_owned(),
    }
}

/// `POST`: starts an upload into a channel the caller may upload to.
async fn create(
    State(app): State<AppState>,
    Authed(user): Authed,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    tus::check_resumable(&headers)?;
    let total = tus::creation_length(&headers)?;
    let max = app.upload_limits.max_size_bytes;
    if total.is_some_and(|t| t > max) {
        return Err(too_large(max));
    }
    let mut metadata = tus::metadata(&headers)?;
    let intent = Intent::from_metadata(&metadata)?;
    // The same checks as a video made by the API, before any byte comes.
    videosync_core::NewVideo {
        description: intent.description.clone(),
        ..videosync_core::NewVideo::titled(intent.title.clone())
    }
    .validate()?;
    let caller = Caller::User(Box::new(user.clone()));
    load(&app, &caller, intent.channel)
        .await?
        .require(Permission::Upload)?;
    check_quota(&app, user.id, total.unwrap_or(0)).await?;
    let video = VideoId::new();
    metadata.insert(META_USER.to_owned(), user.id.to_string());
    metadata.insert(META_VIDEO.to_owned(), video.to_string());
    let key = source_key(video)?;
    let mut new = NewUpload::new(key).ttl(Duration::from_secs(app.upload_limits.expiry_seconds));
    new.total = total;
    new.metadata = metadata;
    let info = app.uploads.create(new).await?;
    tracing::info!(upload = %info.id, %video, channel = %intent.channel, total, "upload started");
    let location = format!("/api/v1/uploads/{}", info.id);
    let mut h = HeaderMap::new();
    h.insert(header::LOCATION, header_value(&location)?);
    h.insert(tus::VIDEO_ID, header_value(&video.to_string())?);
    // creation-with-upload: the body holds the first bytes.
    let has_body = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == tus::OFFSET_OCTET_STREAM.as_bytes());
    let info = if has_body {
        let (info, video) = write(&app, &user, info, 0, &headers, body).await?;
        if let Some(v) = video {
            h.insert(tus::VIDEO_ID, header_value(&v.id.to_string())?);
        }
        info
    } else {
        info
    };
    h.insert(tus::UPLOAD_OFFSET, info.offset.into());
    h.insert(
        tus::UPLOAD_EXPIRES,
        header_value(&tus::http_date(info.expires_at.as_millis()))?,
    );
    Ok((StatusCode::CREATED, h).into_response())
}

/// `HEAD`: the offset to resume from (and the length and metadata).
async fn status(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    tus::check_resumable(&headers)?;
    let info = owned_upload(&app, user.id, &id).await?;
    let mut h = HeaderMap::new();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(tus::UPLOAD_OFFSET, info.offset.into());
    match info.total {
        Some(t) => h.insert(tus::UPLOAD_LENGTH, t.into()),
        None => h.insert(tus::UPLOAD_DEFER_LENGTH, HeaderValue::from_static("1")),
    };
    let shown = info
        .metadata
        .iter()
        .filter(|(k, _)| !k.starts_with(OWN_PREFIX))
        .map(|(k, v)| (k.as_str(), v.as_str()));
    if let Ok(v) = HeaderValue::from_str(&tus::encode_metadata(shown)) {
        h.insert(tus::UPLOAD_METADATA, v);
    }
    h.insert(tus::VIDEO_ID, header_value(&video_of(&info)?.to_string())?);
    if info.state == UploadState::Open {
        h.insert(
            tus::UPLOAD_EXPIRES,
            header_value(&tus::http_date(info.expires_at.as_millis()))?,
        );
    } else if info.state == UploadState::Finished {
        // A crash between the last byte and the video leaves it to be
        // made here, when the client checks where it stands.
        crate::processing::upload_finished(&app, &user, &finished_of(&info)?).await?;
    }
    Ok((StatusCode::OK, h).into_response())
}

/// `PATCH`: bytes at the current offset.
async fn append(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    tus::check_resumable(&headers)?;
    let is_octets = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == tus::OFFSET_OCTET_STREAM.as_bytes());
    if !is_octets {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::UNSUPPORTED_MEDIA_TYPE,
            format!("a PATCH body is Content-Type: {}", tus::OFFSET_OCTET_STREAM),
        ));
    }
    let at = tus::number(&headers, &tus::UPLOAD_OFFSET)?
        .ok_or_else(|| ApiError::bad_request("Upload-Offset is required"))?;
    let info = owned_upload(&app, user.id, &id).await?;
    let (info, video) = write(&app, &user, info, at, &headers, body).await?;
    let mut h = HeaderMap::new();
    h.insert(tus::UPLOAD_OFFSET, info.offset.into());
    if info.state == UploadState::Open {
        h.insert(
            tus::UPLOAD_EXPIRES,
            header_value(&tus::http_date(info.expires_at.as_millis()))?,
        );
    }
    if let Some(v) = video {
        h.insert(tus::VIDEO_ID, header_value(&v.id.to_string())?);
    }
    Ok((StatusCode::NO_CONTENT, h).into_response())
}

/// `DELETE`: gives the upload up and removes its bytes.
async fn terminate(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    tus::check_resumable(&headers)?;
    let info = owned_upload(&app, user.id, &id).await?;
    if info.state == UploadState::Finished {
        return Err(ApiError::conflict(
            "the upload is complete; delete the video instead",
        ));
    }
    app.uploads.abort(&info.id).await?;
    tracing::info!(upload = %info.id, "upload terminated");
    Ok(StatusCode::NO_CONTENT)
}

/// Appends `body` at `at` (after the length, checksum and container
/// checks), and finishes the upload when the last byte is in.
async fn write(
    app: &App,
    user: &User,
    info: UploadInfo,
    at: u64,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<(UploadInfo, Option<Video>)> {
    let mut info = info;
    if info.state == UploadState::Finished {
        return Err(ApiError::conflict("the upload is complete"));
    }
    if at != info.offset {
        return Err(ApiError::conflict(format!(
            "Upload-Offset {at} does not match the upload's offset {}",
            info.offset
        )));
    }
    if let Some(total) = tus::number(headers, &tus::UPLOAD_LENGTH)? {
        if info.total.is_none() {
            let max = app.upload_limits.max_size_bytes;
            if total > max {
                return Err(too_large(max));
            }
            check_quota(app, user.id, total).await?;
            info = app.uploads.declare_length(&info.id, total).await?;
        } else if info.total != Some(total) {
            return Err(ApiError::bad_request(
                "Upload-Length differs from the length declared before",
            ));
        }
    }
    let room = info
        .total
        .unwrap_or(app.upload_limits.max_size_bytes)
        .saturating_sub(info.offset);
    let declared = tus::number(headers, &header::CONTENT_LENGTH)?;
    if declared.is_some_and(|n| n > room) {
        return Err(past_end(room));
    }
    let overflow = Arc::new(AtomicBool::new(false));
    let mut stream = body_stream(body, room, overflow.clone());
    if info.offset == 0 {
        stream = match sniffed(app, &info, stream).await {
            Ok(s) => s,
            Err(_) if overflow.load(Ordering::SeqCst) => return Err(past_end(room)),
            Err(e) => return Err(e),
        };
    }
    let appended = match tus::checksum(headers)? {
        Some(sum) => append_checked(app, &info, sum, stream).await,
        None => app
            .uploads
            .append(&info.id, info.offset, stream)
            .await
            .map_err(ApiError::from),
    };
    let offset = match appended {
        Ok(offset) => offset,
        // What came before the excess is kept; the client learns the
        // offset from HEAD.
        Err(_) if overflow.load(Ordering::SeqCst) => return Err(past_end(room)),
        Err(e) => return Err(e),
    };
    info.offset = offset;
    if info.total == Some(offset) {
        let finished = app.uploads.get(&info.id).await?;
        let finished = match finished.state {
            UploadState::Finished => finished,
            _ => {
                app.uploads.finish(&info.id).await?;
                app.uploads.get(&info.id).await?
            }
        };
        let video = crate::processing::upload_finished(app, user, &finished_of(&finished)?).await?;
        return Ok((finished, Some(video)));
    }
    Ok((info, None))
}

/// The request body as the core's byte stream, refused past `room` bytes
/// (and `overflow` set).
fn body_stream(body: Body, room: u64, overflow: Arc<AtomicBool>) -> ByteStream {
    let mut seen = 0u64;
    Box::pin(body.into_data_stream().map(move |chunk| {
        let chunk = chunk
            .map_err(|e| videosync_core::Error::unavailable("the upload connection broke", e))?;
        seen += chunk.len() as u64;
        if seen > room {
            overflow.store(true, Ordering::SeqCst);
            return Err(videosync_core::Error::invalid_input(format!(
                "the body runs past the upload's length ({room} bytes left)"
            )));
        }
        Ok(chunk)
    }))
}

/// Why the first bytes of a file (`head`) are not accepted, if they are
/// not: no known container, or one the configuration does not allow.
pub(crate) fn refusal(app: &App, head: &[u8]) -> Option<String> {
    let allowed = &app.upload_limits.allowed_containers;
    match sniff::sniff(head) {
        Some(c) if allowed.iter().any(|a| a == c) => None,
        Some(c) => Some(format!(
            "{c} files are not accepted here (allowed: {})",
            allowed.join(", ")
        )),
        None => Some(
            "the file is not a video or audio file: its first bytes match no known container"
                .to_owned(),
        ),
    }
}

/// Reads the first bytes of an upload and refuses it (terminating it) when
/// they are not a container the configuration allows; the stream goes on
/// with those bytes put back.
async fn sniffed(app: &App, info: &UploadInfo, mut stream: ByteStream) -> ApiResult<ByteStream> {
    let mut head = BytesMut::new();
    while head.len() < sniff::SNIFF_BYTES {
        match stream.try_next().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if head.is_empty() {
        return Ok(stream);
    }
    if let Some(reason) = refusal(app, &head) {
        if let Err(e) = app.uploads.abort(&info.id).await {
            tracing::warn!(upload = %info.id, error = %e, "aborting a refused upload failed; it will expire");
        }
        tracing::info!(upload = %info.id, %reason, "upload refused");
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::UNSUPPORTED_MEDIA_TYPE,
            reason,
        ));
    }
    let first = futures::stream::once(std::future::ready(Ok(head.freeze())));
    Ok(Box::pin(first.chain(stream)))
}

/// Appends a chunk that came with a checksum: it is spooled to a scratch
/// file while hashed, and stored only when the digest matches (tus' 460
/// otherwise, with nothing stored).
async fn append_checked(
    app: &App,
    info: &UploadInfo,
    sum: tus::Checksum,
    mut stream: ByteStream,
) -> ApiResult<u64> {
    let spool = tempfile::NamedTempFile::new()
        .map_err(|e| ApiError::internal(format!("making a scratch file: {e}")))?;
    let path = spool.path().to_owned();
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| ApiError::internal(format!("opening {}: {e}", path.display())))?;
    let mut hasher = tus::Hasher::new(sum.algorithm);
    while let Some(chunk) = stream.try_next().await? {
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(format!("writing {}: {e}", path.display())))?;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::internal(format!("writing {}: {e}", path.display())))?;
    drop(file);
    if hasher.finish() != sum.digest {
        return Err(ApiError::new(
            StatusCode::from_u16(tus::CHECKSUM_MISMATCH).unwrap_or(StatusCode::BAD_REQUEST),
            code::CHECKSUM_MISMATCH,
            "the chunk does not match its Upload-Checksum; nothing of it was stored",
        ));
    }
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::internal(format!("reopening {}: {e}", path.display())))?;
    let bytes: ByteStream = Box::pin(
        tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(|r| {
            r.map_err(|e| videosync_core::Error::unavailable("reading the spooled chunk", e))
        }),
    );
    let offset = app.uploads.append(&info.id, info.offset, bytes).await?;
    drop(spool);
    Ok(offset)
}

/// The caller's upload `id`: 404 for a malformed id, someone else's upload
/// or one long gone; 410 for one that expired or was terminated.
async fn owned_upload(app: &App, user: UserId, id: &str) -> ApiResult<UploadInfo> {
    let missing = || ApiError::not_found("upload not found");
    let id = UploadId::parse(id).map_err(|_| missing())?;
    let info = match app.uploads.get(&id).await {
        Ok(info) => info,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(e.into()),
    };
    if info.metadata.get(META_USER).map(String::as_str) != Some(user.to_string().as_str()) {
        return Err(missing());
    }
    let gone = |why: &str| ApiError::new(StatusCode::GONE, code::GONE, why);
    match info.state {
        UploadState::Aborted => Err(gone("the upload was terminated")),
        UploadState::Open if info.expires_at <= app.backends.clock.now() => {
            Err(gone("the upload expired"))
        }
        _ => Ok(info),
    }
}

/// A finished tus upload, as processing takes it.
pub(crate) fn finished_of(info: &UploadInfo) -> ApiResult<crate::processing::Finished> {
    let (channel, title, description) = intent_of(info)?;
    Ok(crate::processing::Finished {
        video: video_of(info)?,
        channel,
        title,
        description,
        key: info.key.clone(),
        size: info.total,
    })
}

/// The video an upload becomes.
pub(crate) fn video_of(info: &UploadInfo) -> ApiResult<VideoId> {
    info.metadata
        .get(META_VIDEO)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::internal(format!("upload {} names no video", info.id)))
}

/// The channel, title and description an upload was started with.
pub(crate) fn intent_of(info: &UploadInfo) -> ApiResult<(ChannelId, String, String)> {
    let i = Intent::from_metadata(
        &info
            .metadata
            .iter()
            .filter(|(k, _)| !k.starts_with(OWN_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )?;
    Ok((i.channel, i.title, i.description))
}

/// Where an upload's bytes go: the interim area, one folder per video.
pub fn source_key(video: VideoId) -> ApiResult<ObjectKey> {
    ObjectKey::parse(&format!("uploads/{}/source", video.as_uuid().simple()))
        .map_err(|e| ApiError::internal(format!("an upload key: {e}")))
}

/// Refuses an upload that would take `user` over the quota: originals kept
/// plus open uploads plus `more` bytes.
pub(crate) async fn check_quota(app: &App, user: UserId, more: u64) -> ApiResult<()> {
    let quota = app.upload_limits.quota_bytes_per_user;
    if quota == 0 {
        return Ok(());
    }
    let used = crate::processing::bytes_held(app, user).await?;
    if used.saturating_add(more) > quota {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::QUOTA_EXCEEDED,
            format!("this upload would take you over your quota of {quota} bytes ({used} in use)"),
        ));
    }
    Ok(())
}

pub(crate) fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        code::PAYLOAD_TOO_LARGE,
        format!("uploads are limited to {max} bytes"),
    )
}

fn past_end(room: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        code::PAYLOAD_TOO_LARGE,
        format!("the body runs past the upload's length ({room} bytes left)"),
    )
}

fn header_value(s: &str) -> ApiResult<HeaderValue> {
    HeaderValue::from_str(s).map_err(|e| ApiError::internal(format!("a header value: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_file_names_when_missing() {
        assert_eq!(title_from_filename(Some("holiday.mp4")), "holiday");
        assert_eq!(title_from_filename(Some("C:\\clips\\a.b.mov")), "a.b");
        assert_eq!(title_from_filename(Some("../../etc/passwd")), "passwd");
        assert_eq!(title_from_filename(Some(".mp4")), ".mp4");
        assert_eq!(title_from_filename(Some("\u{7}\n")), "Untitled");
        assert_eq!(title_from_filename(None), "Untitled");
        assert_eq!(
            title_from_filename(Some(&"x".repeat(1000))).chars().count(),
            300
        );
    }
}
