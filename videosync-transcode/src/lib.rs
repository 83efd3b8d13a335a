//! Transcoding for videosync through FFmpeg (ffmpeg-next): today the probe
//! of a source file; the ladder pipeline, thumbnails and the worker loop
//! follow.
//!
//! # Probe
//!
//! [`probe`] opens a file with FFmpeg's demuxers and returns a typed
//! [`Probe`]: container, duration, bit rate, size, every stream, and the
//! primary video and audio streams with the fields the ladder planner needs
//! (dimensions, display rotation, frame rate, bit depth, interlacing,
//! channels). [`Probe`] is `serde`-serialisable and converts into the
//! catalog's [`videosync_core::SourceMeta`].
//!
//! The call blocks: it reads the file and decodes up to one video frame.
//! It is thread-safe (every call has its own FFmpeg contexts). Callers on an
//! async runtime use [`probe_async`], which runs it on tokio's blocking pool.
//!
//! ```no_run
//! # fn main() -> Result<(), videosync_transcode::TranscodeError> {
//! let probe = videosync_transcode::probe("uploads/clip.mp4")?;
//! let video = probe.require_video()?;
//! assert!(video.width > 0);
//! # Ok(()) }
//! ```
//!
//! # FFmpeg version
//!
//! The workspace pins `ffmpeg-next = "=9.0.0"` (with `ffmpeg-sys-next`
//! 9.0.x). It is the newest release, and it supports every FFmpeg from 3.4
//! to 8.0 by detecting the installed version at build time, so it builds
//! against Debian 12's FFmpeg 5.1 (libavcodec 59) as well as newer
//! distributions. It is pinned exactly because the crate's minor and patch
//! versions do not follow semver (its README says so). Only the features
//! `codec`, `format`, `software-resampling` and `software-scaling` are on:
//! no libavdevice or libavfilter to link.

mod audio;
pub mod chunked;
mod error;
mod mp4;
mod pipeline;
mod prefilter;
mod probe;
mod progress;
mod segmenter;
mod thumbs;
mod transcode;
mod video;
pub mod worker;

pub use error::{FfmpegError, TranscodeError};
pub use pipeline::SegmentRange;
pub use probe::{
    probe, probe_async, probe_opts, AudioInfo, FieldOrder, FrameRate, Probe, ProbeOptions,
    StreamInfo, StreamKind, VideoInfo,
};
pub use progress::{CancelToken, Progress, ProgressFn, Stage};
pub use segmenter::TIMELINE_OFFSET_S;
pub use thumbs::Storyboard;
pub use transcode::{
    transcode, Destination, Manifest, ManifestAudio, ManifestRendition, SourceSummary,
    TranscodeOptions,
};
pub use video::{nvenc_available, EncoderChoice, VideoEncoder};
