//! The crate's one error type.

use std::fmt;

/// What went wrong in planning, writing, parsing or rewriting a ladder.
///
/// Every variant is input the caller gave us that cannot be turned into a
/// ladder or a playlist; none is transient, so retrying with the same input
/// gives the same error.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// Width or height is zero or larger than [`crate::ladder::MAX_DIMENSION`].
    InvalidDimensions {
        /// Width as given.
        width: u32,
        /// Height as given.
        height: u32,
    },
    /// Frame rate is NaN, infinite, not positive or above
    /// [`crate::ladder::MAX_FRAME_RATE`].
    InvalidFrameRate(f64),
    /// Rotation is not a multiple of 90 degrees.
    InvalidRotation(i32),
    /// A required field of the source metadata is missing.
    MissingField(&'static str),
    /// Options or inputs that make no sense (no rungs, zero segment length,
    /// a segment with zero duration, a base URL without a host).
    InvalidInput(String),
    /// Playlist text that m3u8-rs could not parse.
    Parse(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidDimensions { width, height } => write!(
                f,
                "ladder planning failed: source dimensions {width}x{height} are out of range"
            ),
            Error::InvalidFrameRate(fps) => {
                write!(
                    f,
                    "ladder planning failed: frame rate {fps} is out of range"
                )
            }
            Error::InvalidRotation(deg) => write!(
                f,
                "ladder planning failed: rotation {deg} is not a multiple of 90 degrees"
            ),
            Error::MissingField(field) => {
                write!(f, "ladder planning failed: source metadata has no {field}")
            }
            Error::InvalidInput(msg) => write!(f, "invalid input: {msg}"),
            Error::Parse(msg) => write!(f, "playlist parse failed: {msg}"),
        }
    }
}

impl std::error::Error for Error {}
