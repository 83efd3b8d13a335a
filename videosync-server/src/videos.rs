//! Videos: metadata (title, description, tags), per-channel listing, and
//! deletion with the objects. Visibility follows the channel: whoever sees
//! the channel sees its finished videos; members also see the ones still
//! processing or failed.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use videosync_core::db::{Permission, VideoUpdate, Videos};
use videosync_core::{ErrorKind, NewVideo, ObjectKey, ObjectStoreExt, Video, VideoId, VideoStatus};

use crate::auth::{Authed, Caller, Identified};
use crate::channels::{load, ChannelPath, Loaded};
use crate::dto::{rfc3339, PageOf, PageParams};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::{App, AppState};

/// The routes of this capability.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(channel_videos, create))
        .routes(routes!(get_video, update, delete))
}

/// One rung of a ready video's ladder.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RenditionView {
    /// Rung name (`720p`).
    pub name: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Peak bit rate, bits per second.
    pub bandwidth: u64,
    /// Frame rate.
    pub frame_rate: f64,
}

/// A video.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VideoView {
    /// Video id.
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    /// Its channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub channel_id: Option<String>,
    /// Who made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub owner_id: Option<String>,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Tags.
    pub tags: Vec<String>,
    /// pending, processing, ready or failed.
    #[schema(schema_with = crate::dto::schema::status)]
    pub status: String,
    /// Why processing failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Length in seconds, once probed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// The ladder, once ready.
    pub renditions: Vec<RenditionView>,
    /// Changes with every update; send it back as `expected_version`.
    pub version: u64,
    /// Made at (RFC 3339).
    pub created_at: String,
    /// Last changed at (RFC 3339).
    pub updated_at: String,
}

impl From<&Video> for VideoView {
    fn from(v: &Video) -> Self {
        VideoView {
            id: v.id.to_string(),
            channel_id: v.channel_id.map(|c| c.to_string()),
            owner_id: v.owner.map(|u| u.to_string()),
            title: v.title.clone(),
            description: v.description.clone(),
            tags: v.tags.clone(),
            status: v.status.to_string(),
            failure_reason: v.failure_reason.clone(),
            duration_s: v
                .source
                .as_ref()
                .and_then(|s| s.duration_ms)
                .map(|ms| ms as f64 / 1000.0),
            renditions: v
                .renditions
                .iter()
                .map(|r| RenditionView {
                    name: r.name.clone(),
                    width: r.width,
                    height: r.height,
                    bandwidth: r.bandwidth,
                    frame_rate: r.frame_rate,
                })
                .collect(),
            version: v.version,
            created_at: rfc3339(v.created_at),
            updated_at: rfc3339(v.updated_at),
        }
    }
}

/// A new video's metadata (its media comes by upload).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVideoRequest {
    /// 1 to 300 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 300,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub title: String,
    /// Up to 5000 characters; no control characters but tab and newline.
    #[serde(default)]
    #[schema(
        max_length = 5000,
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$"
    )]
    pub description: String,
    /// Up to 20 tags of 1 to 40 characters, no control characters.
    #[serde(default)]
    #[schema(schema_with = crate::dto::schema::tags)]
    pub tags: Vec<String>,
}

/// Changes to a video; absent fields stay.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateVideoRequest {
    /// New title (as in creation).
    #[schema(
        min_length = 1,
        max_length = 300,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub title: Option<String>,
    /// New description (as in creation).
    #[schema(
        max_length = 5000,
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$"
    )]
    pub description: Option<String>,
    /// New tags, replacing the old (as in creation).
    #[schema(schema_with = crate::dto::schema::tags_or_null)]
    pub tags: Option<Vec<String>>,
    /// Apply only if the video is still at this version (else 409).
    #[serde(default, deserialize_with = "crate::dto::whole_number")]
    pub expected_version: Option<u64>,
}

/// Path of a video.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VideoPath {
    /// Video id.
    #[param(value_type = String, format = Uuid)]
    pub id: VideoId,
}

/// Whether a caller with this access to the video's channel sees `video`.
fn sees(l: &Loaded, video: &Video) -> bool {
    l.access.sees_unfinished() || video.status == VideoStatus::Ready
}

/// Loads a video and its channel for `caller`: 404 when either does not
/// exist or the caller may not see it.
pub(crate) async fn load_video(
    app: &App,
    caller: &Caller,
    id: VideoId,
) -> ApiResult<(Video, Loaded)> {
    let missing = || ApiError::not_found("video not found");
    let mut tx = app.backends.db.read().await?;
    let video = match tx.video(id).await {
        Ok(v) => v,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    // A video outside any channel (made by the command line) belongs to
    // its owner and instance administrators only; it has no page here.
    let Some(channel) = video.channel_id else {
        return Err(missing());
    };
    let l = load(app, caller, channel).await.map_err(|_| missing())?;
    if !sees(&l, &video) {
        return Err(missing());
    }
    Ok((video, l))
}

/// Whether the caller may change or delete `video`: its uploader while
/// they may still upload to the channel, anyone who may edit the channel,
/// and instance administrators.
pub(crate) fn may_edit(caller: &Caller, l: &Loaded, video: &Video) -> bool {
    let uploader = caller.user().is_some_and(|u| Some(u.id) == video.owner);
    (uploader && l.access.allows(&l.matrix, Permission::Upload))
        || l.access.allows(&l.matrix, Permission::EditChannel)
}

/// The channel's videos, newest first (non-members see finished ones).
#[utoipa::path(get, path = "/channels/{id}/videos", tag = "videos", security(("bearer" = []), ()),
    params(ChannelPath, PageParams),
    responses((status = 200, description = "A page of videos", body = PageOf<VideoView>)))]
async fn channel_videos(
    State(app): State<AppState>,
    caller: Caller,
    Path(p): Path<ChannelPath>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<PageOf<VideoView>>> {
    let req = page.request()?;
    let l = load(&app, &caller, p.id).await?;
    let mut tx = app.backends.db.read().await?;
    let mut page = tx.channel_videos(p.id, req).await?;
    tx.commit().await?;
    page.items.retain(|v| sees(&l, v));
    Ok(Json(PageOf::from_page(page, |v| VideoView::from(&v))))
}

/// Add a video's metadata to a channel (needs `upload`); the media follows
/// by upload.
#[utoipa::path(post, path = "/channels/{id}/videos", tag = "videos", security(("bearer" = [])),
    params(ChannelPath), request_body = CreateVideoRequest,
    responses((status = 201, description = "The new video, pending", body = VideoView)))]
async fn create(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(p): Path<ChannelPath>,
    Json(req): Json<CreateVideoRequest>,
) -> ApiResult<(StatusCode, Json<VideoView>)> {
    let caller = Caller::User(Box::new(user.clone()));
    let l = load(&app, &caller, p.id).await?;
    l.require(Permission::Upload)?;
    let new = NewVideo {
        owner: Some(user.id),
        channel_id: Some(p.id),
        description: req.description,
        tags: req.tags,
        ..NewVideo::titled(req.title)
    };
    let mut tx = app.backends.db.begin().await?;
    let video = tx.create_video(new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(VideoView::from(&video))))
}

/// One video.
#[utoipa::path(get, path = "/videos/{id}", tag = "videos", security(("bearer" = []), ()), params(VideoPath),
    responses((status = 200, description = "The video", body = VideoView)))]
async fn get_video(
    State(app): State<AppState>,
    caller: Caller,
    Path(p): Path<VideoPath>,
) -> ApiResult<Json<VideoView>> {
    let (video, _) = load_video(&app, &caller, p.id).await?;
    Ok(Json(VideoView::from(&video)))
}

/// Change a video's metadata (its uploader, or whoever may edit the channel).
#[utoipa::path(patch, path = "/videos/{id}", tag = "videos", security(("bearer" = [])),
    params(VideoPath), request_body = UpdateVideoRequest,
    responses((status = 200, description = "The updated video", body = VideoView)))]
async fn update(
    State(app): State<AppState>,
    Identified(caller): Identified,
    Path(p): Path<VideoPath>,
    Json(req): Json<UpdateVideoRequest>,
) -> ApiResult<Json<VideoView>> {
    let (video, l) = load_video(&app, &caller, p.id).await?;
    if !may_edit(&caller, &l, &video) {
        return Err(l
            .access
            .refuse("only the uploader or someone who may edit the channel may change a video"));
    }
    let update = VideoUpdate {
        title: req.title,
        description: req.description,
        tags: req.tags,
        ..VideoUpdate::default()
    };
    let mut tx = app.backends.db.begin().await?;
    let video = tx.update_video(p.id, req.expected_version, update).await?;
    tx.commit().await?;
    Ok(Json(VideoView::from(&video)))
}

/// Delete a video and its files (its uploader, or whoever may edit the
/// channel). A transcode in flight stops at its next step.
#[utoipa::path(delete, path = "/videos/{id}", tag = "videos", security(("bearer" = [])),
    params(VideoPath), responses((status = 204, description = "Deleted")))]
async fn delete(
    State(app): State<AppState>,
    Identified(caller): Identified,
    Path(p): Path<VideoPath>,
) -> ApiResult<StatusCode> {
    let (video, l) = load_video(&app, &caller, p.id).await?;
    if !may_edit(&caller, &l, &video) {
        return Err(l
            .access
            .refuse("only the uploader or someone who may edit the channel may delete a video"));
    }
    delete_video(&app, &video).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where a video's ladder goes in the store (each transcode attempt in a
/// folder of its own below it).
pub fn media_prefix(id: VideoId) -> String {
    format!("videos/{}", id.as_uuid().simple())
}

/// Deletes a video: the record first, so any job for it finds it gone (a
/// queued job ends at once, a running one cannot publish: its fence is
/// gone with the record), then its objects: the ladder under its output
/// prefix and the uploaded source.
///
/// # Errors
/// A backend error.
pub async fn delete_video(app: &App, video: &Video) -> ApiResult<()> {
    let mut tx = app.backends.db.begin().await?;
    match tx.delete_video(video.id).await {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    let store = &app.backends.store;
    let mut prefixes = vec![media_prefix(video.id)];
    prefixes.extend(video.output_prefix.clone());
    prefixes.dedup();
    for prefix in prefixes {
        if let Ok(prefix) = ObjectKey::parse(&prefix) {
            let keys: Vec<ObjectKey> = store
                .list(Some(&prefix))
                .await?
                .into_iter()
                .map(|m| m.key)
                .collect();
            store.delete_many(&keys).await?;
        }
    }
    if let Some(source) = &video.source_key {
        if let Ok(key) = ObjectKey::parse(source) {
            app.backends.uploads.delete(&key).await?;
        }
    }
    tracing::info!(video = %video.id, "video deleted");
    Ok(())
}
