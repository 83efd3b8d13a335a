//! Typed identifiers: a `VideoId` is never confused with a `JobId`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random identifier.
            pub fn new() -> Self {
                $name(Uuid::new_v4())
            }

            /// The identifier with this UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                $name(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Error> {
                Uuid::parse_str(s).map($name).map_err(|e| {
                    Error::invalid_input(format!(
                        concat!("`{}` is not a valid ", $what, " id: {}"),
                        s.escape_debug(),
                        e
                    ))
                })
            }
        }
    };
}

uuid_id!(
    /// Identifies a video in the catalog.
    VideoId,
    "video"
);
uuid_id!(
    /// Identifies a job on a queue.
    JobId,
    "job"
);
uuid_id!(
    /// Identifies a user account.
    UserId,
    "user"
);
uuid_id!(
    /// Identifies a login session (one refresh-token family member).
    SessionId,
    "session"
);
uuid_id!(
    /// Identifies a channel (a room people watch together in).
    ChannelId,
    "channel"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = VideoId::new();
        let parsed: VideoId = id.to_string().parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed, id);
        let err = "../../etc/passwd".parse::<VideoId>().err();
        assert_eq!(err.map(|e| e.kind()), Some(ErrorKind::InvalidInput));
    }
}
