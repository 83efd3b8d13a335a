//! The crate's one error type.

use std::fmt;
use std::time::Duration;

/// What went wrong in a transcode operation.
///
/// Every variant names the operation (`probe`) and the file, so the message
/// alone tells an operator what failed: `probe of uploads/x.mp4 failed: no
/// video stream`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TranscodeError {
    /// The input file does not exist.
    #[error("{op} of {path} failed: file not found")]
    NotFound {
        /// The operation (`probe`).
        op: &'static str,
        /// The file.
        path: String,
    },
    /// The input is not usable media: empty, not a media file, corrupt,
    /// truncated, or without the stream the operation needs.
    #[error("{op} of {path} failed: {reason}")]
    InvalidInput {
        /// The operation (`probe`).
        op: &'static str,
        /// The file.
        path: String,
        /// The cause, in words (`no video stream`).
        reason: String,
    },
    /// The input is media, but of a kind this build cannot handle (no
    /// demuxer or decoder for it).
    #[error("{op} of {path} failed: unsupported: {reason}")]
    Unsupported {
        /// The operation (`probe`).
        op: &'static str,
        /// The file.
        path: String,
        /// The cause, in words.
        reason: String,
    },
    /// The operation ran past its time limit and was interrupted.
    #[error("{op} of {path} failed: timed out after {after:?}")]
    Timeout {
        /// The operation (`probe`).
        op: &'static str,
        /// The file.
        path: String,
        /// The limit that was reached.
        after: Duration,
    },
    /// Reading the file failed at the operating-system level.
    #[error("{op} of {path} failed: {source}")]
    Io {
        /// The operation (`probe`).
        op: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The caller cancelled the operation; what it wrote was removed.
    #[error("{op} of {path} cancelled")]
    Cancelled {
        /// The operation (`transcode`).
        op: &'static str,
        /// The file.
        path: String,
    },
    /// The object store failed while the output was written.
    #[error("{op} of {path} failed: storing the output: {source}")]
    Store {
        /// The operation (`transcode`).
        op: &'static str,
        /// The file.
        path: String,
        /// The store's error.
        #[source]
        source: videosync_core::Error,
    },
    /// The produced ladder broke an HLS rule or could not be described
    /// (a bug, never the input's fault); nothing was published.
    #[error("{op} of {path} failed: the produced ladder is invalid: {reason}")]
    InvalidOutput {
        /// The operation (`transcode`).
        op: &'static str,
        /// The file.
        path: String,
        /// Every violation, in words.
        reason: String,
    },
    /// FFmpeg failed in a way that says nothing about the input (a bug, an
    /// allocation failure, an initialisation failure).
    #[error("{op} of {path} failed: {source}")]
    Ffmpeg {
        /// The operation (`probe`).
        op: &'static str,
        /// The file.
        path: String,
        /// FFmpeg's error.
        #[source]
        source: FfmpegError,
    },
}

impl TranscodeError {
    /// Whether running the same job again cannot help: the input is bad or
    /// unsupported, or the run was cancelled. A worker dead-letters these at
    /// once instead of retrying.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            TranscodeError::NotFound { .. }
                | TranscodeError::InvalidInput { .. }
                | TranscodeError::Unsupported { .. }
                | TranscodeError::Cancelled { .. }
        )
    }
}

/// An error reported by the FFmpeg libraries, kept opaque so that no
/// ffmpeg-next type crosses this crate's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FfmpegError {
    message: String,
}

impl FfmpegError {
    pub(crate) fn new(e: &ffmpeg_next::Error) -> Self {
        FfmpegError {
            message: e.to_string(),
        }
    }

    /// An error described in words (a step around an FFmpeg call).
    pub(crate) fn msg(message: impl Into<String>) -> Self {
        FfmpegError {
            message: message.into(),
        }
    }

    /// FFmpeg's description of the error.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for FfmpegError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ffmpeg: {}", self.message)
    }
}

impl std::error::Error for FfmpegError {}
