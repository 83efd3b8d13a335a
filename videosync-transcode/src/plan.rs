//! Everything decided about a source before encoding: the ladder, the
//! source's facts, the encoder and the filters, in one serialisable
//! [`Planned`] that every part of a chunked transcode shares.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use videosync_core::SourceMeta;
use videosync_hls::ladder::Ladder;

use crate::video::EncoderChoice;

/// The source, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSummary {
    /// Catalog-style metadata.
    #[serde(flatten)]
    pub meta: SourceMeta,
    /// Whether the video was interlaced (and so deinterlaced).
    pub interlaced: bool,
    /// Bits per sample of the video, when known.
    pub bit_depth: Option<u32>,
}

/// Everything decided before encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Planned {
    pub(crate) ladder: Ladder,
    pub(crate) source: SourceSummary,
    /// The encoder asked for. Each part's worker resolves it on its own
    /// machine ([`crate::video::resolve_encoder`]), so a plan made where
    /// there is no GPU still runs on NVENC where a worker has one.
    pub(crate) encoder: EncoderChoice,
    pub(crate) preset: String,
    pub(crate) threads: usize,
    pub(crate) interlaced: bool,
    pub(crate) rotation: u32,
    pub(crate) duration_s: f64,
    pub(crate) display: (u32, u32),
    pub(crate) poster: bool,
    pub(crate) storyboard: bool,
    pub(crate) timeout: Option<Duration>,
    /// The filter that makes the source's pixels BT.709, when they are not
    /// ([`crate::prefilter::colour_fix`]).
    #[serde(default)]
    pub(crate) colour: Option<String>,
    /// The pixel budget the probe checked; the decoder enforces it too.
    #[serde(default = "default_max_pixels")]
    pub(crate) max_pixels: u64,
}

fn default_max_pixels() -> u64 {
    crate::probe::DEFAULT_MAX_PIXELS
}
