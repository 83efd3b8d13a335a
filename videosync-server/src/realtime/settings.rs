//! The room settings a channel keeps among its free-form `settings`: slow
//! mode, the longest message, and what the group does when a member falls
//! behind. The keys are
//! checked when a channel is created or changed (a bad value is a 400
//! naming the key); keys the server does not know are kept as they are,
//! for clients.

use std::time::Duration;

use serde_json::Value;
use videosync_sync::protocol::{Behind, MAX_CHAT_CHARS};
use videosync_sync::room::{BufferingPolicy, DEFAULT_WAIT_TIMEOUT_MS};

/// Longest slow mode: one message an hour.
pub const MAX_SLOW_MODE_SECONDS: u64 = 3600;

/// Longest wait for a member who falls behind.
pub const MAX_WAIT_TIMEOUT_SECONDS: u64 = 120;

/// The key of the slow mode: seconds between two messages of one member,
/// `0` for off. Members who may moderate the chat are exempt.
pub const SLOW_MODE_KEY: &str = "slow_mode_seconds";
/// The key of the longest chat message, in characters (1 to the
/// protocol's 2000).
pub const MAX_MESSAGE_KEY: &str = "max_message_chars";
/// The key of the policy for members who fall behind: `wait`, `leave` or
/// `skip` (see `docs/protocol.md`).
pub const BEHIND_KEY: &str = "behind";
/// The key of how long the group waits (`behind` = `wait`), seconds.
pub const WAIT_TIMEOUT_KEY: &str = "wait_timeout_seconds";

/// The room settings of a channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoomSettings {
    /// At most one message per member this often; zero: off.
    pub slow_mode: Duration,
    /// The longest chat message, in characters.
    pub max_message_chars: usize,
    /// What happens to a member whose player falls behind.
    pub behind: Behind,
    /// How long the group waits for one member (`behind` = `wait`).
    pub wait_timeout: Duration,
}

impl Default for RoomSettings {
    fn default() -> Self {
        RoomSettings {
            slow_mode: Duration::ZERO,
            max_message_chars: MAX_CHAT_CHARS,
            behind: Behind::Wait,
            // The sync engine's default: 10 s.
            wait_timeout: Duration::from_millis(DEFAULT_WAIT_TIMEOUT_MS as u64),
        }
    }
}

impl RoomSettings {
    /// The room settings in a channel's `settings` object, or the sentence
    /// saying which key is wrong. Absent keys take their defaults.
    ///
    /// # Errors
    /// A sentence naming the first key whose value is out of range or of
    /// the wrong type.
    pub fn parse(settings: &Value) -> Result<Self, String> {
        let mut s = RoomSettings::default();
        let Some(map) = settings.as_object() else {
            return Ok(s);
        };
        if let Some(v) = map.get(SLOW_MODE_KEY) {
            s.slow_mode = Duration::from_secs(whole(SLOW_MODE_KEY, v, 0, MAX_SLOW_MODE_SECONDS)?);
        }
        if let Some(v) = map.get(MAX_MESSAGE_KEY) {
            let max = MAX_CHAT_CHARS as u64;
            s.max_message_chars = whole(MAX_MESSAGE_KEY, v, 1, max)? as usize;
        }
        if let Some(v) = map.get(BEHIND_KEY) {
            s.behind = match v.as_str() {
                Some("wait") => Behind::Wait,
                Some("leave") => Behind::Leave,
                Some("skip") => Behind::Skip,
                _ => {
                    return Err(format!(
                        "settings.{BEHIND_KEY} must be \"wait\", \"leave\" or \"skip\""
                    ))
                }
            };
        }
        if let Some(v) = map.get(WAIT_TIMEOUT_KEY) {
            s.wait_timeout =
                Duration::from_secs(whole(WAIT_TIMEOUT_KEY, v, 1, MAX_WAIT_TIMEOUT_SECONDS)?);
        }
        Ok(s)
    }

    /// The same as [`RoomSettings::parse`], but a channel stored before a
    /// key was checked falls back to the defaults rather than failing.
    pub fn of(settings: &Value) -> Self {
        Self::parse(settings).unwrap_or_default()
    }

    /// The sync engine's buffering policy for these settings.
    pub fn buffering(&self) -> BufferingPolicy {
        match self.behind {
            Behind::Wait => BufferingPolicy::WaitForAll {
                timeout_ms: self.wait_timeout.as_secs_f64() * 1000.0,
            },
            Behind::Leave => BufferingPolicy::LeaveBehind,
            Behind::Skip => BufferingPolicy::Ignore,
        }
    }
}

/// The whole number at `key`, in `min..=max`, spelled `7` or `7.0` (JSON
/// Schema's `integer` admits both).
fn whole(key: &str, v: &Value, min: u64, max: u64) -> Result<u64, String> {
    let n = v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=max as f64).contains(f))
            .map(|f| f as u64)
    });
    match n {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "settings.{key} must be a whole number from {min} to {max}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absent_keys_take_the_defaults_and_unknown_keys_are_left_alone() {
        let s = RoomSettings::parse(&json!({"theme": "dark"})).unwrap();
        assert_eq!(s, RoomSettings::default());
        assert_eq!(
            RoomSettings::default().buffering(),
            BufferingPolicy::WaitForAll {
                timeout_ms: 10_000.0
            }
        );
    }

    #[test]
    fn known_keys_are_read() {
        let s = RoomSettings::parse(&json!({
            "slow_mode_seconds": 30, "behind": "skip", "wait_timeout_seconds": 5,
            "max_message_chars": 280
        }))
        .unwrap();
        assert_eq!(s.slow_mode, Duration::from_secs(30));
        let float = RoomSettings::parse(&json!({"slow_mode_seconds": 30.0})).unwrap();
        assert_eq!(
            float.slow_mode,
            Duration::from_secs(30),
            "30.0 is a whole number"
        );
        assert_eq!(s.max_message_chars, 280);
        assert_eq!(s.buffering(), BufferingPolicy::Ignore);
        let leave = RoomSettings::parse(&json!({"behind": "leave"})).unwrap();
        assert_eq!(leave.buffering(), BufferingPolicy::LeaveBehind);
    }

    #[test]
    fn a_bad_value_names_its_key() {
        for (bad, key) in [
            (json!({"slow_mode_seconds": -1}), SLOW_MODE_KEY),
            (json!({"slow_mode_seconds": 3601}), SLOW_MODE_KEY),
            (json!({"slow_mode_seconds": 1.5}), SLOW_MODE_KEY),
            (json!({"slow_mode_seconds": "10"}), SLOW_MODE_KEY),
            (json!({"behind": "pause"}), BEHIND_KEY),
            (json!({"behind": null}), BEHIND_KEY),
            (json!({"wait_timeout_seconds": 0}), WAIT_TIMEOUT_KEY),
            (json!({"max_message_chars": 0}), MAX_MESSAGE_KEY),
            (json!({"max_message_chars": 2001}), MAX_MESSAGE_KEY),
        ] {
            let err = RoomSettings::parse(&bad).unwrap_err();
            assert!(err.contains(key), "{bad}: {err}");
            assert_eq!(RoomSettings::of(&bad), RoomSettings::default());
        }
    }
}
