//! One channel's room: a task that owns the sync engine's [`Room`], the
//! members' connections and their rights. Everything that changes the room
//! comes through its inbox ([`Input`]), one at a time, so every member sees
//! every change in the same order; everything it says leaves as encoded
//! frames on the members' bounded queues.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use videosync_core::db::{
    Bans, Channels, Members, Messages, NewMessage, Permission, PermissionMatrix, Videos,
};
use videosync_core::{ChannelId, ErrorKind, UserId, VideoId, VideoStatus};
use videosync_sync::protocol::{
    encode, server_messages, Cause, ClientMessage, ProtocolError, Resume, RoomPolicy, RoomSnapshot,
    ServerMessage, Stamped, MAX_MEMBERS,
};
use videosync_sync::room::{
    AllowAll, CommandRequest, Outgoing, Recipients, Role, Room, RoomError, RoomEvent,
};
use videosync_sync::state::{Command, ErrorCode, MemberId};

use super::{close, mono_now, ServerClock};
use crate::policy::{access, Access, Who};
use crate::state::AppState;

/// Why a connection is being closed: a WebSocket close code and a reason.
#[derive(Debug)]
pub(crate) struct Closer {
    token: CancellationToken,
    reason: OnceLock<(u16, String)>,
}

impl Closer {
    pub(crate) fn new() -> Arc<Closer> {
        Arc::new(Closer {
            token: CancellationToken::new(),
            reason: OnceLock::new(),
        })
    }

    /// Asks the connection to close with `code` (the first reason wins).
    pub(crate) fn close(&self, code: u16, reason: impl Into<String>) {
        let _ = self.reason.set((code, reason.into()));
        self.token.cancel();
    }

    /// Resolves once [`Closer::close`] was called.
    pub(crate) async fn closed(&self) -> (u16, String) {
        self.token.cancelled().await;
        self.reason.get().cloned().unwrap_or((1000, String::new()))
    }
}

/// Who a member is across reconnects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identity {
    User(UserId),
    Guest(String),
}

/// A connection asking to join.
#[derive(Debug)]
pub(crate) struct JoinRequest {
    pub conn: u64,
    pub tx: mpsc::Sender<Utf8Bytes>,
    pub closer: Arc<Closer>,
    pub identity: Identity,
    pub who: Who,
    pub name: String,
    pub version: u32,
    pub resume: Option<Resume>,
    /// The member id, or why not (sent to the client, then the close code).
    pub reply: oneshot::Sender<Result<MemberId, (ProtocolError, u16)>>,
}

/// What a room acts on.
#[derive(Debug)]
pub(crate) enum Input {
    /// A connection wants in.
    Join(Box<JoinRequest>),
    /// A member's message (never `hello` or `ping`: the connection handles
    /// those).
    Frame {
        member: MemberId,
        conn: u64,
        msg: ClientMessage,
    },
    /// A connection ended.
    Leave { member: MemberId, conn: u64 },
    /// Memberships, roles, bans or permissions changed: check everyone.
    Refresh,
    /// A user was removed from the channel: out of the room too.
    Kick(UserId),
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    at: Instant,
}

impl Bucket {
    pub(crate) fn new(capacity: f64, per_second: f64) -> Self {
        Bucket {
            tokens: capacity,
            capacity,
            per_second,
            at: mono_now(),
        }
    }

    /// Takes a token if there is one.
    pub(crate) fn take(&mut self) -> bool {
        let now = mono_now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Peer {
    conn: u64,
    tx: mpsc::Sender<Utf8Bytes>,
    closer: Arc<Closer>,
    identity: Identity,
    who: Who,
    name: String,
    access: Access,
    label: String,
    chat: Bucket,
}

/// A member that left recently, so a reconnect resumes its id.
#[derive(Debug)]
struct Departed {
    identity: Identity,
    name: String,
    until: Instant,
}

/// The task state of one room.
#[derive(Debug)]
pub(crate) struct RoomActor {
    app: AppState,
    channel: ChannelId,
    clock: ServerClock,
    room: Room,
    matrix: Option<PermissionMatrix>,
    peers: HashMap<MemberId, Peer>,
    departed: HashMap<MemberId, Departed>,
    next_member: u64,
    last_now: f64,
    empty_since: Option<Instant>,
    /// Members whose queue overflowed, to remove after the fan-out.
    evict: Vec<MemberId>,
}

/// How long a departed member's id is kept for its reconnect.
const RESUME_WINDOW: Duration = Duration::from_secs(120);

impl RoomActor {
    pub(crate) fn new(app: AppState, channel: ChannelId) -> Self {
        let clock = app.realtime.clock();
        RoomActor {
            app,
            channel,
            clock,
            room: Room::default(),
            matrix: None,
            peers: HashMap::new(),
            departed: HashMap::new(),
            next_member: 1,
            last_now: 0.0,
            empty_since: Some(mono_now()),
            evict: Vec::new(),
        }
    }

    /// Server time now, never before the previous call's.
    fn now(&mut self) -> f64 {
        self.last_now = self.clock.now_ms().max(self.last_now);
        self.last_now
    }

    fn name_of(&self, id: MemberId) -> String {
        self.peers
            .get(&id)
            .map(|p| p.name.clone())
            .or_else(|| self.departed.get(&id).map(|d| d.name.clone()))
            .unwrap_or_else(|| format!("member {id}"))
    }

    fn policy(&self) -> RoomPolicy {
        RoomPolicy::of(self.room.config())
    }

    // ------------------------------------------------------------ sending

    fn encode(&self, now: f64, msg: ServerMessage) -> Utf8Bytes {
        Utf8Bytes::from(encode(&Stamped::new(now, msg)))
    }

    /// Puts `frame` on `member`'s queue. A full queue drops a frame that
    /// may be lost (typing, presence, reactions) and evicts the member for
    /// any other.
    fn send(&mut self, member: MemberId, frame: &Utf8Bytes, droppable: bool) {
        let Some(peer) = self.peers.get(&member) else {
            return;
        };
        match peer.tx.try_send(frame.clone()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) if droppable => {
                metrics::counter!("ws_frames_dropped_total").increment(1);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                peer.closer.close(
                    close::TOO_SLOW,
                    "the connection read too slowly and fell behind the room",
                );
                self.evict.push(member);
            }
            // The connection is ending; its leave is on the way.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn send_to(&mut self, to: Recipients, frame: &Utf8Bytes, droppable: bool) {
        match to {
            Recipients::Member(m) => self.send(m, frame, droppable),
            Recipients::All | Recipients::AllExcept(_) => {
                let skip = match to {
                    Recipients::AllExcept(m) => Some(m),
                    _ => None,
                };
                let members: Vec<MemberId> = self
                    .peers
                    .keys()
                    .copied()
                    .filter(|m| Some(*m) != skip)
                    .collect();
                for m in members {
                    self.send(m, frame, droppable);
                }
            }
        }
    }

    fn reply_error(&mut self, member: MemberId, err: ProtocolError) {
        let now = self.now();
        let frame = self.encode(now, err.to_message());
        self.send(member, &frame, false);
    }

    /// Sends what the room said, naming `cause` in the states a command
    /// produced.
    fn fan_out(&mut self, out: Vec<Outgoing>, cause: Option<Cause>) {
        let now = self.now();
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
                let frame = self.encode(now, m);
                self.send_to(o.to, &frame, droppable);
            }
        }
        self.drain_evictions();
    }

    fn drain_evictions(&mut self) {
        while let Some(member) = self.evict.pop() {
            if self.peers.contains_key(&member) {
                self.remove(member);
            }
        }
    }

    /// Takes `member` out of the room and tells the others.
    fn remove(&mut self, member: MemberId) {
        let now = self.now();
        let out = self.room.leave(member, now).unwrap_or_default();
        let names_needed = !out.is_empty();
        if let Some(peer) = self.peers.get(&member) {
            // Keep the name for the `left` message and a reconnect.
            self.departed.insert(
                member,
                Departed {
                    identity: peer.identity.clone(),
                    name: peer.name.clone(),
                    until: mono_now() + RESUME_WINDOW,
                },
            );
        }
        self.peers.remove(&member);
        metrics::gauge!("ws_connections").decrement(1.0);
        if names_needed {
            self.fan_out(out, None);
        }
        if self.peers.is_empty() {
            self.empty_since = Some(mono_now());
        }
    }

    // ------------------------------------------------------------ inputs

    pub(crate) async fn handle(&mut self, input: Input) {
        match input {
            Input::Join(join) => self.join(*join).await,
            Input::Frame { member, conn, msg } => {
                if self.peers.get(&member).is_some_and(|p| p.conn == conn) {
                    self.frame(member, msg).await;
                }
            }
            Input::Leave { member, conn } => {
                if self.peers.get(&member).is_some_and(|p| p.conn == conn) {
                    self.remove(member);
                }
            }
            Input::Refresh => self.refresh().await,
            Input::Kick(user) => {
                let kicked: Vec<MemberId> = self
                    .peers
                    .iter()
                    .filter(|(_, p)| p.identity == Identity::User(user))
                    .map(|(m, _)| *m)
                    .collect();
                for member in kicked {
                    if let Some(p) = self.peers.get(&member) {
                        p.closer
                            .close(close::FORBIDDEN, "you were removed from the channel");
                    }
                    self.remove(member);
                }
                self.refresh().await;
            }
        }
    }

    async fn matrix(&mut self) -> Option<PermissionMatrix> {
        if self.matrix.is_none() {
            let mut tx = self.app.backends.db.read().await.ok()?;
            let m = tx.permissions(self.channel).await.ok()?;
            tx.commit().await.ok()?;
            self.matrix = Some(m);
        }
        self.matrix.clone()
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

    async fn join(&mut self, j: JoinRequest) {
        let refuse = |j: JoinRequest, err: ProtocolError, code: u16| {
            let _ = j.reply.send(Err((err, code)));
        };
        let Some(access) = self.access_of(&j.identity, j.who).await else {
            return refuse(
                j,
                ProtocolError::new(ErrorCode::Unavailable, "the channel could not be loaded"),
                1011,
            );
        };
        if let Some(why) = admission(&access, j.who) {
            return refuse(
                j,
                ProtocolError::new(ErrorCode::Forbidden, why),
                close::FORBIDDEN,
            );
        }
        if self.matrix().await.is_none() {
            return refuse(
                j,
                ProtocolError::new(ErrorCode::Unavailable, "the channel could not be loaded"),
                1011,
            );
        }
        // The member id: the one it resumes, when it is this identity's.
        let resumed = j.resume.filter(|r| {
            self.peers
                .get(&r.member)
                .map(|p| p.identity == j.identity)
                .or_else(|| {
                    self.departed
                        .get(&r.member)
                        .map(|d| d.identity == j.identity)
                })
                .unwrap_or(false)
        });
        if let Some(r) = resumed {
            if let Some(old) = self.peers.get(&r.member) {
                old.closer
                    .close(close::REPLACED, "the member connected again elsewhere");
                self.remove(r.member);
            }
        } else if self.peers.len() >= MAX_MEMBERS {
            return refuse(
                j,
                ProtocolError::new(ErrorCode::Forbidden, "the room is full"),
                close::FULL,
            );
        }
        let member = match resumed {
            Some(r) => r.member,
            None => {
                let id = MemberId(self.next_member);
                self.next_member += 1;
                id
            }
        };
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
            Err(e) => return refuse(j, room_error(e, None), close::PROTOCOL),
        };
        let settings = self.app.realtime.settings();
        let chat = Bucket::new(
            f64::from(settings.chat_burst),
            f64::from(settings.chat_per_minute) / 60.0,
        );
        self.departed.remove(&member);
        self.peers.insert(
            member,
            Peer {
                conn: j.conn,
                tx: j.tx,
                closer: j.closer,
                identity: j.identity,
                who: j.who,
                name: j.name,
                access,
                label,
                chat,
            },
        );
        metrics::gauge!("ws_connections").increment(1.0);
        self.empty_since = None;
        let _ = j.reply.send(Ok(member));
        self.welcome(member, j.version, out);
    }

    /// The joiner's `welcome` (with the room, or without it when missed
    /// events follow), then the rest of what the join said.
    fn welcome(&mut self, member: MemberId, v: u32, out: Vec<Outgoing>) {
        let now = self.now();
        let policy = self.policy();
        let (mine, others): (Vec<Outgoing>, Vec<Outgoing>) = out
            .into_iter()
            .partition(|o| o.to == Recipients::Member(member));
        let mut mine = mine.into_iter().peekable();
        let room = match mine.peek().map(|o| &o.event) {
            Some(RoomEvent::Snapshot(s)) => {
                Some(RoomSnapshot::of(s, policy, &|id| self.name_of(id)))
            }
            _ => None,
        };
        let rest_of_snapshot = match (&room, mine.peek().map(|o| &o.event)) {
            (Some(_), Some(RoomEvent::Snapshot(s))) => {
                videosync_sync::protocol::queue_pages(s.seq, &s.queue)
                    .into_iter()
                    .skip(1)
                    .collect()
            }
            _ => Vec::new(),
        };
        if room.is_some() {
            mine.next();
        }
        let welcome = self.encode(now, ServerMessage::Welcome { v, member, room });
        self.send(member, &welcome, false);
        for m in rest_of_snapshot {
            let frame = self.encode(now, m);
            self.send(member, &frame, false);
        }
        let rest: Vec<Outgoing> = mine.chain(others).collect();
        self.fan_out(rest, None);
    }

    async fn frame(&mut self, member: MemberId, msg: ClientMessage) {
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
                delay_ms,
                seek_latency_ms,
                buffered_ahead_ms,
                ..
            } => {
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
            ClientMessage::Typing { active } => {
                if self.may(member, Permission::Chat) {
                    let frame = self.encode(now, ServerMessage::Typing { member, active });
                    self.send_to(Recipients::All, &frame, true);
                    self.drain_evictions();
                }
            }
            ClientMessage::Reaction {
                emoji,
                at_position_ms,
            } => {
                if !self.may(member, Permission::Chat) {
                    return self.reply_error(
                        member,
                        ProtocolError::new(
                            ErrorCode::Forbidden,
                            "you may not chat in this channel",
                        ),
                    );
                }
                if !self.take_chat_token(member) {
                    return self.reply_error(member, slow_down());
                }
                let frame = self.encode(
                    now,
                    ServerMessage::Reaction {
                        member,
                        emoji,
                        at_position_ms,
                    },
                );
                self.send_to(Recipients::All, &frame, true);
                self.drain_evictions();
            }
            // The connection answers these itself.
            ClientMessage::Hello { .. } | ClientMessage::Ping { .. } => {}
        }
    }

    fn apply(&mut self, member: MemberId, r: Result<Vec<Outgoing>, RoomError>) {
        match r {
            Ok(out) => self.fan_out(out, None),
            Err(e) => self.reply_error(member, room_error(e, None)),
        }
    }

    fn may(&self, member: MemberId, p: Permission) -> bool {
        match (self.peers.get(&member), &self.matrix) {
            (Some(peer), Some(matrix)) => peer.access.allows(matrix, p),
            _ => false,
        }
    }

    fn take_chat_token(&mut self, member: MemberId) -> bool {
        self.peers.get_mut(&member).is_some_and(|p| p.chat.take())
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
    async fn check_media(&self, media: &str) -> Result<(), ProtocolError> {
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
            Ok(())
        } else {
            Err(missing())
        }
    }

    /// Stores the message, then relays it with its number.
    async fn chat(&mut self, member: MemberId, text: String) {
        if !self.may(member, Permission::Chat) {
            return self.reply_error(
                member,
                ProtocolError::new(ErrorCode::Forbidden, "you may not chat in this channel"),
            );
        }
        if !self.take_chat_token(member) {
            return self.reply_error(member, slow_down());
        }
        let Some(peer) = self.peers.get(&member) else {
            return;
        };
        let new = NewMessage {
            channel_id: self.channel,
            author_id: match &peer.identity {
                Identity::User(u) => Some(*u),
                Identity::Guest(_) => None,
            },
            author_name: peer.name.clone(),
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
                let now = self.now();
                let frame = self.encode(
                    now,
                    ServerMessage::Chat {
                        from: member,
                        text,
                        id: Some(m.seq),
                    },
                );
                self.send_to(Recipients::All, &frame, false);
                self.drain_evictions();
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
        self.matrix = None;
        let _ = self.matrix().await;
        let members: Vec<(MemberId, Identity, Who)> = self
            .peers
            .iter()
            .map(|(m, p)| (*m, p.identity.clone(), p.who))
            .collect();
        for (member, identity, who) in members {
            let Some(access) = self.access_of(&identity, who).await else {
                continue;
            };
            if let Some(why) = admission(&access, who) {
                if let Some(p) = self.peers.get(&member) {
                    p.closer.close(close::FORBIDDEN, why);
                }
                self.remove(member);
                continue;
            }
            let label = role_label(&access);
            let Some(peer) = self.peers.get_mut(&member) else {
                continue;
            };
            peer.access = access;
            if peer.label != label {
                peer.label = label.clone();
                let now = self.now();
                if let Ok(out) = self.room.set_role(member, Role::new(label), now) {
                    self.fan_out(out, None);
                }
            }
        }
    }

    /// The room's next deadline as an instant, if it has one.
    fn next_wake(&self) -> Option<Instant> {
        let linger = Duration::from_secs(self.app.realtime.settings().linger_seconds);
        let room = self.room.next_deadline().map(|d| self.clock.instant_at(d));
        let empty = self.empty_since.map(|t| t + linger);
        match (room, empty) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_timer(&mut self) {
        if self
            .room
            .next_deadline()
            .is_some_and(|d| d <= self.clock.now_ms())
        {
            let now = self.now();
            if let Ok(out) = self.room.tick(now) {
                self.fan_out(out, None);
            }
        }
        let now = mono_now();
        self.departed.retain(|_, d| d.until > now);
    }

    fn wants_to_retire(&self) -> bool {
        let linger = Duration::from_secs(self.app.realtime.settings().linger_seconds);
        self.peers.is_empty()
            && self
                .empty_since
                .is_some_and(|t| mono_now().duration_since(t) >= linger)
    }

    fn close_all(&mut self, code: u16, reason: &str) {
        for p in self.peers.values() {
            p.closer.close(code, reason);
        }
    }
}

/// Runs a room until it has been empty for the linger time, or the server
/// shuts down.
pub(crate) async fn run(mut actor: RoomActor, mut inbox: mpsc::Receiver<Input>) {
    let shutdown = actor.app.realtime.shutdown_token();
    loop {
        let wake = actor.next_wake();
        tokio::select! {
            input = inbox.recv() => match input {
                Some(input) => actor.handle(input).await,
                None => break,
            },
            () = sleep_until(wake) => actor.on_timer(),
            () = shutdown.cancelled() => {
                actor.close_all(1001, "the server is shutting down; reconnect");
                break;
            }
        }
        if actor.wants_to_retire() && actor.app.realtime.retire(actor.channel, &inbox) {
            break;
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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

fn slow_down() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::RateLimited,
        "too many messages; wait a few seconds",
    )
}
