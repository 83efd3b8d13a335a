//! What the stage workers (the rungs in [`crate::video`], the audio, the
//! images) and the pipeline that feeds them share: the frames that travel
//! between them, segment timings, time arithmetic.
//!
//! The layering it makes possible, with every arrow pointing down:
//!
//! ```text
//! worker -> chunked -> transcode -> pipeline -> plan -> stages (video, audio, thumbs, sparse, prefilter)
//!                                                     -> stage, segmenter, probe, error
//! ```

use std::sync::Arc;

use ff::Rational;
use ffmpeg_next as ff;
use serde::{Deserialize, Serialize};

/// A decoded source frame on its way to the rungs.
#[derive(Clone)]
pub(crate) struct FrameMsg {
    /// The frame (source size and pixel format, already deinterlaced and
    /// rotated when needed).
    pub(crate) frame: Arc<ff::frame::Video>,
    /// Presentation time in seconds from the source's start.
    pub(crate) time_s: f64,
    /// Segment number this frame belongs to.
    pub(crate) segment: u32,
    /// Whether the frame starts its segment (a forced keyframe).
    pub(crate) starts: bool,
}

/// Timing of one video segment, the same for every rung.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct SegTiming {
    pub(crate) index: u32,
    pub(crate) duration_s: f64,
}

/// A timestamp in seconds.
pub(crate) fn ts_seconds(ts: i64, tb: Rational) -> f64 {
    ts as f64 * f64::from(tb.numerator()) / f64::from(tb.denominator().max(1))
}
