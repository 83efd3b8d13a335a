//! The shared vocabulary of the sync engine.
//!
//! Times and positions are milliseconds as `f64`: sub-millisecond precision,
//! and the same numbers in JSON and in the JavaScript client. Server times
//! are on the server's clock; a client converts with its offset estimate.

use serde::{Deserialize, Serialize};

/// Identifies a member of a room (a connection; one person may have several).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemberId(pub u64);

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// The playback a room agrees on: at server time `at_ms`, `media` is at
/// `position_ms`, playing at `rate` or paused.
///
/// A state with `at_ms` in the future is scheduled: every member applies it
/// at that server instant, so all act together. Changes can come less than
/// one scheduling lead apart, so a client keeps every pending state and
/// applies each at its own `at_ms`, in `seq` order, rather than only the
/// newest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Playback {
    /// What is loaded, if anything.
    pub media: Option<String>,
    /// Playing (true) or paused.
    pub playing: bool,
    /// Position at `at_ms`, in milliseconds of media time.
    pub position_ms: f64,
    /// The server time this state takes effect.
    pub at_ms: f64,
    /// Playback rate while playing (1.0 is normal speed).
    pub rate: f64,
    /// The room's change counter (queue changes use it too, so successive
    /// playback states may skip numbers); a client ignores anything older
    /// than what it has.
    pub seq: u64,
}

impl Playback {
    /// Nothing loaded, paused at zero.
    pub fn idle() -> Self {
        Playback {
            media: None,
            playing: false,
            position_ms: 0.0,
            at_ms: 0.0,
            rate: 1.0,
            seq: 0,
        }
    }

    /// The position this state implies at server time `server_ms` (from
    /// `at_ms` on; before it, this state is not yet in force).
    pub fn position_at(&self, server_ms: f64) -> f64 {
        if self.playing && server_ms > self.at_ms {
            self.position_ms + (server_ms - self.at_ms) * self.rate
        } else {
            self.position_ms
        }
    }
}

/// Slowest playback rate a member may set for the room.
pub const MIN_RATE: f64 = 0.25;
/// Fastest playback rate a member may set for the room.
pub const MAX_RATE: f64 = 4.0;
/// Longest media identifier, in bytes.
pub const MAX_MEDIA_LEN: usize = 2048;

/// An item of the room's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueItem {
    /// Unique within the room.
    pub id: u64,
    /// What to play (a video id or URL).
    pub media: String,
}

/// What a member asks the room to do. The server checks it against the
/// member's permissions, orders it and schedules it for everyone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Start or resume playback.
    Play,
    /// Pause; everyone stops at one position.
    Pause,
    /// Jump to a position.
    Seek {
        /// Target position in milliseconds.
        position_ms: f64,
    },
    /// Change the playback rate.
    SetRate {
        /// The new rate, within [`MIN_RATE`]..=[`MAX_RATE`].
        rate: f64,
    },
    /// Load a media item (paused at zero).
    Load {
        /// What to load.
        media: String,
    },
    /// Append to the queue.
    QueueAdd {
        /// What to queue.
        media: String,
    },
    /// Remove a queue item.
    QueueRemove {
        /// The item's id.
        item: u64,
    },
    /// Move a queue item to a new index.
    QueueReorder {
        /// The item's id.
        item: u64,
        /// Its new index (clamped to the queue's end).
        to: usize,
    },
}

/// A member the group is waiting for, and until when (server time) it
/// waits for that member at most.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Waited {
    /// Who.
    pub member: MemberId,
    /// The server time the group stops waiting for this member.
    pub deadline_ms: f64,
}

/// Error codes a client can show or act on; stable across versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not valid JSON, or not the shape of any message.
    Malformed,
    /// Larger than the message size limit.
    TooLarge,
    /// A `type` this version does not know.
    UnknownType,
    /// A protocol version this server does not speak.
    UnsupportedVersion,
    /// A field out of range: NaN, negative position, rate out of bounds,
    /// a timestamp from the far past or future.
    InvalidValue,
    /// The member's role does not allow this.
    Forbidden,
    /// Refers to an older state than the room's (out of order).
    Stale,
    /// The thing referred to does not exist (a queue item, say).
    NotFound,
    /// Too many messages too fast.
    RateLimited,
    /// The server could not do it now (its storage is down, say); the
    /// request changed nothing and may be retried later.
    Unavailable,
}

impl ErrorCode {
    /// The code as it appears on the wire (`too_large`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::InvalidValue => "invalid_value",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Stale => "stale",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_advances_only_while_playing_and_after_the_start() {
        let mut p = Playback::idle();
        p.media = Some("m".into());
        p.position_ms = 1000.0;
        p.at_ms = 5000.0;
        assert_eq!(p.position_at(6000.0), 1000.0, "paused");
        p.playing = true;
        p.rate = 1.05;
        assert_eq!(p.position_at(4000.0), 1000.0, "not yet in force");
        assert!((p.position_at(7000.0) - 3100.0).abs() < 1e-9);
    }
}
