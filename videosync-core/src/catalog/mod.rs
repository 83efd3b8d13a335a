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

use crate::{Error, Result, Timestamp, UserId, VideoId};

#[cfg(feature = "sql")]
pub mod sql;

/// Longest video title, in characters.
pub const MAX_TITLE_CHARS: usize = 300;

/// Where a video stands.
///
/// ```text
/// pending ──> processing ──> ready
///    ^            │  │         │
///    └────────────┘  v         │ (re-transcode)
///    ^            failed       │
///    └────────────────┘  <─────┘ processing
/// ```
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
            // Back to the queue: a retry after a failure or a worker that gave
            // the job back.
            VideoStatus::Pending => &[VideoStatus::Processing, VideoStatus::Failed],
            // A worker takes it, possibly again (a redelivered job, or a
            // re-transcode of a ready video).
            VideoStatus::Processing => &[
                VideoStatus::Pending,
                VideoStatus::Processing,
                VideoStatus::Failed,
                VideoStatus::Ready,
            ],
            VideoStatus::Ready | VideoStatus::Failed => &[VideoStatus::Processing],
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
}

impl NewVideo {
    /// A video titled `title`.
    pub fn titled(title: impl Into<String>) -> Self {
        NewVideo {
            id: None,
            owner: None,
            title: title.into(),
            source_key: None,
        }
    }

    /// Checks the fields.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let chars = self.title.chars().count();
        if chars == 0 || chars > MAX_TITLE_CHARS || self.title.chars().any(char::is_control) {
            return Err(Error::invalid_input(format!(
                "video title must be 1 to {MAX_TITLE_CHARS} characters without control characters (got {chars})"
            )));
        }
        if let Some(key) = &self.source_key {
            crate::ObjectKey::parse(key)?;
        }
        Ok(())
    }
}

/// A change of status, with what comes with it.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusChange {
    /// Back to waiting for a worker.
    Pending,
    /// A worker took it.
    Processing,
    /// Transcoded: its ladder.
    Ready {
        /// The rungs.
        renditions: Vec<Rendition>,
    },
    /// Transcoding failed, and why.
    Failed {
        /// A readable reason.
        reason: String,
    },
}

impl StatusChange {
    /// The status this change leads to.
    pub fn status(&self) -> VideoStatus {
        match self {
            StatusChange::Pending => VideoStatus::Pending,
            StatusChange::Processing => VideoStatus::Processing,
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
    /// At most this many (default and cap 1000).
    pub limit: Option<usize>,
}

/// The record of every video and its state.
///
/// # Contract
/// - A created video is [`VideoStatus::Pending`] and reads back equal.
/// - [`Catalog::update_status`] applies only the transitions
///   [`VideoStatus::can_become`] allows, atomically against concurrent
///   updates; another is [`Error::Conflict`] and changes nothing.
///   `Ready` sets the renditions and clears the failure reason; `Failed` sets
///   the reason; every change moves `updated_at`.
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

    /// Moves a video to a new status.
    ///
    /// # Errors
    /// [`Error::NotFound`], or [`Error::Conflict`] for a transition the status
    /// machine forbids.
    async fn update_status(&self, id: VideoId, change: StatusChange) -> Result<Video>;

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
        assert!(!Ready.can_become(Pending));
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
