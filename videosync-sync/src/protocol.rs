//! Every message between a client and the server: versioned JSON, one
//! message per WebSocket text frame (protocol version 2).
//!
//! A message is a JSON object whose `"type"` field names it in snake_case:
//! [`ClientMessage`] for what a client sends, [`ServerMessage`] for what the
//! server sends. Every frame also carries `"sent_ms"`, the sender's clock
//! when it sent the frame ([`Stamped`]): the server's clock on a server
//! frame, the client's local clock on a client frame. These stamps are
//! one-way clock samples ([`crate::clock`]). Times and positions are
//! milliseconds as JSON numbers; a state applies at the server time it
//! names. `docs/protocol.md` is the guide for implementers of other
//! clients; its examples are tested against this module.
//!
//! Decoding is strict and total: [`decode_client`] and [`decode_server`]
//! check, in order, the size, the JSON, the `type`, the protocol version,
//! the stamp and then every value, and return a [`ProtocolError`] whose
//! [`ErrorCode`] says which check failed. No input makes them panic. A
//! decoded message is always valid, and [`encode`] of it decodes to an
//! equal message.
//!
//! Versions: a client offers every version it speaks in `hello`
//! (`"versions"`); the server picks the highest one it speaks too
//! ([`negotiate`]) and names it in `welcome`, or refuses with
//! `unsupported_version`.
//!
//! # Examples
//!
//! ```
//! use videosync_sync::protocol::{decode_client, encode, ClientMessage, ServerMessage, Stamped};
//! use videosync_sync::state::{Command, ErrorCode};
//!
//! let frame = r#"{"type":"command","id":7,"based_on_seq":41,"command":"seek","position_ms":90000,"sent_ms":5000}"#;
//! let got = decode_client(frame)?;
//! assert_eq!(got.sent_ms, 5000.0);
//! assert_eq!(
//!     got.msg,
//!     ClientMessage::Command {
//!         id: 7,
//!         based_on_seq: 41,
//!         command: Command::Seek { position_ms: 90_000.0 },
//!     }
//! );
//!
//! // A rate outside MIN_RATE..=MAX_RATE is refused, naming the request.
//! let frame = r#"{"type":"command","id":8,"based_on_seq":41,"command":"set_rate","rate":10,"sent_ms":5001}"#;
//! let err = decode_client(frame).unwrap_err();
//! assert_eq!(err.code, ErrorCode::InvalidValue);
//! assert_eq!(err.request_id, Some(8));
//!
//! // What the server sends back, stamped with its clock.
//! let reply = encode(&Stamped::new(123_456.0, ServerMessage::from(err)));
//! assert!(reply.starts_with(r#"{"type":"error","code":"invalid_value","#));
//! assert!(reply.ends_with(r#","sent_ms":123456.0}"#));
//! # Ok::<(), videosync_sync::protocol::ProtocolError>(())
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::room::{self, BufferingPolicy, RoomEvent};
use crate::state::{
    Command, ErrorCode, MemberId, Playback, QueueItem, Waited, MAX_MEDIA_LEN, MAX_RATE, MIN_RATE,
};

/// The newest protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 2;

/// Every version this crate speaks, oldest first. Version 1 (no stamps, no
/// pending states in the snapshot) is no longer spoken: a version 1 client
/// is refused with `unsupported_version` and told to reload.
pub const SUPPORTED_VERSIONS: &[u32] = &[2];

/// Most versions a `hello` may offer.
pub const MAX_OFFERED_VERSIONS: usize = 16;

/// Largest message a client may send, in bytes of JSON text (16 KiB).
///
/// The server should set its WebSocket frame limit to this, so that a larger
/// frame is refused before it is buffered.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Largest message the server may send, in bytes of JSON text (1 MiB).
///
/// Larger than [`MAX_MESSAGE_BYTES`] because a `snapshot` grows with the
/// room's members; the queue is paged ([`QUEUE_PAGE_ITEMS`]) so that a full
/// queue always fits.
pub const MAX_SERVER_MESSAGE_BYTES: usize = 1024 * 1024;

/// Most queue items in one `queue` message or in a `snapshot`: 256 items of
/// at most [`MAX_MEDIA_LEN`] bytes are about 540 KB of JSON, within
/// [`MAX_SERVER_MESSAGE_BYTES`] with room for the rest of a snapshot.
pub const QUEUE_PAGE_ITEMS: usize = 256;

/// Most members a room holds, and a `waiting` lists.
pub const MAX_MEMBERS: usize = 1000;

/// Most members in a `snapshot` or one `members` page. A snapshot of a
/// larger room carries the first page and `members_total`; `members` pages
/// with the rest follow it. Small pages keep every frame of a member list
/// a few KB whatever the room's size, which matters beyond the wire: a
/// WebSocket connection's write buffer keeps the capacity of the largest
/// frame it ever sent, so one 1000-member snapshot (about 90 KB) to every
/// member of a room would pin that much memory per connection.
pub const MEMBER_PAGE_ITEMS: usize = 25;

/// Most pending states a `snapshot` carries (a room schedules at most a few
/// ahead; see [`crate::room::RoomConfig::max_pending`]).
pub const MAX_PENDING: usize = 64;

/// Largest media position, in milliseconds (7 days). Positions lie in
/// `0.0..=MAX_POSITION_MS`.
pub const MAX_POSITION_MS: f64 = 7.0 * 24.0 * 3600.0 * 1000.0;

/// Timestamps lie in `0.0..MAX_TIMESTAMP_MS` (10^14 ms, about the year 5138):
/// wide enough for the server clock (Unix-epoch anchored) and for a
/// client's monotonic clock, narrow enough to refuse garbage.
pub const MAX_TIMESTAMP_MS: f64 = 1e14;

/// Durations (round-trip time, delays, offset uncertainty, timeouts) lie in
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

/// Most members one chat message mentions.
pub const MAX_MENTIONS: usize = 32;

/// Longest reaction, in characters: enough for a ZWJ emoji sequence.
pub const MAX_EMOJI_CHARS: usize = 16;

/// Longest error message, in characters. Longer messages are cut when a
/// [`ProtocolError`] is made.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 256;

/// A message with the sender's clock at sending: the frame on the wire.
///
/// `sent_ms` is the server clock on a server frame, the client's local
/// (monotonic) clock on a client frame. On the wire it is the `"sent_ms"`
/// field beside the message's own.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped<M> {
    /// The sender's clock when it sent the frame, in ms.
    pub sent_ms: f64,
    /// The message.
    pub msg: M,
}

impl<M> Stamped<M> {
    /// `msg` sent at `sent_ms`.
    pub fn new(sent_ms: f64, msg: M) -> Self {
        Stamped { sent_ms, msg }
    }
}

/// A message a client sends to the server.
///
/// On the wire: a JSON object with `"type"` set to the variant's snake_case
/// name, the variant's fields and `"sent_ms"` beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// The first message of a connection: who the client is and which
    /// protocol versions it speaks. The server answers `welcome` or an
    /// error.
    Hello {
        /// Every protocol version the client speaks (1..=
        /// [`MAX_OFFERED_VERSIONS`] of them); the server picks the highest
        /// it speaks too.
        versions: Vec<u32>,
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
    /// A clock probe; the server answers `pong` at once. Its `sent_ms` is
    /// the NTP t0.
    Ping {
        /// Chosen by the client to match the `pong`.
        id: u64,
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
    /// The player has been stalled for a while (the client debounces short
    /// stalls) at this position.
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
        /// The player's position at `sampled_at_ms`.
        position_ms: f64,
        /// The client's local clock when `position_ms` was read (at or
        /// before the frame's `sent_ms`).
        sampled_at_ms: f64,
        /// The rate the player runs at, drift nudges included;
        /// 0..=[`MAX_REPORTED_RATE`].
        rate: f64,
        /// Round-trip time to the server, from the clock estimate.
        rtt_ms: f64,
        /// A high percentile (99th) of the client's one-way delay from the
        /// server: the server schedules states at least this far ahead so
        /// that they reach this member in time.
        delay_ms: f64,
        /// How far the clock offset estimate may be off (a bound).
        offset_uncertainty_ms: f64,
        /// How long the player takes to seek, as the client learned it
        /// (with a margin). Absent: not known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seek_latency_ms: Option<f64>,
        /// How much media the player holds ahead of its position, in ms.
        /// Absent: not known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        buffered_ahead_ms: Option<f64>,
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
        /// The media position it refers to, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_position_ms: Option<f64>,
    },
}

/// Continue an earlier membership: the member id the server gave, and the
/// newest room `seq` the client saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The member id of the earlier connection.
    pub member: MemberId,
    /// The newest room `seq` the client saw.
    pub last_seq: u64,
}

/// A message the server sends to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The answer to `hello`: the version chosen, the member id, and the
    /// room, unless the connection resumed and the missed events follow.
    Welcome {
        /// The protocol version of this connection, one the client offered.
        v: u32,
        /// The client's member id (to resume with).
        member: MemberId,
        /// The room now; absent when the server resumes the connection and
        /// sends the events the client missed instead (each `state` and
        /// `queue` with its `seq`, then the `waiting` list).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<RoomSnapshot>,
    },
    /// The answer to a `ping`. Its `sent_ms` is the NTP t2.
    Pong {
        /// The ping's id.
        id: u64,
        /// The ping's `sent_ms`, echoed (NTP t0).
        t0_ms: f64,
        /// The server clock when the ping arrived (NTP t1).
        t1_ms: f64,
    },
    /// The whole room, for a joiner or after a gap.
    Snapshot(RoomSnapshot),
    /// A new playback state, to apply at its `at_ms`.
    State {
        /// The state.
        playback: Playback,
        /// The command that caused it, if a member's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<Cause>,
    },
    /// One page of the queue: the items from `offset` on, of `total`.
    /// A change of the queue sends every page, from offset 0.
    Queue {
        /// The room's `seq` after the change.
        seq: u64,
        /// Index of the first item of this page.
        offset: u64,
        /// Items in the whole queue.
        total: u64,
        /// At most [`QUEUE_PAGE_ITEMS`] items, in order.
        items: Vec<QueueItem>,
    },
    /// One page of the member list, after a `snapshot` (or `welcome`)
    /// whose `members_total` says more members follow: the members from
    /// `offset` on, of `total`. Presence events after the last page change
    /// the list as usual.
    Members {
        /// Index of the first member of this page (in id order).
        offset: u64,
        /// Members in the whole room.
        total: u64,
        /// At most [`MEMBER_PAGE_ITEMS`] members, in id order.
        members: Vec<MemberInfo>,
    },
    /// Who the group waits for, each until its own deadline (empty: no
    /// one).
    Waiting {
        /// In id order.
        members: Vec<Waited>,
    },
    /// A member joined, left or changed.
    Presence {
        /// What happened.
        event: PresenceEvent,
        /// The member.
        member: MemberInfo,
    },
    /// A chat message (its `sent_ms` is when the server relayed it).
    Chat {
        /// The sender.
        from: MemberId,
        /// The text.
        text: String,
        /// The message's number in the channel's stored history (1, 2, 3,
        /// ...), when the server keeps one: what edits, deletes and paged
        /// history refer to. Absent: not stored.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// The members the text mentions (`@` and their name), in id
        /// order, at most [`MAX_MENTIONS`]; absent when none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mentions: Vec<MemberId>,
    },
    /// A stored chat message was edited by its author.
    ChatEdited {
        /// The message's `id` (its `chat` frame's).
        id: u64,
        /// Its new text.
        text: String,
    },
    /// A stored chat message was deleted (by its author or a moderator):
    /// show it as deleted, without its text.
    ChatDeleted {
        /// The message's `id`.
        id: u64,
    },
    /// A member started or stopped typing.
    Typing {
        /// Who.
        member: MemberId,
        /// True while typing.
        active: bool,
    },
    /// A reaction.
    Reaction {
        /// Who.
        member: MemberId,
        /// The emoji.
        emoji: String,
        /// The media position it refers to, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_position_ms: Option<f64>,
    },
    /// A refusal.
    Error {
        /// What the client can act on.
        code: ErrorCode,
        /// For people and logs, at most [`MAX_ERROR_MESSAGE_CHARS`].
        message: String,
        /// The refused command's id, when it could be read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
    },
}

/// The room at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomSnapshot {
    /// The room's change counter: the `seq` a client bases its commands on
    /// and resumes from.
    pub seq: u64,
    /// The state in force.
    pub playback: Playback,
    /// States scheduled after it, in order (at most [`MAX_PENDING`]); apply
    /// each at its `at_ms`.
    pub pending: Vec<Playback>,
    /// Items in the whole queue.
    pub queue_total: u64,
    /// The first page of the queue (at most [`QUEUE_PAGE_ITEMS`]); `queue`
    /// messages with the rest follow.
    pub queue: Vec<QueueItem>,
    /// Everyone in the room, in id order; in a room of more than
    /// [`MEMBER_PAGE_ITEMS`], the first page of them.
    pub members: Vec<MemberInfo>,
    /// Members in the whole room, when `members` is its first page and
    /// `members` messages with the rest follow; absent when `members` is
    /// everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members_total: Option<u64>,
    /// Who the group waits for, each with its deadline.
    pub waiting: Vec<Waited>,
    /// What the room does when a member falls behind.
    pub policy: RoomPolicy,
}

/// What happens to a member who falls behind (its player stalls), and how
/// a play starts; chosen per channel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RoomPolicy {
    /// What happens to a member who falls behind.
    pub behind: Behind,
    /// How long the group waits for one member (`behind` = `wait`), ms.
    pub wait_timeout_ms: f64,
    /// A play waits until every member reports at least this much buffered
    /// ahead (0: it does not wait), ms.
    pub start_ahead_ms: f64,
    /// How long a play waits for that at most, ms.
    pub start_timeout_ms: f64,
}

/// What happens to a member whose player falls behind the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behind {
    /// The group pauses and waits for it (with a timeout).
    Wait,
    /// It plays on from where it is, behind the room, until its viewer
    /// catches up.
    Leave,
    /// It catches up at once by skipping ahead to the room's position.
    Skip,
}

impl RoomPolicy {
    /// The policy a room with this buffering policy follows.
    pub fn of(config: &room::RoomConfig) -> Self {
        let (behind, wait_timeout_ms) = match config.buffering {
            BufferingPolicy::Ignore => (Behind::Skip, 0.0),
            BufferingPolicy::LeaveBehind => (Behind::Leave, 0.0),
            BufferingPolicy::WaitForAll { timeout_ms } => (Behind::Wait, timeout_ms),
        };
        RoomPolicy {
            behind,
            wait_timeout_ms,
            start_ahead_ms: config.start_ahead_ms,
            start_timeout_ms: config.start_timeout_ms,
        }
    }
}

/// A member as others see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its id.
    pub id: MemberId,
    /// Its display name.
    pub name: String,
    /// Its role label.
    pub role: String,
    /// Whether its player reports buffering.
    pub buffering: bool,
    /// How far its player was from the room's timeline at its latest
    /// report, ms (positive: ahead), as the server measured it. Absent:
    /// not known (no report yet, or a server that does not measure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_error_ms: Option<f64>,
    /// Its round trip to the server, from its latest report, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// The server's opaque id of the member's account, for acting on it
    /// through the server's own API (mute, remove, ban). Absent: a guest,
    /// or a server that does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// The command a state resulted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// Who sent it.
    pub by: MemberId,
    /// Its request id.
    pub request_id: u64,
}

/// What happened to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceEvent {
    /// It joined.
    Joined,
    /// It left.
    Left,
    /// Its role or buffering flag changed.
    Updated,
}

/// Why a message was refused: the code a client acts on, a message for
/// people and, for a command, its request id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({}){}", .message, code_label(.code), request_label(.request_id))]
pub struct ProtocolError {
    /// What went wrong, stable across versions.
    pub code: ErrorCode,
    /// For people: what was refused and why (control characters replaced,
    /// at most [`MAX_ERROR_MESSAGE_CHARS`]).
    pub message: String,
    /// The refused command's `id`, when it could be read.
    pub request_id: Option<u64>,
}

impl ProtocolError {
    /// An error with `code` and a cleaned, bounded `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: clean_message(&message.into()),
            request_id: None,
        }
    }

    /// The same error, naming the refused request.
    pub fn with_request_id(mut self, request_id: u64) -> Self {
        self.request_id = Some(request_id);
        self
    }

    /// The `error` message to send back.
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

fn code_label(code: &ErrorCode) -> &'static str {
    code.as_str()
}

fn request_label(request_id: &Option<u64>) -> String {
    match request_id {
        Some(id) => format!(" for request {id}"),
        None => String::new(),
    }
}

/// The highest version both sides speak, of those a client `offered`.
///
/// # Errors
///
/// [`ErrorCode::UnsupportedVersion`] when there is none, naming what each
/// side speaks.
pub fn negotiate(offered: &[u32]) -> Result<u32, ProtocolError> {
    offered
        .iter()
        .copied()
        .filter(|v| SUPPORTED_VERSIONS.contains(v))
        .max()
        .ok_or_else(|| {
            ProtocolError::new(
                ErrorCode::UnsupportedVersion,
                format!(
                    "no common protocol version: the client speaks {}, this side {}",
                    list_versions(offered.iter().take(MAX_OFFERED_VERSIONS).copied()),
                    list_versions(SUPPORTED_VERSIONS.iter().copied()),
                ),
            )
        })
}

fn list_versions(versions: impl Iterator<Item = u32>) -> String {
    let list: Vec<String> = versions.map(|v| v.to_string()).collect();
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}

/// A message type of the protocol: [`ClientMessage`] or [`ServerMessage`].
/// Sealed: only those two implement it.
pub trait WireMessage: Serialize + DeserializeOwned + sealed::Sealed {
    /// Every `type` name.
    const TYPES: &'static [&'static str];
    /// The size limit of a frame.
    const MAX_BYTES: usize;
    /// This message's `type` name.
    fn kind(&self) -> &'static str;
    /// Checks every value.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] or [`ErrorCode::UnsupportedVersion`],
    /// naming the first bad field.
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

    /// Checks every value (see the guide's table of bounds).
    ///
    /// # Errors
    ///
    /// The first bad value, as [`ErrorCode::InvalidValue`] (or
    /// [`ErrorCode::UnsupportedVersion`] for a `hello` with no common
    /// version).
    pub fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            ClientMessage::Hello {
                versions,
                token,
                name,
                resume,
            } => {
                if versions.is_empty() || versions.len() > MAX_OFFERED_VERSIONS {
                    return Err(invalid(format!(
                        "hello offers {} versions, it must offer 1..={MAX_OFFERED_VERSIONS}",
                        versions.len()
                    )));
                }
                negotiate(versions)?;
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
            ClientMessage::Ping { id } => check_id("ping id", *id),
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
                sampled_at_ms,
                rate,
                rtt_ms,
                delay_ms,
                offset_uncertainty_ms,
                seek_latency_ms,
                buffered_ahead_ms,
            } => {
                check_position("report position_ms", *position_ms)?;
                check_timestamp("report sampled_at_ms", *sampled_at_ms)?;
                check_range("report rate", *rate, 0.0, MAX_REPORTED_RATE)?;
                check_duration("report rtt_ms", *rtt_ms)?;
                check_duration("report delay_ms", *delay_ms)?;
                check_duration("report offset_uncertainty_ms", *offset_uncertainty_ms)?;
                if let Some(ms) = seek_latency_ms {
                    check_duration("report seek_latency_ms", *ms)?;
                }
                match buffered_ahead_ms {
                    Some(ms) => check_position("report buffered_ahead_ms", *ms),
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

    /// Checks what only the frame knows: a report sampled after the frame
    /// was sent is refused.
    fn validate_stamped(&self, sent_ms: f64) -> Result<(), ProtocolError> {
        if let ClientMessage::Report { sampled_at_ms, .. } = self {
            if *sampled_at_ms > sent_ms {
                return Err(invalid(format!(
                    "report sampled_at_ms {sampled_at_ms} is after the frame's sent_ms {sent_ms}"
                )));
            }
        }
        Ok(())
    }
}

impl ServerMessage {
    /// Every server message `type`.
    pub const TYPES: &'static [&'static str] = &[
        "welcome",
        "pong",
        "snapshot",
        "state",
        "queue",
        "members",
        "waiting",
        "presence",
        "chat",
        "chat_edited",
        "chat_deleted",
        "typing",
        "reaction",
        "error",
    ];

    /// This message's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMessage::Welcome { .. } => "welcome",
            ServerMessage::Pong { .. } => "pong",
            ServerMessage::Snapshot(_) => "snapshot",
            ServerMessage::State { .. } => "state",
            ServerMessage::Queue { .. } => "queue",
            ServerMessage::Members { .. } => "members",
            ServerMessage::Waiting { .. } => "waiting",
            ServerMessage::Presence { .. } => "presence",
            ServerMessage::Chat { .. } => "chat",
            ServerMessage::ChatEdited { .. } => "chat_edited",
            ServerMessage::ChatDeleted { .. } => "chat_deleted",
            ServerMessage::Typing { .. } => "typing",
            ServerMessage::Reaction { .. } => "reaction",
            ServerMessage::Error { .. } => "error",
        }
    }

    /// Checks every value.
    ///
    /// # Errors
    ///
    /// The first bad value, as [`ErrorCode::InvalidValue`] (or
    /// [`ErrorCode::UnsupportedVersion`] for a `welcome` naming a version
    /// this side does not speak).
    pub fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            ServerMessage::Welcome { v, member, room } => {
                if !SUPPORTED_VERSIONS.contains(v) {
                    return Err(version_error("welcome", &v.to_string()));
                }
                check_member("welcome member", *member)?;
                match room {
                    Some(room) => check_snapshot("welcome room", room),
                    None => Ok(()),
                }
            }
            ServerMessage::Pong { id, t0_ms, t1_ms } => {
                check_id("pong id", *id)?;
                check_timestamp("pong t0_ms", *t0_ms)?;
                check_timestamp("pong t1_ms", *t1_ms)
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
            ServerMessage::Queue {
                seq,
                offset,
                total,
                items,
            } => {
                check_id("queue seq", *seq)?;
                check_id("queue offset", *offset)?;
                check_id("queue total", *total)?;
                check_queue_page("queue", *offset, *total, items)
            }
            ServerMessage::Members {
                offset,
                total,
                members,
            } => check_member_page("members", *offset, *total, members),
            ServerMessage::Waiting { members } => check_waited("waiting members", members),
            ServerMessage::Presence { member, .. } => check_member_info("presence member", member),
            ServerMessage::Chat {
                from,
                text,
                id,
                mentions,
            } => {
                check_member("chat from", *from)?;
                if let Some(id) = id {
                    check_id("chat id", *id)?;
                }
                if mentions.len() > MAX_MENTIONS {
                    return Err(invalid(format!(
                        "chat mentions has {} members, the limit is {MAX_MENTIONS}",
                        mentions.len()
                    )));
                }
                for m in mentions {
                    check_member("chat mentions", *m)?;
                }
                check_chat("chat text", text)
            }
            ServerMessage::ChatEdited { id, text } => {
                check_id("chat_edited id", *id)?;
                check_chat("chat_edited text", text)
            }
            ServerMessage::ChatDeleted { id } => check_id("chat_deleted id", *id),
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

    /// Checks what only the frame knows: a pong's receive time cannot be
    /// after its send time.
    fn validate_stamped(&self, sent_ms: f64) -> Result<(), ProtocolError> {
        if let ServerMessage::Pong { t1_ms, .. } = self {
            if *t1_ms > sent_ms {
                return Err(invalid(format!(
                    "pong t1_ms {t1_ms} is after the frame's sent_ms {sent_ms}"
                )));
            }
        }
        Ok(())
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

/// The JSON text of a frame: the message's fields, then `"sent_ms"`.
///
/// Encoding does not validate (the receiver does): a NaN is written as
/// `null`, which the receiver refuses.
pub fn encode<M: WireMessage>(frame: &Stamped<M>) -> String {
    let body = match serde_json::to_string(&frame.msg) {
        Ok(text) => text,
        // serde_json fails only for maps with non-string keys and for
        // `Serialize` impls that return errors; these types have neither.
        // Still, a wire encoder must not panic: send a frame every
        // receiver reads as an error.
        Err(_) => return ENCODE_FAILED.to_owned(),
    };
    let stamp = serde_json::to_string(&frame.sent_ms).unwrap_or_else(|_| "null".to_owned());
    match body.strip_suffix('}') {
        Some(open) if open.len() > 1 => format!("{open},\"sent_ms\":{stamp}}}"),
        _ => ENCODE_FAILED.to_owned(),
    }
}

const ENCODE_FAILED: &str = r#"{"type":"error","code":"malformed","message":"the sender could not encode a message","sent_ms":0}"#;

/// Decodes and checks a client frame.
///
/// # Errors
///
/// The first failed check (module docs); the `request_id` of a refused
/// `command` is set when its `id` could be read.
pub fn decode_client(text: &str) -> Result<Stamped<ClientMessage>, ProtocolError> {
    let frame: Stamped<ClientMessage> = decode(text)?;
    let id = match &frame.msg {
        ClientMessage::Command { id, .. } => Some(*id),
        _ => None,
    };
    frame
        .msg
        .validate_stamped(frame.sent_ms)
        .map_err(|e| match id {
            Some(id) => e.with_request_id(id),
            None => e,
        })?;
    Ok(frame)
}

/// Decodes and checks a server frame.
///
/// # Errors
///
/// The first failed check (module docs).
pub fn decode_server(text: &str) -> Result<Stamped<ServerMessage>, ProtocolError> {
    let frame: Stamped<ServerMessage> = decode(text)?;
    frame.msg.validate_stamped(frame.sent_ms)?;
    Ok(frame)
}

/// The fields every frame is checked for before its shape.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    v: Option<serde_json::Value>,
    #[serde(default)]
    versions: Option<serde_json::Value>,
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    sent_ms: Option<serde_json::Value>,
}

fn decode<M: WireMessage>(text: &str) -> Result<Stamped<M>, ProtocolError> {
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
    // The version is checked before the shape: another version may have
    // another shape, and its peer should hear "unsupported version", not
    // "malformed". A version 1 hello names one version in "v".
    if kind == "hello" {
        let offered: Option<Vec<u32>> = match (&envelope.versions, &envelope.v) {
            (Some(serde_json::Value::Array(list)), _) => list
                .iter()
                .take(MAX_OFFERED_VERSIONS + 1)
                .map(|v| v.as_u64().and_then(|v| u32::try_from(v).ok()))
                .collect(),
            (None, Some(serde_json::Value::Number(n))) => Some(vec![n
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0)]),
            _ => None,
        };
        match offered {
            Some(list) => {
                negotiate(&list)?;
            }
            None => {
                return Err(ProtocolError::new(
                    ErrorCode::Malformed,
                    "hello has no \"versions\" list of integers",
                ))
            }
        }
    }
    if kind == "welcome" {
        match &envelope.v {
            Some(serde_json::Value::Number(n)) => {
                let speaks = n
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .is_some_and(|v| SUPPORTED_VERSIONS.contains(&v));
                if !speaks {
                    return Err(version_error(kind, &n.to_string()));
                }
            }
            _ => {
                return Err(ProtocolError::new(
                    ErrorCode::Malformed,
                    "welcome has no numeric \"v\"",
                ))
            }
        }
    }
    let sent_ms = match &envelope.sent_ms {
        Some(serde_json::Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        _ => {
            return Err(attach(ProtocolError::new(
                ErrorCode::Malformed,
                format!("{kind} has no numeric \"sent_ms\""),
            )))
        }
    };
    check_timestamp(&format!("{kind} sent_ms"), sent_ms).map_err(attach)?;
    let msg: M = serde_json::from_str(text)
        .map_err(|e| attach(json_error(&format!("malformed {kind} message"), &e)))?;
    msg.validate().map_err(attach)?;
    Ok(Stamped { sent_ms, msg })
}

/// The messages a room event becomes on the wire, for the members it is
/// addressed to. `member_info` gives each member's name (the room knows
/// ids and roles only); `policy` is the room's. A queue change becomes
/// every page of the queue; a snapshot is followed by the pages of the
/// queue after its first.
pub fn server_messages(
    event: &RoomEvent,
    policy: RoomPolicy,
    name: &dyn Fn(MemberId) -> String,
) -> Vec<ServerMessage> {
    match event {
        RoomEvent::Scheduled(playback) => vec![ServerMessage::State {
            playback: playback.clone(),
            cause: None,
        }],
        RoomEvent::Snapshot(snapshot) => {
            let (room, rest) = snapshot_messages(snapshot, policy, name);
            let mut out = vec![ServerMessage::Snapshot(room)];
            out.extend(rest);
            out
        }
        RoomEvent::Waiting { members } => vec![ServerMessage::Waiting {
            members: members.clone(),
        }],
        RoomEvent::QueueChanged { seq, items } => queue_pages(*seq, items),
        RoomEvent::MemberJoined(info) => vec![ServerMessage::Presence {
            event: PresenceEvent::Joined,
            member: wire_member(info, name),
        }],
        RoomEvent::MemberLeft(id) => vec![ServerMessage::Presence {
            event: PresenceEvent::Left,
            member: MemberInfo {
                id: *id,
                name: name(*id),
                role: "member".to_owned(),
                buffering: false,
                sync_error_ms: None,
                rtt_ms: None,
                account: None,
            },
        }],
        RoomEvent::MemberUpdated(info) => vec![ServerMessage::Presence {
            event: PresenceEvent::Updated,
            member: wire_member(info, name),
        }],
    }
}

fn wire_member(info: &room::MemberInfo, name: &dyn Fn(MemberId) -> String) -> MemberInfo {
    MemberInfo {
        id: info.id,
        name: name(info.id),
        role: info.role.as_str().to_owned(),
        buffering: info.is_buffering(),
        sync_error_ms: None,
        rtt_ms: None,
        account: None,
    }
}

/// The wire form of a room's snapshot, and the messages that must follow
/// it: the pages of the queue after its first, then the pages of the
/// member list after its first.
pub fn snapshot_messages(
    snapshot: &room::Snapshot,
    policy: RoomPolicy,
    name: &dyn Fn(MemberId) -> String,
) -> (RoomSnapshot, Vec<ServerMessage>) {
    let room = RoomSnapshot::of(snapshot, policy, name);
    let mut rest: Vec<ServerMessage> = queue_pages(snapshot.seq, &snapshot.queue)
        .into_iter()
        .skip(1)
        .collect();
    let members: Vec<MemberInfo> = snapshot
        .members
        .iter()
        .take(MAX_MEMBERS)
        .map(|m| wire_member(m, name))
        .collect();
    let total = members.len() as u64;
    rest.extend(
        members
            .chunks(MEMBER_PAGE_ITEMS)
            .enumerate()
            .skip(1)
            .map(|(i, page)| ServerMessage::Members {
                offset: (i * MEMBER_PAGE_ITEMS) as u64,
                total,
                members: page.to_vec(),
            }),
    );
    (room, rest)
}

/// The queue as `queue` messages of at most [`QUEUE_PAGE_ITEMS`] items (one
/// empty page for an empty queue).
pub fn queue_pages(seq: u64, items: &[QueueItem]) -> Vec<ServerMessage> {
    let total = items.len() as u64;
    if items.is_empty() {
        return vec![ServerMessage::Queue {
            seq,
            offset: 0,
            total,
            items: Vec::new(),
        }];
    }
    items
        .chunks(QUEUE_PAGE_ITEMS)
        .enumerate()
        .map(|(i, page)| ServerMessage::Queue {
            seq,
            offset: (i * QUEUE_PAGE_ITEMS) as u64,
            total,
            items: page.to_vec(),
        })
        .collect()
}

impl RoomSnapshot {
    /// The wire form of a room's snapshot: the first page of the queue and
    /// the first page of the members, named by `name` (see
    /// [`snapshot_messages`] for the pages that follow it).
    pub fn of(
        snapshot: &room::Snapshot,
        policy: RoomPolicy,
        name: &dyn Fn(MemberId) -> String,
    ) -> Self {
        RoomSnapshot {
            seq: snapshot.seq,
            playback: snapshot.playback.clone(),
            pending: snapshot.pending.iter().take(MAX_PENDING).cloned().collect(),
            queue_total: snapshot.queue.len() as u64,
            queue: snapshot
                .queue
                .iter()
                .take(QUEUE_PAGE_ITEMS)
                .cloned()
                .collect(),
            members: snapshot
                .members
                .iter()
                .take(MEMBER_PAGE_ITEMS)
                .map(|m| wire_member(m, name))
                .collect(),
            members_total: (snapshot.members.len() > MEMBER_PAGE_ITEMS)
                .then(|| snapshot.members.len().min(MAX_MEMBERS) as u64),
            waiting: snapshot.waiting.iter().take(MAX_MEMBERS).copied().collect(),
            policy,
        }
    }
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
            "{kind} names protocol version {}, this side speaks {}",
            truncate(got, 32),
            list_versions(SUPPORTED_VERSIONS.iter().copied())
        ),
    )
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

pub(crate) fn check_playback(field: &str, playback: &Playback) -> Result<(), ProtocolError> {
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
    if let Some(e) = info.sync_error_ms {
        check_range(
            &format!("{field}.sync_error_ms"),
            e,
            -MAX_POSITION_MS,
            MAX_POSITION_MS,
        )?;
    }
    if let Some(rtt) = info.rtt_ms {
        check_duration(&format!("{field}.rtt_ms"), rtt)?;
    }
    if let Some(account) = &info.account {
        check_label(&format!("{field}.account"), account, MAX_NAME_CHARS)?;
    }
    check_label(&format!("{field}.name"), &info.name, MAX_NAME_CHARS)?;
    check_label(&format!("{field}.role"), &info.role, MAX_ROLE_CHARS)
}

fn check_snapshot(field: &str, room: &RoomSnapshot) -> Result<(), ProtocolError> {
    check_id(&format!("{field} seq"), room.seq)?;
    check_playback(&format!("{field} playback"), &room.playback)?;
    if room.pending.len() > MAX_PENDING {
        return Err(invalid(format!(
            "{field} has {} pending states, the limit is {MAX_PENDING}",
            room.pending.len()
        )));
    }
    let mut last = &room.playback;
    for p in &room.pending {
        check_playback(&format!("{field} pending"), p)?;
        if p.seq <= last.seq || p.at_ms < last.at_ms {
            return Err(invalid(format!(
                "{field} pending state seq {} at {} does not follow seq {} at {}",
                p.seq, p.at_ms, last.seq, last.at_ms
            )));
        }
        last = p;
    }
    if last.seq > room.seq {
        return Err(invalid(format!(
            "{field} holds state seq {} above the room's seq {}",
            last.seq, room.seq
        )));
    }
    check_id(&format!("{field} queue_total"), room.queue_total)?;
    check_queue_page(field, 0, room.queue_total, &room.queue)?;
    match room.members_total {
        Some(total) => check_member_page(field, 0, total, &room.members)?,
        None if room.members.len() > MAX_MEMBERS => {
            return Err(invalid(format!(
                "{field} lists {} members, the limit is {MAX_MEMBERS}",
                room.members.len()
            )));
        }
        None => {
            for member in &room.members {
                check_member_info(&format!("{field} member"), member)?;
            }
        }
    }
    check_waited(&format!("{field} waiting"), &room.waiting)?;
    check_duration(
        &format!("{field} policy.wait_timeout_ms"),
        room.policy.wait_timeout_ms,
    )?;
    check_duration(
        &format!("{field} policy.start_ahead_ms"),
        room.policy.start_ahead_ms,
    )?;
    check_duration(
        &format!("{field} policy.start_timeout_ms"),
        room.policy.start_timeout_ms,
    )
}

/// A page of the member list: at most [`MEMBER_PAGE_ITEMS`] valid members
/// that lie within `total` (itself at most [`MAX_MEMBERS`]).
fn check_member_page(
    field: &str,
    offset: u64,
    total: u64,
    members: &[MemberInfo],
) -> Result<(), ProtocolError> {
    if members.len() > MEMBER_PAGE_ITEMS {
        return Err(invalid(format!(
            "{field} page lists {} members, the limit is {MEMBER_PAGE_ITEMS}",
            members.len()
        )));
    }
    if total > MAX_MEMBERS as u64 || offset.saturating_add(members.len() as u64) > total {
        return Err(invalid(format!(
            "{field} page of {} members at {offset} does not fit a room of {total} (at most {MAX_MEMBERS})",
            members.len()
        )));
    }
    for member in members {
        check_member_info(&format!("{field} member"), member)?;
    }
    Ok(())
}

fn check_queue_page(
    field: &str,
    offset: u64,
    total: u64,
    items: &[QueueItem],
) -> Result<(), ProtocolError> {
    if items.len() > QUEUE_PAGE_ITEMS {
        return Err(invalid(format!(
            "{field} page holds {} items, the limit is {QUEUE_PAGE_ITEMS}",
            items.len()
        )));
    }
    if offset.saturating_add(items.len() as u64) > total {
        return Err(invalid(format!(
            "{field} page of {} items at offset {offset} runs past the total {total}",
            items.len()
        )));
    }
    for item in items {
        check_id(&format!("{field} item id"), item.id)?;
        check_media(&format!("{field} item media"), &item.media)?;
    }
    Ok(())
}

fn check_waited(field: &str, members: &[Waited]) -> Result<(), ProtocolError> {
    if members.len() > MAX_MEMBERS {
        return Err(invalid(format!(
            "{field} lists {} members, the limit is {MAX_MEMBERS}",
            members.len()
        )));
    }
    for w in members {
        check_member(&format!("{field} member"), w.member)?;
        check_timestamp(&format!("{field} deadline_ms"), w.deadline_ms)?;
    }
    Ok(())
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
