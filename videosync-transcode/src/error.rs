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
    /// (a bug, never the input's fault); nothing was published. Permanent:
    /// the same input through the same code breaks the same rule again.
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
    /// unsupported, the run was cancelled, or the produced ladder broke a
    /// rule (deterministic for a given input and build). A worker
    /// dead-letters these at once instead of retrying at full cost.
    ///
    /// Transient, and so retried: the store failing, an I/O error, a time
    /// limit (the machine may have been busy), and [`TranscodeError::Ffmpeg`]
    /// (FFmpeg failing for no reason the input explains, such as an
    /// allocation).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            TranscodeError::NotFound { .. }
                | TranscodeError::InvalidInput { .. }
                | TranscodeError::Unsupported { .. }
                | TranscodeError::Cancelled { .. }
                | TranscodeError::InvalidOutput { .. }
        )
    }
}

/// A failure inside one stage thread (a rung, the audio, the images),
/// typed by whose fault it is, so that the part's error is permanent only
/// when the input is to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StageError {
    /// The source is broken in a way this stage found (retrying cannot
    /// help).
    Input(String),
    /// The source needs something this build lacks (a pixel format the
    /// scaler cannot read, a codec without a decoder).
    Unsupported(String),
    /// The store stopped taking objects; the store's own error explains.
    Store,
    /// The stage stopped because another one failed or the run was
    /// stopped; never the cause.
    Stopped,
    /// FFmpeg or our own code failed for no reason the input explains.
    Internal(String),
}

impl From<String> for StageError {
    fn from(message: String) -> Self {
        StageError::Internal(message)
    }
}

impl From<&str> for StageError {
    fn from(message: &str) -> Self {
        StageError::Internal(message.to_owned())
    }
}

impl StageError {
    /// The transcode error this stage failure means for `path`.
    pub(crate) fn into_transcode(self, op: &'static str, path: &str) -> TranscodeError {
        let path = path.to_owned();
        match self {
            StageError::Input(reason) => TranscodeError::InvalidInput { op, path, reason },
            StageError::Unsupported(reason) => TranscodeError::Unsupported { op, path, reason },
            StageError::Store => TranscodeError::Ffmpeg {
                op,
                path,
                source: FfmpegError::msg("the store stopped taking objects"),
            },
            StageError::Stopped => TranscodeError::Ffmpeg {
                op,
                path,
                source: FfmpegError::msg("stopped"),
            },
            StageError::Internal(m) => TranscodeError::Ffmpeg {
                op,
                path,
                source: FfmpegError::msg(m),
            },
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_faults_are_retried() {
        let (op, path) = ("transcode", "in.mp4".to_owned());
        let permanent = [
            TranscodeError::NotFound {
                op,
                path: path.clone(),
            },
            StageError::Input("audio stream ends mid-frame".into()).into_transcode(op, &path),
            StageError::Unsupported("pixel format".into()).into_transcode(op, &path),
            TranscodeError::Cancelled {
                op,
                path: path.clone(),
            },
            TranscodeError::InvalidOutput {
                op,
                path: path.clone(),
                reason: "BANDWIDTH".into(),
            },
        ];
        for e in &permanent {
            assert!(e.is_permanent(), "{e:?}");
            assert!(e.to_string().contains("in.mp4"), "{e}");
        }
        let transient = [
            TranscodeError::Timeout {
                op,
                path: path.clone(),
                after: Duration::from_secs(1),
            },
            TranscodeError::Io {
                op,
                path: path.clone(),
                source: std::io::Error::other("disk"),
            },
            TranscodeError::Store {
                op,
                path: path.clone(),
                source: videosync_core::Error::unavailable("store", std::io::Error::other("down")),
            },
            StageError::Internal("alloc".into()).into_transcode(op, &path),
            StageError::Store.into_transcode(op, &path),
        ];
        for e in &transient {
            assert!(!e.is_permanent(), "{e:?}");
        }
        assert!(matches!(
            StageError::Input("x".into()).into_transcode(op, &path),
            TranscodeError::InvalidInput { .. }
        ));
        assert_eq!(
            StageError::Unsupported("yuv9".into())
                .into_transcode(op, &path)
                .to_string(),
            "transcode of in.mp4 failed: unsupported: yuv9"
        );
    }
}
