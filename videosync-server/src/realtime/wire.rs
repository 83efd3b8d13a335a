//! What instances tell each other about a room, over the event bus: inputs
//! to the room's owner (`room.<channel>.in`), and what the owner says to
//! every instance that holds members (`room.<channel>.out`).

use serde::{Deserialize, Serialize};
use videosync_core::bus::Topic;
use videosync_core::{ChannelId, UserId};
use videosync_sync::protocol::{ClientMessage, Resume};
use videosync_sync::room::Recipients;
use videosync_sync::state::MemberId;

use crate::policy::Who;

/// Who a member is across connections and instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Identity {
    User(UserId),
    Guest(String),
}

/// Who a frame goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum To {
    All,
    Member(MemberId),
    AllExcept(MemberId),
}

impl From<Recipients> for To {
    fn from(r: Recipients) -> Self {
        match r {
            Recipients::All => To::All,
            Recipients::Member(m) => To::Member(m),
            Recipients::AllExcept(m) => To::AllExcept(m),
        }
    }
}

impl To {
    pub(crate) fn includes(self, member: MemberId) -> bool {
        match self {
            To::All => true,
            To::Member(m) => m == member,
            To::AllExcept(m) => m != member,
        }
    }
}

/// A connection asking the owner to be let in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Join {
    /// The connection (unique across instances).
    pub conn: u64,
    /// A member id allocated for it, used unless it resumes its old one.
    pub fresh: MemberId,
    pub identity: Identity,
    pub who: Who,
    pub name: String,
    /// The protocol version of the connection.
    pub version: u32,
    pub resume: Option<Resume>,
    /// A member that was already in the room, joining a new owner after a
    /// failover: no `welcome`, only what it missed.
    pub rejoin: bool,
}

/// Inputs of the room's owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ToOwner {
    Join(Box<Join>),
    Frame {
        member: MemberId,
        conn: u64,
        msg: ClientMessage,
        /// The frame's `sent_ms` (the client's clock).
        sent_ms: f64,
        /// The server clock when it was read.
        received_ms: f64,
    },
    Leave {
        member: MemberId,
        conn: u64,
    },
    /// These members may have missed frames (their instance's subscription
    /// lagged or lost its connection): send each a snapshot, then
    /// `Resynced` with `token`.
    Resync {
        members: Vec<MemberId>,
        token: u64,
        /// The newest chat message the instance delivered: the owner sends
        /// the later ones it still holds too.
        after_chat: u64,
    },
    /// Memberships, roles, bans or permissions changed.
    Refresh,
    /// A user was removed from the channel.
    Kick(UserId),
    /// A stored chat message changed (over REST).
    Chat(ChatChange),
}

/// A change to a stored chat message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ChatChange {
    Edited { id: u64, text: String },
    Deleted { id: u64 },
}

/// What the owner tells the instances.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum FromOwner {
    /// An encoded protocol frame for the members in `to`; `droppable`
    /// frames may be lost to a slow client; `seq` is the room's after it.
    Deliver {
        to: To,
        text: String,
        droppable: bool,
        seq: u64,
        /// The chat message's id, for a chat frame.
        chat: Option<u64>,
    },
    /// Connection `conn` is member `member` now.
    Joined { conn: u64, member: MemberId },
    /// Connection `conn` may not join: send `text` (an error frame), then
    /// close with `code`.
    Refused { conn: u64, text: String, code: u16 },
    /// Close member `member`'s connection `conn` with `code`.
    Close {
        member: MemberId,
        conn: u64,
        code: u16,
        reason: String,
    },
    /// `instance` owns the room now: members join it again.
    Owner { instance: String },
    /// The snapshots asked for with `token` are out.
    Resynced { token: u64 },
}

/// The room's input topic.
pub(crate) fn in_topic(namespace: &str, channel: ChannelId) -> Option<Topic> {
    Topic::parse(&crate::backends::scoped(
        namespace,
        &format!("room.{channel}.in"),
    ))
    .ok()
}

/// The room's output topic.
pub(crate) fn out_topic(namespace: &str, channel: ChannelId) -> Option<Topic> {
    Topic::parse(&crate::backends::scoped(
        namespace,
        &format!("room.{channel}.out"),
    ))
    .ok()
}
