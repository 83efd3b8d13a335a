//! Processing: a finished upload becomes a `pending` video with a transcode
//! job; the worker (embedded in `videosync serve` or a `videosync worker`
//! process) turns it `ready` or `failed`. Owners re-transcode on request;
//! instance administrators list and requeue dead-lettered jobs.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use videosync_core::catalog::{SourceMeta, StatusChange, VideoFilter};
use videosync_core::db::{Permission, User, Videos};
use videosync_core::page::{PageRequest, MAX_PAGE};
use videosync_core::queue::Job;
use videosync_core::{
    ChannelId, ErrorKind, JobId, NewVideo, ObjectKey, ObjectStoreExt, UserId, Video, VideoId,
    VideoStatus,
};
use videosync_hls::ladder::{LadderOptions, SegmentFormat};
use videosync_transcode::worker::TranscodeJob;
use videosync_transcode::TranscodeOptions;

use crate::auth::{Authed, Caller, Identified};
use crate::channels::load;
use crate::config::ProcessingConfig;
use crate::dto::{rfc3339, PageOf, PageParams};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::{App, AppState};
use crate::videos::{load_video, may_edit, media_prefix, VideoPath, VideoView};

/// The routes of this capability.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(retranscode))
        .routes(routes!(dead_letters))
        .routes(routes!(requeue))
}

/// How a video is transcoded, from the configuration.
pub fn transcode_options(p: &ProcessingConfig) -> TranscodeOptions {
    TranscodeOptions {
        ladder: LadderOptions {
            rungs: p.rungs.clone(),
            segment_seconds: p.segment_seconds,
            format: SegmentFormat::Fmp4,
        },
        preset: p.preset.clone(),
        ..TranscodeOptions::default()
    }
}

/// Puts `video`'s transcode job on the queue (once: a job for it that is
/// still queued or running is not doubled).
///
/// # Errors
/// A queue error; 409 when the video has no source.
pub async fn enqueue(app: &App, video: &Video) -> ApiResult<JobId> {
    let source = video
        .source_key
        .clone()
        .ok_or_else(|| ApiError::conflict("the video has no uploaded source"))?;
    let job = TranscodeJob::Ladder {
        video: video.id,
        source_key: source,
        output_prefix: media_prefix(video.id),
        options: transcode_options(&app.processing),
        segments_per_chunk: None,
    };
    // Once per version of the video: a retry after a crash finds the job
    // it made, a re-transcode (a new version) makes a new one. The queue
    // keeps a finished job's key, so the worker's own per-video key would
    // refuse every later transcode.
    let new = job
        .to_new_job()
        .map_err(|e| ApiError::internal(format!("encoding a transcode job: {e}")))?
        .dedupe_key(format!(
            "ladder:{}:v{}",
            video.id.as_uuid().simple(),
            video.version
        ));
    let queued = app.backends.queue.enqueue(new).await?;
    tracing::info!(video = %video.id, job = %queued.id(), "transcode queued");
    Ok(queued.id())
}

/// An upload whose bytes are all stored, by whichever way they came.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The video it becomes.
    pub video: VideoId,
    /// Its channel.
    pub channel: ChannelId,
    /// Its title.
    pub title: String,
    /// Its description.
    pub description: String,
    /// The stored original.
    pub key: ObjectKey,
    /// Its size in bytes.
    pub size: Option<u64>,
}

/// The video a finished upload becomes: made (`pending`, its source the
/// upload's object) and queued, unless that was done before; idempotent,
/// so a retry after a crash anywhere in between completes it.
///
/// # Errors
/// 403/404 when the uploader may no longer upload to the channel (the
/// bytes are then removed); a backend error.
pub async fn upload_finished(app: &App, user: &User, done: &Finished) -> ApiResult<Video> {
    let id = done.video;
    let existing = {
        let mut tx = app.backends.db.read().await?;
        let v = tx.video(id).await;
        tx.commit().await?;
        v
    };
    let video = match existing {
        Ok(v) => v,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let channel = done.channel;
            let caller = Caller::User(Box::new(user.clone()));
            let allowed = match load(app, &caller, channel).await {
                Ok(l) => l.require(Permission::Upload),
                Err(e) => Err(e),
            };
            if let Err(e) = allowed {
                // The uploader lost the right while uploading: nothing of
                // theirs stays in the channel.
                if let Err(del) = app.backends.uploads.delete(&done.key).await {
                    tracing::warn!(key = %done.key, error = %del, "removing a refused upload failed");
                }
                return Err(e);
            }
            let new = NewVideo {
                id: Some(id),
                owner: Some(user.id),
                channel_id: Some(channel),
                description: done.description.clone(),
                source_key: Some(done.key.to_string()),
                ..NewVideo::titled(done.title.clone())
            };
            let mut tx = app.backends.db.begin().await?;
            let created = match tx.create_video(new).await {
                Ok(v) => {
                    // The size counts against the quota from now on; the
                    // worker's probe fills in the rest.
                    let meta = SourceMeta {
                        size_bytes: done.size,
                        ..SourceMeta::default()
                    };
                    tx.set_video_source(v.id, meta).await?
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => tx.video(id).await?,
                Err(e) => return Err(e.into()),
            };
            tx.commit().await?;
            tracing::info!(video = %id, %channel, "upload finished; video created");
            created
        }
        Err(e) => return Err(e.into()),
    };
    if video.status == VideoStatus::Pending {
        enqueue(app, &video).await?;
    }
    Ok(video)
}

/// Bytes of originals `user` uploaded for videos that still exist.
///
/// # Errors
/// A database error.
pub async fn bytes_held(app: &App, user: UserId) -> ApiResult<u64> {
    let mut tx = app.backends.db.read().await?;
    let mut total = 0u64;
    let mut page = PageRequest::first(MAX_PAGE);
    loop {
        let filter = VideoFilter {
            owner: Some(user),
            ..VideoFilter::default()
        };
        let got = tx.videos(filter, page).await?;
        total = got
            .items
            .iter()
            .filter_map(|v| v.source.as_ref().and_then(|s| s.size_bytes))
            .fold(total, u64::saturating_add);
        match got.next {
            Some(next) => page = PageRequest::after(next, MAX_PAGE),
            None => break,
        }
    }
    tx.commit().await?;
    Ok(total)
}

/// Transcode a video again (its uploader or whoever may edit the channel),
/// from the original, which must have been kept.
#[utoipa::path(post, path = "/videos/{id}/transcode", tag = "videos", security(("bearer" = [])),
    params(VideoPath),
    responses((status = 202, description = "Queued; the video is pending", body = VideoView)))]
async fn retranscode(
    State(app): State<AppState>,
    Identified(caller): Identified,
    Path(p): Path<VideoPath>,
) -> ApiResult<(StatusCode, Json<VideoView>)> {
    let (video, l) = load_video(&app, &caller, p.id).await?;
    if !may_edit(&caller, &l, &video) {
        return Err(l
            .access
            .refuse("only the uploader or someone who may edit the channel may re-transcode"));
    }
    let source = match &video.source_key {
        Some(key) => videosync_core::ObjectKey::parse(key)
            .map_err(|e| ApiError::internal(format!("video {} source key: {e}", video.id)))?,
        None => return Err(ApiError::conflict("the video has no uploaded source")),
    };
    if !app.backends.uploads.exists(&source).await? {
        return Err(ApiError::conflict(
            "the original is no longer kept (uploads.keep_originals); upload it again",
        ));
    }
    let video = match video.status {
        VideoStatus::Pending => video,
        VideoStatus::Processing => {
            return Err(ApiError::conflict("the video is being transcoded already"))
        }
        VideoStatus::Ready | VideoStatus::Failed => app
            .backends
            .catalog
            .update_status(video.id, Some(video.version), StatusChange::Pending)
            .await
            .map_err(ApiError::from)?,
    };
    enqueue(&app, &video).await?;
    Ok((StatusCode::ACCEPTED, Json(VideoView::from(&video))))
}

/// A job that ran out of attempts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadJobView {
    /// Job id.
    pub id: String,
    /// Its kind (`transcode`).
    pub kind: String,
    /// The video it was for, when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub video_id: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it gave up (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

impl From<&Job> for DeadJobView {
    fn from(j: &Job) -> Self {
        DeadJobView {
            id: j.id.to_string(),
            kind: j.kind.clone(),
            video_id: j
                .payload
                .get("video")
                .and_then(|v| v.as_str())
                .and_then(|v| v.parse::<VideoId>().ok())
                .map(|v| v.to_string()),
            attempts: j.attempts,
            last_error: j.last_error.clone(),
            finished_at: j.finished_at.map(rfc3339),
        }
    }
}

/// Dead-lettered jobs, oldest first (instance administrators).
#[utoipa::path(get, path = "/admin/jobs/dead", tag = "admin", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, description = "A page of dead jobs", body = PageOf<DeadJobView>)))]
async fn dead_letters(
    State(app): State<AppState>,
    Authed(user): Authed,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<PageOf<DeadJobView>>> {
    require_admin(&user)?;
    let req = page.request()?;
    let limit = req.limit();
    let got = app
        .backends
        .queue
        .dead_letters(req.cursor.as_ref(), limit)
        .await?;
    Ok(Json(PageOf::from_page(got, |j| DeadJobView::from(&j))))
}

/// Path of a job.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// Job id.
    #[param(value_type = String)]
    pub id: String,
}

/// Put a dead-lettered job back on the queue (instance administrators).
#[utoipa::path(post, path = "/admin/jobs/{id}/requeue", tag = "admin", security(("bearer" = [])),
    params(JobPath), responses((status = 204, description = "Queued again")))]
async fn requeue(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(p): Path<JobPath>,
) -> ApiResult<StatusCode> {
    require_admin(&user)?;
    let id: JobId =
        p.id.parse()
            .map_err(|_| ApiError::not_found("job not found"))?;
    app.backends.queue.requeue(id).await?;
    tracing::info!(job = %id, by = %user.id, "dead job requeued");
    Ok(StatusCode::NO_CONTENT)
}

fn require_admin(user: &User) -> ApiResult<()> {
    if user.is_admin {
        Ok(())
    } else {
        Err(ApiError::forbidden("instance administrators only"))
    }
}
