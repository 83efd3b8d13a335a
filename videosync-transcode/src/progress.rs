//! Progress reports and cancellation.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Where a transcode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Reading the source's metadata.
    Probing,
    /// Decoding, scaling, encoding and writing segments.
    Encoding,
    /// Writing playlists, the manifest and the images.
    Finishing,
    /// Done; everything is in the store.
    Done,
}

/// One progress report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The stage.
    pub stage: Stage,
    /// Share of the source (of the chunk, in chunked mode) decoded and
    /// handed to the encoders, 0 to 100.
    pub percent: f64,
    /// Source frames decoded so far.
    pub frames: u64,
    /// Source frames per second of wall time, since the start.
    pub fps: f64,
    /// Seconds of media per second of wall time (`2.0` is twice real time).
    pub speed: f64,
    /// Milliseconds since the start.
    pub elapsed_ms: u64,
}

/// The callback that receives progress reports. It runs on the decoding
/// thread, at most a few times a second: it must return quickly.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Stops a transcode: cheap to clone, checked between packets and frames
/// and inside FFmpeg's blocking reads. A cancelled transcode removes what
/// it wrote and returns [`crate::TranscodeError::Cancelled`].
#[derive(Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every transcode holding a clone of this token.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CancelToken")
            .field(&self.is_cancelled())
            .finish()
    }
}
