//! The owner's side of a room: the sync engine's [`Room`], who is in it and
//! what each member may do. It takes one input at a time ([`ToOwner`]) and
//! answers what to tell the instances ([`FromOwner`]): every member, on
//! whichever instance, sees every change in the same order.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;
use videosync_core::db::{
    Bans, Channels, Members, Messages, NewMessage, Permission, PermissionMatrix, Videos,
};
use videosync_core::{ChannelId, ErrorKind, UserId, VideoId, VideoStatus};
use videosync_sync::protocol::{
    encode, server_messages, snapshot_messages, Cause, ClientMessage, ProtocolError, RoomPolicy,
    ServerMessage, Stamped, MAX_MEMBERS,
};
use videosync_sync::room::{
    AllowAll, CommandRequest, Durable, Outgoing, Recipients, Role, Room, RoomError, RoomEvent,
};
use videosync_sync::state::{Command, ErrorCode, MemberId};

use super::mentions::mentions;
use super::room::Bucket;
use super::settings::RoomSettings;
use super::wire::{ChatChange, FromOwner, Identity, Join, To, ToOwner};
use super::{close, mono_now, ServerClock};
use crate::policy::{access, Access, Who};
use crate::state::AppState;

#[derive(Debug)]
struct Member {
    /// The latest measured sync error and round trip, ms.
    sync: Option<(f64, f64)>,
    /// What others were last told of it, and when.
    announced: Option<((f64, f64), Instant)>,
    conn: u64,
    identity: Identity,
    who: Who,
    name: String,
    access: Access,
    label: String,
    chat: Bucket,
    /// When its last chat message was taken (for slow mode).
    last_chat: Option<Instant>,
    /// Until when it is typing, unless it says so again.
    typing_until: Option<Instant>,
}

/// The channel's rules, as the database and the key-value store have them:
/// loaded on the first join and again on every change of the channel.
#[derive(Debug, Clone)]
struct Rules {
    matrix: PermissionMatrix,
    settings: RoomSettings,
    /// Users muted now, with when each mute ends (server time, ms).
    muted: HashMap<UserId, f64>,
}

/// A member that left recently, so a reconnect resumes its id.
#[derive(Debug)]
struct Departed {
    identity: Identity,
    name: String,
    until: Instant,
}

/// How often at most a member's measured sync is announced.
const SYNC_ANNOUNCE_EVERY: Duration = Duration::from_secs(2);
/// How far its sync error must move to be announced again, ms.
const SYNC_ANNOUNCE_ERROR_MS: f64 = 50.0;

/// How long `typing` holds unless the member says so again (the protocol's
/// lease; clients repeat it every 3 s).
const TYPING_HOLDS: Duration = Duration::from_secs(6);

/// How many of the latest chat frames an owner keeps to catch members up.
const RECENT_CHAT: usize = 256;

/// How long a departed member's id is kept for its reconnect.
const RESUME_WINDOW: Duration = Duration::from_secs(120);

/// How long the record of whose a member id is outlives its join, for a
/// resume on another owner.
const IDENTITY_TTL: Duration = Duration::from_secs(24 * 3600);

/// The owner's room.
#[derive(Debug)]
pub(crate) struct Engine {
    app: AppState,
    channel: ChannelId,
    clock: ServerClock,
    room: Room,
    rules: Option<Rules>,
    members: HashMap<MemberId, Member>,
    departed: HashMap<MemberId, Departed>,
    last_now: f64,
    out: Vec<FromOwner>,
    /// The latest chat frames, for members whose instance missed some.
    recent_chat: std::collections::VecDeque<(u64, String)>,
    /// Durations of the videos loaded or queued, ms (for playing the
    /// queue on at the end).
    durations: HashMap<String, f64>,
}

impl Engine {
    /// A room carrying on from `durable` (or a fresh one).
    pub(crate) fn new(app: AppState, channel: ChannelId, durable: Option<Durable>) -> Self {
        let clock = app.realtime.clock();
        let room = durable
            .and_then(|d| Room::restore(d).ok())
            .unwrap_or_default();
        let last_now = room.durable().last_now_ms.unwrap_or(0.0);
        Engine {
            app,
            channel,
            clock,
            room,
            rules: None,
            members: HashMap::new(),
            departed: HashMap::new(),
            last_now,
            out: Vec::new(),
            recent_chat: std::collections::VecDeque::new(),
            durations: HashMap::new(),
        }
    }

    /// What the room needs to carry on elsewhere.
    pub(crate) fn durable(&self) -> Durable {
        self.room.durable()
    }

    /// The room's change counter.
    pub(crate) fn seq(&self) -> u64 {
        self.room.seq()
    }

    /// Whether anyone, on any instance, is in the room.
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether there is something to tell the instances.
    pub(crate) fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// What to tell the instances since the last call.
    pub(crate) fn take_output(&mut self) -> Vec<FromOwner> {
        std::mem::take(&mut self.out)
    }

    /// Server time now, never before the previous call's (nor the time a
    /// restored room last saw).
    fn now(&mut self) -> f64 {
        self.last_now = self.clock.now_ms().max(self.last_now);
        self.last_now
    }

    fn name_of(&self, id: MemberId) -> String {
        self.members
            .get(&id)
            .map(|p| p.name.clone())
            .or_else(|| self.departed.get(&id).map(|d| d.name.clone()))
            .unwrap_or_else(|| format!("member {id}"))
    }

    fn policy(&self) -> RoomPolicy {
        RoomPolicy::of(self.room.config())
    }

    // ------------------------------------------------------------ output

    fn deliver(&mut self, to: To, msg: ServerMessage, droppable: bool) {
        let now = self.now();
        let chat = match &msg {
            ServerMessage::Chat { id, .. } => *id,
            _ => None,
        };
        let text = encode(&Stamped::new(now, msg));
        if let (Some(id), To::All) = (chat, to) {
            if self.recent_chat.len() == RECENT_CHAT {
                self.recent_chat.pop_front();
            }
            self.recent_chat.push_back((id, text.clone()));
        }
        self.out.push(FromOwner::Deliver {
            to,
            text,
            droppable,
            seq: self.room.seq(),
            chat,
        });
    }

    fn reply_error(&mut self, member: MemberId, err: ProtocolError) {
        self.deliver(To::Member(member), err.to_message(), false);
    }

    /// Sends what the room said, naming `cause` in the states a command
    /// produced. Presence may be dropped for a slow client; the rest not.
    fn fan_out(&mut self, out: Vec<Outgoing>, cause: Option<Cause>) {
        let policy = self.policy();
        for o in out {
            let droppable = matches!(
                o.event,
                RoomEvent::MemberJoined(_) | RoomEvent::MemberLeft(_) | RoomEvent::MemberUpdated(_)
            );
            let messages = server_messages(&o.event, policy, &|id| self.name_of(id));
            for mut m in messages {
                if let (ServerMessage::State { cause: c, .. }, Some(cause)) = (&mut m, cause) {
                    *c = Some(cause);
                }
                self.with_sync(&mut m);
                self.deliver(To::from(o.to), m, droppable);
            }
        }
    }

    /// Takes `member` out of the room and tells the others.
    fn remove(&mut self, member: MemberId) {
        self.stop_typing(member);
        let now = self.now();
        let out = self.room.leave(member, now).unwrap_or_default();
        if let Some(m) = self.members.remove(&member) {
            self.departed.insert(
                member,
                Departed {
                    identity: m.identity,
                    name: m.name,
                    until: mono_now() + RESUME_WINDOW,
                },
            );
        }
        self.fan_out(out, None);
    }

    /// Closes `member`'s connection with `code` and takes it out.
    fn close_member(&mut self, member: MemberId, code: u16, reason: &str) {
        if let Some(m) = self.members.get(&member) {
            self.out.push(FromOwner::Close {
                member,
                conn: m.conn,
                code,
                reason: reason.to_owned(),
            });
            self.remove(member);
        }
    }

    // ------------------------------------------------------------ inputs

    pub(crate) async fn handle(&mut self, input: ToOwner) {
        match input {
            ToOwner::Join(join) => self.join(*join).await,
            ToOwner::Frame {
                member,
                conn,
                msg,
                sent_ms,
                received_ms,
            } => {
                if self.members.get(&member).is_some_and(|m| m.conn == conn) {
                    self.frame(member, msg, sent_ms, received_ms).await;
                }
            }
            ToOwner::Leave { member, conn } => {
                if self.members.get(&member).is_some_and(|m| m.conn == conn) {
                    self.remove(member);
                }
            }
            ToOwner::Resync {
                members,
                token,
                after_chat,
            } => {
                let now = self.now();
                let snapshot = self.room.snapshot(now);
                let policy = self.policy();
                for member in members {
                    if self.members.contains_key(&member) {
                        let event = RoomEvent::Snapshot(snapshot.clone());
                        for mut m in server_messages(&event, policy, &|id| self.name_of(id)) {
                            self.with_sync(&mut m);
                            self.deliver(To::Member(member), m, false);
                        }
                        // The chat they may have missed, as it was sent.
                        for (id, text) in &self.recent_chat {
                            if *id > after_chat {
                                self.out.push(FromOwner::Deliver {
                                    to: To::Member(member),
                                    text: text.clone(),
                                    droppable: false,
                                    seq: self.room.seq(),
                                    chat: Some(*id),
                                });
                            }
                        }
                    }
                }
                self.out.push(FromOwner::Resynced { token });
            }
            ToOwner::Refresh => self.refresh().await,
            ToOwner::Chat(change) => {
                let msg = match change {
                    ChatChange::Edited { id, text } => ServerMessage::ChatEdited { id, text },
                    ChatChange::Deleted { id } => ServerMessage::ChatDeleted { id },
                };
                self.deliver(To::All, msg, false);
            }
            ToOwner::Kick(user) => {
                let kicked: Vec<MemberId> = self
                    .members
                    .iter()
                    .filter(|(_, m)| m.identity == Identity::User(user))
                    .map(|(id, _)| *id)
                    .collect();
                for member in kicked {
                    self.close_member(
                        member,
                        close::FORBIDDEN,
                        "you were removed from the channel",
                    );
                }
                self.refresh().await;
            }
        }
    }

    /// Loads the channel's rules unless they are loaded; `None` when the
    /// channel is gone or a store does not answer.
    async fn rules(&mut self) -> Option<()> {
        if self.rules.is_some() {
            return Some(());
        }
        let mut tx = self.app.backends.db.read().await.ok()?;
        let channel = tx.channel(self.channel).await.ok()?;
        let matrix = tx.permissions(self.channel).await.ok()?;
        tx.commit().await.ok()?;
        let muted = super::mutes::muted(&self.app, self.channel)
            .await
            .ok()?
            .into_iter()
            .map(|(user, until)| (user, until.as_millis() as f64))
            .collect();
        let settings = RoomSettings::of(&channel.settings);
        self.rules = Some(Rules {
            matrix,
            settings,
            muted,
        });
        self.apply_settings(settings);
        Some(())
    }

    /// Puts the channel's policy for members who fall behind in force; the
    /// members see it in a fresh snapshot.
    fn apply_settings(&mut self, settings: RoomSettings) {
        let policy = settings.buffering();
        if self.room.config().buffering == policy {
            return;
        }
        let now = self.now();
        let Ok(out) = self.room.set_policy(policy, now) else {
            return;
        };
        self.fan_out(out, None);
        if !self.members.is_empty() {
            let snapshot = self.room.snapshot(now);
            let event = RoomEvent::Snapshot(snapshot);
            let policy = self.policy();
            for mut m in server_messages(&event, policy, &|id| self.name_of(id)) {
                self.with_sync(&mut m);
                self.deliver(To::All, m, false);
            }
        }
    }

    /// The caller's access now (from the database), or `None` when the
    /// channel is gone or the database does not answer.
    async fn access_of(&self, identity: &Identity, who: Who) -> Option<Access> {
        let mut tx = self.app.backends.db.read().await.ok()?;
        let channel = tx.channel(self.channel).await.ok()?;
        let (role, banned) = match identity {
            Identity::User(u) => (
                tx.member(self.channel, *u).await.ok()?.map(|m| m.role),
                tx.ban_of(self.channel, *u).await.ok()?.is_some(),
            ),
            Identity::Guest(_) => (None, false),
        };
        tx.commit().await.ok()?;
        Some(access(&channel, who, role, banned))
    }

    fn refuse(&mut self, conn: u64, err: ProtocolError, code: u16) {
        let now = self.now();
        self.out.push(FromOwner::Refused {
            conn,
            text: encode(&Stamped::new(now, err.to_message())),
            code,
        });
    }

    async fn join(&mut self, j: Join) {
        // The same connection asking again (its instance re-sent the join
        // when a new owner announced itself): it is in already.
        if let Some((&member, _)) = self.members.iter().find(|(_, m)| m.conn == j.conn) {
            self.out.push(FromOwner::Joined {
                conn: j.conn,
                member,
            });
            return;
        }
        let unavailable =
            || ProtocolError::new(ErrorCode::Unavailable, "the channel could not be loaded");
        let Some(access) = self.access_of(&j.identity, j.who).await else {
            return self.refuse(j.conn, unavailable(), 1011);
        };
        if let Some(why) = admission(&access, j.who) {
            return self.refuse(
                j.conn,
                ProtocolError::new(ErrorCode::Forbidden, why),
                close::FORBIDDEN,
            );
        }
        if self.rules().await.is_none() {
            return self.refuse(j.conn, unavailable(), 1011);
        }
        // The member id: the one it resumes, when it is this identity's
        // (as this owner knows it, or as an earlier owner recorded it).
        let resumed = match j.resume {
            Some(r) => {
                let known = self
                    .members
                    .get(&r.member)
                    .map(|m| m.identity == j.identity)
                    .or_else(|| {
                        self.departed
                            .get(&r.member)
                            .map(|d| d.identity == j.identity)
                    });
                let same = match known {
                    Some(same) => same,
                    None if j.rejoin => true,
                    None => self.recorded_identity(r.member).await.as_ref() == Some(&j.identity),
                };
                same.then_some(r)
            }
            None => None,
        };
        if let Some(r) = resumed {
            match self.members.get(&r.member) {
                // The same connection joining again (a rejoin repeated).
                Some(m) if m.conn == j.conn => {
                    self.out.push(FromOwner::Joined {
                        conn: j.conn,
                        member: r.member,
                    });
                    return;
                }
                Some(_) => {
                    self.close_member(
                        r.member,
                        close::REPLACED,
                        "the member connected again elsewhere",
                    );
                }
                None => {}
            }
        } else if self.members.len() >= MAX_MEMBERS {
            return self.refuse(
                j.conn,
                ProtocolError::new(ErrorCode::Forbidden, "the room is full"),
                close::FULL,
            );
        }
        let member = resumed.map_or(j.fresh, |r| r.member);
        let label = role_label(&access);
        let now = self.now();
        let result = match j.resume {
            Some(r) => self
                .room
                .resume(member, Role::new(label.clone()), r.last_seq, now),
            None => self.room.join(member, Role::new(label.clone()), now),
        };
        let out = match result {
            Ok(out) => out,
            Err(e) => return self.refuse(j.conn, room_error(e, None), close::PROTOCOL),
        };
        let settings = self.app.realtime.settings();
        let chat = Bucket::new(
            f64::from(settings.chat_burst),
            f64::from(settings.chat_per_minute) / 60.0,
        );
        self.departed.remove(&member);
        self.record_identity(member, &j.identity);
        self.members.insert(
            member,
            Member {
                sync: None,
                announced: None,
                conn: j.conn,
                identity: j.identity,
                who: j.who,
                name: j.name,
                access,
                label,
                chat,
                last_chat: None,
                typing_until: None,
            },
        );
        self.out.push(FromOwner::Joined {
            conn: j.conn,
            member,
        });
        if j.rejoin {
            self.fan_out(out, None);
        } else {
            self.welcome(member, j.version, out);
        }
    }

    fn identity_key(&self, member: MemberId) -> Option<videosync_core::kv::Key> {
        self.app
            .kv_key(&format!("room.{}.member.{member}", self.channel))
            .ok()
    }

    /// Records whose member id `member` is, so that a later owner lets
    /// only them resume it (off the room's task: a slow store must not
    /// stall the room).
    fn record_identity(&self, member: MemberId, identity: &Identity) {
        let (Some(key), Ok(body)) = (self.identity_key(member), serde_json::to_vec(identity))
        else {
            return;
        };
        let (kv, channel) = (self.app.backends.kv.clone(), self.channel);
        tokio::spawn(async move {
            let opts = videosync_core::kv::PutOptions {
                mode: videosync_core::kv::PutMode::Overwrite,
                ttl: Some(IDENTITY_TTL),
            };
            if let Err(e) = kv.put(&key, body.into(), opts).await {
                tracing::warn!(%channel, error = %e, "a member's identity could not be recorded");
            }
        });
    }

    async fn recorded_identity(&self, member: MemberId) -> Option<Identity> {
        let found = self
            .app
            .backends
            .kv
            .get(&self.identity_key(member)?)
            .await
            .ok()??;
        serde_json::from_slice(&found.value).ok()
    }

    /// The joiner's `welcome` (with the room, or without it when missed
    /// events follow), then the rest of what the join said.
    fn welcome(&mut self, member: MemberId, v: u32, out: Vec<Outgoing>) {
        let policy = self.policy();
        let (mine, others): (Vec<Outgoing>, Vec<Outgoing>) = out
            .into_iter()
            .partition(|o| o.to == Recipients::Member(member));
        let mut mine = mine.into_iter().peekable();
        let (room, pages) = match mine.peek().map(|o| &o.event) {
            Some(RoomEvent::Snapshot(s)) => {
                let (room, pages) = snapshot_messages(s, policy, &|id| self.name_of(id));
                (Some(room), pages)
            }
            _ => (None, Vec::new()),
        };
        if room.is_some() {
            mine.next();
        }
        let mut welcome = ServerMessage::Welcome { v, member, room };
        self.with_sync(&mut welcome);
        self.deliver(To::Member(member), welcome, false);
        for mut m in pages {
            self.with_sync(&mut m);
            self.deliver(To::Member(member), m, false);
        }
        let rest: Vec<Outgoing> = mine.chain(others).collect();
        self.fan_out(rest, None);
    }

    async fn frame(
        &mut self,
        member: MemberId,
        msg: ClientMessage,
        sent_ms: f64,
        received_ms: f64,
    ) {
        let now = self.now();
        match msg {
            ClientMessage::Command {
                id,
                based_on_seq,
                command,
            } => self.command(member, id, based_on_seq, command).await,
            ClientMessage::Buffering { .. } => {
                let r = self.room.buffering(member, now);
                self.apply(member, r);
            }
            ClientMessage::Ready { .. } => {
                let r = self.room.ready(member, now);
                self.apply(member, r);
            }
            ClientMessage::Report {
                position_ms,
                sampled_at_ms,
                rtt_ms,
                delay_ms,
                seek_latency_ms,
                buffered_ahead_ms,
                ..
            } => {
                // When the position was read, in server time: the frame
                // left `sent_ms - sampled_at_ms` after the read and took
                // about half the round trip to arrive.
                let read_at = received_ms - (sent_ms - sampled_at_ms) - rtt_ms / 2.0;
                let expected = self.room.playback_at(now).position_at(read_at);
                self.measured(member, position_ms - expected, rtt_ms);
                // A refused report (a value out of range) changes nothing.
                let _ = self.room.report(member, delay_ms, now);
                if let Some(ms) = seek_latency_ms {
                    let _ = self.room.report_seek_latency(member, ms, now);
                }
                if let Some(ms) = buffered_ahead_ms {
                    if let Ok(out) = self.room.report_buffered_ahead(member, ms, now) {
                        self.fan_out(out, None);
                    }
                }
            }
            ClientMessage::Chat { text } => self.chat(member, text).await,
            ClientMessage::Typing { active } => self.typing(member, active),
            ClientMessage::Reaction {
                emoji,
                at_position_ms,
            } => {
                if let Err(e) = self.may_speak(member) {
                    return self.reply_error(member, e);
                }
                if !self.take_chat_token(member) {
                    return self.reply_error(member, slow_down());
                }
                let msg = ServerMessage::Reaction {
                    member,
                    emoji,
                    at_position_ms,
                };
                self.deliver(To::All, msg, true);
            }
            // The connection answers these itself.
            ClientMessage::Hello { .. } | ClientMessage::Ping { .. } => {}
        }
    }

    /// Puts the members' measured sync and account ids into the member
    /// lists of `m`.
    fn with_sync(&self, m: &mut ServerMessage) {
        let fill = |info: &mut videosync_sync::protocol::MemberInfo| {
            let Some(m) = self.members.get(&info.id) else {
                return;
            };
            if let Some((error, rtt)) = m.sync {
                info.sync_error_ms = Some(error);
                info.rtt_ms = Some(rtt);
            }
            if let Identity::User(u) = &m.identity {
                info.account = Some(u.to_string());
            }
        };
        match m {
            ServerMessage::Presence { member, .. } => fill(member),
            ServerMessage::Snapshot(room)
            | ServerMessage::Welcome {
                room: Some(room), ..
            } => room.members.iter_mut().for_each(fill),
            ServerMessage::Members { members, .. } => members.iter_mut().for_each(fill),
            _ => {}
        }
    }

    /// Records `member`'s measured sync and tells everyone when it moved
    /// enough to matter (at most every 2 s a member; presence may be
    /// dropped for a slow client).
    fn measured(&mut self, member: MemberId, error_ms: f64, rtt_ms: f64) {
        let bound = videosync_sync::protocol::MAX_POSITION_MS;
        if !error_ms.is_finite() || !rtt_ms.is_finite() {
            return;
        }
        let error_ms = error_ms.clamp(-bound, bound);
        let now = mono_now();
        let Some(m) = self.members.get_mut(&member) else {
            return;
        };
        m.sync = Some((error_ms, rtt_ms));
        let moved = match m.announced {
            None => true,
            Some(((e, r), at)) => {
                now.duration_since(at) >= SYNC_ANNOUNCE_EVERY
                    && ((error_ms - e).abs() >= SYNC_ANNOUNCE_ERROR_MS
                        || (rtt_ms - r).abs() >= (r * 0.25).max(20.0))
            }
        };
        if !moved {
            return;
        }
        m.announced = Some(((error_ms, rtt_ms), now));
        if let Some(info) = self.room.member(member) {
            let event = RoomEvent::MemberUpdated(info);
            self.fan_out(
                vec![Outgoing {
                    to: Recipients::All,
                    event,
                }],
                None,
            );
        }
    }

    fn apply(&mut self, member: MemberId, r: Result<Vec<Outgoing>, RoomError>) {
        match r {
            Ok(out) => self.fan_out(out, None),
            Err(e) => self.reply_error(member, room_error(e, None)),
        }
    }

    fn may(&self, member: MemberId, p: Permission) -> bool {
        match (self.members.get(&member), &self.rules) {
            (Some(m), Some(rules)) => m.access.allows(&rules.matrix, p),
            _ => false,
        }
    }

    /// Whether `member` may chat, react and type now: the permission, and
    /// no mute in force.
    fn may_speak(&self, member: MemberId) -> Result<(), ProtocolError> {
        if !self.may(member, Permission::Chat) {
            return Err(may_not_chat());
        }
        let user = match self.members.get(&member).map(|m| &m.identity) {
            Some(Identity::User(u)) => *u,
            _ => return Ok(()),
        };
        let until = self
            .rules
            .as_ref()
            .and_then(|r| r.muted.get(&user))
            .copied();
        let left_ms = until.map_or(0.0, |until| until - self.clock.now_ms());
        if left_ms > 0.0 {
            return Err(ProtocolError::new(
                ErrorCode::Forbidden,
                format!(
                    "you are muted in this channel for another {}",
                    seconds_phrase(left_ms)
                ),
            ));
        }
        Ok(())
    }

    /// Slow mode: one message per member per the channel's interval;
    /// members who may moderate the chat are exempt.
    fn slow_mode_wait(&self, member: MemberId, now: Instant) -> Option<f64> {
        let every = self.rules.as_ref()?.settings.slow_mode;
        if every.is_zero() || self.may(member, Permission::ModerateChat) {
            return None;
        }
        let last = self.members.get(&member)?.last_chat?;
        let next = last + every;
        (next > now).then(|| next.duration_since(now).as_secs_f64() * 1000.0)
    }

    /// `member` starts (for [`TYPING_HOLDS`]) or stops typing; the room
    /// hears of changes only. Typing of a member who may not chat is
    /// dropped without a word (it is not worth an error frame).
    fn typing(&mut self, member: MemberId, active: bool) {
        if !active {
            return self.stop_typing(member);
        }
        if self.may_speak(member).is_err() {
            return;
        }
        let Some(m) = self.members.get_mut(&member) else {
            return;
        };
        let started = m.typing_until.is_none();
        m.typing_until = Some(mono_now() + TYPING_HOLDS);
        if started {
            self.deliver(
                To::All,
                ServerMessage::Typing {
                    member,
                    active: true,
                },
                true,
            );
        }
    }

    fn stop_typing(&mut self, member: MemberId) {
        let stopped = self
            .members
            .get_mut(&member)
            .and_then(|m| m.typing_until.take())
            .is_some();
        if stopped {
            self.deliver(
                To::All,
                ServerMessage::Typing {
                    member,
                    active: false,
                },
                true,
            );
        }
    }

    fn take_chat_token(&mut self, member: MemberId) -> bool {
        let now = mono_now();
        self.members
            .get_mut(&member)
            .is_some_and(|m| m.chat.take(now))
    }

    async fn command(&mut self, member: MemberId, id: u64, based_on_seq: u64, command: Command) {
        let needs = match command {
            Command::QueueAdd { .. }
            | Command::QueueRemove { .. }
            | Command::QueueReorder { .. } => Permission::ManageQueue,
            _ => Permission::ControlPlayback,
        };
        if !self.may(member, needs) {
            let what = crate::policy::permission_phrase(needs);
            return self.reply_error(
                member,
                ProtocolError::new(
                    ErrorCode::Forbidden,
                    format!("you may not {what} in this channel"),
                )
                .with_request_id(id),
            );
        }
        if let Command::Load { media } | Command::QueueAdd { media } = &command {
            if let Err(e) = self.check_media(media).await {
                return self.reply_error(member, e.with_request_id(id));
            }
        }
        let now = self.now();
        let request = CommandRequest {
            command,
            based_on_seq,
        };
        match self.room.command(&AllowAll, member, request, now) {
            Ok(out) => self.fan_out(
                out,
                Some(Cause {
                    by: member,
                    request_id: id,
                }),
            ),
            Err(e) => self.reply_error(member, room_error(e, Some(id))),
        }
    }

    /// A room plays this channel's ready videos only.
    async fn check_media(&mut self, media: &str) -> Result<(), ProtocolError> {
        let missing = || {
            ProtocolError::new(
                ErrorCode::NotFound,
                "no ready video of this channel has that id",
            )
        };
        let id: VideoId = media.parse().map_err(|_| missing())?;
        let mut tx = self
            .app
            .backends
            .db
            .read()
            .await
            .map_err(|_| unavailable())?;
        let video = match tx.video(id).await {
            Ok(v) => v,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(missing()),
            Err(_) => return Err(unavailable()),
        };
        let _ = tx.commit().await;
        if video.channel_id == Some(self.channel) && video.status == VideoStatus::Ready {
            // Unknown: it never ends, as far as the queue is concerned.
            let ms = video.source.as_ref().and_then(|s| s.duration_ms);
            self.durations
                .insert(media.to_owned(), ms.map_or(f64::INFINITY, |ms| ms as f64));
            Ok(())
        } else {
            Err(missing())
        }
    }

    /// Stores the message, then relays it with its number.
    async fn chat(&mut self, member: MemberId, text: String) {
        if let Err(e) = self.may_speak(member) {
            return self.reply_error(member, e);
        }
        let longest = self
            .rules
            .as_ref()
            .map_or(usize::MAX, |r| r.settings.max_message_chars);
        if text.chars().count() > longest {
            return self.reply_error(
                member,
                ProtocolError::new(
                    ErrorCode::InvalidValue,
                    format!("messages in this channel are at most {longest} characters"),
                ),
            );
        }
        let now = mono_now();
        if let Some(wait_ms) = self.slow_mode_wait(member, now) {
            let every = self
                .rules
                .as_ref()
                .map_or(0, |r| r.settings.slow_mode.as_secs());
            return self.reply_error(
                member,
                ProtocolError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "slow mode: one message every {every} s; wait another {}",
                        seconds_phrase(wait_ms)
                    ),
                ),
            );
        }
        if !self.take_chat_token(member) {
            return self.reply_error(member, slow_down());
        }
        let Some(m) = self.members.get_mut(&member) else {
            return;
        };
        m.last_chat = Some(now);
        let new = NewMessage {
            channel_id: self.channel,
            author_id: match &m.identity {
                Identity::User(u) => Some(*u),
                Identity::Guest(_) => None,
            },
            author_name: m.name.clone(),
            body: text.clone(),
        };
        let stored = async {
            let mut tx = self.app.backends.db.begin().await?;
            let m = tx.post_message(new).await?;
            tx.commit().await?;
            Ok::<_, videosync_core::Error>(m)
        }
        .await;
        match stored {
            Ok(m) => {
                self.stop_typing(member);
                let mentions = mentions(
                    &text,
                    self.members.iter().map(|(id, m)| (*id, m.name.as_str())),
                );
                let msg = ServerMessage::Chat {
                    from: member,
                    text,
                    id: Some(m.seq),
                    mentions,
                };
                self.deliver(To::All, msg, false);
            }
            Err(e) if e.kind() == ErrorKind::InvalidInput => self.reply_error(
                member,
                ProtocolError::new(ErrorCode::InvalidValue, e.to_string()),
            ),
            Err(e) => {
                tracing::warn!(channel = %self.channel, error = %e, "a chat message could not be stored");
                self.reply_error(member, unavailable());
            }
        }
    }

    /// Checks every member's rights again: those who may no longer be here
    /// are closed out (4003), changed roles are announced.
    async fn refresh(&mut self) {
        self.rules = None;
        let _ = self.rules().await;
        let members: Vec<(MemberId, Identity, Who)> = self
            .members
            .iter()
            .map(|(id, m)| (*id, m.identity.clone(), m.who))
            .collect();
        for (member, identity, who) in members {
            let Some(access) = self.access_of(&identity, who).await else {
                continue;
            };
            if let Some(why) = admission(&access, who) {
                self.close_member(member, close::FORBIDDEN, why);
                continue;
            }
            let label = role_label(&access);
            let Some(m) = self.members.get_mut(&member) else {
                continue;
            };
            m.access = access;
            if m.label != label {
                m.label = label.clone();
                let now = self.now();
                if let Ok(out) = self.room.set_role(member, Role::new(label), now) {
                    self.fan_out(out, None);
                }
            }
        }
    }

    /// When the media playing ends on the room's timeline, which it is and
    /// its duration: the queue plays on then, or the room stops on the last
    /// frame.
    fn media_end(&self) -> Option<(f64, String, f64)> {
        let latest = self.room.latest();
        let media = latest.media.as_ref()?;
        if !latest.playing {
            return None;
        }
        let duration = *self.durations.get(media).filter(|d| d.is_finite())?;
        let left = (duration - latest.position_ms).max(0.0) / latest.rate;
        Some((latest.at_ms + left, media.clone(), duration))
    }

    /// When the room next has something to do by itself (a wait deadline,
    /// the end of the media, a typing lease running out).
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let wait = self.room.next_deadline();
        let end = self.media_end().map(|(at, _, _)| at);
        let next = match (wait, end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let typing = self.members.values().filter_map(|m| m.typing_until).min();
        match (next.map(|d| self.clock.instant_at(d)), typing) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs what has come due: wait deadlines, the queue at the end of the
    /// media.
    pub(crate) async fn on_timer(&mut self) {
        let server_now = self.clock.now_ms();
        if self.room.next_deadline().is_some_and(|d| d <= server_now) {
            let now = self.now();
            if let Ok(out) = self.room.tick(now) {
                self.fan_out(out, None);
            }
        }
        if let Some((end, media, duration)) = self.media_end() {
            if end <= server_now {
                let now = self.now();
                if let Ok(out) = self.room.play_next(&media, duration, now) {
                    self.fan_out(out, None);
                }
            }
        }
        // A restored room does not know the duration of what it plays.
        let latest = self.room.latest().media.clone();
        if let Some(media) = latest.filter(|m| !self.durations.contains_key(m)) {
            if self.check_media(&media).await.is_err() {
                self.durations.insert(media, f64::INFINITY);
            }
        }
        let now = mono_now();
        self.departed.retain(|_, d| d.until > now);
        let stopped: Vec<MemberId> = self
            .members
            .iter()
            .filter(|(_, m)| m.typing_until.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for member in stopped {
            self.stop_typing(member);
        }
    }
}

/// Why someone may not be in the room, or `None` when they may.
fn admission(a: &Access, who: Who) -> Option<&'static str> {
    if a.banned {
        Some("you are banned from this channel")
    } else if !a.visible {
        Some("this channel is private; you are not a member")
    } else if who == Who::Guest && !a.guest {
        Some("this channel does not let guests in")
    } else {
        None
    }
}

/// The role label members see: the channel role, `admin` for an instance
/// administrator who is not a member, `guest`, or `visitor` for a signed-in
/// non-member of a public channel.
fn role_label(a: &Access) -> String {
    match (a.role, a.admin, a.guest) {
        (Some(role), _, _) => role.as_str().to_owned(),
        (None, true, _) => "admin".to_owned(),
        (None, false, true) => "guest".to_owned(),
        (None, false, false) => "visitor".to_owned(),
    }
}

fn room_error(e: RoomError, request_id: Option<u64>) -> ProtocolError {
    let err = ProtocolError::new(e.code, e.message);
    match request_id {
        Some(id) => err.with_request_id(id),
        None => err,
    }
}

fn unavailable() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::Unavailable,
        "the server could not do that now; try again in a few seconds",
    )
}

fn may_not_chat() -> ProtocolError {
    ProtocolError::new(ErrorCode::Forbidden, "you may not chat in this channel")
}

/// `ms` as whole seconds, rounded up: "1 s", "42 s".
fn seconds_phrase(ms: f64) -> String {
    format!("{} s", (ms / 1000.0).ceil().max(1.0))
}

fn slow_down() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::RateLimited,
        "too many messages; wait a few seconds",
    )
}
