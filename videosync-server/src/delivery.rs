//! Delivery: a ready video's HLS ladder, poster and storyboard over HTTP.
//!
//! Media lives at `/media/{video}/...`, the same layout as the store below
//! `videos/` (`/media/{video}/a{attempt}/720p/seg_00001.m4s`), so a CDN or a
//! bucket can serve the same paths. `/media/{video}/master.m3u8` is the
//! stable entry point: it names the current attempt's playlists, so every
//! other URL is immutable and cached for a year; playlists get a short
//! lifetime. Byte ranges, `ETag`/`Last-Modified` and 304 work on every
//! file; bodies stream from the store (from disk for the file store)
//! without being held whole.
//!
//! Public and unlisted videos are open. A private one needs a signed URL,
//! in the scheme nginx's `secure_link` checks (so an edge can verify it
//! without asking the server): `?md5=<base64url(MD5(expires + path + " " +
//! secret))>&expires=<unix seconds>`. Its playlists are rewritten with a
//! signed URL for every playlist, init segment and segment, and its
//! answers say `Cache-Control: private`. `GET /api/v1/videos/{id}/playback`
//! hands the signed entry points to whoever may see the video.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as RawPath, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use bytes::Bytes;
use hmac::Mac;
use md5::Digest;
use serde::{Deserialize, Serialize};
use tower_http::cors::{Any, CorsLayer};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use videosync_core::db::{Videos, Visibility};
use videosync_core::store::{GetOptions, GetRange, ObjectMeta};
use videosync_core::{ErrorKind, ObjectKey, ObjectStoreExt, Video, VideoId, VideoStatus};
use videosync_hls::rewrite::{BaseUrl, Rewriter};

use crate::auth::Caller;
use crate::error::{code, ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::{App, AppState};
use crate::videos::{load_video, media_prefix, VideoPath};

pub mod cache;

/// The media routes (outside the JSON API, open to players on any origin).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/media/{video}/{*file}", get(media))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET, Method::HEAD])
                .allow_headers([header::RANGE, header::IF_NONE_MATCH])
                .expose_headers([
                    header::CONTENT_LENGTH,
                    header::CONTENT_RANGE,
                    header::ETAG,
                    header::ACCEPT_RANGES,
                ]),
        )
}

/// The playback routes of the JSON API.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(playback))
}

/// Signs and checks media URLs (nginx `secure_link` compatible).
#[derive(Clone)]
pub struct MediaSigner {
    secret: String,
    ttl: Duration,
}

impl std::fmt::Debug for MediaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSigner")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// What checking a signature found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Signed for this path and not expired.
    Valid,
    /// No signature.
    Missing,
    /// A signature that is not this path's (forged, or for another file).
    Forged,
    /// A genuine signature past its expiry.
    Expired,
}

impl MediaSigner {
    /// A signer with `secret`; URLs work for `ttl` beyond the video's length.
    pub fn new(secret: &str, ttl: Duration) -> Self {
        MediaSigner {
            secret: secret.to_owned(),
            ttl,
        }
    }

    /// The key derived from the token signing secret, for deployments that
    /// do not set one: no second secret to manage, and not the token key
    /// itself (a leaked media key signs no tokens).
    pub fn derived_secret(jwt_secret: &str) -> String {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(jwt_secret.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"videosync media url signing v1");
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The `md5` value for `path` until `expires` (unix seconds).
    pub fn digest(&self, path: &str, expires: i64) -> String {
        let mut h = md5::Md5::new();
        h.update(expires.to_string().as_bytes());
        h.update(path.as_bytes());
        h.update(b" ");
        h.update(self.secret.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
    }

    /// `path` with its signature until `expires`.
    pub fn sign(&self, path: &str, expires: i64) -> String {
        format!(
            "{path}?md5={}&expires={expires}",
            self.digest(path, expires)
        )
    }

    /// Checks a request for `path` at `now` (unix seconds).
    pub fn verify(&self, path: &str, sig: &Signature, now: i64) -> Verdict {
        let (Some(md5), Some(expires)) = (&sig.md5, &sig.expires) else {
            return Verdict::Missing;
        };
        let Ok(expires) = expires.parse::<i64>() else {
            return Verdict::Forged;
        };
        let want = self.digest(path, expires);
        // Constant time: the comparison must not tell how much matched.
        let same = want.len() == md5.len()
            && want
                .bytes()
                .zip(md5.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        match (same, expires > now) {
            (false, _) => Verdict::Forged,
            (true, false) => Verdict::Expired,
            (true, true) => Verdict::Valid,
        }
    }

    /// When URLs signed now for a video of `duration_s` stop working.
    pub fn expiry(&self, now_s: i64, duration_s: f64) -> i64 {
        let extra = if duration_s.is_finite() && duration_s > 0.0 {
            duration_s.ceil() as i64
        } else {
            0
        };
        now_s
            .saturating_add(i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2))
            .saturating_add(extra)
    }
}

/// The signature a request carries.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Signature {
    /// `base64url(MD5(expires + path + " " + secret))`.
    pub md5: Option<String>,
    /// Unix seconds.
    pub expires: Option<String>,
}

/// Whether a video's media is open to anyone with the link.
fn is_open(video: &Video, channel: Visibility) -> bool {
    let open = |v: Visibility| matches!(v, Visibility::Public | Visibility::Unlisted);
    open(channel) && video.visibility.is_none_or(open)
}

/// The content type of a media file, by its extension.
fn content_type(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("m4s") => "video/iso.segment",
        Some("mp4") => "video/mp4",
        Some("ts") => "video/mp2t",
        Some("aac") => "audio/aac",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("vtt") => "text/vtt; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn is_playlist(file: &str) -> bool {
    file.ends_with(".m3u8") || file.ends_with(".vtt")
}

/// A file name below a video's folder: segments of `[A-Za-z0-9._-]`, no
/// `.` or `..`, nothing empty.
fn check_file(file: &str) -> Option<&str> {
    let ok = !file.is_empty()
        && file.len() <= 512
        && file.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    ok.then_some(file)
}

/// The video and whether its media is open, or 404; a lookup of the last
/// second is reused (see [`cache`]).
async fn ready_video(app: &App, id: &str) -> ApiResult<cache::Lookup> {
    let now = app.backends.clock.now();
    if let Some(hit) = app.media_cache.lookup(id, now) {
        return Ok(hit);
    }
    let found = std::sync::Arc::new(look_up_video(app, id).await?);
    app.media_cache.keep_lookup(id, now, found.clone());
    Ok(found)
}

async fn look_up_video(app: &App, id: &str) -> ApiResult<(Video, bool)> {
    let missing = || ApiError::not_found("no such media");
    let id: VideoId = id.parse().map_err(|_| missing())?;
    let mut tx = app.backends.db.read().await?;
    let video = match tx.video(id).await {
        Ok(v) => v,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(e.into()),
    };
    let channel = match video.channel_id {
        Some(c) => match videosync_core::db::Channels::channel(&mut tx, c).await {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(e.into()),
        },
        None => return Err(missing()),
    };
    tx.commit().await?;
    if video.status != VideoStatus::Ready || video.output_prefix.is_none() {
        return Err(missing());
    }
    let open = is_open(&video, channel.visibility);
    Ok((video, open))
}

/// The current attempt's folder below the video's (`a3`).
fn attempt_dir(video: &Video) -> ApiResult<String> {
    let prefix = video.output_prefix.as_deref().unwrap_or_default();
    let base = media_prefix(video.id);
    prefix
        .strip_prefix(&base)
        .map(|rest| rest.trim_matches('/').to_owned())
        .filter(|rest| !rest.is_empty())
        .ok_or_else(|| {
            ApiError::internal(format!(
                "video {} has output prefix {prefix} outside {base}",
                video.id
            ))
        })
}

fn unix_now(app: &App) -> i64 {
    app.backends.clock.now().as_millis() / 1000
}

/// How media URLs of one response are written: root-relative paths (or
/// on the CDN's host), signed for a private video.
struct Links<'a> {
    app: &'a App,
    /// Sign until this unix time (private videos only).
    expires: Option<i64>,
}

impl Links<'_> {
    fn url(&self, path: &str) -> String {
        let path = match self.expires {
            Some(e) => self.app.media_signer.sign(path, e),
            None => path.to_owned(),
        };
        match &self.app.cdn_url {
            Some(cdn) => format!("{}{path}", cdn.trim_end_matches('/')),
            None => path,
        }
    }
}

/// A base that only serves to resolve references to paths.
const PLACEHOLDER_ORIGIN: &str = "http://media.invalid";

/// Rewrites a playlist served at `path`: every URI to its path below
/// `/media/`, passed through `link` (which may sign it or put it on a CDN).
fn rewrite_playlist(bytes: &[u8], path: &str, link: &dyn Fn(&str) -> String) -> ApiResult<String> {
    let base = BaseUrl::parse(&format!("{PLACEHOLDER_ORIGIN}{path}"))
        .map_err(|e| ApiError::internal(format!("a playlist base: {e}")))?;
    let signer = |abs: &str| {
        let p = abs.strip_prefix(PLACEHOLDER_ORIGIN).unwrap_or(abs);
        link(p)
    };
    let rw = Rewriter::new()
        .base(&base)
        .signer(&signer)
        .sign_playlists(true);
    let mut out = Vec::new();
    let written = match m3u8_rs::parse_playlist_res(bytes) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => rw.master(&m).write_to(&mut out),
        Ok(m3u8_rs::Playlist::MediaPlaylist(m)) => rw.media(&m).write_to(&mut out),
        Err(e) => {
            return Err(ApiError::internal(format!(
                "the stored playlist {path} does not parse: {e}"
            )))
        }
    };
    written.map_err(|e| ApiError::internal(format!("writing a playlist: {e}")))?;
    String::from_utf8(out).map_err(|e| ApiError::internal(format!("a playlist: {e}")))
}

/// Rewrites a WebVTT storyboard: each cue's image reference (`sheet.jpg
/// #xywh=...`) to its path, passed through `link`.
fn rewrite_vtt(text: &str, dir: &str, link: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for line in text.lines() {
        let is_ref = !line.is_empty()
            && !line.contains("-->")
            && !line.starts_with("WEBVTT")
            && !line.starts_with("NOTE")
            && !line.chars().all(|c| c.is_ascii_digit());
        if is_ref && !line.contains("://") && !line.starts_with('/') {
            let (file, frag) = match line.split_once('#') {
                Some((f, frag)) => (f, format!("#{frag}")),
                None => (line, String::new()),
            };
            out.push_str(&link(&format!("{dir}/{file}")));
            out.push_str(&frag);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// `GET /media/{video}/{file}`: one file of a ready video's ladder.
async fn media(
    State(app): State<AppState>,
    RawPath((video_id, file)): RawPath<(String, String)>,
    Query(sig): Query<Signature>,
    headers: HeaderMap,
) -> Response {
    match serve_media(&app, &video_id, &file, sig, &headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve_media(
    app: &App,
    video_id: &str,
    file: &str,
    sig: Signature,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let missing = || ApiError::not_found("no such media");
    let file = check_file(file).ok_or_else(missing)?;
    let found = ready_video(app, video_id).await?;
    let (video, open) = (&found.0, found.1);
    let folder = format!("/media/{video_id}");
    let path = format!("{folder}/{file}");
    let now = unix_now(app);
    if !open {
        match app.media_signer.verify(&path, &sig, now) {
            Verdict::Valid => {}
            Verdict::Expired => {
                return Err(ApiError::new(
                    StatusCode::GONE,
                    code::BAD_SIGNATURE,
                    "this media link has expired; ask for a new one",
                ))
            }
            Verdict::Missing | Verdict::Forged => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    code::BAD_SIGNATURE,
                    "this media needs a valid signed link",
                ))
            }
        }
    }
    let attempt = attempt_dir(video)?;
    // The stable entry point: the current attempt's master, its URIs made
    // to point into the attempt's folder.
    let (key_rel, served_path) = if file == "master.m3u8" {
        (
            format!("{attempt}/master.m3u8"),
            format!("{folder}/{attempt}/master.m3u8"),
        )
    } else {
        (file.to_owned(), path.clone())
    };
    let key = ObjectKey::parse(&format!("{}/{key_rel}", media_prefix(video.id)))
        .map_err(|_| missing())?;
    let private = !open;
    let duration = video
        .source
        .as_ref()
        .and_then(|s| s.duration_ms)
        .map_or(0.0, |ms| ms as f64 / 1000.0);
    let links = Links {
        app,
        expires: private.then(|| app.media_signer.expiry(now, duration)),
    };
    let cache = if is_playlist(file) {
        let age = app.playlist_max_age_s;
        if private {
            format!("private, max-age={age}")
        } else {
            format!("public, max-age={age}")
        }
    } else if private {
        "private, max-age=31536000, immutable".to_owned()
    } else {
        "public, max-age=31536000, immutable".to_owned()
    };
    // Rewritten playlists: the whole file (small) through the rewriter.
    let rewrite = file == "master.m3u8" || private || app.cdn_url.is_some();
    if is_playlist(file) && rewrite {
        let (meta, bytes) = match whole_file(app, &key).await {
            Ok(got) => got,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(e.into()),
        };
        let dir = served_path.rsplit_once('/').map_or("", |(d, _)| d);
        let link = |p: &str| links.url(p);
        let text = if file.ends_with(".vtt") {
            rewrite_vtt(&String::from_utf8_lossy(&bytes), dir, &link)
        } else {
            rewrite_playlist(&bytes, &served_path, &link)?
        };
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(file)),
        );
        h.insert(header::CACHE_CONTROL, value(&cache)?);
        h.insert(header::LAST_MODIFIED, value(&http_date(&meta))?);
        return Ok((StatusCode::OK, h, text).into_response());
    }
    stream_object(app, &key, file, &cache, headers).await
}

/// A whole (small) file, from memory when it was read before.
async fn whole_file(app: &App, key: &ObjectKey) -> videosync_core::Result<(ObjectMeta, Bytes)> {
    if let Some(hit) = app.media_cache.file(key.as_str()) {
        return Ok(hit);
    }
    let got = app.backends.store.get(key).await?;
    let meta = got.meta.clone();
    let bytes = got.bytes().await?;
    app.media_cache
        .keep_file(key.as_str(), meta.clone(), bytes.clone());
    Ok((meta, bytes))
}

/// A file from memory: the whole of it, a range, or 304; `None` when it is
/// not in memory and must be read from the store.
fn from_memory(
    app: &App,
    key: &ObjectKey,
    range: Option<&GetRange>,
    if_none_match: Option<&str>,
) -> Option<videosync_core::Result<(ObjectMeta, std::ops::Range<u64>, Bytes)>> {
    let (meta, bytes) = app.media_cache.file(key.as_str())?;
    if let (Some(tag), Some(etag)) = (if_none_match, &meta.etag) {
        if videosync_core::store::etag_matches(tag, Some(etag)) {
            return Some(Err(videosync_core::Error::not_modified(format!(
                "{key} is unchanged"
            ))));
        }
    }
    let span = match range {
        Some(r) => match r.resolve(meta.size, key) {
            Ok(span) => span,
            Err(e) => return Some(Err(e)),
        },
        None => 0..meta.size,
    };
    let body = bytes.slice(usize::try_from(span.start).ok()?..usize::try_from(span.end).ok()?);
    Some(Ok((meta, span, body)))
}

/// Streams one stored object with ranges, validators and 304.
async fn stream_object(
    app: &App,
    key: &ObjectKey,
    file: &str,
    cache: &str,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let missing = || ApiError::not_found("no such media");
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) => parse_range(r)?,
        None => None,
    };
    let remembered = from_memory(app, key, range.as_ref(), if_none_match.as_deref());
    let got = match remembered {
        Some(r) => r.map(|(meta, range, bytes)| (meta, range, Body::from(bytes))),
        None => read_and_remember(app, key, range.clone(), if_none_match).await,
    };
    let (meta, span, body) = match got {
        Ok(g) => g,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(missing()),
        Err(e) if e.kind() == ErrorKind::NotModified => {
            let meta = app.backends.store.head(key).await?;
            let mut h = validators(&meta)?;
            h.insert(header::CACHE_CONTROL, value(cache)?);
            return Ok((StatusCode::NOT_MODIFIED, h).into_response());
        }
        Err(e) if e.kind() == ErrorKind::InvalidInput && range.is_some() => {
            let meta = app.backends.store.head(key).await?;
            let mut h = HeaderMap::new();
            h.insert(
                header::CONTENT_RANGE,
                value(&format!("bytes */{}", meta.size))?,
            );
            let err = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                code::RANGE_NOT_SATISFIABLE,
                format!("the range is outside the file's {} bytes", meta.size),
            );
            return Ok((h, err).into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let mut h = validators(&meta)?;
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(file)),
    );
    h.insert(header::CACHE_CONTROL, value(cache)?);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let len = span.end - span.start;
    h.insert(header::CONTENT_LENGTH, len.into());
    let status = if range.is_some() {
        h.insert(
            header::CONTENT_RANGE,
            value(&format!(
                "bytes {}-{}/{}",
                span.start,
                span.end.saturating_sub(1),
                meta.size
            ))?,
        );
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    Ok((status, h, body).into_response())
}

/// Reads a file from the store: its metadata, the span answered and the
/// body. A whole small file is kept in memory (and answered from there:
/// one buffer, which hyper writes with the headers).
async fn read_and_remember(
    app: &App,
    key: &ObjectKey,
    range: Option<GetRange>,
    if_none_match: Option<String>,
) -> videosync_core::Result<(ObjectMeta, std::ops::Range<u64>, Body)> {
    let whole = range.is_none();
    let opts = GetOptions {
        range,
        if_none_match,
    };
    let got = app.backends.store.get_opts(key, opts).await?;
    if !(whole && app.media_cache.keeps(got.meta.size)) {
        return Ok((got.meta, got.range, Body::from_stream(got.body)));
    }
    let meta = got.meta.clone();
    let span = got.range.clone();
    let bytes = got.bytes().await?;
    app.media_cache
        .keep_file(key.as_str(), meta.clone(), bytes.clone());
    Ok((meta, span, Body::from(bytes)))
}

/// `ETag` and `Last-Modified` of an object.
fn validators(meta: &ObjectMeta) -> ApiResult<HeaderMap> {
    let mut h = HeaderMap::new();
    if let Some(etag) = &meta.etag {
        let bare = etag.trim_matches('"');
        h.insert(header::ETAG, value(&format!("\"{bare}\""))?);
    }
    h.insert(header::LAST_MODIFIED, value(&http_date(meta))?);
    Ok(h)
}

fn http_date(meta: &ObjectMeta) -> String {
    crate::uploads::tus::http_date(meta.last_modified.as_millis())
}

fn value(s: &str) -> ApiResult<HeaderValue> {
    HeaderValue::from_str(s).map_err(|e| ApiError::internal(format!("a header value: {e}")))
}

/// A single byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`); several
/// ranges, or another unit, are answered with the whole file (RFC 9110
/// lets a server ignore Range).
///
/// # Errors
/// 416 for a range that cannot be satisfied by any file (`bytes=5-2`).
fn parse_range(header: &str) -> ApiResult<Option<GetRange>> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let bad = || {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            code::RANGE_NOT_SATISFIABLE,
            format!(
                "`{}` is not a byte range this file can satisfy",
                header.escape_debug()
            ),
        )
    };
    let (a, b) = spec.trim().split_once('-').ok_or_else(bad)?;
    let num = |s: &str| -> ApiResult<u64> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    Ok(Some(match (a.is_empty(), b.is_empty()) {
        (true, false) => {
            let n = num(b)?;
            if n == 0 {
                return Err(bad());
            }
            GetRange::Suffix(n)
        }
        (false, true) => GetRange::From(num(a)?),
        (false, false) => {
            let (start, end) = (num(a)?, num(b)?);
            if end < start {
                return Err(bad());
            }
            GetRange::Bounded(start..end.saturating_add(1))
        }
        (true, true) => return Err(bad()),
    }))
}

/// Where a player finds a video.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlaybackView {
    /// The master playlist (signed for a private video).
    pub master_url: String,
    /// The poster image, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poster_url: Option<String>,
    /// The storyboard's WebVTT (thumbnails while seeking), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storyboard_url: Option<String>,
    /// When signed URLs stop working (RFC 3339); absent for open media.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// The manifest fields playback needs.
#[derive(Debug, Deserialize)]
struct ManifestLinks {
    poster: Option<String>,
    storyboard: Option<StoryboardLink>,
}

#[derive(Debug, Deserialize)]
struct StoryboardLink {
    vtt: String,
}

/// Where to play a ready video from (signed links for a private one).
#[utoipa::path(get, path = "/videos/{id}/playback", tag = "videos", security(("bearer" = []), ()),
    params(VideoPath),
    responses((status = 200, description = "The video's media URLs", body = PlaybackView)))]
async fn playback(
    State(app): State<AppState>,
    caller: Caller,
    Path(p): Path<VideoPath>,
) -> ApiResult<Json<PlaybackView>> {
    let (video, _) = load_video(&app, &caller, p.id).await?;
    if video.status != VideoStatus::Ready {
        return Err(ApiError::conflict(format!(
            "the video is {}, not ready to play",
            video.status
        )));
    }
    let (video, open) = look_up_video(&app, &video.id.to_string()).await?;
    let attempt = attempt_dir(&video)?;
    let folder = format!("/media/{}", video.id);
    let now = unix_now(&app);
    let duration = video
        .source
        .as_ref()
        .and_then(|s| s.duration_ms)
        .map_or(0.0, |ms| ms as f64 / 1000.0);
    let expires = (!open).then(|| app.media_signer.expiry(now, duration));
    let links = Links { app: &app, expires };
    let manifest_key = ObjectKey::parse(&format!(
        "{}/{attempt}/manifest.json",
        media_prefix(video.id)
    ))
    .map_err(|e| ApiError::internal(format!("a manifest key: {e}")))?;
    let manifest: Option<ManifestLinks> = match app.backends.store.get_bytes(&manifest_key).await {
        Ok(b) => serde_json::from_slice(&b).ok(),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let file_url =
        |rel: &str| check_file(rel).map(|rel| links.url(&format!("{folder}/{attempt}/{rel}")));
    Ok(Json(PlaybackView {
        master_url: links.url(&format!("{folder}/master.m3u8")),
        poster_url: manifest
            .as_ref()
            .and_then(|m| m.poster.as_deref())
            .and_then(file_url),
        storyboard_url: manifest
            .as_ref()
            .and_then(|m| m.storyboard.as_ref())
            .and_then(|s| file_url(&s.vtt)),
        expires_at: expires.map(|e| {
            crate::dto::rfc3339(videosync_core::Timestamp::from_millis(
                e.saturating_mul(1000),
            ))
        }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_nginx_secure_link() {
        // nginx: secure_link_md5 "$secure_link_expires$uri $secret";
        // echo -n '2147483647/media/x/a1/seg.m4s secret' | openssl md5 -binary | base64 | tr +/ -_ | tr -d =
        let s = MediaSigner::new("secret", Duration::from_secs(60));
        let d = s.digest("/media/x/a1/seg.m4s", 2_147_483_647);
        let mut h = md5::Md5::new();
        h.update(b"2147483647/media/x/a1/seg.m4s secret");
        let want = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize());
        assert_eq!(d, want);
        let sig = |md5: Option<&str>, expires: Option<&str>| Signature {
            md5: md5.map(str::to_owned),
            expires: expires.map(str::to_owned),
        };
        let p = "/media/x/a1/seg.m4s";
        assert_eq!(
            s.verify(p, &sig(Some(&d), Some("2147483647")), 100),
            Verdict::Valid
        );
        assert_eq!(
            s.verify(p, &sig(Some(&d), Some("2147483647")), 2_147_483_647),
            Verdict::Expired
        );
        assert_eq!(
            s.verify(
                "/media/x/a1/other.m4s",
                &sig(Some(&d), Some("2147483647")),
                100
            ),
            Verdict::Forged
        );
        assert_eq!(
            s.verify(p, &sig(Some(&d), Some("2147483646")), 100),
            Verdict::Forged
        );
        assert_eq!(s.verify(p, &sig(Some(&d), Some("x")), 100), Verdict::Forged);
        assert_eq!(
            s.verify(p, &sig(None, Some("2147483647")), 100),
            Verdict::Missing
        );
        assert_eq!(s.verify(p, &sig(Some(&d), None), 100), Verdict::Missing);
        let other = MediaSigner::new("another secret", Duration::from_secs(60));
        assert_eq!(
            other.verify(p, &sig(Some(&d), Some("2147483647")), 100),
            Verdict::Forged
        );
    }

    #[test]
    fn file_names_stay_inside_the_folder() {
        for ok in ["master.m3u8", "a1/720p/seg_00001.m4s", "a12/poster.jpg"] {
            assert!(check_file(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "a1/../../x",
            "a1//x",
            "./x",
            "a1/x%2f",
            "a1/x y",
            "a1\\x",
            "/x",
        ] {
            assert!(check_file(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ranges_parse_or_are_refused() {
        assert_eq!(
            parse_range("bytes=0-99").unwrap(),
            Some(GetRange::Bounded(0..100))
        );
        assert_eq!(
            parse_range("bytes=100-").unwrap(),
            Some(GetRange::From(100))
        );
        assert_eq!(parse_range("bytes=-5").unwrap(), Some(GetRange::Suffix(5)));
        assert_eq!(parse_range("bytes=0-1,5-6").unwrap(), None);
        assert_eq!(parse_range("items=0-1").unwrap(), None);
        for bad in [
            "bytes=5-2",
            "bytes=-",
            "bytes=a-b",
            "bytes=-0",
            "bytes=1",
            "bytes=99999999999999999999-",
        ] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn storyboards_are_rewritten_cue_by_cue() {
        let vtt = "WEBVTT\n\n00:00.000 --> 00:05.000\nstoryboard_0.jpg#xywh=0,0,160,90\n\n2\n00:05.000 --> 00:10.000\nsheets/s1.jpg#xywh=160,0,160,90\n";
        let out = rewrite_vtt(vtt, "/media/v/a1", &|p: &str| format!("{p}?sig"));
        assert_eq!(
            out,
            "WEBVTT\n\n00:00.000 --> 00:05.000\n/media/v/a1/storyboard_0.jpg?sig#xywh=0,0,160,90\n\n2\n00:05.000 --> 00:10.000\n/media/v/a1/sheets/s1.jpg?sig#xywh=160,0,160,90\n"
        );
    }

    #[test]
    fn playlists_point_into_the_attempt_and_are_signed() {
        let master = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-MEDIA:TYPE=AUDIO,URI=\"audio/index.m3u8\",GROUP-ID=\"audio\",NAME=\"Audio\",DEFAULT=YES,AUTOSELECT=YES\n#EXT-X-STREAM-INF:BANDWIDTH=1000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=640x360,AUDIO=\"audio\"\n360p/index.m3u8\n";
        let out = rewrite_playlist(master.as_bytes(), "/media/v/a2/master.m3u8", &|p: &str| {
            format!("{p}?s=1")
        })
        .unwrap();
        assert!(out.contains("\n/media/v/a2/360p/index.m3u8?s=1\n"), "{out}");
        assert!(
            out.contains("URI=\"/media/v/a2/audio/index.m3u8?s=1\""),
            "{out}"
        );
        let media = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2,\nseg_00000.m4s\n#EXT-X-ENDLIST\n";
        let out = rewrite_playlist(
            media.as_bytes(),
            "/media/v/a2/360p/index.m3u8",
            &|p: &str| format!("{p}?s=1"),
        )
        .unwrap();
        assert!(
            out.contains("URI=\"/media/v/a2/360p/init.mp4?s=1\""),
            "{out}"
        );
        assert!(
            out.contains("\n/media/v/a2/360p/seg_00000.m4s?s=1\n"),
            "{out}"
        );
        assert!(out.contains("#EXT-X-ENDLIST"), "{out}");
        assert!(
            rewrite_playlist(b"not a playlist", "/media/v/a2/x.m3u8", &|p: &str| p
                .to_owned())
            .is_err()
        );
    }
}
