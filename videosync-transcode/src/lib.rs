//! Transcoding for videosync through FFmpeg (ffmpeg-next): probe a source,
//! make its HLS ladder (decode once, scale and encode every rung in
//! parallel, segments stored as they are made), the poster and the
//! storyboard, in one pass or in chunks across workers, and the worker loop
//! that runs it all from a job queue.
//!
//! # Transcode
//!
//! [`transcode()`] takes a file and a [`Destination`] (an object store and a
//! prefix) and writes `master.m3u8`, one folder per rung, the audio
//! rendition, `poster.jpg`, `storyboard/` and `manifest.json`. Inside:
//!
//! - one thread demuxes and decodes the video once (FFmpeg frame threads),
//!   deinterlaces and rotates when the source needs it, and hands every
//!   frame, shared, to one thread per rung;
//! - each rung thread scales (swscale, bicubic), encodes (libx264, or NVENC
//!   with [`EncoderChoice::Auto`] when a GPU is usable) with keyframes
//!   forced on the frames that start a segment, the same frames for every
//!   rung, and muxes each segment in memory (fMP4 or MPEG-TS), so a
//!   finished segment goes straight to the store;
//! - the audio is decoded, downmixed and encoded once (AAC-LC) on its own
//!   thread, cut at the same boundaries;
//! - a thumbnail thread picks the poster and the storyboard tiles;
//! - a source without video (an MP3, an M4A; cover art is an attached
//!   picture, never a video stream) gets an audio-only ladder: the audio
//!   rendition as the master's one variant, and the cover art, when there
//!   is one, as `poster.jpg`;
//! - at the end the playlists (through `videosync-hls`, with bandwidths
//!   measured from the produced segments) pass the validator, and the
//!   master is written last. On any error or cancellation what was written
//!   is removed.
//!
//! ```no_run
//! # async fn run(store: videosync_core::store::DynObjectStore) -> Result<(), videosync_transcode::TranscodeError> {
//! use videosync_core::ObjectKey;
//! use videosync_transcode::{transcode, CancelToken, Destination, TranscodeOptions};
//! let prefix = ObjectKey::parse("videos/abc/hls").expect("a plain key");
//! let dest = Destination::new(store, Some(prefix));
//! let manifest = transcode("upload.mp4", &dest, &TranscodeOptions::default(), None, &CancelToken::new()).await?;
//! println!("{} rungs", manifest.renditions.len());
//! # Ok(()) }
//! ```
//!
//! [`chunked`] splits a long source into parts for several workers;
//! [`worker`] is the loop that reserves jobs, heartbeats, updates the
//! catalog and publishes progress.
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
mod plan;
mod prefilter;
mod probe;
mod progress;
mod segmenter;
mod sparse;
mod stage;
mod thumbs;
mod transcode;
mod video;
pub mod worker;

pub use error::{FfmpegError, TranscodeError};
pub use pipeline::SegmentRange;
pub use probe::{
    probe, probe_async, probe_opts, AudioInfo, FieldOrder, FrameRate, Probe, ProbeOptions,
    StreamInfo, StreamKind, VideoInfo, DEFAULT_MAX_PIXELS,
};
pub use progress::{CancelToken, Progress, ProgressFn, Stage};
pub use segmenter::TIMELINE_OFFSET_S;
pub use thumbs::Storyboard;
pub use transcode::{
    transcode, Destination, Manifest, ManifestAudio, ManifestRendition, SourceSummary,
    TranscodeOptions,
};
pub use video::{nvenc_available, EncoderChoice, VideoEncoder};
