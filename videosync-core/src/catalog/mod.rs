//! The video catalog: the [`Catalog`] contract, the video record and its
//! status machine.
//!
//! | backend | module | feature |
//! |---|---|---|
//! | SQLite (default) | [`crate::queue::sql`]'s database, [`sql`] | `sqlite` |
//! | PostgreSQL | [`sql`] | `postgres` |

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::db::Visibility;
use crate::{ChannelId, Error, Result, Timestamp, UserId, VideoId};

#[cfg(feature = "sql")]
pub mod sql;

/// Longest video title, in characters.
pub const MAX_TITLE_CHARS: usize = 300;

/// Where a video stands.
///
/// ```text
///           ┌──── (taken over: a new fence) ───┐
///           v                                  │
/// pending ──> processing ──────────────────> processing ──> ready
///    ^  ^         │  │                                        │
///    │  └─────────┘  └──> failed                              │
///    │  (given back)        │                                 │
///    └──────── retry ───────┘  <──────── re-transcode ────────┘
/// ```
///
/// A ready video never goes back to processing by itself: a redelivered or
/// retried job finds it ready and does nothing. Only an explicit
/// re-transcode moves it to pending, and its published ladder
/// ([`Video::output_prefix`]) stays in place until the next attempt replaces
/// it in one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoStatus {
    /// Uploaded, waiting for a worker.
    Pending,
    /// A worker is transcoding it.
    Processing,
    /// Playable.
    Ready,
    /// Transcoding failed; see [`Video::failure_reason`].
    Failed,
}

impl VideoStatus {
    /// The status's stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            VideoStatus::Pending => "pending",
            VideoStatus::Processing => "processing",
            VideoStatus::Ready => "ready",
            VideoStatus::Failed => "failed",
        }
    }

    /// The status with this stored name.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unknown name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(VideoStatus::Pending),
            "processing" => Ok(VideoStatus::Processing),
            "ready" => Ok(VideoStatus::Ready),
            "failed" => Ok(VideoStatus::Failed),
            other => Err(Error::invalid_input(format!(
                "unknown video status `{}`",
                other.escape_debug()
            ))),
        }
    }

    /// The statuses a video may move to `next` from.
    pub fn sources_of(next: VideoStatus) -> &'static [VideoStatus] {
        match next {
            // Back to the queue: a worker gave the job back, a retry after a
            // failure, or a requested re-transcode.
            VideoStatus::Pending => &[
                VideoStatus::Processing,
                VideoStatus::Failed,
                VideoStatus::Ready,
            ],
            // A worker takes it, or takes it over from a worker whose lease
            // ran out (with a new fence).
            VideoStatus::Processing => &[VideoStatus::Pending, VideoStatus::Processing],
            VideoStatus::Ready => &[VideoStatus::Processing],
            // A failed attempt, or a job dead-lettered before any worker
            // started it.
            VideoStatus::Failed => &[VideoStatus::Pending, VideoStatus::Processing],
        }
    }

    /// Whether a video in this status may move to `next`.
    pub fn can_become(self, next: VideoStatus) -> bool {
        VideoStatus::sources_of(next).contains(&self)
    }
}

impl fmt::Display for VideoStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What probing the uploaded source found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceMeta {
    /// Container format (`mov,mp4,m4a,3gp,3g2,mj2`, `matroska,webm`).
    pub container: Option<String>,
    /// Duration in milliseconds.
    pub duration_ms: Option<u64>,
    /// Coded width of the video stream.
    pub width: Option<u32>,
    /// Coded height of the video stream.
    pub height: Option<u32>,
    /// Display rotation in degrees (0, 90, 180, 270).
    pub rotation: Option<i32>,
    /// Average frame rate.
    pub frame_rate: Option<f64>,
    /// Overall bit rate in bits per second.
    pub bit_rate: Option<u64>,
    /// Video codec (`h264`, `hevc`, `vp9`).
    pub video_codec: Option<String>,
    /// Audio codec, when there is audio.
    pub audio_codec: Option<String>,
    /// Audio channels.
    pub audio_channels: Option<u32>,
    /// Audio sample rate in Hz.
    pub sample_rate: Option<u32>,
    /// Size of the uploaded file in bytes.
    pub size_bytes: Option<u64>,
}

/// One rung of a finished ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendition {
    /// Its name (`720p`).
    pub name: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Peak bandwidth in bits per second.
    pub bandwidth: u64,
    /// Average bandwidth in bits per second.
    pub average_bandwidth: u64,
    /// RFC 6381 codecs string.
    pub codecs: String,
    /// Frame rate.
    pub frame_rate: f64,
    /// Key of its media playlist.
    pub playlist: String,
}

/// A video record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Video {
    /// Its id.
    pub id: VideoId,
    /// Who uploaded it.
    pub owner: Option<UserId>,
    /// Its title.
    pub title: String,
    /// Where it stands.
    pub status: VideoStatus,
    /// Why it failed, when it did.
    pub failure_reason: Option<String>,
    /// Key of the uploaded original.
    pub source_key: Option<String>,
    /// What probing the source found.
    pub source: Option<SourceMeta>,
    /// Its ladder, once ready.
    pub renditions: Vec<Rendition>,
    /// The channel it belongs to.
    pub channel_id: Option<ChannelId>,
    /// What it is about.
    pub description: String,
    /// Tags, for search.
    pub tags: Vec<String>,
    /// Who may watch it; `None` follows its channel.
    pub visibility: Option<Visibility>,
    /// Moves on every change, for compare-and-set.
    pub version: u64,
    /// How many transcode attempts have started.
    pub attempt: u64,
    /// The fence (queue lease token) of the attempt that owns the work while
    /// processing; only that attempt may finish or fail it.
    pub fence: Option<String>,
    /// Where the published ladder lives (its `master.m3u8` is directly under
    /// it): the output of the attempt that made the video ready.
    pub output_prefix: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// A video to create (in [`VideoStatus::Pending`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewVideo {
    /// Its id; a fresh one when `None`.
    pub id: Option<VideoId>,
    /// Who uploaded it.
    pub owner: Option<UserId>,
    /// Its title: 1 to [`MAX_TITLE_CHARS`] characters, no control characters.
    pub title: String,
    /// Key of the uploaded original.
    pub source_key: Option<String>,
    /// The channel it belongs to.
    pub channel_id: Option<ChannelId>,
    /// Up to 5000 characters.
    pub description: String,
    /// Up to 20 tags of 1 to 40 characters.
    pub tags: Vec<String>,
    /// Who may watch it; `None` follows its channel.
    pub visibility: Option<Visibility>,
}

impl NewVideo {
    /// A video titled `title`.
    pub fn titled(title: impl Into<String>) -> Self {
        NewVideo {
            id: None,
            owner: None,
            title: title.into(),
            source_key: None,
            channel_id: None,
            description: String::new(),
            tags: Vec::new(),
            visibility: None,
        }
    }

    /// Checks the fields.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<()> {
        check_title(&self.title)?;
        if let Some(key) = &self.source_key {
            crate::ObjectKey::parse(key)?;
        }
        check_description(&self.description)?;
        check_tags(&self.tags)
    }
}

/// Checks a video title.
pub(crate) fn check_title(title: &str) -> Result<()> {
    let chars = title.chars().count();
    if chars == 0 || chars > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
        return Err(Error::invalid_input(format!(
            "video title must be 1 to {MAX_TITLE_CHARS} characters without control characters (got {chars})"
        )));
    }
    Ok(())
}

/// Checks a video description.
pub(crate) fn check_description(description: &str) -> Result<()> {
    crate::db::check_text("a video description", description, 0, 5000, &['\n', '\t'])
}

/// Checks video tags.
pub(crate) fn check_tags(tags: &[String]) -> Result<()> {
    if tags.len() > 20 {
        return Err(Error::invalid_input(format!(
            "a video has at most 20 tags (got {})",
            tags.len()
        )));
    }
    for tag in tags {
        crate::db::check_text("a tag", tag, 1, 40, &[])?;
    }
    Ok(())
}

/// A change of status, with what comes with it.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusChange {
    /// Back to waiting for a worker: a worker gave the job back, a retry of
    /// a failed video, or a requested re-transcode of a ready one.
    Pending,
    /// A worker took it (or took it over) under this fence: the token of its
    /// queue lease. The attempt count moves by one.
    Processing {
        /// The lease token that owns the attempt.
        fence: String,
    },
    /// Transcoded by the attempt holding `fence`: its ladder, published in
    /// one step by pointing the video at `output_prefix`.
    Ready {
        /// The fence of the attempt that did the work.
        fence: String,
        /// The rungs.
        renditions: Vec<Rendition>,
        /// Where the attempt wrote the ladder.
        output_prefix: String,
    },
    /// Transcoding failed, and why. With a fence, only the attempt holding it
    /// may fail the video; without one (a dead-lettered job, whoever held
    /// it), any pending or processing video fails.
    Failed {
        /// The fence of the failing attempt, if the caller holds one.
        fence: Option<String>,
        /// A readable reason.
        reason: String,
    },
}

impl StatusChange {
    /// The status this change leads to.
    pub fn status(&self) -> VideoStatus {
        match self {
            StatusChange::Pending => VideoStatus::Pending,
            StatusChange::Processing { .. } => VideoStatus::Processing,
            StatusChange::Ready { .. } => VideoStatus::Ready,
            StatusChange::Failed { .. } => VideoStatus::Failed,
        }
    }
}

/// Which videos to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VideoFilter {
    /// Only this owner's.
    pub owner: Option<UserId>,
    /// Only in this status.
    pub status: Option<VideoStatus>,
    /// At most this many (default and cap [`crate::page::MAX_PAGE`]).
    pub limit: Option<usize>,
}

/// The record of every video and its state.
///
/// # Contract
/// - A created video is [`VideoStatus::Pending`] and reads back equal.
/// - [`Catalog::update_status`] applies only the transitions
///   [`VideoStatus::can_become`] allows, atomically against concurrent
///   updates; another is [`Error::Conflict`] and changes nothing.
/// - Fencing: `Ready`, and `Failed` with a fence, apply only to a processing
///   video whose fence is the caller's; an expected version applies only when
///   it matches. Either mismatch is [`Error::Precondition`] and changes
///   nothing, so a stale worker can never publish, fail or take a video off
///   air.
/// - `Processing` moves the attempt count and records the fence; `Ready` sets
///   the renditions and the output prefix and clears the failure reason;
///   `Failed` sets the reason and keeps a published ladder; every change
///   moves `version` and `updated_at`.
/// - Lists are newest first.
///
/// # Implementing
/// Run `videosync_core::conformance::catalog` against the backend.
#[async_trait]
pub trait Catalog: fmt::Display + fmt::Debug + Send + Sync + 'static {
    /// Creates a video in `pending`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for bad fields, [`Error::AlreadyExists`] for an
    /// id in use.
    async fn create_video(&self, new: NewVideo) -> Result<Video>;

    /// One video.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    async fn get_video(&self, id: VideoId) -> Result<Video>;

    /// Videos matching `filter`, newest first.
    ///
    /// # Errors
    /// A backend error.
    async fn list_videos(&self, filter: VideoFilter) -> Result<Vec<Video>>;

    /// Moves a video to a new status, if `expected_version` (when given)
    /// still holds and the change's fence owns the work.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] for a transition the status
    /// machine forbids; [`Error::Precondition`] for a stale version or fence.
    async fn update_status(
        &self,
        id: VideoId,
        expected_version: Option<u64>,
        change: StatusChange,
    ) -> Result<Video>;

    /// Records what probing the source found.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    async fn set_source_meta(&self, id: VideoId, meta: SourceMeta) -> Result<Video>;

    /// Deletes a video record (its objects are the caller's to delete).
    ///
    /// # Errors
    /// [`Error::NotFound`].
    async fn delete_video(&self, id: VideoId) -> Result<()>;
}

/// A catalog shared between tasks.
pub type DynCatalog = Arc<dyn Catalog>;

/// The catalog behind a URL: `sqlite://path` or `postgres://...`.
///
/// # Errors
/// [`Error::InvalidInput`] for an unknown scheme, and what the backend fails
/// with when connecting or migrating.
pub async fn catalog_from_url(url: &str, clock: Arc<dyn crate::Clock>) -> Result<DynCatalog> {
    let scheme = url.split_once(':').map_or(url, |(s, _)| s);
    match scheme {
        #[cfg(feature = "sql")]
        "sqlite" | "postgres" | "postgresql" => {
            let db = crate::sql::Database::connect(url).await?;
            Ok(Arc::new(sql::SqlCatalog::new(db, clock)))
        }
        other => {
            let _ = clock;
            Err(Error::invalid_input(format!(
                "unknown catalog URL scheme `{}` in `{}`; expected {}",
                other.escape_debug(),
                crate::redact_url(url),
                crate::sql_schemes_hint(&[])
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_machine() {
        use VideoStatus::*;
        assert!(Pending.can_become(Processing));
        assert!(Processing.can_become(Ready));
        assert!(Processing.can_become(Failed));
        assert!(Failed.can_become(Pending));
        assert!(!Pending.can_become(Ready));
        assert!(!Ready.can_become(Failed));
        assert!(!Ready.can_become(Processing));
        assert!(Ready.can_become(Pending));
        assert!(!Failed.can_become(Processing));
        for s in [Pending, Processing, Ready, Failed] {
            assert_eq!(VideoStatus::parse(s.as_str()).ok(), Some(s));
        }
    }

    #[test]
    fn titles_are_checked() {
        assert!(NewVideo::titled("Holiday").validate().is_ok());
        assert!(NewVideo::titled("").validate().is_err());
        assert!(NewVideo::titled("a\u{7}b").validate().is_err());
        assert!(NewVideo::titled("x".repeat(301)).validate().is_err());
        let mut v = NewVideo::titled("ok");
        v.source_key = Some("../../etc/passwd".into());
        assert!(v.validate().is_err());
    }
}
