//! Direct uploads to the store, when it can sign URLs (S3): the browser
//! sends the bytes to the bucket itself, on presigned URLs bound to the
//! declared size and content type, and the server only keeps the books.
//!
//! - `POST /api/v1/uploads/direct` declares the file: up to
//!   `uploads.direct_single_put_max_bytes` one presigned `PUT`, above that
//!   a multipart upload with one presigned URL per part.
//! - `GET /api/v1/uploads/direct/{id}` answers the parts stored so far, so
//!   a client that was cut off sends only the rest (with fresh URLs).
//! - `POST .../complete` assembles the parts (or checks the single object),
//!   checks its size and first bytes, and the video appears, `pending`,
//!   with a transcode job; `DELETE` gives the upload up.
//!
//! The bookkeeping lives in the key-value store for as long as an upload
//! may stay open, so any instance serves any step.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use videosync_core::db::Permission;
use videosync_core::kv::PutOptions;
use videosync_core::store::sign::{SignMethod, SignRequest, Signer};
use videosync_core::store::{GetRange, MultipartId, PartId, MIN_PART_SIZE};
use videosync_core::{ChannelId, ErrorKind, ObjectKey, ObjectStoreExt, UserId, VideoId};

use crate::auth::{Authed, Caller};
use crate::channels::load;
use crate::dto::rfc3339;
use crate::error::{code, ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::processing::{upload_finished, Finished};
use crate::state::{App, AppState};
use crate::videos::VideoView;

/// The largest completion body: 10 000 parts of a 128-character tag.
const COMPLETE_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// How long the presigned URLs of one answer work.
const URL_TTL: Duration = Duration::from_secs(6 * 3600);

/// The routes of this capability.
pub fn routes() -> OpenApiRouter<AppState> {
    // A completion may list 10 000 parts: its body may be larger than
    // other JSON bodies (about 1.6 MB at most).
    let complete_route = OpenApiRouter::new()
        .routes(routes!(complete))
        .layer(DefaultBodyLimit::max(COMPLETE_BODY_LIMIT));
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(status, abort))
        .merge(complete_route)
}

/// A file to upload straight to the store.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectUploadRequest {
    /// The channel (the caller needs `upload` there).
    #[schema(value_type = String, format = Uuid)]
    pub channel_id: ChannelId,
    /// The video's title (default: the file name without its extension).
    #[schema(max_length = 300, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub title: Option<String>,
    /// The video's description.
    #[serde(default)]
    #[schema(
        max_length = 5000,
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$"
    )]
    pub description: String,
    /// The file's name, for the default title.
    #[schema(max_length = 1000)]
    pub filename: Option<String>,
    /// Its exact size in bytes (the server's upload limit applies: 413 past it).
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    #[serde(deserialize_with = "crate::dto::required_whole_number")]
    pub size: u64,
    /// Its content type, which every upload request must send: printable
    /// ASCII, a type without `/`, then `/` and a subtype.
    #[schema(min_length = 1, max_length = 255, pattern = "^[!-.0-~]+/[!-~]+$")]
    pub content_type: String,
}

/// One presigned request to make.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PresignedPart {
    /// The part number (1 for a single `PUT`).
    pub number: u32,
    /// `PUT`.
    pub method: String,
    /// Where to send the bytes.
    pub url: String,
    /// Headers to send as they are.
    pub headers: Vec<(String, String)>,
    /// The bytes of the file this request carries: `offset..offset+size`.
    pub offset: u64,
    /// How many.
    pub size: u64,
}

/// A part already in the store.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UploadedPart {
    /// Its number.
    pub number: u32,
    /// The store's tag for it (send it back to complete).
    pub etag: String,
    /// Its size.
    pub size: u64,
}

/// A direct upload and what remains to send.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DirectUploadView {
    /// The upload (and the video it becomes).
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    /// `single` (one `PUT`) or `multipart`.
    pub mode: String,
    /// The file's size.
    pub size: u64,
    /// Bytes per part (the last part holds the rest).
    pub part_size: u64,
    /// Requests still to make, presigned.
    pub pending: Vec<PresignedPart>,
    /// Parts already stored (multipart).
    pub uploaded: Vec<UploadedPart>,
    /// When the URLs stop working (RFC 3339).
    pub urls_expire_at: String,
}

/// The parts to complete a multipart upload with (omit for a single `PUT`;
/// omitted, the parts stored are used).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// Every part, in order, with the tag its `PUT` answered.
    #[schema(max_items = 10000)]
    pub parts: Option<Vec<CompletedPart>>,
}

/// A part as its `PUT` answered it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompletedPart {
    /// Its number.
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(deserialize_with = "crate::dto::required_whole_number")]
    pub number: u32,
    /// The `ETag` its `PUT` answered.
    #[schema(min_length = 1, max_length = 128)]
    pub etag: String,
}

/// Path of a direct upload.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DirectPath {
    /// Upload id.
    #[param(value_type = String, format = Uuid)]
    pub id: VideoId,
}

/// What the server keeps about a direct upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Booking {
    user: UserId,
    channel: ChannelId,
    title: String,
    description: String,
    key: String,
    size: u64,
    content_type: String,
    multipart: Option<String>,
    part_size: u64,
    /// When it expires (unix milliseconds): the booking itself outlives
    /// this by [`SWEEP_GRACE`], so the sweep still knows what to remove.
    #[serde(default)]
    expires_at_ms: i64,
}

/// How long a booking is kept past its expiry for the sweep to find it.
const SWEEP_GRACE: Duration = Duration::from_secs(24 * 3600);

impl Booking {
    fn parts(&self) -> u32 {
        u32::try_from(self.size.div_ceil(self.part_size.max(1))).unwrap_or(u32::MAX)
    }

    fn part_range(&self, number: u32) -> (u64, u64) {
        let offset = u64::from(number - 1) * self.part_size;
        (offset, self.part_size.min(self.size - offset))
    }

    fn object_key(&self) -> ApiResult<ObjectKey> {
        ObjectKey::parse(&self.key).map_err(|e| ApiError::internal(format!("a booked key: {e}")))
    }
}

fn signer(app: &App) -> ApiResult<std::sync::Arc<dyn Signer>> {
    app.backends.uploads.signer().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            code::CONFLICT,
            "this server's store cannot sign upload URLs; upload by tus (/api/v1/uploads) instead",
        )
    })
}

fn booking_key(app: &App, id: VideoId) -> ApiResult<videosync_core::kv::Key> {
    app.kv_key(&format!("direct.{}", id.as_uuid().simple()))
}

/// The set of open direct uploads (members: ids), which the sweep walks.
fn open_key(app: &App) -> ApiResult<videosync_core::kv::Key> {
    app.kv_key("direct.open")
}

async fn booking_at(app: &App, id: VideoId) -> ApiResult<Option<Booking>> {
    let got = app.backends.kv.get(&booking_key(app, id)?).await?;
    Ok(got.and_then(|v| serde_json::from_slice(&v.value).ok()))
}

async fn booking_of(app: &App, user: UserId, id: VideoId) -> ApiResult<Booking> {
    let missing = || ApiError::not_found("upload not found");
    let b = booking_at(app, id).await?.ok_or_else(missing)?;
    if b.user != user {
        return Err(missing());
    }
    if b.expires_at_ms != 0 && app.backends.clock.now().as_millis() >= b.expires_at_ms {
        return Err(ApiError::new(
            StatusCode::GONE,
            code::GONE,
            "this upload expired; start a new one",
        ));
    }
    Ok(b)
}

/// Forgets a booking (its bytes are the caller's business).
async fn forget(app: &App, id: VideoId) -> ApiResult<()> {
    app.backends.kv.delete(&booking_key(app, id)?, None).await?;
    app.backends
        .kv
        .set_remove(&open_key(app)?, &id.as_uuid().simple().to_string())
        .await?;
    Ok(())
}

/// Removes what an upload stored: its multipart upload, or its object.
async fn remove_bytes(app: &App, b: &Booking) -> ApiResult<()> {
    let key = b.object_key()?;
    let store = &app.backends.uploads;
    let gone = match &b.multipart {
        Some(id) => store.abort_multipart(&key, &MultipartId(id.clone())).await,
        None => store.delete(&key).await,
    };
    match gone {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes the direct uploads that expired unfinished (their multipart
/// uploads aborted, a lone `PUT`'s object deleted); answers how many.
/// `videosync serve` runs it with the tus sweep.
///
/// # Errors
/// A backend that fails; what was removed before stays removed.
pub async fn sweep_expired(app: &App) -> ApiResult<u64> {
    let now = app.backends.clock.now().as_millis();
    let open = open_key(app)?;
    let mut removed = 0;
    for member in app.backends.kv.set_members(&open).await? {
        let Ok(uuid) = uuid::Uuid::try_parse(&member.name) else {
            app.backends.kv.set_remove(&open, &member.name).await?;
            continue;
        };
        let id = VideoId::from_uuid(uuid);
        match booking_at(app, id).await? {
            // Completed, aborted or long gone.
            None => {
                app.backends.kv.set_remove(&open, &member.name).await?;
            }
            Some(b) if b.expires_at_ms != 0 && now >= b.expires_at_ms => {
                remove_bytes(app, &b).await?;
                forget(app, id).await?;
                tracing::info!(upload = %id, "expired direct upload removed");
                removed += 1;
            }
            Some(_) => {}
        }
    }
    Ok(removed)
}

/// Presigned requests for the parts not in `uploaded`.
async fn presign(
    app: &App,
    b: &Booking,
    uploaded: &[UploadedPart],
) -> ApiResult<(Vec<PresignedPart>, String)> {
    let signer = signer(app)?;
    let key = b.object_key()?;
    let mut out = Vec::new();
    let mut expires = String::new();
    for number in 1..=b.parts() {
        if uploaded.iter().any(|p| p.number == number) {
            continue;
        }
        let (offset, size) = b.part_range(number);
        let method = match &b.multipart {
            Some(id) => SignMethod::UploadPart {
                upload: MultipartId(id.clone()),
                number,
            },
            None => SignMethod::Put,
        };
        let mut req = SignRequest {
            method,
            ..SignRequest::put(key.clone(), URL_TTL)
        }
        .content_length(size);
        if b.multipart.is_none() {
            req = req.content_type(b.content_type.clone());
        }
        let signed = signer.sign(&req).await?;
        expires = rfc3339(signed.expires_at);
        out.push(PresignedPart {
            number,
            method: signed.method.to_owned(),
            url: signed.url,
            headers: signed.headers,
            offset,
            size,
        });
    }
    Ok((out, expires))
}

async fn stored_parts(app: &App, b: &Booking) -> ApiResult<Vec<UploadedPart>> {
    let Some(id) = &b.multipart else {
        return Ok(Vec::new());
    };
    let parts = app
        .backends
        .uploads
        .list_parts(&b.object_key()?, &MultipartId(id.clone()))
        .await?;
    Ok(parts
        .into_iter()
        .map(|p| UploadedPart {
            number: p.id.number,
            etag: p.id.etag,
            size: p.size,
        })
        .collect())
}

fn view(
    id: VideoId,
    b: &Booking,
    pending: Vec<PresignedPart>,
    uploaded: Vec<UploadedPart>,
    expires: String,
) -> DirectUploadView {
    DirectUploadView {
        id: id.to_string(),
        mode: if b.multipart.is_some() {
            "multipart"
        } else {
            "single"
        }
        .to_owned(),
        size: b.size,
        part_size: b.part_size,
        pending,
        uploaded,
        urls_expire_at: expires,
    }
}

/// Ends an upload whose bytes are not what was declared: nothing of them
/// stays. Answers `e`.
async fn refuse(app: &App, id: VideoId, key: &ObjectKey, e: ApiError) -> ApiError {
    if let Err(del) = app.backends.uploads.delete(key).await {
        tracing::warn!(%key, error = %del, "removing a refused direct upload failed");
    }
    let _ = forget(app, id).await;
    tracing::info!(upload = %id, reason = %e.message, "direct upload refused");
    e
}

/// Start an upload straight to the store (presigned URLs).
#[utoipa::path(post, path = "/uploads/direct", tag = "uploads", security(("bearer" = [])),
    request_body = DirectUploadRequest,
    responses(
        (status = 201, description = "Where to send the bytes", body = DirectUploadView),
        (status = 413, description = "Larger than the server's upload limit or the caller's quota", body = crate::error::ErrorBody),
    ))]
async fn start(
    State(app): State<AppState>,
    Authed(user): Authed,
    Json(req): Json<DirectUploadRequest>,
) -> ApiResult<(StatusCode, Json<DirectUploadView>)> {
    let ct = &req.content_type;
    let ct_ok = ct.len() <= 255
        && ct.split_once('/').is_some_and(|(a, b)| {
            !a.is_empty() && !b.is_empty() && ct.bytes().all(|c| (b'!'..=b'~').contains(&c))
        });
    if !ct_ok {
        return Err(ApiError::invalid(
            "content_type must be a media type like video/mp4 (printable ASCII, at most 255)",
        ));
    }
    if req
        .filename
        .as_ref()
        .is_some_and(|f| f.chars().count() > 1000)
    {
        return Err(ApiError::invalid("filename has at most 1000 characters"));
    }
    if req.title.as_ref().is_some_and(|t| t.chars().count() > 300) {
        return Err(ApiError::invalid("title has at most 300 characters"));
    }
    if i64::try_from(req.size).is_err() {
        return Err(ApiError::invalid("size is at most 9223372036854775807"));
    }
    signer(&app)?;
    let max = app.upload_limits.max_size_bytes;
    if req.size > max {
        return Err(super::too_large(max));
    }
    if req.size == 0 {
        return Err(ApiError::invalid("size must be at least 1 byte"));
    }
    let title = match req.title.as_deref().map(str::trim) {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ => super::title_from_filename(req.filename.as_deref()),
    };
    videosync_core::NewVideo {
        description: req.description.clone(),
        ..videosync_core::NewVideo::titled(title.clone())
    }
    .validate()?;
    let caller = Caller::User(Box::new(user.clone()));
    load(&app, &caller, req.channel_id)
        .await?
        .require(Permission::Upload)?;
    super::check_quota(&app, user.id, req.size).await?;
    let id = VideoId::new();
    let key = super::source_key(id)?;
    let single_max = app.upload_limits.direct_single_put_max_bytes;
    let expiry = Duration::from_secs(app.upload_limits.expiry_seconds);
    let (multipart, part_size) = if req.size <= single_max {
        (None, req.size)
    } else {
        // Parts of at least the store's minimum (and a quarter of a single
        // PUT, so a big file is not thousands of requests), at most 10 000.
        let part = req
            .size
            .div_ceil(10_000)
            .max(MIN_PART_SIZE as u64)
            .max(single_max / 4);
        let upload = app.backends.uploads.create_multipart(&key).await?;
        (Some(upload.0), part)
    };
    let booking = Booking {
        user: user.id,
        channel: req.channel_id,
        title,
        description: req.description,
        key: key.to_string(),
        size: req.size,
        content_type: req.content_type,
        multipart,
        part_size,
        expires_at_ms: app
            .backends
            .clock
            .now()
            .as_millis()
            .saturating_add(i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX)),
    };
    let bytes = serde_json::to_vec(&booking)
        .map_err(|e| ApiError::internal(format!("encoding an upload: {e}")))?;
    let ttl = expiry + SWEEP_GRACE;
    // Listed first: a booking the sweep cannot find would never be removed.
    app.backends
        .kv
        .set_add(&open_key(&app)?, &id.as_uuid().simple().to_string(), ttl)
        .await?;
    app.backends
        .kv
        .put(
            &booking_key(&app, id)?,
            bytes.into(),
            PutOptions {
                ttl: Some(ttl),
                ..PutOptions::create()
            },
        )
        .await?;
    let (pending, expires) = presign(&app, &booking, &[]).await?;
    tracing::info!(upload = %id, size = booking.size, parts = booking.parts(), "direct upload started");
    Ok((
        StatusCode::CREATED,
        Json(view(id, &booking, pending, Vec::new(), expires)),
    ))
}

/// A direct upload: the parts stored and fresh URLs for the rest.
#[utoipa::path(get, path = "/uploads/direct/{id}", tag = "uploads", security(("bearer" = [])),
    params(DirectPath),
    responses((status = 200, description = "What remains to send", body = DirectUploadView)))]
async fn status(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(p): Path<DirectPath>,
) -> ApiResult<Json<DirectUploadView>> {
    let b = booking_of(&app, user.id, p.id).await?;
    let uploaded = stored_parts(&app, &b).await?;
    let (pending, expires) = presign(&app, &b, &uploaded).await?;
    Ok(Json(view(p.id, &b, pending, uploaded, expires)))
}

/// Give a direct upload up; what was sent is removed.
#[utoipa::path(delete, path = "/uploads/direct/{id}", tag = "uploads", security(("bearer" = [])),
    params(DirectPath), responses((status = 204, description = "Given up")))]
async fn abort(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(p): Path<DirectPath>,
) -> ApiResult<StatusCode> {
    let b = booking_of(&app, user.id, p.id).await?;
    remove_bytes(&app, &b).await?;
    forget(&app, p.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Finish a direct upload: the video appears, pending, with a transcode job.
#[utoipa::path(post, path = "/uploads/direct/{id}/complete", tag = "uploads", security(("bearer" = [])),
    params(DirectPath), request_body = CompleteRequest,
    responses((status = 201, description = "The new video", body = VideoView)))]
async fn complete(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(p): Path<DirectPath>,
    Json(req): Json<CompleteRequest>,
) -> ApiResult<(StatusCode, Json<VideoView>)> {
    if let Some(parts) = &req.parts {
        if parts.len() > videosync_core::store::MAX_PART_NUMBER as usize {
            return Err(ApiError::invalid("at most 10000 parts"));
        }
        if let Some(p) = parts.iter().find(|p| {
            !(1..=videosync_core::store::MAX_PART_NUMBER).contains(&p.number)
                || p.etag.is_empty()
                || p.etag.chars().count() > 128
        }) {
            return Err(ApiError::invalid(format!(
                "part {}: numbers are 1 to 10000 and tags 1 to 128 characters",
                p.number
            )));
        }
    }
    let b = booking_of(&app, user.id, p.id).await?;
    let key = b.object_key()?;
    let store = &app.backends.uploads;
    if let Some(id) = &b.multipart {
        let upload = MultipartId(id.clone());
        let parts: Vec<PartId> = match req.parts {
            Some(parts) => parts
                .into_iter()
                .map(|c| PartId {
                    number: c.number,
                    etag: c.etag,
                })
                .collect(),
            None => stored_parts(&app, &b)
                .await?
                .into_iter()
                .map(|s| PartId {
                    number: s.number,
                    etag: s.etag,
                })
                .collect(),
        };
        if parts.len() != b.parts() as usize {
            return Err(ApiError::conflict(format!(
                "{} of {} parts are stored; send the rest first",
                parts.len(),
                b.parts()
            )));
        }
        match store.complete_multipart(&key, &upload, parts).await {
            Ok(_) => {}
            // Completed before (a retry after a lost answer): the object is there.
            Err(e) if e.kind() == ErrorKind::NotFound && store.exists(&key).await? => {}
            Err(e) => return Err(e.into()),
        }
    }
    let meta = match store.head(&key).await {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(ApiError::conflict("nothing was uploaded yet"))
        }
        Err(e) => return Err(e.into()),
    };
    if meta.size != b.size {
        let why = format!("{} bytes were stored, {} were declared", meta.size, b.size);
        return Err(refuse(&app, p.id, &key, ApiError::invalid(why)).await);
    }
    let head = store
        .get_range(&key, GetRange::Bounded(0..super::sniff::SNIFF_BYTES as u64))
        .await?;
    if let Some(why) = super::refusal(&app, &head) {
        let e = ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::UNSUPPORTED_MEDIA_TYPE,
            why,
        );
        return Err(refuse(&app, p.id, &key, e).await);
    }
    let finished = Finished {
        video: p.id,
        channel: b.channel,
        title: b.title.clone(),
        description: b.description.clone(),
        key: key.clone(),
        size: Some(b.size),
    };
    let video = upload_finished(&app, &user, &finished).await?;
    forget(&app, p.id).await?;
    Ok((StatusCode::CREATED, Json(VideoView::from(&video))))
}
