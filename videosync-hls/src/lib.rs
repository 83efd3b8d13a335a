//! HLS ladder planning, master and media playlists, validation and delivery
//! rewriting for videosync.
//!
//! The crate is pure: no IO and no clock reads. The transcoder probes a
//! source, asks this crate what to encode, encodes, then hands back what it
//! measured; this crate writes the playlists, checks the result and, at
//! delivery, rewrites URLs.
//!
//! - [`ladder`]: [`ladder::plan`] turns source facts into rungs (size, frame
//!   rate, bit rate, VBV, GOP, H.264 level) and an audio plan.
//! - [`codecs`]: RFC 6381 `CODECS` strings (`avc1.64001f`, `mp4a.40.2`).
//! - [`playlist`]: VOD master and media playlists through m3u8-rs, with
//!   bandwidths measured from the produced segments; fMP4 or MPEG-TS.
//! - [`inspect`]: what a produced segment holds, read back from its fMP4
//!   boxes or MPEG-TS packets (times, keyframes, sizes, continuity).
//! - [`validate`]: every HLS rule a produced ladder breaks, as typed
//!   [`validate::Violation`]s, judged on what [`inspect`] read back.
//! - [`rewrite`]: absolute/CDN URLs and per-request signed segment URLs.
//!
//! Errors are one [`Error`] enum.
//!
//! # Examples
//!
//! ```
//! use videosync_hls::ladder::{plan, LadderOptions, SourceVideo};
//! use videosync_hls::playlist::{master_playlist, master_to_string, media_playlist, SegmentInfo, VariantInput};
//! use videosync_hls::inspect::Measured;
//! use videosync_hls::validate::{validate, ProducedLadder, ProducedRendition, ValidateOptions};
//!
//! // A silent 1280x720 30 fps source.
//! let source = SourceVideo {
//!     width: 1280, height: 720, rotation: 0, frame_rate: 30.0,
//!     bit_rate: Some(4_000_000), audio_channels: None, sample_rate: None,
//! };
//! let ladder = plan(&source, &LadderOptions::default())?;
//! let sizes: Vec<_> = ladder.rungs.iter().map(|r| (r.width, r.height)).collect();
//! assert_eq!(sizes, [(1280, 720), (854, 480), (640, 360)]);
//!
//! // What the encoder produced for the top rung: two 4 s segments.
//! let segments = vec![
//!     SegmentInfo::new("seg_00000.m4s", 4.0, 1_400_000),
//!     SegmentInfo::new("seg_00001.m4s", 4.0, 1_500_000),
//! ];
//! let media = media_playlist(ladder.format, &segments)?;
//! let variants = [VariantInput { uri: "720p/index.m3u8", rung: &ladder.rungs[0], segments: &segments }];
//! let master = master_playlist(ladder.format, &variants, None)?;
//! assert!(master_to_string(&master).contains(
//!     "BANDWIDTH=3000000,AVERAGE-BANDWIDTH=2900000,CODECS=\"avc1.64001f\",RESOLUTION=1280x720"
//! ));
//!
//! // What the segments hold, as `inspect::RenditionInspector` reads them
//! // back from their bytes.
//! let read_back = [Measured::new(10.0, 4.0, 1_400_000), Measured::new(14.0, 4.0, 1_500_000)];
//! let produced = ProducedLadder {
//!     master: &master,
//!     video: vec![ProducedRendition {
//!         uri: "720p/index.m3u8", playlist: &media, segments: &read_back, iframes: None,
//!     }],
//!     audio: None,
//! };
//! assert!(validate(&produced, &ValidateOptions::default()).is_empty());
//! # Ok::<(), videosync_hls::Error>(())
//! ```

pub mod codecs;
mod error;
pub mod inspect;
pub mod ladder;
pub mod playlist;
pub mod rewrite;
pub mod validate;

pub use error::Error;
