//! Every message between a client and the server: versioned JSON, one
//! message per WebSocket text frame.
//!
//! A message is a JSON object whose `"type"` field names it in snake_case:
//! [`ClientMessage`] for what a client sends, [`ServerMessage`] for what the
//! server sends. Times and positions are milliseconds as JSON numbers; a
//! state applies at the server time it names. `docs/protocol.md` is the
//! guide for implementers of other clients; its examples are tested against
//! this module.
//!
//! Decoding is strict and total: [`decode_client`] and [`decode_server`]
//! check, in order, the size, the JSON, the `type`, the protocol version and
//! then every value, and return a [`ProtocolError`] whose [`ErrorCode`] says
//! which check failed. No input makes them panic. A decoded message is
//! always valid, and [`encode`] of it decodes to an equal message.
//!
//! # Examples
//!
//! ```
//! use videosync_sync::protocol::{decode_client, encode, ClientMessage, ServerMessage};
//! use videosync_sync::state::{Command, ErrorCode};
//!
//! let frame = r#"{"type":"command","id":7,"based_on_seq":41,"command":"seek","position_ms":90000}"#;
//! let msg = decode_client(frame)?;
//! assert_eq!(
//!     msg,
//!     ClientMessage::Command {
//!         id: 7,
//!         based_on_seq: 41,
//!         command: Command::Seek { position_ms: 90_000.0 },
//!     }
//! );
//!
//! // A rate outside MIN_RATE..=MAX_RATE is refused, naming the request.
//! let frame = r#"{"type":"command","id":8,"based_on_seq":41,"command":"set_rate","rate":10}"#;
//! let err = decode_client(frame).unwrap_err();
//! assert_eq!(err.code, ErrorCode::InvalidValue);
//! assert_eq!(err.request_id, Some(8));
//!
//! // What the server sends back.
//! let reply = encode(&ServerMessage::from(err));
//! assert!(reply.starts_with(r#"{"type":"error","code":"invalid_value","#));
//! # Ok::<(), videosync_sync::protocol::ProtocolError>(())
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::state::{
    Command, ErrorCode, MemberId, Playback, QueueItem, MAX_MEDIA_LEN, MAX_RATE, MIN_RATE,
};

/// The protocol version this crate speaks. A client names it in `hello`,
/// the server in `welcome`; a change that an older peer would misread
/// raises it.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest message a client may send, in bytes of JSON text (16 KiB).
///
/// The server should set its WebSocket frame limit to this, so that a larger
/// frame is refused before it is buffered.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Largest message the server may send, in bytes of JSON text (1 MiB).
///
/// Larger than [`MAX_MESSAGE_BYTES`] because a `snapshot` grows with the
/// room's members and queue; a client still bounds what it buffers.
pub const MAX_SERVER_MESSAGE_BYTES: usize = 1024 * 1024;

/// Largest media position, in milliseconds (7 days). Positions lie in
/// `0.0..=MAX_POSITION_MS`.
pub const MAX_POSITION_MS: f64 = 7.0 * 24.0 * 3600.0 * 1000.0;

/// Timestamps lie in `0.0..MAX_TIMESTAMP_MS` (10^14 ms, about the year 5138):
/// wide enough for Unix epoch milliseconds and for monotonic clocks that
/// start at zero, narrow enough to refuse garbage.
pub const MAX_TIMESTAMP_MS: f64 = 1e14;

/// Durations (round-trip time, offset uncertainty, wait timeout) lie in
/// `0.0..=MAX_DURATION_MS` (one hour).
pub const MAX_DURATION_MS: f64 = 3_600_000.0;

/// Highest rate a player may report. A report carries the rate the player
/// actually runs at, drift nudges included, so it may leave
/// [`MIN_RATE`]..=[`MAX_RATE`] a little; 16 is the cap of browser players.
/// Zero means stalled.
pub const MAX_REPORTED_RATE: f64 = 16.0;

/// Largest id, sequence number or index on the wire: 2^53 - 1, the largest
/// integer a JavaScript number holds exactly.
pub const MAX_ID: u64 = (1 << 53) - 1;

/// Longest auth token in `hello`, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Longest display name, in characters (Unicode scalar values).
pub const MAX_NAME_CHARS: usize = 64;

/// Longest role label, in characters.
pub const MAX_ROLE_CHARS: usize = 32;

/// Longest chat text, in characters.
pub const MAX_CHAT_CHARS: usize = 2000;

/// Longest reaction, in characters: enough for a ZWJ emoji sequence.
pub const MAX_EMOJI_CHARS: usize = 16;

/// Longest error message, in characters. Longer messages are cut when a
/// [`ProtocolError`] is made.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 256;

/// A message a client sends to the server.
///
/// On the wire: a JSON object with `"type"` set to the variant's snake_case
/// name and the variant's fields beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// The first message of a connection: who the client is and which
    /// protocol it speaks. The server answers `welcome` or an error.
    Hello {
        /// Protocol version; must be [`PROTOCOL_VERSION`].
        v: u32,
        /// Opaque credential the server checks; at most [`MAX_TOKEN_LEN`]
        /// bytes, no control characters.
        token: String,
        /// Display name: 1..=[`MAX_NAME_CHARS`] characters, not blank, no
        /// control or bidirectional-override characters.
        name: String,
        /// Asks to continue an earlier membership after a reconnect.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<Resume>,
    },
    /// A clock probe; the server answers `pong` at once.
    Ping {
        /// Chosen by the client to match the `pong`.
        id: u64,
        /// Client clock when sent (the NTP t0).
        t0_ms: f64,
    },
    /// Asks the room to do something. On the wire the [`Command`] is
    /// flattened into the message: its `"command"` tag and fields sit beside
    /// `id` and `based_on_seq`.
    Command {
        /// Client request id, echoed in the resulting `state`'s cause or in
        /// an `error`.
        id: u64,
        /// The room `seq` the client had seen when it decided; the server
        /// refuses commands based on a state that has since changed in a
        /// way that conflicts.
        based_on_seq: u64,
        /// What to do.
        #[serde(flatten)]
        command: Command,
    },
    /// The player stalled at this position.
    Buffering {
        /// Where it stalled.
        position_ms: f64,
    },
    /// The player has buffered enough to play from this position.
    Ready {
        /// Where it is ready.
        position_ms: f64,
    },
    /// Periodic report of the player and the client's clock estimate, so the
    /// server knows each member's latency and drift.
    Report {
        /// The player's position now.
        position_ms: f64,
        /// The rate the player runs at, drift nudges included;
        /// 0..=[`MAX_REPORTED_RATE`].
        rate: f64,
        /// Round-trip time to the server, from the clock estimate.
        rtt_ms: f64,
        /// How far the clock offset estimate may be off.
        offset_uncertainty_ms: f64,
        /// How long the player takes to seek, as the client learned it
        /// (with a margin); the server schedules a seek far enough ahead
        /// for the slowest member to start seeking early and land on time.
        /// Absent: not known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seek_latency_ms: Option<f64>,
    },
    /// A chat message to the room.
    Chat {
        /// 1..=[`MAX_CHAT_CHARS`] characters, not blank; line breaks
        /// allowed, other control characters not.
        text: String,
    },
    /// The member started or stopped typing.
    Typing {
        /// True while typing.
        active: bool,
    },
    /// A reaction shown over the video.
    Reaction {
        /// A short string, normally one emoji: 1..=[`MAX_EMOJI_CHARS`]
        /// characters, no whitespace or control characters.
        emoji: String,
        /// The media position it reacts to, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_position_ms: Option<f64>,
    },
}

/// What a reconnecting client asks to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The member id the client had. The server grants it only to the same
    /// authenticated user, and otherwise assigns a new one.
    pub member: MemberId,
    /// The last room `seq` the client applied.
    pub last_seq: u64,
}

/// A message the server sends to a client.
///
/// On the wire: a JSON object with `"type"` set to the variant's snake_case
/// name and the variant's fields beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The answer to `hello`: the client is a member now.
    Welcome {
        /// Protocol version the server speaks; [`PROTOCOL_VERSION`].
        v: u32,
        /// The id the client has in this room.
        member: MemberId,
        /// Server clock when sent; a first, rough offset estimate.
        server_time_ms: f64,
        /// The room as it is.
        room: RoomSnapshot,
    },
    /// The answer to `ping`: with the client's receive time t3, the NTP
    /// four-timestamp exchange.
    Pong {
        /// The ping's id.
        id: u64,
        /// The ping's t0, echoed.
        t0_ms: f64,
        /// Server clock when the ping arrived.
        t1_ms: f64,
        /// Server clock when the pong left; `t2_ms >= t1_ms`.
        t2_ms: f64,
    },
    /// The whole room, sent when the client may have missed changes.
    Snapshot(RoomSnapshot),
    /// A new room playback state. It is scheduled: every member applies it
    /// at server time `playback.at_ms`.
    State {
        /// The new state.
        playback: Playback,
        /// The command that caused it; absent for changes the server made
        /// itself (end of a wait, end of media).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<Cause>,
    },
    /// The room is held for buffering members (wait-for-all).
    Waiting {
        /// Who the room waits for; empty when the hold is over.
        for_members: Vec<MemberId>,
        /// Server time at which the room goes on without them.
        deadline_ms: f64,
    },
    /// A member joined, left or changed.
    Presence {
        /// What happened.
        event: PresenceEvent,
        /// The member, as it is now (as it was, for `left`).
        member: MemberInfo,
    },
    /// A chat message, relayed to everyone including its sender.
    Chat {
        /// Who wrote it.
        from: MemberId,
        /// The text, as validated on the way in.
        text: String,
        /// Server clock when the server received it.
        server_time_ms: f64,
    },
    /// A member started or stopped typing.
    Typing {
        /// Who.
        member: MemberId,
        /// True while typing.
        active: bool,
    },
    /// A member reacted.
    Reaction {
        /// Who.
        member: MemberId,
        /// The reaction.
        emoji: String,
        /// The media position it reacts to, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_position_ms: Option<f64>,
    },
    /// A message was refused, or something went wrong.
    Error {
        /// What kind of failure; what the client should do depends on it.
        code: ErrorCode,
        /// For people and logs; at most [`MAX_ERROR_MESSAGE_CHARS`]
        /// characters.
        message: String,
        /// The `id` of the refused `command`, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
    },
}

/// The whole state of a room, as `welcome` and `snapshot` carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomSnapshot {
    /// The current (or scheduled) playback state.
    pub playback: Playback,
    /// What plays next, in order.
    pub queue: Vec<QueueItem>,
    /// Everyone in the room, the receiver included.
    pub members: Vec<MemberInfo>,
    /// Buffering members the room is held for; empty when not held.
    pub waiting_for: Vec<MemberId>,
    /// The room's buffering policy.
    pub policy: RoomPolicy,
}

/// How a room treats buffering members; set per channel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RoomPolicy {
    /// Hold playback while any member buffers.
    pub wait_for_all: bool,
    /// How long a hold lasts at most before the room goes on.
    pub wait_timeout_ms: f64,
}

/// A member as others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// The member's id.
    pub id: MemberId,
    /// Display name.
    pub name: String,
    /// Role label, such as `"host"` or `"viewer"`; what a role may do is
    /// the server's business.
    pub role: String,
    /// Whether the member's player is stalled.
    pub buffering: bool,
}

/// The command behind a `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// The member who sent the command.
    pub by: MemberId,
    /// The command's client request id.
    pub request_id: u64,
}

/// What a `presence` message reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceEvent {
    /// The member joined.
    Joined,
    /// The member left.
    Left,
    /// The member's name, role or buffering changed.
    Updated,
}

/// Why a message was refused: a code to act on and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({}){}", .message, code_label(.code), request_label(.request_id))]
pub struct ProtocolError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What was wrong, for people and logs.
    pub message: String,
    /// The `id` of the `command` refused, when it could be read.
    pub request_id: Option<u64>,
}

impl ProtocolError {
    /// An error with `code` and `message`, the message cut to
    /// [`MAX_ERROR_MESSAGE_CHARS`] and its control characters replaced, so
    /// that the error always makes a valid `error` message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: clean_message(&message.into()),
            request_id: None,
        }
    }

    /// The same error, naming the request it refuses.
    pub fn with_request_id(mut self, request_id: u64) -> Self {
        self.request_id = Some(request_id);
        self
    }

    /// The `error` message that tells the client.
    pub fn to_message(&self) -> ServerMessage {
        ServerMessage::Error {
            code: self.code,
            message: clean_message(&self.message),
            request_id: self.request_id,
        }
    }
}

impl From<ProtocolError> for ServerMessage {
    fn from(err: ProtocolError) -> Self {
        err.to_message()
    }
}

/// The wire name of an error code, as in JSON. (`ErrorCode` has no
/// `Display` of its own.)
fn code_label(code: &ErrorCode) -> &'static str {
    code.as_str()
}

fn request_label(request_id: &Option<u64>) -> String {
    match request_id {
        Some(id) => format!(" for request {id}"),
        None => String::new(),
    }
}

/// A message of either direction: what [`encode`] takes.
///
/// Implemented by [`ClientMessage`] and [`ServerMessage`] only.
pub trait WireMessage: Serialize + DeserializeOwned + sealed::Sealed {
    /// Every `type` of this direction.
    const TYPES: &'static [&'static str];
    /// The size limit of this direction, in bytes of JSON text.
    const MAX_BYTES: usize;
    /// This message's `type`.
    fn kind(&self) -> &'static str;
    /// Checks every value against the protocol's bounds.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] naming the first field out of bounds, or
    /// [`ErrorCode::UnsupportedVersion`] for a version other than
    /// [`PROTOCOL_VERSION`].
    fn validate(&self) -> Result<(), ProtocolError>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ClientMessage {}
    impl Sealed for super::ServerMessage {}
}

impl ClientMessage {
    /// Every client message `type`.
    pub const TYPES: &'static [&'static str] = &[
        "hello",
        "ping",
        "command",
        "buffering",
        "ready",
        "report",
        "chat",
        "typing",
        "reaction",
    ];

    /// This message's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMessage::Hello { .. } => "hello",
            ClientMessage::Ping { .. } => "ping",
            ClientMessage::Command { .. } => "command",
            ClientMessage::Buffering { .. } => "buffering",
            ClientMessage::Ready { .. } => "ready",
            ClientMessage::Report { .. } => "report",
            ClientMessage::Chat { .. } => "chat",
            ClientMessage::Typing { .. } => "typing",
            ClientMessage::Reaction { .. } => "reaction",
        }
    }

    /// Checks every value against the protocol's bounds; [`decode_client`]
    /// does this, and a client may before sending.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::UnsupportedVersion`] for a `hello` with a version other
    /// than [`PROTOCOL_VERSION`]; [`ErrorCode::InvalidValue`] naming the
    /// first field out of bounds.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            ClientMessage::Hello {
                v,
                token,
                name,
                resume,
            } => {
                check_version("hello", u64::from(*v))?;
                if token.len() > MAX_TOKEN_LEN {
                    return Err(invalid(format!(
                        "hello token is {} bytes, the limit is {MAX_TOKEN_LEN}",
                        token.len()
                    )));
                }
                if token.chars().any(char::is_control) {
                    return Err(invalid("hello token contains control characters"));
                }
                check_label("hello name", name, MAX_NAME_CHARS)?;
                if let Some(resume) = resume {
                    check_member("hello resume.member", resume.member)?;
                    check_id("hello resume.last_seq", resume.last_seq)?;
                }
                Ok(())
            }
            ClientMessage::Ping { id, t0_ms } => {
                check_id("ping id", *id)?;
                check_timestamp("ping t0_ms", *t0_ms)
            }
            ClientMessage::Command {
                id,
                based_on_seq,
                command,
            } => {
                check_id("command id", *id)?;
                check_id("command based_on_seq", *based_on_seq)?;
                check_command(command)
            }
            ClientMessage::Buffering { position_ms } => {
                check_position("buffering position_ms", *position_ms)
            }
            ClientMessage::Ready { position_ms } => {
                check_position("ready position_ms", *position_ms)
            }
            ClientMessage::Report {
                position_ms,
                rate,
                rtt_ms,
                offset_uncertainty_ms,
                seek_latency_ms,
            } => {
                check_position("report position_ms", *position_ms)?;
                check_range("report rate", *rate, 0.0, MAX_REPORTED_RATE)?;
                check_duration("report rtt_ms", *rtt_ms)?;
                check_duration("report offset_uncertainty_ms", *offset_uncertainty_ms)?;
                match seek_latency_ms {
                    Some(ms) => check_duration("report seek_latency_ms", *ms),
                    None => Ok(()),
                }
            }
            ClientMessage::Chat { text } => check_chat("chat text", text),
            ClientMessage::Typing { .. } => Ok(()),
            ClientMessage::Reaction {
                emoji,
                at_position_ms,
            } => {
                check_emoji("reaction emoji", emoji)?;
                match at_position_ms {
                    Some(p) => check_position("reaction at_position_ms", *p),
                    None => Ok(()),
                }
            }
        }
    }
}

impl ServerMessage {
    /// Every server message `type`.
    pub const TYPES: &'static [&'static str] = &[
        "welcome", "pong", "snapshot", "state", "waiting", "presence", "chat", "typing",
        "reaction", "error",
    ];

    /// This message's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMessage::Welcome { .. } => "welcome",
            ServerMessage::Pong { .. } => "pong",
            ServerMessage::Snapshot(_) => "snapshot",
            ServerMessage::State { .. } => "state",
            ServerMessage::Waiting { .. } => "waiting",
            ServerMessage::Presence { .. } => "presence",
            ServerMessage::Chat { .. } => "chat",
            ServerMessage::Typing { .. } => "typing",
            ServerMessage::Reaction { .. } => "reaction",
            ServerMessage::Error { .. } => "error",
        }
    }

    /// Checks every value against the protocol's bounds; [`decode_server`]
    /// does this, and a server may before sending.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::UnsupportedVersion`] for a `welcome` with a version
    /// other than [`PROTOCOL_VERSION`]; [`ErrorCode::InvalidValue`] naming
    /// the first field out of bounds.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            ServerMessage::Welcome {
                v,
                member,
                server_time_ms,
                room,
            } => {
                check_version("welcome", u64::from(*v))?;
                check_member("welcome member", *member)?;
                check_timestamp("welcome server_time_ms", *server_time_ms)?;
                check_snapshot("welcome room", room)
            }
            ServerMessage::Pong {
                id,
                t0_ms,
                t1_ms,
                t2_ms,
            } => {
                check_id("pong id", *id)?;
                check_timestamp("pong t0_ms", *t0_ms)?;
                check_timestamp("pong t1_ms", *t1_ms)?;
                check_timestamp("pong t2_ms", *t2_ms)?;
                if t2_ms < t1_ms {
                    return Err(invalid(format!(
                        "pong t2_ms {t2_ms} is before t1_ms {t1_ms}"
                    )));
                }
                Ok(())
            }
            ServerMessage::Snapshot(room) => check_snapshot("snapshot", room),
            ServerMessage::State { playback, cause } => {
                check_playback("state playback", playback)?;
                if let Some(cause) = cause {
                    check_member("state cause.by", cause.by)?;
                    check_id("state cause.request_id", cause.request_id)?;
                }
                Ok(())
            }
            ServerMessage::Waiting {
                for_members,
                deadline_ms,
            } => {
                check_members("waiting for_members", for_members)?;
                check_timestamp("waiting deadline_ms", *deadline_ms)
            }
            ServerMessage::Presence { member, .. } => check_member_info("presence member", member),
            ServerMessage::Chat {
                from,
                text,
                server_time_ms,
            } => {
                check_member("chat from", *from)?;
                check_chat("chat text", text)?;
                check_timestamp("chat server_time_ms", *server_time_ms)
            }
            ServerMessage::Typing { member, .. } => check_member("typing member", *member),
            ServerMessage::Reaction {
                member,
                emoji,
                at_position_ms,
            } => {
                check_member("reaction member", *member)?;
                check_emoji("reaction emoji", emoji)?;
                match at_position_ms {
                    Some(p) => check_position("reaction at_position_ms", *p),
                    None => Ok(()),
                }
            }
            ServerMessage::Error {
                message,
                request_id,
                ..
            } => {
                let chars = message.chars().count();
                if chars > MAX_ERROR_MESSAGE_CHARS {
                    return Err(invalid(format!(
                        "error message is {chars} characters, the limit is {MAX_ERROR_MESSAGE_CHARS}"
                    )));
                }
                if message.chars().any(is_forbidden_in_text) {
                    return Err(invalid("error message contains control characters"));
                }
                match request_id {
                    Some(id) => check_id("error request_id", *id),
                    None => Ok(()),
                }
            }
        }
    }
}

impl WireMessage for ClientMessage {
    const TYPES: &'static [&'static str] = ClientMessage::TYPES;
    const MAX_BYTES: usize = MAX_MESSAGE_BYTES;
    fn kind(&self) -> &'static str {
        ClientMessage::kind(self)
    }
    fn validate(&self) -> Result<(), ProtocolError> {
        ClientMessage::validate(self)
    }
}

impl WireMessage for ServerMessage {
    const TYPES: &'static [&'static str] = ServerMessage::TYPES;
    const MAX_BYTES: usize = MAX_SERVER_MESSAGE_BYTES;
    fn kind(&self) -> &'static str {
        ServerMessage::kind(self)
    }
    fn validate(&self) -> Result<(), ProtocolError> {
        ServerMessage::validate(self)
    }
}

/// The JSON text of a message: one WebSocket text frame.
///
/// Fields appear in a fixed order, `"type"` first; absent optional fields
/// are left out; `f64` fields are written in their shortest exact form
/// (`1000.0`, `0.1`).
///
/// Encoding does not validate: a message built with out-of-bounds values
/// (NaN becomes `null`) is refused by the receiver. Call
/// [`ClientMessage::validate`] or [`ServerMessage::validate`] first when the
/// values come from outside.
pub fn encode<M: WireMessage>(msg: &M) -> String {
    match serde_json::to_string(msg) {
        Ok(text) => text,
        // serde_json fails only for maps with non-string keys and for
        // `Serialize` impls that return errors; these types have neither.
        // Still, a wire encoder must not panic: send a frame every
        // receiver reads as an error.
        Err(_) => ENCODE_FAILED.to_owned(),
    }
}

const ENCODE_FAILED: &str =
    r#"{"type":"error","code":"malformed","message":"the sender could not encode a message"}"#;

/// Reads a message a client sent.
///
/// Checks, in order: size ([`ErrorCode::TooLarge`] above
/// [`MAX_MESSAGE_BYTES`]), JSON syntax and a string `"type"`
/// ([`ErrorCode::Malformed`]), the type ([`ErrorCode::UnknownType`]), the
/// version of a `hello` ([`ErrorCode::UnsupportedVersion`]), the shape
/// ([`ErrorCode::Malformed`]), and every value ([`ErrorCode::InvalidValue`];
/// see [`ClientMessage::validate`]). Unknown fields are ignored.
///
/// # Errors
///
/// A [`ProtocolError`] whose code names the first check that failed; for a
/// `command` whose `id` could be read, it carries that id.
pub fn decode_client(text: &str) -> Result<ClientMessage, ProtocolError> {
    decode(text)
}

/// Reads a message the server sent; for clients and the simulator.
///
/// The same checks as [`decode_client`], with the limit
/// [`MAX_SERVER_MESSAGE_BYTES`], the version checked in `welcome`, and the
/// values checked by [`ServerMessage::validate`].
///
/// # Errors
///
/// A [`ProtocolError`] whose code names the first check that failed. A
/// client should ignore a message of [`ErrorCode::UnknownType`]: a newer
/// server may send types this version does not know.
pub fn decode_server(text: &str) -> Result<ServerMessage, ProtocolError> {
    decode(text)
}

/// The fields read before the message itself: enough to tell an unknown
/// type from a malformed message, a wrong version from a wrong shape, and
/// which request an error refers to.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    v: Option<serde_json::Value>,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

fn decode<M: WireMessage>(text: &str) -> Result<M, ProtocolError> {
    if text.len() > M::MAX_BYTES {
        return Err(ProtocolError::new(
            ErrorCode::TooLarge,
            format!(
                "message is {} bytes, the limit is {}",
                text.len(),
                M::MAX_BYTES
            ),
        ));
    }
    let envelope: Envelope = serde_json::from_str(text)
        .map_err(|e| json_error("message is not a JSON object with a string \"type\"", &e))?;
    let kind = envelope.kind.as_str();
    if !M::TYPES.contains(&kind) {
        return Err(ProtocolError::new(
            ErrorCode::UnknownType,
            format!("unknown message type {:?}", truncate(kind, 64)),
        ));
    }
    let request_id = match (kind, &envelope.id) {
        ("command", Some(id)) => id.as_u64().filter(|&id| id <= MAX_ID),
        _ => None,
    };
    let attach = |err: ProtocolError| match request_id {
        Some(id) => err.with_request_id(id),
        None => err,
    };
    // The version is checked before the shape: a later version may change
    // the shape, and its client should hear "unsupported version", not
    // "malformed".
    if kind == "hello" || kind == "welcome" {
        match &envelope.v {
            Some(serde_json::Value::Number(n)) => {
                if n.as_u64() != Some(u64::from(PROTOCOL_VERSION)) {
                    return Err(version_error(kind, &n.to_string()));
                }
            }
            _ => {
                return Err(ProtocolError::new(
                    ErrorCode::Malformed,
                    format!("{kind} has no numeric \"v\""),
                ))
            }
        }
    }
    let msg: M = serde_json::from_str(text)
        .map_err(|e| attach(json_error(&format!("malformed {kind} message"), &e)))?;
    msg.validate().map_err(attach)?;
    Ok(msg)
}

/// Classifies a serde_json error: a number too large for an `f64` (such as
/// `1e400`) is valid JSON with an invalid value; anything else is malformed.
fn json_error(context: &str, err: &serde_json::Error) -> ProtocolError {
    let detail = err.to_string();
    if detail.starts_with("number out of range") {
        ProtocolError::new(
            ErrorCode::InvalidValue,
            format!("{context}: {detail} (numbers must be finite f64)"),
        )
    } else {
        ProtocolError::new(ErrorCode::Malformed, format!("{context}: {detail}"))
    }
}

fn version_error(kind: &str, got: &str) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::UnsupportedVersion,
        format!(
            "{kind} asks for protocol version {}, this side speaks {PROTOCOL_VERSION}",
            truncate(got, 32)
        ),
    )
}

fn check_version(kind: &str, v: u64) -> Result<(), ProtocolError> {
    if v == u64::from(PROTOCOL_VERSION) {
        Ok(())
    } else {
        Err(version_error(kind, &v.to_string()))
    }
}

fn invalid(message: impl Into<String>) -> ProtocolError {
    ProtocolError::new(ErrorCode::InvalidValue, message)
}

fn check_range(field: &str, value: f64, min: f64, max: f64) -> Result<(), ProtocolError> {
    // `contains` is false for NaN, so NaN is refused too.
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field} is {value}, it must lie in {min}..={max}"
        )))
    }
}

fn check_position(field: &str, value: f64) -> Result<(), ProtocolError> {
    check_range(field, value, 0.0, MAX_POSITION_MS)
}

fn check_duration(field: &str, value: f64) -> Result<(), ProtocolError> {
    check_range(field, value, 0.0, MAX_DURATION_MS)
}

fn check_timestamp(field: &str, value: f64) -> Result<(), ProtocolError> {
    if (0.0..MAX_TIMESTAMP_MS).contains(&value) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field} is {value}, a timestamp must lie in 0..{MAX_TIMESTAMP_MS}"
        )))
    }
}

fn check_id(field: &str, value: u64) -> Result<(), ProtocolError> {
    if value <= MAX_ID {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field} is {value}, the limit is {MAX_ID} (2^53 - 1)"
        )))
    }
}

fn check_member(field: &str, member: MemberId) -> Result<(), ProtocolError> {
    check_id(field, member.0)
}

fn check_members(field: &str, members: &[MemberId]) -> Result<(), ProtocolError> {
    members.iter().try_for_each(|m| check_member(field, *m))
}

fn check_rate(field: &str, value: f64) -> Result<(), ProtocolError> {
    check_range(field, value, MIN_RATE, MAX_RATE)
}

/// Control characters, and the bidirectional overrides and isolates that
/// let a name or message display as something it is not.
fn is_forbidden_in_text(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A one-line label (display name, role): not blank, bounded, no control
/// characters.
fn check_label(field: &str, value: &str, max_chars: usize) -> Result<(), ProtocolError> {
    check_text(field, value, max_chars, false)
}

fn check_chat(field: &str, value: &str) -> Result<(), ProtocolError> {
    check_text(field, value, MAX_CHAT_CHARS, true)
}

fn check_text(
    field: &str,
    value: &str,
    max_chars: usize,
    allow_newline: bool,
) -> Result<(), ProtocolError> {
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(invalid(format!(
            "{field} is {chars} characters, the limit is {max_chars}"
        )));
    }
    if value.trim().is_empty() {
        return Err(invalid(format!("{field} is blank")));
    }
    if value
        .chars()
        .any(|c| is_forbidden_in_text(c) && !(allow_newline && c == '\n'))
    {
        return Err(invalid(format!(
            "{field} contains control or bidirectional-override characters"
        )));
    }
    Ok(())
}

fn check_emoji(field: &str, value: &str) -> Result<(), ProtocolError> {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_EMOJI_CHARS {
        return Err(invalid(format!(
            "{field} is {chars} characters, it must be 1..={MAX_EMOJI_CHARS}"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_whitespace() || is_forbidden_in_text(c))
    {
        return Err(invalid(format!(
            "{field} contains whitespace or control characters"
        )));
    }
    Ok(())
}

fn check_media(field: &str, value: &str) -> Result<(), ProtocolError> {
    if value.is_empty() || value.len() > MAX_MEDIA_LEN {
        return Err(invalid(format!(
            "{field} is {} bytes, it must be 1..={MAX_MEDIA_LEN}",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!("{field} contains control characters")));
    }
    Ok(())
}

fn check_command(command: &Command) -> Result<(), ProtocolError> {
    match command {
        Command::Play | Command::Pause => Ok(()),
        Command::Seek { position_ms } => check_position("seek position_ms", *position_ms),
        Command::SetRate { rate } => check_rate("set_rate rate", *rate),
        Command::Load { media } => check_media("load media", media),
        Command::QueueAdd { media } => check_media("queue_add media", media),
        Command::QueueRemove { item } => check_id("queue_remove item", *item),
        Command::QueueReorder { item, to } => {
            check_id("queue_reorder item", *item)?;
            // usize -> u64 is lossless on every supported target; a larger
            // usize is over the limit anyway.
            check_id("queue_reorder to", u64::try_from(*to).unwrap_or(u64::MAX))
        }
    }
}

fn check_playback(field: &str, playback: &Playback) -> Result<(), ProtocolError> {
    if let Some(media) = &playback.media {
        check_media(&format!("{field}.media"), media)?;
    }
    check_position(&format!("{field}.position_ms"), playback.position_ms)?;
    check_timestamp(&format!("{field}.at_ms"), playback.at_ms)?;
    check_rate(&format!("{field}.rate"), playback.rate)?;
    check_id(&format!("{field}.seq"), playback.seq)
}

fn check_member_info(field: &str, info: &MemberInfo) -> Result<(), ProtocolError> {
    check_member(&format!("{field}.id"), info.id)?;
    check_label(&format!("{field}.name"), &info.name, MAX_NAME_CHARS)?;
    check_label(&format!("{field}.role"), &info.role, MAX_ROLE_CHARS)
}

fn check_snapshot(field: &str, room: &RoomSnapshot) -> Result<(), ProtocolError> {
    check_playback(&format!("{field} playback"), &room.playback)?;
    for item in &room.queue {
        check_id(&format!("{field} queue item id"), item.id)?;
        check_media(&format!("{field} queue item media"), &item.media)?;
    }
    for member in &room.members {
        check_member_info(&format!("{field} member"), member)?;
    }
    check_members(&format!("{field} waiting_for"), &room.waiting_for)?;
    check_duration(
        &format!("{field} policy.wait_timeout_ms"),
        room.policy.wait_timeout_ms,
    )
}

/// At most `max` characters of `s`, marked with an ellipsis when cut.
fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

/// A message safe to send in an `error`: no control characters (serde_json
/// errors quote the input, which may hold any), bounded length.
fn clean_message(message: &str) -> String {
    let cleaned: String = message
        .chars()
        .map(|c| {
            if is_forbidden_in_text(c) {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect();
    truncate(&cleaned, MAX_ERROR_MESSAGE_CHARS - 1)
}
