//! The server's timeline of a room: who is in it, what they may do, when a
//! change takes effect, and how the group waits for members that buffer.
//!
//! [`Room`] is a pure state machine. It reads no clock and sends nothing:
//! every method takes the server time `now_ms` and returns the messages to
//! deliver as data ([`Outgoing`]: a [`Recipients`] and a [`RoomEvent`]). The
//! caller fans them out, and calls [`Room::tick`] at [`Room::next_deadline`]
//! so timeouts fire.
//!
//! # Examples
//!
//! ```
//! use videosync_sync::room::{AllowAll, CommandRequest, Role, Room, RoomEvent};
//! use videosync_sync::state::{Command, MemberId};
//!
//! let mut room = Room::default();
//! let (alice, bob) = (MemberId(1), MemberId(2));
//! room.join(alice, Role::owner(), 0.0)?;
//! room.join(bob, Role::member(), 0.0)?;
//! room.report(bob, 180.0, 10.0)?; // Bob's one-way delay, from his pings
//!
//! let load = CommandRequest { command: Command::Load { media: "v1".into() }, based_on_seq: 0 };
//! room.command(&AllowAll, alice, load, 20.0)?;
//! let play = CommandRequest { command: Command::Play, based_on_seq: room.seq() };
//! let out = room.command(&AllowAll, alice, play, 1_000.0)?;
//!
//! // Scheduled for everyone 180 ms (Bob) + 100 ms (margin) from now.
//! let RoomEvent::Scheduled(playback) = &out[0].event else { unreachable!() };
//! assert!(playback.playing);
//! assert_eq!(playback.at_ms, 1_280.0);
//! # Ok::<(), videosync_sync::room::RoomError>(())
//! ```
//!
//! # Rules
//!
//! ## Time
//!
//! - `now_ms` must be finite, within `0..=`[`MAX_TIME_MS`], and not before
//!   the time of the latest accepted call (equal is fine). Anything else is
//!   [`ErrorCode::InvalidValue`]. Server time comes from a monotonic clock,
//!   so a time going backwards is a caller bug, not something to absorb.
//!
//! ## The timeline
//!
//! - The room keeps the [`Playback`] in force and the states scheduled
//!   after it ([`Room::pending`]), in `at_ms` and `seq` order. Each state is
//!   complete: from its `at_ms` on it alone says where playback is. A state
//!   moves from pending to in force lazily, on the first accepted call at or
//!   after its `at_ms`; nothing observable depends on when.
//! - [`Room::seq`] counts changes to what members base commands on: every
//!   scheduled [`Playback`] and every queue change takes the next number.
//!   Membership, buffering and wait-list changes do not.
//!
//! ## Scheduling
//!
//! Every change to playback (a command, a buffering pause, a resume) is a
//! new [`Playback`] with a future `at_ms`, sent to everyone:
//!
//! - `lead = clamp(slowest + margin_ms, min_lead_ms, max_lead_ms)`, where
//!   `slowest` is the largest one-way delay reported (see [`Room::report`])
//!   by a current member within the last `delay_fresh_ms`, or 0 when there
//!   is none. A member without a fresh estimate is not waited for by the
//!   lead; it catches up with its drift controller.
//! - A `Seek` gets the *seek lead*: the lead plus the median of the
//!   members' fresh seek latencies (see [`Room::report_seek_latency`]; 0
//!   when none reported one), clamped to `min_lead_ms..=max_seek_lead_ms`.
//!   The median, not the slowest: a slower seeker starts its seek on
//!   receipt, aimed further ahead, and joins when it lands, rather than
//!   delaying everyone.
//! - Delays are what members report: the client reports the 99th
//!   percentile of its one-way delay from the server, so the lead covers a
//!   high percentile of every member's delay, not its minimum.
//! - `at_ms = max(now + lead, latest.at_ms)`: never before `now`, never
//!   before a state already scheduled (so states take effect in `seq`
//!   order), and never later than `now + max_lead_ms`.
//! - The new state is computed from the latest one (the newest scheduled, or
//!   the one in force). Positions are taken at `at_ms`, so a pause stops
//!   every member at one exact position: `latest.position_at(at_ms)`.
//! - A new state scheduled at exactly the `at_ms` of the newest pending one
//!   replaces it (that one would have been in force for no time at all).
//!
//! ## Commands
//!
//! [`Room::command`] checks, in this order, and the first failure is the
//! answer:
//!
//! 1. the time (above): `InvalidValue`;
//! 2. the member is in the room: `NotFound`;
//! 3. [`Permissions::allows`]: `Forbidden` (before any value check, so a
//!    member learns nothing about commands it may not send);
//! 4. the values: positions finite and `0..=`[`MAX_TIME_MS`], rates finite
//!    and within [`MIN_RATE`]`..=`[`MAX_RATE`], media ids non-empty, at most
//!    [`MAX_MEDIA_LEN`] bytes and without control characters:
//!    `InvalidValue`;
//! 5. `based_on_seq` greater than [`Room::seq`] (a state that never
//!    existed): `InvalidValue`;
//! 6. staleness, see below: `Stale`;
//! 7. the room's state: `Play` or `Seek` with nothing loaded and `QueueAdd`
//!    on a full queue (`max_queue_len`): `InvalidValue`; a queue item that
//!    does not exist: `NotFound`; a playback command while `max_pending`
//!    changes are already scheduled ahead: `RateLimited`.
//!
//! Staleness: `Seek` and `Load` set an absolute position (a media and a
//! place in it), so the states they produce are *position-changing*. A
//! `Seek` or `Load` whose `based_on_seq` is older than the latest
//! position-changing state is `Stale`: of two members seeking at once, the
//! first wins and the second is told, instead of the two interleaving.
//! `Play`, `Pause` and `SetRate` are relative to wherever playback is, and
//! queue commands name items by id, so they are never stale.
//!
//! Effects (a command that changes nothing is accepted with no outputs):
//!
//! - `Play`: if playback is paused and the group is not already waiting, the
//!   group starts. Under [`BufferingPolicy::WaitForAll`] with members
//!   buffering (and not already given up on, see below) the group waits for
//!   them first: they become the wait list, each with a deadline of
//!   `now + timeout_ms`, and playback is scheduled when the list empties.
//! - `Pause`: if playing, a pause at the scheduled instant's position. If
//!   the group is waiting to resume, the wait is called off (the wait list
//!   empties) and it stays paused.
//! - `Seek`: the new position, playing or paused as the latest state was
//!   (a wait in progress goes on).
//! - `SetRate`: the new rate from the scheduled instant's position.
//! - `Load`: the new media, paused at 0, rate kept; a wait in progress is
//!   called off.
//! - `QueueAdd` appends an item with the next id (ids start at 1 and are
//!   never reused); `QueueRemove` removes one; `QueueReorder` moves one to
//!   index `to`, clamped to the last index. Each change emits the whole
//!   queue; none touches playback.
//!
//! ## Buffering
//!
//! Members report [`Room::buffering`] and [`Room::ready`]; a repeated report
//! changes nothing. Every change of a member's flag is published
//! ([`RoomEvent::MemberUpdated`]). What else happens depends on the room's
//! [`BufferingPolicy`]:
//!
//! - `Ignore`: nothing; a member that buffers catches up on its own.
//! - `WaitForAll { timeout_ms }`: the group *wants to play* while it is
//!   playing or waiting to resume. The wait list is never empty while the
//!   group does not want to play, and the group plays exactly when it wants
//!   to and the list is empty.
//!   - A member that starts buffering while the group wants to play joins
//!     the wait list with the deadline `now + timeout_ms`; if the group was
//!     playing, a pause is scheduled (like any pause, so everyone stops at
//!     one position). The list is published ([`RoomEvent::Waiting`]).
//!   - A member leaves the wait list when it reports ready, when it leaves
//!     the room, or when [`Room::tick`] finds its deadline reached; the
//!     list is published, and when it empties the group resumes (scheduled)
//!     from the position it paused at.
//!   - A member dropped at its deadline is *given up on*: it catches up on
//!     its own and is not waited for again (not even by a later `Play`)
//!     until it reports ready and then buffering again.
//!   - A member that joins is not buffering, so it is not waited for until
//!     it reports buffering.
//! - [`Room::set_policy`] takes effect from the next buffering report or
//!   `Play`; switching to `Ignore` while the group waits releases it at once
//!   (the list empties, the group resumes).
//!
//! ## Outputs
//!
//! - A joiner gets a [`Snapshot`] (the state in force, the pending ones,
//!   the queue, the members, the wait list); the others get
//!   [`RoomEvent::MemberJoined`].
//! - Scheduled states, queue changes, wait-list changes and member changes
//!   go to [`Recipients::All`] (after a leave, "all" no longer includes the
//!   member that left).
//! - Delay and seek latency reports produce nothing.
//!
//! ## Errors
//!
//! Every method checks everything before it changes anything: an `Err`
//! leaves the room exactly as it was (`==` to a clone taken before), and no
//! method panics on any input.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::state::{
    Command, ErrorCode, MemberId, Playback, QueueItem, Waited, MAX_MEDIA_LEN, MAX_RATE, MIN_RATE,
};

/// Largest server time and media position the room accepts, in ms: 2^53,
/// the largest range in which an `f64` holds every whole millisecond.
pub const MAX_TIME_MS: f64 = 9_007_199_254_740_992.0;

/// Largest one-way delay a member may report, and the largest configurable
/// lead, in ms. Anything slower is not a network a room can sync over.
pub const MAX_DELAY_MS: f64 = 60_000.0;

/// Default time a wait-for-all room waits for a buffering member, in ms.
pub const DEFAULT_WAIT_TIMEOUT_MS: f64 = 10_000.0;

/// A member's role: a label the caller defines and its [`Permissions`]
/// interpret. The room stores it and publishes it; it gives it no meaning.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Role(String);

impl Role {
    /// A role with any label.
    pub fn new(label: impl Into<String>) -> Self {
        Role(label.into())
    }

    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `owner`: everything, in [`RoleTable::standard`].
    pub fn owner() -> Self {
        Role::new("owner")
    }

    /// `moderator`: everything, in [`RoleTable::standard`].
    pub fn moderator() -> Self {
        Role::new("moderator")
    }

    /// `member`: play, pause, seek, rate and adding to the queue, in
    /// [`RoleTable::standard`].
    pub fn member() -> Self {
        Role::new("member")
    }

    /// `viewer`: watches only, in [`RoleTable::standard`].
    pub fn viewer() -> Self {
        Role::new("viewer")
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kind of a [`Command`], without its values: what permissions are
/// granted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// [`Command::Play`].
    Play,
    /// [`Command::Pause`].
    Pause,
    /// [`Command::Seek`].
    Seek,
    /// [`Command::SetRate`].
    SetRate,
    /// [`Command::Load`].
    Load,
    /// [`Command::QueueAdd`].
    QueueAdd,
    /// [`Command::QueueRemove`].
    QueueRemove,
    /// [`Command::QueueReorder`].
    QueueReorder,
}

impl CommandKind {
    /// Every kind.
    pub const ALL: [CommandKind; 8] = [
        CommandKind::Play,
        CommandKind::Pause,
        CommandKind::Seek,
        CommandKind::SetRate,
        CommandKind::Load,
        CommandKind::QueueAdd,
        CommandKind::QueueRemove,
        CommandKind::QueueReorder,
    ];

    /// The kind of `command`.
    pub fn of(command: &Command) -> Self {
        match command {
            Command::Play => CommandKind::Play,
            Command::Pause => CommandKind::Pause,
            Command::Seek { .. } => CommandKind::Seek,
            Command::SetRate { .. } => CommandKind::SetRate,
            Command::Load { .. } => CommandKind::Load,
            Command::QueueAdd { .. } => CommandKind::QueueAdd,
            Command::QueueRemove { .. } => CommandKind::QueueRemove,
            Command::QueueReorder { .. } => CommandKind::QueueReorder,
        }
    }

    /// Whether it changes playback (rather than the queue).
    pub fn is_playback(self) -> bool {
        matches!(
            self,
            CommandKind::Play
                | CommandKind::Pause
                | CommandKind::Seek
                | CommandKind::SetRate
                | CommandKind::Load
        )
    }

    /// Whether it sets an absolute position, so that it is checked for
    /// staleness (see the module docs).
    pub fn is_position_changing(self) -> bool {
        matches!(self, CommandKind::Seek | CommandKind::Load)
    }

    fn name(self) -> &'static str {
        match self {
            CommandKind::Play => "play",
            CommandKind::Pause => "pause",
            CommandKind::Seek => "seek",
            CommandKind::SetRate => "set_rate",
            CommandKind::Load => "load",
            CommandKind::QueueAdd => "queue_add",
            CommandKind::QueueRemove => "queue_remove",
            CommandKind::QueueReorder => "queue_reorder",
        }
    }
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Decides whether a member may send a command.
///
/// # Contract
///
/// - Answers from its arguments (and its own configuration) alone: the room
///   asks once per command, before checking any value, and refuses with
///   [`ErrorCode::Forbidden`] on `false`.
/// - Never panics.
///
/// # Implementing
///
/// The trait is object safe; a server holds its policy as
/// `Arc<dyn Permissions + Send + Sync>` and passes `&*policy` to
/// [`Room::command`]. Keeping it out of the room keeps [`Room`] plain data
/// (`Clone`, `PartialEq`). [`AllowAll`] and [`RoleTable`] are examples.
pub trait Permissions {
    /// Whether `member`, holding `role`, may send `command`.
    fn allows(&self, member: MemberId, role: &Role, command: &Command) -> bool;
}

/// Allows everything to everyone: rooms among friends, and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllowAll;

impl Permissions for AllowAll {
    fn allows(&self, _member: MemberId, _role: &Role, _command: &Command) -> bool {
        true
    }
}

/// Grants command kinds per role; a role it does not list may do nothing.
///
/// # Examples
///
/// ```
/// use videosync_sync::room::{Permissions, Role, RoleTable};
/// use videosync_sync::state::{Command, MemberId};
///
/// let table = RoleTable::standard();
/// assert!(table.allows(MemberId(1), &Role::member(), &Command::Pause));
/// assert!(!table.allows(MemberId(2), &Role::viewer(), &Command::Pause));
/// assert!(!table.allows(MemberId(3), &Role::new("stranger"), &Command::Pause));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleTable {
    grants: BTreeMap<Role, BTreeSet<CommandKind>>,
}

impl RoleTable {
    /// A table that grants nothing.
    pub fn new() -> Self {
        RoleTable::default()
    }

    /// Grants `kinds` to `role`, in addition to what it had.
    pub fn grant(mut self, role: Role, kinds: impl IntoIterator<Item = CommandKind>) -> Self {
        self.grants.entry(role).or_default().extend(kinds);
        self
    }

    /// Owners and moderators may do everything; members may play, pause,
    /// seek, change the rate and add to the queue; viewers only watch.
    pub fn standard() -> Self {
        RoleTable::new()
            .grant(Role::owner(), CommandKind::ALL)
            .grant(Role::moderator(), CommandKind::ALL)
            .grant(
                Role::member(),
                [
                    CommandKind::Play,
                    CommandKind::Pause,
                    CommandKind::Seek,
                    CommandKind::SetRate,
                    CommandKind::QueueAdd,
                ],
            )
            .grant(Role::viewer(), [])
    }

    /// Whether `role` holds `kind`.
    pub fn allows_kind(&self, role: &Role, kind: CommandKind) -> bool {
        self.grants
            .get(role)
            .is_some_and(|kinds| kinds.contains(&kind))
    }
}

impl Permissions for RoleTable {
    fn allows(&self, _member: MemberId, role: &Role, command: &Command) -> bool {
        self.allows_kind(role, CommandKind::of(command))
    }
}

/// What the room does when a member's player buffers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum BufferingPolicy {
    /// Nothing: a buffering member catches up on its own, by skipping
    /// ahead to the room's position once it plays again.
    Ignore,
    /// Nothing: a buffering member plays on from where it stalled, behind
    /// the room, until its viewer asks to catch up (the client keeps the
    /// offset; see [`crate::client`]).
    LeaveBehind,
    /// The group pauses for buffering members and resumes when all are
    /// ready, waiting for each at most `timeout_ms` (see the module docs).
    WaitForAll {
        /// How long one member may hold the group, in ms (finite, >= 0).
        timeout_ms: f64,
    },
}

impl Default for BufferingPolicy {
    /// Wait for all, [`DEFAULT_WAIT_TIMEOUT_MS`] each.
    fn default() -> Self {
        BufferingPolicy::WaitForAll {
            timeout_ms: DEFAULT_WAIT_TIMEOUT_MS,
        }
    }
}

/// How a room schedules and what it holds; [`Default`] suits most rooms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomConfig {
    /// Added to the slowest member's one-way delay, in ms, for the time a
    /// client needs to act on a message (default 100).
    pub margin_ms: f64,
    /// The shortest lead of a scheduled change, in ms (default 100).
    pub min_lead_ms: f64,
    /// The longest lead, in ms: a member slower than this acts late and
    /// catches up (default 2000, at most [`MAX_DELAY_MS`]).
    pub max_lead_ms: f64,
    /// The longest lead of a `Seek`, in ms (default 3000: an HLS seek
    /// outside the buffer fetches a segment, up to about two seconds; at
    /// least `max_lead_ms`, at most [`MAX_DELAY_MS`]).
    pub max_seek_lead_ms: f64,
    /// How long a delay report counts toward the lead, in ms
    /// (default 30 000).
    pub delay_fresh_ms: f64,
    /// What buffering does (default: wait for all, 10 s).
    pub buffering: BufferingPolicy,
    /// The most items the queue holds (default 1000).
    pub max_queue_len: usize,
    /// The most playback changes scheduled ahead at once before commands
    /// are refused with [`ErrorCode::RateLimited`] (default 8, at least 1).
    pub max_pending: usize,
    /// A `Play` waits until every member reports at least this much media
    /// buffered ahead ([`Room::report_buffered_ahead`]), so that the room
    /// starts together instead of stalling one by one (default 0: it does
    /// not wait).
    pub start_ahead_ms: f64,
    /// How long a `Play` waits for that at most (default 5000).
    pub start_timeout_ms: f64,
    /// Under [`BufferingPolicy::WaitForAll`], a group wait does not start
    /// within this long of the start of the previous one (default 30 000):
    /// a member that buffers again so soon catches up on its own, so that
    /// one flaky member cannot pause the room every few seconds.
    pub min_wait_gap_ms: f64,
    /// How many recent changes (states and queue changes) the room keeps
    /// to resume a reconnecting member with ([`Room::resume`]) (default
    /// 256).
    pub history_len: usize,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            margin_ms: 100.0,
            min_lead_ms: 100.0,
            max_lead_ms: 2_000.0,
            max_seek_lead_ms: 3_000.0,
            delay_fresh_ms: 30_000.0,
            buffering: BufferingPolicy::default(),
            max_queue_len: 1_000,
            max_pending: 8,
            start_ahead_ms: 0.0,
            start_timeout_ms: 5_000.0,
            min_wait_gap_ms: 30_000.0,
            history_len: 256,
        }
    }
}

impl RoomConfig {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] naming the first bad field: a time that
    /// is not finite or is negative, `max_lead_ms` below `min_lead_ms` or
    /// above [`MAX_DELAY_MS`], a margin above [`MAX_DELAY_MS`], a zero
    /// `max_pending`, or a bad [`BufferingPolicy`].
    pub fn validate(&self) -> Result<(), RoomError> {
        let fields = [
            ("margin_ms", self.margin_ms),
            ("min_lead_ms", self.min_lead_ms),
            ("max_lead_ms", self.max_lead_ms),
            ("delay_fresh_ms", self.delay_fresh_ms),
            ("start_ahead_ms", self.start_ahead_ms),
            ("start_timeout_ms", self.start_timeout_ms),
            ("min_wait_gap_ms", self.min_wait_gap_ms),
        ];
        for (name, value) in fields {
            if !value.is_finite() || value < 0.0 {
                return Err(RoomError::invalid(format!(
                    "room config: {name} is {value}, not a finite number >= 0"
                )));
            }
        }
        if self.margin_ms > MAX_DELAY_MS {
            return Err(RoomError::invalid(format!(
                "room config: margin_ms {} is above {MAX_DELAY_MS}",
                self.margin_ms
            )));
        }
        if self.max_lead_ms < self.min_lead_ms || self.max_lead_ms > MAX_DELAY_MS {
            return Err(RoomError::invalid(format!(
                "room config: max_lead_ms {} is not within min_lead_ms {}..={MAX_DELAY_MS}",
                self.max_lead_ms, self.min_lead_ms
            )));
        }
        if !self.max_seek_lead_ms.is_finite()
            || self.max_seek_lead_ms < self.max_lead_ms
            || self.max_seek_lead_ms > MAX_DELAY_MS
        {
            return Err(RoomError::invalid(format!(
                "room config: max_seek_lead_ms {} is not within max_lead_ms {}..={MAX_DELAY_MS}",
                self.max_seek_lead_ms, self.max_lead_ms
            )));
        }
        if self.max_pending == 0 {
            return Err(RoomError::invalid("room config: max_pending is 0"));
        }
        validate_policy(self.buffering)
    }
}

fn validate_policy(policy: BufferingPolicy) -> Result<(), RoomError> {
    match policy {
        BufferingPolicy::Ignore | BufferingPolicy::LeaveBehind => Ok(()),
        BufferingPolicy::WaitForAll { timeout_ms }
            if timeout_ms.is_finite() && timeout_ms >= 0.0 =>
        {
            Ok(())
        }
        BufferingPolicy::WaitForAll { timeout_ms } => Err(RoomError::invalid(format!(
            "buffering policy: timeout_ms is {timeout_ms}, not a finite number >= 0"
        ))),
    }
}

/// A command as a member sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRequest {
    /// What to do.
    pub command: Command,
    /// The newest [`Room::seq`] the member had seen (from any scheduled
    /// state, queue change or snapshot) when it sent the command.
    pub based_on_seq: u64,
}

/// Who a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recipients {
    /// Every member in the room (after the call).
    All,
    /// One member.
    Member(MemberId),
    /// Every member but one.
    AllExcept(MemberId),
}

/// A message the caller delivers.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Who gets it.
    pub to: Recipients,
    /// What it says.
    pub event: RoomEvent,
}

/// What a room tells its members.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    /// A new playback state, to apply at its (future) `at_ms` server time.
    Scheduled(Playback),
    /// Everything a joiner needs.
    Snapshot(Snapshot),
    /// The members the group is waiting for, each with its deadline
    /// (empty: no one).
    Waiting {
        /// In id order.
        members: Vec<Waited>,
    },
    /// The queue changed; here is all of it.
    QueueChanged {
        /// The room's `seq` after the change.
        seq: u64,
        /// The whole queue, in order.
        items: Vec<QueueItem>,
    },
    /// A member joined.
    MemberJoined(MemberInfo),
    /// A member left.
    MemberLeft(MemberId),
    /// A member's role or buffering flag changed.
    MemberUpdated(MemberInfo),
}

/// A member as other members see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Who.
    pub id: MemberId,
    /// Its role label.
    pub role: Role,
    /// When it joined, in server ms.
    pub joined_at_ms: f64,
    /// Since when its player reports buffering, in server ms; `None` while
    /// it plays.
    pub buffering_since_ms: Option<f64>,
}

impl MemberInfo {
    /// Whether its player reports buffering.
    pub fn is_buffering(&self) -> bool {
        self.buffering_since_ms.is_some()
    }
}

/// The room at one instant, for a joiner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The room's `seq`.
    pub seq: u64,
    /// The state in force.
    pub playback: Playback,
    /// States scheduled after it, in order; apply each at its `at_ms`.
    pub pending: Vec<Playback>,
    /// The queue, in order.
    pub queue: Vec<QueueItem>,
    /// Everyone in the room, the joiner included, in id order.
    pub members: Vec<MemberInfo>,
    /// Who the group is waiting for, in id order, each with its deadline.
    pub waiting: Vec<Waited>,
}

/// Why a room refused a call; the room is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code:?})")]
pub struct RoomError {
    /// What a client can act on.
    pub code: ErrorCode,
    /// What was refused and why, for people.
    pub message: String,
}

impl RoomError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RoomError {
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        RoomError::new(ErrorCode::InvalidValue, message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct DelayEstimate {
    delay_ms: f64,
    reported_at_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Buffering {
    since_ms: f64,
    /// Dropped from the wait list at its deadline: not waited for again
    /// until it reports ready.
    given_up: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Member {
    role: Role,
    joined_at_ms: f64,
    delay: Option<DelayEstimate>,
    /// The time its player needs to seek, as it reported it.
    seek_latency: Option<DelayEstimate>,
    /// How much media its player holds ahead, as it reported it.
    buffered_ahead_ms: Option<f64>,
    buffering: Option<Buffering>,
}

/// What a room needs to carry on in another process (a new owner after a
/// failover, a restart): its timeline, its queue and its counters, from
/// [`Room::durable`], back with [`Room::restore`]. Not its members, their
/// reports, the wait list or the resume history: members join the
/// restored room again, and one that resumes from before the restore gets
/// a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Durable {
    /// The configuration.
    pub config: RoomConfig,
    /// [`Room::seq`].
    pub seq: u64,
    /// The `seq` of the latest state a `Seek` or `Load` produced.
    pub position_seq: u64,
    /// The state in force at the latest call.
    pub current: Playback,
    /// The states scheduled after it, in order.
    pub pending: Vec<Playback>,
    /// The queue.
    pub queue: Vec<QueueItem>,
    /// The id the next queue item gets.
    pub next_item_id: u64,
    /// The time of the latest accepted call: the restored room refuses
    /// earlier times, so the caller's clock must not be behind it (a new
    /// owner takes the later of its clock and this).
    pub last_now_ms: Option<f64>,
}

/// The server-side timeline of one room: see the module docs for every
/// rule.
///
/// `Clone` and `PartialEq` compare everything, so a caller can check that a
/// refused call left the room as it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Room {
    config: RoomConfig,
    /// The state in force since the last accepted call.
    current: Playback,
    /// Scheduled after `current`, ascending `at_ms` and `seq`.
    pending: Vec<Playback>,
    queue: Vec<QueueItem>,
    next_item_id: u64,
    members: BTreeMap<MemberId, Member>,
    /// Who the group waits for, with each one's deadline.
    waiting: BTreeMap<MemberId, f64>,
    seq: u64,
    /// The `seq` of the latest state a `Seek` or `Load` produced.
    position_seq: u64,
    /// The time of the latest accepted call.
    last_now_ms: Option<f64>,
    /// When the latest group wait for a buffering member started.
    last_wait_ms: Option<f64>,
    /// The latest changes, oldest first, to resume members with.
    history: VecDeque<RoomEvent>,
    /// The `seq` before the oldest change in `history`: a member that saw
    /// this one can be resumed from the history.
    history_from: u64,
}

impl Default for Room {
    /// An idle room with [`RoomConfig::default`].
    fn default() -> Self {
        Room::from_valid_config(RoomConfig::default())
    }
}

impl Room {
    /// An empty room, nothing loaded, paused at 0, `seq` 0.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] when `config` fails
    /// [`RoomConfig::validate`].
    pub fn new(config: RoomConfig) -> Result<Self, RoomError> {
        config.validate()?;
        Ok(Room::from_valid_config(config))
    }

    fn from_valid_config(config: RoomConfig) -> Self {
        Room {
            config,
            current: Playback::idle(),
            pending: Vec::new(),
            queue: Vec::new(),
            next_item_id: 1,
            members: BTreeMap::new(),
            waiting: BTreeMap::new(),
            seq: 0,
            position_seq: 0,
            last_now_ms: None,
            last_wait_ms: None,
            history: VecDeque::new(),
            history_from: 0,
        }
    }

    /// What the room needs to carry on elsewhere ([`Durable`]).
    pub fn durable(&self) -> Durable {
        Durable {
            config: self.config.clone(),
            seq: self.seq,
            position_seq: self.position_seq,
            current: self.current.clone(),
            pending: self.pending.clone(),
            queue: self.queue.clone(),
            next_item_id: self.next_item_id,
            last_now_ms: self.last_now_ms,
        }
    }

    /// A room carrying on from `durable`, with no members.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] when `durable` could not have come from
    /// a room: a bad config or value, states out of order or numbered above
    /// `seq`, a queue longer than allowed or with ids not below
    /// `next_item_id`.
    pub fn restore(durable: Durable) -> Result<Self, RoomError> {
        let Durable {
            config,
            seq,
            position_seq,
            current,
            pending,
            queue,
            next_item_id,
            last_now_ms,
        } = durable;
        config.validate()?;
        let bad = |what: &str| Err(RoomError::invalid(format!("restore refused: {what}")));
        for p in std::iter::once(&current).chain(&pending) {
            if let Err(e) = crate::protocol::check_playback("state", p) {
                return bad(&e.message);
            }
            if p.seq > seq {
                return bad("a state is numbered above the room's seq");
            }
        }
        let mut prev = &current;
        for p in &pending {
            if p.seq <= prev.seq || p.at_ms < prev.at_ms {
                return bad("pending states are out of order");
            }
            prev = p;
        }
        if position_seq > seq || pending.len() > config.max_pending {
            return bad("position_seq above seq, or too many pending states");
        }
        let mut ids = BTreeSet::new();
        if queue.len() > config.max_queue_len
            || queue.iter().any(|q| {
                q.id >= next_item_id || !ids.insert(q.id) || validate_media(&q.media).is_err()
            })
        {
            return bad("the queue is too long, or holds a bad or repeated item");
        }
        if let Some(t) = last_now_ms {
            if !(0.0..=MAX_TIME_MS).contains(&t) {
                return bad("last_now_ms out of range");
            }
        }
        let mut room = Room::from_valid_config(config);
        room.seq = seq;
        room.position_seq = position_seq;
        room.current = current;
        room.pending = pending;
        room.queue = queue;
        room.next_item_id = next_item_id;
        room.last_now_ms = last_now_ms;
        room.history_from = seq;
        Ok(room)
    }

    // ---- queries ------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &RoomConfig {
        &self.config
    }

    /// The buffering policy.
    pub fn policy(&self) -> BufferingPolicy {
        self.config.buffering
    }

    /// The number of the latest change (see the module docs).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The newest state: the last one scheduled, or the one in force.
    pub fn latest(&self) -> &Playback {
        self.pending.last().unwrap_or(&self.current)
    }

    /// The state in force at `now_ms` (a time before the latest call's is
    /// taken as that time).
    pub fn playback_at(&self, now_ms: f64) -> &Playback {
        let now_ms = self.clamp_query_time(now_ms);
        self.pending
            .iter()
            .rev()
            .find(|p| p.at_ms <= now_ms)
            .unwrap_or(&self.current)
    }

    /// The states scheduled after `now_ms`, in order.
    pub fn pending(&self, now_ms: f64) -> &[Playback] {
        let now_ms = self.clamp_query_time(now_ms);
        let first = self.pending.partition_point(|p| p.at_ms <= now_ms);
        self.pending.get(first..).unwrap_or(&[])
    }

    /// The queue, in order.
    pub fn queue(&self) -> &[QueueItem] {
        &self.queue
    }

    /// Everyone in the room, in id order.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.members
            .iter()
            .map(|(&id, m)| member_info(id, m))
            .collect()
    }

    /// One member, if it is in the room.
    pub fn member(&self, id: MemberId) -> Option<MemberInfo> {
        self.members.get(&id).map(|m| member_info(id, m))
    }

    /// Who the group is waiting for, in id order.
    pub fn waiting(&self) -> Vec<MemberId> {
        self.waiting.keys().copied().collect()
    }

    /// Who the group is waiting for, in id order, each with its deadline.
    pub fn waiting_list(&self) -> Vec<Waited> {
        self.waiting
            .iter()
            .map(|(&member, &deadline_ms)| Waited {
                member,
                deadline_ms,
            })
            .collect()
    }

    /// Whether the group plays, or waits to resume (see the module docs).
    pub fn wants_to_play(&self) -> bool {
        self.latest().playing || !self.waiting.is_empty()
    }

    /// The earliest time [`Room::tick`] has something to do (a wait-list
    /// deadline), if any.
    pub fn next_deadline(&self) -> Option<f64> {
        self.waiting.values().copied().reduce(f64::min)
    }

    /// The lead a change scheduled at `now_ms` would get: the slowest fresh
    /// one-way delay plus the margin, clamped to the configured bounds.
    pub fn lead_ms(&self, now_ms: f64) -> f64 {
        let slowest = self
            .members
            .values()
            .filter_map(|m| m.delay)
            .filter(|d| now_ms - d.reported_at_ms <= self.config.delay_fresh_ms)
            .map(|d| d.delay_ms)
            .fold(0.0, f64::max);
        // max/min rather than clamp: clamp panics on a bad range, and this
        // must not panic even if a config check were ever missed.
        (slowest + self.config.margin_ms)
            .max(self.config.min_lead_ms)
            .min(self.config.max_lead_ms)
    }

    /// The lead a `Seek` scheduled at `now_ms` would get: the lead plus
    /// the median fresh seek latency of the members (0 when none reported
    /// one), clamped to the configured bounds. The median, not the slowest:
    /// a member that seeks slower starts its seek on receipt, aimed further
    /// ahead, and joins the others when it lands, rather than delaying
    /// everyone.
    pub fn seek_lead_ms(&self, now_ms: f64) -> f64 {
        let mut latencies: Vec<f64> = self
            .members
            .values()
            .filter_map(|m| m.seek_latency)
            .filter(|d| now_ms - d.reported_at_ms <= self.config.delay_fresh_ms)
            .map(|d| d.delay_ms)
            .collect();
        latencies.sort_by(f64::total_cmp);
        let median = latencies.get(latencies.len() / 2).copied().unwrap_or(0.0);
        (self.lead_ms(now_ms) + median)
            .max(self.config.min_lead_ms)
            .min(self.config.max_seek_lead_ms.max(self.config.max_lead_ms))
    }

    /// Everything a joiner at `now_ms` needs.
    pub fn snapshot(&self, now_ms: f64) -> Snapshot {
        Snapshot {
            seq: self.seq,
            playback: self.playback_at(now_ms).clone(),
            pending: self.pending(now_ms).to_vec(),
            queue: self.queue.clone(),
            members: self.members(),
            waiting: self.waiting_list(),
        }
    }

    // ---- membership ---------------------------------------------------

    /// Adds `member` with `role`. It gets a [`Snapshot`]; the others get
    /// [`RoomEvent::MemberJoined`]. It is not buffering, so the group does
    /// not wait for it until it reports buffering.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`]: a bad time, or `member` is already in
    /// the room.
    pub fn join(
        &mut self,
        member: MemberId,
        role: Role,
        now_ms: f64,
    ) -> Result<Vec<Outgoing>, RoomError> {
        self.check_now(now_ms)?;
        if self.members.contains_key(&member) {
            return Err(RoomError::invalid(format!(
                "join of {member} refused: already in the room"
            )));
        }
        self.advance(now_ms);
        let joined = Member {
            role,
            joined_at_ms: now_ms,
            delay: None,
            seek_latency: None,
            buffered_ahead_ms: None,
            buffering: None,
        };
        let info = member_info(member, &joined);
        self.members.insert(member, joined);
        Ok(vec![
            Outgoing {
                to: Recipients::Member(member),
                event: RoomEvent::Snapshot(self.snapshot(now_ms)),
            },
            Outgoing {
                to: Recipients::AllExcept(member),
                event: RoomEvent::MemberJoined(info),
            },
        ])
    }

    /// Removes `member`. If the group was waiting for it, it no longer is
    /// (and resumes if no one else is left to wait for).
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] for a bad time; [`ErrorCode::NotFound`]
    /// when `member` is not in the room.
    pub fn leave(&mut self, member: MemberId, now_ms: f64) -> Result<Vec<Outgoing>, RoomError> {
        self.check_now(now_ms)?;
        self.check_member(member, "leave")?;
        self.advance(now_ms);
        self.members.remove(&member);
        let mut out = vec![Outgoing {
            to: Recipients::All,
            event: RoomEvent::MemberLeft(member),
        }];
        self.stop_waiting_for(&[member], now_ms, &mut out);
        Ok(out)
    }

    /// Gives `member` a new role.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] for a bad time; [`ErrorCode::NotFound`]
    /// when `member` is not in the room.
    pub fn set_role(
        &mut self,
        member: MemberId,
        role: Role,
        now_ms: f64,
    ) -> Result<Vec<Outgoing>, RoomError> {
        self.check_now(now_ms)?;
        self.check_member(member, "role change")?;
        self.advance(now_ms);
        let Some(m) = self.members.get_mut(&member) else {
            return Ok(Vec::new());
        };
        if m.role == role {
            return Ok(Vec::new());
        }
        m.role = role;
        let info = member_info(member, m);
        Ok(vec![Outgoing {
            to: Recipients::All,
            event: RoomEvent::MemberUpdated(info),
        }])
    }

    /// Records `member`'s latest one-way delay estimate (from its clock
    /// pings), which counts toward the lead for `delay_fresh_ms`.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] for a bad time or a delay that is not
    /// finite or not within `0..=`[`MAX_DELAY_MS`]; [`ErrorCode::NotFound`]
    /// when `member` is not in the room.
    pub fn report(
        &mut self,
        member: MemberId,
        one_way_delay_ms: f64,
        now_ms: f64,
    ) -> Result<(), RoomError> {
        self.check_now(now_ms)?;
        self.check_member(member, "delay report")?;
        if !(0.0..=MAX_DELAY_MS).contains(&one_way_delay_ms) {
            return Err(RoomError::invalid(format!(
                "delay report of {member} refused: {one_way_delay_ms} ms is not within 0..={MAX_DELAY_MS}"
            )));
        }
        self.advance(now_ms);
        if let Some(m) = self.members.get_mut(&member) {
            m.delay = Some(DelayEstimate {
                delay_ms: one_way_delay_ms,
                reported_at_ms: now_ms,
            });
        }
        Ok(())
    }

    /// Records how long `member`'s player takes to seek (its client learns
    /// it from its own seeks), which counts toward the lead of a `Seek` for
    /// `delay_fresh_ms`.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] for a bad time or a latency that is not
    /// finite or not within `0..=`[`MAX_DELAY_MS`]; [`ErrorCode::NotFound`]
    /// when `member` is not in the room.
    pub fn report_seek_latency(
        &mut self,
        member: MemberId,
        seek_latency_ms: f64,
        now_ms: f64,
    ) -> Result<(), RoomError> {
        self.check_now(now_ms)?;
        self.check_member(member, "seek latency report")?;
        if !(0.0..=MAX_DELAY_MS).contains(&seek_latency_ms) {
            return Err(RoomError::invalid(format!(
                "seek latency report of {member} refused: {seek_latency_ms} ms is not within 0..={MAX_DELAY_MS}"
            )));
        }
        self.advance(now_ms);
        if let Some(m) = self.members.get_mut(&member) {
            m.seek_latency = Some(DelayEstimate {
                delay_ms: seek_latency_ms,
                reported_at_ms: now_ms,
            });
        }
        Ok(())
    }

    /// Records how much media `member`'s player holds ahead of its
    /// position. A `Play` under [`RoomConfig::start_ahead_ms`] waits for
    /// members with less; a member it waits for leaves the wait list once
    /// it reports enough (and is not buffering).
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] for a bad time or an amount that is not
    /// finite or not within `0..=`[`MAX_TIME_MS`]; [`ErrorCode::NotFound`]
    /// when `member` is not in the room.
    pub fn report_buffered_ahead(
        &mut self,
        member: MemberId,
        ahead_ms: f64,
        now_ms: f64,
    ) -> Result<Vec<Outgoing>, RoomError> {
        self.check_now(now_ms)?;
        self.check_member(member, "buffer report")?;
        if !(0.0..=MAX_TIME_MS).contains(&ahead_ms) {
            return Err(RoomError::invalid(format!(
                "buffer report of {member} refused: {ahead_ms} ms is not within 0..={MAX_TIME_MS}"
            )));
        }
        self.advance(now_ms);
        let mut out = Vec::new();
        let Some(m) = self.members.get_mut(&member) else {
            return Ok(out);
        };
        m.buffered_ahead_ms = Some(ahead_ms);
        let enough = ahead_ms >= self.config.start_ahead_ms && m.buffering.is_none();
        if enough && self.waiting.contains_key(&member) {
            self.stop_waiting_for(&[member], now_ms, &mut out);
        }
        Ok(out)
    }

    /// A member reconnects: `member` (a new connection, or the id it had)
    /// joins with `role`, and is brought up to date from `last_seq`, the
    /// newest `seq` it saw. If the room still holds every change after
    /// `last_seq`, it gets them ([`RoomEvent::Scheduled`] and
    /// [`RoomEvent::QueueChanged`], in order) and the wait list; otherwise
    /// a [`Snapshot`]. Either way it ends with the same view. The others
    /// get [`RoomEvent::MemberJoined`].
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`]: a bad time, `member` already in the
    /// room, or a `last_seq` the room never issued (above [`Room::seq`]).
    pub fn resume(
        &mut self,
        member: MemberId,
        role: Role,
        last_seq: u64,
        now_ms: f64,
    ) -> Result<Vec<Outgoing>, RoomError> {
        self.check_now(now_ms)?;
        if last_seq > self.seq {
            return Err(RoomError::invalid(format!(
                "resume of {member} refused: seq {last_seq} was never issued (the room is at {})",
                self.seq
            )));
        }
        let mut out = self.join(member, role, now_ms)?;
        if last_seq >= self.history_from {
            let missed: Vec<Outgoing> = self
                .history
                .iter()
                .filter(|e| event_seq(e).is_some_and(|s| s > last_seq))
                .map(|e| Outgoing {
                    to: Recipients::Member(member),
                    event: e.clone(),
                })
                .collect();
            // The joiner's snapshot is replaced by what it missed.
            out.retain(|o| !matches!(o.event, RoomEvent::Snapshot(_)));
            let mut replay = missed;
            replay.push(Outgoing {
                to: Recipients::Member(member),
                event: RoomEvent::Waiting {
                    members: self.waiting_list(),
                },
            });
            replay.extend(out);
            out = replay;
        }
        Ok(out)
    }

    /// Keeps `event` (a change with a `seq`) for [`Room::resume`].
    fn remember(&mut self, event: RoomEvent) {
        self.history.push_back(event);
        while self.history.len() > self.config.history_len {
            if let Some(old) = self.history.pop_front() {
                self.history_from = event_seq(&old).unwrap_or(self.history_from);
            }
        }
    }

    // ---- buffering ----------------------------------------------------

    /// `member`'s player is buffering (see the module docs for what the
    /// group does). A member already buffering changes nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] for a bad time; [`ErrorCode::NotFound`]
    /// when `member` is not in the room.
    pub fn buffering(&mut self, member: MemberId, now_ms: f64) -> Result<Vec<Outgoing>, RoomError> {
        self.check_now(now_ms)?;
        self.check_member(member, "buffering report")?;
        self.advance(now_ms);
        let mut out = Vec::new();
        let Some(m) = self.members.get_mut(&member) else {
            return Ok(out);
        };
        if m.buffering.is_some() {
            return Ok(out);
        }
        m.buffering = Some(Buffering {
            since_ms: now_ms,
            given_up: false,
        });
        out.push(Outgoing {
            to: Recipients::All,
            event: RoomEvent::MemberUpdated(member_info(member, m)),
        });
        if let BufferingPolicy::WaitForAll { timeout_ms } = self.config.buffering {
            // A new group wait so soon after the last one would let one
            // flaky member pause the room every few seconds: it catches up
            // on its own instead (a wait in progress still takes it in).
            let too_soon = self.waiting.is_empty()
                && self
                    .last_wait_ms
                    .is_some_and(|last| now_ms - last < self.config.min_wait_gap_ms);
            if too_soon {
                if let Some(b) = self
                    .members
                    .get_mut(&member)
                    .and_then(|m| m.buffering.as_mut())
                {
                    b.given_up = true;
                }
            } else if self.wants_to_play() {
                if self.waiting.is_empty() {
                    self.last_wait_ms = Some(now_ms);
                }
                self.waiting.insert(member, now_ms + timeout_ms);
                if self.latest().playing {
                    out.push(self.schedule(now_ms, |latest, at_ms| Playback {
                        playing: false,
                        position_ms: latest.position_at(at_ms),
                        ..latest.clone()
                    }));
                }
                out.push(self.waiting_event());
            }
        }
        Ok(out)
    }

    /// `member`'s player is ready again. If the group waited for it, it no
    /// longer does (and resumes if no one else is left to wait for). A
    /// member not buffering changes nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] for a bad time; [`ErrorCode::NotFound`]
    /// when `member` is not in the room.
    pub fn ready(&mut self, member: MemberId, now_ms: f64) -> Result<Vec<Outgoing>, RoomError> {
        self.check_now(now_ms)?;
        self.check_member(member, "ready report")?;
        self.advance(now_ms);
        let mut out = Vec::new();
        let Some(m) = self.members.get_mut(&member) else {
            return Ok(out);
        };
        if m.buffering.take().is_none() {
            return Ok(out);
        }
        out.push(Outgoing {
            to: Recipients::All,
            event: RoomEvent::MemberUpdated(member_info(member, m)),
        });
        self.stop_waiting_for(&[member], now_ms, &mut out);
        Ok(out)
    }

    /// Changes the buffering policy (see the module docs for when it takes
    /// effect).
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] for a bad time or a timeout that is not
    /// a finite number >= 0.
    pub fn set_policy(
        &mut self,
        policy: BufferingPolicy,
        now_ms: f64,
    ) -> Result<Vec<Outgoing>, RoomError> {
        self.check_now(now_ms)?;
        validate_policy(policy)?;
        self.advance(now_ms);
        self.config.buffering = policy;
        let mut out = Vec::new();
        if policy == BufferingPolicy::Ignore {
            let all: Vec<MemberId> = self.waiting.keys().copied().collect();
            self.stop_waiting_for(&all, now_ms, &mut out);
        }
        Ok(out)
    }

    /// Fires what is due at `now_ms`: members still buffering at their
    /// deadline leave the wait list (and the group resumes without them if
    /// no one else is left). Call it at [`Room::next_deadline`].
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] for a bad time.
    pub fn tick(&mut self, now_ms: f64) -> Result<Vec<Outgoing>, RoomError> {
        self.check_now(now_ms)?;
        self.advance(now_ms);
        let expired: Vec<MemberId> = self
            .waiting
            .iter()
            .filter(|(_, &deadline)| deadline <= now_ms)
            .map(|(&id, _)| id)
            .collect();
        for id in &expired {
            if let Some(b) = self.members.get_mut(id).and_then(|m| m.buffering.as_mut()) {
                b.given_up = true;
            }
        }
        let mut out = Vec::new();
        self.stop_waiting_for(&expired, now_ms, &mut out);
        Ok(out)
    }

    // ---- commands -----------------------------------------------------

    /// Checks `request` from `member` and, if it passes, applies it and
    /// schedules the change for everyone (see the module docs for the
    /// checks, their order and every effect).
    ///
    /// # Errors
    ///
    /// The first check that fails, with the room unchanged:
    /// [`ErrorCode::InvalidValue`], [`ErrorCode::NotFound`],
    /// [`ErrorCode::Forbidden`], [`ErrorCode::Stale`] or
    /// [`ErrorCode::RateLimited`].
    pub fn command(
        &mut self,
        permissions: &dyn Permissions,
        member: MemberId,
        request: CommandRequest,
        now_ms: f64,
    ) -> Result<Vec<Outgoing>, RoomError> {
        self.check_now(now_ms)?;
        let CommandRequest {
            command,
            based_on_seq,
        } = request;
        let kind = CommandKind::of(&command);
        let role = self
            .members
            .get(&member)
            .map(|m| &m.role)
            .ok_or_else(|| not_a_member(member, kind.name()))?;
        if !permissions.allows(member, role, &command) {
            return Err(RoomError::new(
                ErrorCode::Forbidden,
                format!("{kind} by {member} refused: role {role} may not {kind}"),
            ));
        }
        validate_values(&command, member)?;
        if based_on_seq > self.seq {
            return Err(RoomError::invalid(format!(
                "{kind} by {member} refused: based on seq {based_on_seq}, but the room is at {}",
                self.seq
            )));
        }
        if kind.is_position_changing() && based_on_seq < self.position_seq {
            return Err(RoomError::new(
                ErrorCode::Stale,
                format!(
                    "{kind} by {member} refused: based on seq {based_on_seq}, older than the seek or load at seq {}",
                    self.position_seq
                ),
            ));
        }
        self.check_room_state(&command, kind, member, now_ms)?;

        // Everything is checked; from here on nothing fails.
        self.advance(now_ms);
        let mut out = Vec::new();
        match command {
            Command::Play => self.play(now_ms, &mut out),
            Command::Pause => {
                if self.latest().playing {
                    out.push(self.schedule(now_ms, |latest, at_ms| Playback {
                        playing: false,
                        position_ms: latest.position_at(at_ms),
                        ..latest.clone()
                    }));
                } else if !self.waiting.is_empty() {
                    self.waiting.clear();
                    out.push(self.waiting_event());
                }
            }
            Command::Seek { position_ms } => {
                // `+ 0.0` turns a -0.0 into 0.0.
                let position_ms = position_ms + 0.0;
                let lead = self.seek_lead_ms(now_ms);
                out.push(self.schedule_with(now_ms, lead, |latest, _| Playback {
                    position_ms,
                    ..latest.clone()
                }));
                self.position_seq = self.seq;
            }
            Command::SetRate { rate } => {
                if self.latest().rate != rate {
                    out.push(self.schedule(now_ms, |latest, at_ms| Playback {
                        position_ms: latest.position_at(at_ms),
                        rate,
                        ..latest.clone()
                    }));
                }
            }
            Command::Load { media } => {
                if !self.waiting.is_empty() {
                    self.waiting.clear();
                    out.push(self.waiting_event());
                }
                out.push(self.schedule(now_ms, |latest, _| Playback {
                    media: Some(media),
                    playing: false,
                    position_ms: 0.0,
                    ..latest.clone()
                }));
                self.position_seq = self.seq;
            }
            Command::QueueAdd { media } => {
                let id = self.next_item_id;
                self.next_item_id = self.next_item_id.saturating_add(1);
                self.queue.push(QueueItem { id, media });
                out.push(self.queue_changed());
            }
            Command::QueueRemove { item } => {
                if let Some(index) = self.queue_index(item) {
                    self.queue.remove(index);
                    out.push(self.queue_changed());
                }
            }
            Command::QueueReorder { item, to } => {
                if let Some(from) = self.queue_index(item) {
                    let to = to.min(self.queue.len().saturating_sub(1));
                    if from != to {
                        let moved = self.queue.remove(from);
                        self.queue.insert(to, moved);
                        out.push(self.queue_changed());
                    }
                }
            }
        }
        Ok(out)
    }

    /// The media playing has reached its end, at `end_ms` on its own
    /// timeline (its duration): the room moves on to the first item of the
    /// queue, loaded and playing, and the item leaves the queue; with an
    /// empty queue it stops there, paused at `end_ms`, so that every player
    /// shows the last frame (rather than each one's player deciding what
    /// its end means). Nothing happens when the latest state is not `ended`
    /// playing (someone loaded something else or paused meanwhile: that
    /// change wins).
    ///
    /// The server calls this at the time the media ends on the room's
    /// timeline, which it knows from the media's duration.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] for a bad time or end.
    pub fn play_next(
        &mut self,
        ended: &str,
        end_ms: f64,
        now_ms: f64,
    ) -> Result<Vec<Outgoing>, RoomError> {
        self.check_now(now_ms)?;
        if !(0.0..=MAX_TIME_MS).contains(&end_ms) {
            return Err(RoomError::invalid(format!(
                "end {end_ms} ms is not within 0..={MAX_TIME_MS}"
            )));
        }
        let latest = self.latest();
        if !latest.playing || latest.media.as_deref() != Some(ended) {
            return Ok(Vec::new());
        }
        self.advance(now_ms);
        let mut out = Vec::new();
        if !self.waiting.is_empty() {
            self.waiting.clear();
            out.push(self.waiting_event());
        }
        if self.queue.is_empty() {
            out.push(self.schedule(now_ms, |latest, _| Playback {
                playing: false,
                position_ms: end_ms,
                ..latest.clone()
            }));
            return Ok(out);
        }
        let next = self.queue.remove(0);
        out.insert(0, self.queue_changed());
        out.push(self.schedule(now_ms, |latest, _| Playback {
            media: Some(next.media),
            playing: true,
            position_ms: 0.0,
            ..latest.clone()
        }));
        self.position_seq = self.seq;
        Ok(out)
    }

    // ---- internals ----------------------------------------------------

    fn check_now(&self, now_ms: f64) -> Result<(), RoomError> {
        if !(0.0..=MAX_TIME_MS).contains(&now_ms) {
            return Err(RoomError::invalid(format!(
                "server time {now_ms} ms is not within 0..={MAX_TIME_MS}"
            )));
        }
        match self.last_now_ms {
            Some(last) if now_ms < last => Err(RoomError::invalid(format!(
                "server time {now_ms} ms is before the room's latest time {last} ms"
            ))),
            _ => Ok(()),
        }
    }

    fn check_member(&self, member: MemberId, doing: &str) -> Result<(), RoomError> {
        if self.members.contains_key(&member) {
            Ok(())
        } else {
            Err(not_a_member(member, doing))
        }
    }

    fn clamp_query_time(&self, now_ms: f64) -> f64 {
        match self.last_now_ms {
            Some(last) if now_ms.is_nan() || now_ms < last => last,
            _ => now_ms,
        }
    }

    /// The checks of step 7 (module docs): those that depend on the room.
    fn check_room_state(
        &self,
        command: &Command,
        kind: CommandKind,
        member: MemberId,
        now_ms: f64,
    ) -> Result<(), RoomError> {
        match command {
            Command::Play | Command::Seek { .. } if self.latest().media.is_none() => {
                return Err(RoomError::invalid(format!(
                    "{kind} by {member} refused: nothing is loaded"
                )));
            }
            Command::QueueAdd { .. } if self.queue.len() >= self.config.max_queue_len => {
                return Err(RoomError::invalid(format!(
                    "{kind} by {member} refused: the queue is full ({} items)",
                    self.config.max_queue_len
                )));
            }
            Command::QueueRemove { item } | Command::QueueReorder { item, .. }
                if self.queue_index(*item).is_none() =>
            {
                return Err(RoomError::new(
                    ErrorCode::NotFound,
                    format!("{kind} by {member} refused: no queue item {item}"),
                ));
            }
            _ => {}
        }
        if kind.is_playback() {
            let ahead = self.pending.iter().filter(|p| p.at_ms > now_ms).count();
            if ahead >= self.config.max_pending {
                return Err(RoomError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "{kind} by {member} refused: {ahead} changes are already scheduled ahead"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Accepts `now_ms` as the room's time and moves every state due by
    /// then from pending to in force. Only called once a call is known to
    /// succeed.
    fn advance(&mut self, now_ms: f64) {
        self.last_now_ms = Some(now_ms);
        let due = self.pending.partition_point(|p| p.at_ms <= now_ms);
        if let Some(last_due) = self.pending.drain(..due).next_back() {
            self.current = last_due;
        }
    }

    /// Schedules the state `next(latest, at_ms)` for everyone (module docs,
    /// "Scheduling"); `at_ms` and `seq` are filled in here.
    fn schedule(&mut self, now_ms: f64, next: impl FnOnce(&Playback, f64) -> Playback) -> Outgoing {
        let lead = self.lead_ms(now_ms);
        self.schedule_with(now_ms, lead, next)
    }

    /// [`Room::schedule`] with a given lead.
    fn schedule_with(
        &mut self,
        now_ms: f64,
        lead_ms: f64,
        next: impl FnOnce(&Playback, f64) -> Playback,
    ) -> Outgoing {
        let latest = self.latest();
        let at_ms = (now_ms + lead_ms).max(latest.at_ms);
        let mut playback = next(latest, at_ms);
        playback.at_ms = at_ms;
        // Saturating: 2^64 changes will not happen, and a panic must not.
        self.seq = self.seq.saturating_add(1);
        playback.seq = self.seq;
        if self.pending.last().is_some_and(|p| p.at_ms == at_ms) {
            self.pending.pop();
        }
        self.pending.push(playback.clone());
        self.remember(RoomEvent::Scheduled(playback.clone()));
        Outgoing {
            to: Recipients::All,
            event: RoomEvent::Scheduled(playback),
        }
    }

    fn play(&mut self, now_ms: f64, out: &mut Vec<Outgoing>) {
        if self.wants_to_play() {
            return;
        }
        if self.config.start_ahead_ms > 0.0 {
            // Start together: wait for the members that have reported too
            // little buffered ahead (or are buffering), at most the start
            // timeout.
            let threshold = self.config.start_ahead_ms;
            let deadline = now_ms + self.config.start_timeout_ms;
            self.waiting = self
                .members
                .iter()
                .filter(|(_, m)| {
                    m.buffering.is_some_and(|b| !b.given_up)
                        || m.buffered_ahead_ms.is_some_and(|a| a < threshold)
                })
                .map(|(&id, _)| (id, deadline))
                .collect();
            if !self.waiting.is_empty() {
                out.push(self.waiting_event());
                return;
            }
        }
        if let BufferingPolicy::WaitForAll { timeout_ms } = self.config.buffering {
            let deadline = now_ms + timeout_ms;
            self.waiting = self
                .members
                .iter()
                .filter(|(_, m)| m.buffering.is_some_and(|b| !b.given_up))
                .map(|(&id, _)| (id, deadline))
                .collect();
            if !self.waiting.is_empty() {
                out.push(self.waiting_event());
                return;
            }
        }
        out.push(self.resume_group(now_ms));
    }

    fn resume_group(&mut self, now_ms: f64) -> Outgoing {
        self.schedule(now_ms, |latest, at_ms| Playback {
            playing: true,
            position_ms: latest.position_at(at_ms),
            ..latest.clone()
        })
    }

    /// Takes `members` off the wait list; publishes the list if it changed
    /// and resumes the group if no one is left to wait for.
    fn stop_waiting_for(&mut self, members: &[MemberId], now_ms: f64, out: &mut Vec<Outgoing>) {
        let before = self.waiting.len();
        for id in members {
            self.waiting.remove(id);
        }
        if self.waiting.len() == before {
            return;
        }
        out.push(self.waiting_event());
        // The list was not empty, so the group wanted to play, and was
        // paused for the wait: resume it.
        if self.waiting.is_empty() {
            out.push(self.resume_group(now_ms));
        }
    }

    fn waiting_event(&self) -> Outgoing {
        Outgoing {
            to: Recipients::All,
            event: RoomEvent::Waiting {
                members: self.waiting_list(),
            },
        }
    }

    fn queue_changed(&mut self) -> Outgoing {
        self.seq = self.seq.saturating_add(1);
        let event = RoomEvent::QueueChanged {
            seq: self.seq,
            items: self.queue.clone(),
        };
        self.remember(event.clone());
        Outgoing {
            to: Recipients::All,
            event,
        }
    }

    fn queue_index(&self, item: u64) -> Option<usize> {
        self.queue.iter().position(|q| q.id == item)
    }
}

/// The `seq` of a change event (a state or a queue change).
fn event_seq(event: &RoomEvent) -> Option<u64> {
    match event {
        RoomEvent::Scheduled(p) => Some(p.seq),
        RoomEvent::QueueChanged { seq, .. } => Some(*seq),
        _ => None,
    }
}

fn member_info(id: MemberId, member: &Member) -> MemberInfo {
    MemberInfo {
        id,
        role: member.role.clone(),
        joined_at_ms: member.joined_at_ms,
        buffering_since_ms: member.buffering.map(|b| b.since_ms),
    }
}

fn not_a_member(member: MemberId, doing: &str) -> RoomError {
    RoomError::new(
        ErrorCode::NotFound,
        format!("{doing} by {member} refused: not in the room"),
    )
}

/// Step 4 of the command checks: values alone, without the room.
fn validate_values(command: &Command, member: MemberId) -> Result<(), RoomError> {
    let kind = CommandKind::of(command);
    match command {
        Command::Seek { position_ms } if !(0.0..=MAX_TIME_MS).contains(position_ms) => {
            Err(RoomError::invalid(format!(
                "{kind} by {member} refused: position {position_ms} ms is not within 0..={MAX_TIME_MS}"
            )))
        }
        Command::SetRate { rate } if !(MIN_RATE..=MAX_RATE).contains(rate) => {
            Err(RoomError::invalid(format!(
                "{kind} by {member} refused: rate {rate} is not within {MIN_RATE}..={MAX_RATE}"
            )))
        }
        Command::Load { media } | Command::QueueAdd { media } => validate_media(media)
            .map_err(|why| RoomError::invalid(format!("{kind} by {member} refused: {why}"))),
        _ => Ok(()),
    }
}

fn validate_media(media: &str) -> Result<(), String> {
    if media.is_empty() {
        return Err("the media id is empty".into());
    }
    if media.len() > MAX_MEDIA_LEN {
        return Err(format!(
            "the media id is {} bytes, more than {MAX_MEDIA_LEN}",
            media.len()
        ));
    }
    if media.chars().any(char::is_control) {
        return Err("the media id contains a control character".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MemberId = MemberId(1);
    const B: MemberId = MemberId(2);

    fn req(command: Command, room: &Room) -> CommandRequest {
        CommandRequest {
            command,
            based_on_seq: room.seq(),
        }
    }

    fn loaded_room() -> Room {
        let mut room = Room::default();
        room.join(A, Role::owner(), 0.0).unwrap();
        let load = req(Command::Load { media: "v".into() }, &room);
        room.command(&AllowAll, A, load, 0.0).unwrap();
        room
    }

    #[test]
    fn due_states_move_from_pending_to_in_force() {
        let mut room = loaded_room();
        room.command(&AllowAll, A, req(Command::Play, &room), 1_000.0)
            .unwrap();
        assert_eq!(room.pending.len(), 1);
        assert!(!room.current.playing);
        assert!(room.playback_at(1_100.0).playing, "in force as a query");
        room.tick(1_100.0).unwrap();
        assert!(room.pending.is_empty());
        assert!(room.current.playing);
        assert_eq!(room.current.at_ms, 1_100.0);
    }

    #[test]
    fn a_state_at_the_same_instant_replaces_the_pending_one() {
        let mut room = loaded_room();
        room.command(&AllowAll, A, req(Command::Play, &room), 1_000.0)
            .unwrap();
        // The same instant and lead: both land at 1100.
        room.command(&AllowAll, A, req(Command::Pause, &room), 1_000.0)
            .unwrap();
        assert_eq!(room.pending.len(), 1);
        assert!(!room.latest().playing);
        assert_eq!(room.latest().position_ms, 0.0);
        assert_eq!(room.latest().seq, room.seq());
    }

    #[test]
    fn a_later_state_never_lands_before_an_earlier_one() {
        let mut room = loaded_room();
        room.join(B, Role::member(), 0.0).unwrap();
        room.report(B, 900.0, 0.0).unwrap();
        room.command(&AllowAll, A, req(Command::Play, &room), 1_000.0)
            .unwrap();
        assert_eq!(room.latest().at_ms, 2_000.0);
        room.leave(B, 1_010.0).unwrap();
        assert_eq!(room.lead_ms(1_010.0), 100.0, "the slow member left");
        room.command(&AllowAll, A, req(Command::Pause, &room), 1_010.0)
            .unwrap();
        assert_eq!(room.latest().at_ms, 2_000.0, "not 1110: after the play");
    }

    #[test]
    fn stale_delay_estimates_do_not_count() {
        let mut room = Room::default();
        room.join(A, Role::owner(), 0.0).unwrap();
        room.report(A, 500.0, 0.0).unwrap();
        assert_eq!(room.lead_ms(30_000.0), 600.0);
        assert_eq!(room.lead_ms(30_001.0), 100.0);
    }

    #[test]
    fn the_lead_is_clamped() {
        let mut room = Room::default();
        room.join(A, Role::owner(), 0.0).unwrap();
        room.report(A, 5_000.0, 0.0).unwrap();
        assert_eq!(room.lead_ms(0.0), 2_000.0);
        let config = RoomConfig {
            margin_ms: 0.0,
            min_lead_ms: 40.0,
            ..RoomConfig::default()
        };
        let room = Room::new(config).unwrap();
        assert_eq!(room.lead_ms(0.0), 40.0);
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = [
            RoomConfig {
                margin_ms: f64::NAN,
                ..RoomConfig::default()
            },
            RoomConfig {
                min_lead_ms: -1.0,
                ..RoomConfig::default()
            },
            RoomConfig {
                min_lead_ms: 500.0,
                max_lead_ms: 400.0,
                ..RoomConfig::default()
            },
            RoomConfig {
                max_lead_ms: f64::INFINITY,
                ..RoomConfig::default()
            },
            RoomConfig {
                max_pending: 0,
                ..RoomConfig::default()
            },
            RoomConfig {
                buffering: BufferingPolicy::WaitForAll {
                    timeout_ms: f64::NAN,
                },
                ..RoomConfig::default()
            },
        ];
        for config in bad {
            let err = Room::new(config.clone()).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidValue, "{config:?}");
        }
        assert!(Room::new(RoomConfig::default()).is_ok());
    }

    #[test]
    fn the_standard_table_grants_by_role() {
        let table = RoleTable::standard();
        for kind in CommandKind::ALL {
            assert!(table.allows_kind(&Role::owner(), kind));
            assert!(table.allows_kind(&Role::moderator(), kind));
            assert!(!table.allows_kind(&Role::viewer(), kind));
            assert!(!table.allows_kind(&Role::new("nobody"), kind));
        }
        assert!(table.allows_kind(&Role::member(), CommandKind::Seek));
        assert!(table.allows_kind(&Role::member(), CommandKind::QueueAdd));
        assert!(!table.allows_kind(&Role::member(), CommandKind::Load));
        assert!(!table.allows_kind(&Role::member(), CommandKind::QueueRemove));
    }

    #[test]
    fn media_ids_are_checked() {
        assert!(validate_media("video-1").is_ok());
        assert!(validate_media(&"x".repeat(MAX_MEDIA_LEN)).is_ok());
        assert!(validate_media("").is_err());
        assert!(validate_media(&"x".repeat(MAX_MEDIA_LEN + 1)).is_err());
        assert!(validate_media("a\0b").is_err());
        assert!(validate_media("a\nb").is_err());
    }

    #[test]
    fn error_messages_say_what_and_why() {
        let mut room = loaded_room();
        let err = room
            .command(
                &AllowAll,
                A,
                req(Command::SetRate { rate: 9.0 }, &room),
                1.0,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "set_rate by m1 refused: rate 9 is not within 0.25..=4 (InvalidValue)"
        );
        let err = room.leave(B, 1.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "leave by m2 refused: not in the room (NotFound)"
        );
    }

    #[test]
    fn given_up_members_are_not_waited_for_by_a_later_play() {
        let mut room = loaded_room();
        room.join(B, Role::member(), 0.0).unwrap();
        room.command(&AllowAll, A, req(Command::Play, &room), 100.0)
            .unwrap();
        room.buffering(B, 1_000.0).unwrap();
        assert_eq!(room.waiting(), vec![B]);
        room.tick(11_000.0).unwrap();
        assert!(room.waiting().is_empty());
        assert!(room.members[&B].buffering.is_some_and(|b| b.given_up));
        room.command(&AllowAll, A, req(Command::Pause, &room), 12_000.0)
            .unwrap();
        room.command(&AllowAll, A, req(Command::Play, &room), 13_000.0)
            .unwrap();
        assert!(room.waiting().is_empty());
        assert!(room.latest().playing);
        // Ready, then buffering again: a new episode, waited for again
        // (once the gap since the last group wait has passed).
        room.ready(B, 40_000.0).unwrap();
        room.buffering(B, 41_000.0).unwrap();
        assert_eq!(room.waiting(), vec![B]);
    }

    #[test]
    fn a_member_that_buffers_again_soon_does_not_pause_the_group_again() {
        let mut room = loaded_room();
        room.join(B, Role::member(), 0.0).unwrap();
        room.command(&AllowAll, A, req(Command::Play, &room), 100.0)
            .unwrap();
        room.buffering(B, 1_000.0).unwrap();
        room.ready(B, 2_000.0).unwrap();
        assert!(room.waiting().is_empty());
        let before = room.latest().clone();
        // Five seconds later: within min_wait_gap_ms (30 s).
        let out = room.buffering(B, 7_000.0).unwrap();
        assert!(room.waiting().is_empty());
        assert_eq!(room.latest(), &before, "no pause scheduled");
        assert!(out
            .iter()
            .all(|o| !matches!(o.event, RoomEvent::Scheduled(_))));
        // After the gap, it is waited for again.
        room.ready(B, 8_000.0).unwrap();
        room.buffering(B, 31_500.0).unwrap();
        assert_eq!(room.waiting(), vec![B]);
    }

    #[test]
    fn a_play_waits_until_everyone_has_enough_buffered() {
        let mut room = Room::new(RoomConfig {
            start_ahead_ms: 2_000.0,
            ..RoomConfig::default()
        })
        .unwrap();
        room.join(A, Role::owner(), 0.0).unwrap();
        room.join(B, Role::member(), 0.0).unwrap();
        let load = req(Command::Load { media: "v".into() }, &room);
        room.command(&AllowAll, A, load, 0.0).unwrap();
        room.report_buffered_ahead(A, 5_000.0, 10.0).unwrap();
        room.report_buffered_ahead(B, 500.0, 10.0).unwrap();
        room.command(&AllowAll, A, req(Command::Play, &room), 100.0)
            .unwrap();
        assert_eq!(
            room.waiting_list(),
            vec![Waited {
                member: B,
                deadline_ms: 5_100.0
            }]
        );
        assert!(!room.latest().playing);
        let out = room.report_buffered_ahead(B, 2_500.0, 900.0).unwrap();
        assert!(room.waiting().is_empty());
        assert!(room.latest().playing, "{out:?}");
    }

    #[test]
    fn a_resume_replays_what_was_missed_or_sends_a_snapshot() {
        let mut room = Room::new(RoomConfig {
            history_len: 2,
            ..RoomConfig::default()
        })
        .unwrap();
        room.join(A, Role::owner(), 0.0).unwrap();
        let load = req(Command::Load { media: "v".into() }, &room);
        room.command(&AllowAll, A, load, 0.0).unwrap();
        let seen = room.seq();
        room.command(&AllowAll, A, req(Command::Play, &room), 10.0)
            .unwrap();
        let out = room.resume(B, Role::member(), seen, 20.0).unwrap();
        let replayed: Vec<u64> = out
            .iter()
            .filter(|o| o.to == Recipients::Member(B))
            .filter_map(|o| match &o.event {
                RoomEvent::Scheduled(p) => Some(p.seq),
                _ => None,
            })
            .collect();
        assert_eq!(replayed, vec![seen + 1]);
        assert!(out
            .iter()
            .all(|o| !matches!(o.event, RoomEvent::Snapshot(_))));
        // Too far back: the history is gone, a snapshot it is.
        room.leave(B, 30.0).unwrap();
        room.command(&AllowAll, A, req(Command::Pause, &room), 40.0)
            .unwrap();
        room.command(&AllowAll, A, req(Command::Play, &room), 50.0)
            .unwrap();
        let out = room.resume(B, Role::member(), 0, 60.0).unwrap();
        assert!(out
            .iter()
            .any(|o| matches!(o.event, RoomEvent::Snapshot(_))));
        // A seq never issued is refused, the room unchanged.
        room.leave(B, 70.0).unwrap();
        let before = room.clone();
        let err = room
            .resume(B, Role::member(), room.seq() + 1, 80.0)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidValue);
        assert_eq!(room, before);
    }
}
