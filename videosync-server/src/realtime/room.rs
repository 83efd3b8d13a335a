//! A channel's room on one instance: the task that holds this instance's
//! connections to it, and, while this instance owns the room, its
//! engine.
//!
//! One instance owns a room at a time, by a lease in the key-value store
//! (`room.<channel>.owner`, 2 s, renewed every 0.5 s). The owner runs the
//! engine: inputs from its own connections go straight in, those of other
//! instances come over the bus (`room.<channel>.in`); what the engine says
//! goes to its own connections directly and to the other instances over the
//! bus (`room.<channel>.out`). After every change the owner saves the
//! room's timeline and queue (`room.<channel>.state`), so when it dies an
//! instance that holds members takes the lease over, restores the room
//! and announces itself; every instance then joins its members to the new
//! owner again. See docs/realtime.md.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use videosync_core::bus::{Delivery, Subscription, Topic};
use videosync_core::kv::{Key, PutMode, PutOptions, Version};
use videosync_core::{ChannelId, ErrorKind};
use videosync_sync::protocol::{encode, ClientMessage, ProtocolError, Resume, Stamped};
use videosync_sync::room::Durable;
use videosync_sync::state::{ErrorCode, MemberId};

use super::engine::Engine;
use super::wire::{in_topic, out_topic, FromOwner, Identity, Join, ToOwner};
use super::{close, mono_now};
use crate::policy::Who;
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

    /// Takes a token at `now` if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
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

/// One encoded frame on its way to this instance's connections, shared by
/// every recipient. Behind an `Arc` so that a slot of a connection's send
/// queue is one pointer: the queue allocates its slots 32 at a time as soon
/// as it is made, so every connection, idle or not, pays for the slot size
/// (32 slots of a bare `Utf8Bytes` are 1 KiB).
pub(crate) type Frame = Arc<Utf8Bytes>;

/// The answer to a join: the member id, or an encoded error frame and the
/// close code.
pub(crate) type JoinReply = Result<MemberId, (String, u16)>;

/// A connection of this instance asking to join.
#[derive(Debug)]
pub(crate) struct JoinRequest {
    pub conn: u64,
    pub tx: mpsc::Sender<Frame>,
    pub closer: Arc<Closer>,
    pub identity: Identity,
    pub who: Who,
    pub name: String,
    pub version: u32,
    pub resume: Option<Resume>,
    pub reply: oneshot::Sender<JoinReply>,
}

/// What a room task takes from this instance.
#[derive(Debug)]
pub(crate) enum Input {
    /// A connection wants in.
    Join(Box<JoinRequest>),
    /// A member's message (never `hello` or `ping`: the connection answers
    /// those).
    Frame {
        member: MemberId,
        conn: u64,
        msg: ClientMessage,
        sent_ms: f64,
        received_ms: f64,
    },
    /// A connection ended.
    Leave { member: MemberId, conn: u64 },
}

/// What an instance publishes on a room's output topic: who said it, so
/// the owner skips its own words (it delivered them directly).
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    msg: FromOwner,
}

/// A connection of this instance that is in the room.
#[derive(Debug)]
struct Local {
    conn: u64,
    tx: mpsc::Sender<Frame>,
    closer: Arc<Closer>,
    identity: Identity,
    who: Who,
    name: String,
    version: u32,
}

/// A connection waiting for the owner's answer.
#[derive(Debug)]
struct Pending {
    join: Join,
    tx: mpsc::Sender<Frame>,
    closer: Arc<Closer>,
    reply: oneshot::Sender<JoinReply>,
    since: Instant,
    /// Sent to the owner (it has its member id).
    sent: bool,
}

/// How long the owner's lease lasts without renewal: about how long a
/// room is without an owner after its owner dies.
const LEASE_TTL: Duration = Duration::from_millis(1000);
/// How often the owner renews it, and others look for it.
const LEASE_TICK: Duration = Duration::from_millis(250);
/// After the key-value store comes back empty (it restarted), how long
/// instances leave the previous owner to claim its rooms again (its own
/// connection to the store may take a while to come back).
const STORE_RECOVERY_GRACE: Duration = Duration::from_secs(5);
/// How often unanswered snapshot requests are repeated.
const RESYNC_EVERY: Duration = Duration::from_secs(1);
/// How long a change waits for its save before it goes out anyway.
const SAVE_AHEAD_TIMEOUT: Duration = Duration::from_millis(250);
/// How long a join waits for an owner.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a saved room is kept after its last change.
const STATE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// One channel's room on this instance.
#[derive(Debug)]
pub(crate) struct RoomTask {
    app: AppState,
    channel: ChannelId,
    instance: String,
    local: HashMap<MemberId, Local>,
    pending: HashMap<u64, Pending>,
    engine: Option<Engine>,
    lease: Option<Version>,
    saved_seq: Option<u64>,
    /// The newest room `seq` seen, to rejoin members with after a failover.
    last_seq: u64,
    /// The newest chat message delivered to everyone here.
    last_chat: u64,
    in_topic: Option<Topic>,
    out_topic: Option<Topic>,
    in_sub: Option<Subscription>,
    empty_since: Option<Instant>,
    next_lease_tick: Instant,
    /// After the bus lost its connection the previous owner gets the first
    /// claim on the lease (it has the whole room in memory).
    takeover_not_before: Instant,
    /// Connections closed for reading too slowly, whose leave the owner
    /// has yet to hear.
    evicted: Vec<(MemberId, u64)>,
    /// A new owner announced itself: this instance's members join it.
    needs_rejoin: bool,
    /// Snapshots asked of the owner and not yet answered, by token.
    resync: Option<u64>,
    /// The key-value store did not answer the last look for an owner.
    store_was_down: bool,
    /// A lease step is in flight.
    lease_busy: bool,
    /// When to ask for snapshots again, while they are not answered.
    next_resync: Instant,
    /// A save is in flight.
    saving: bool,
    /// Answers of the store work done off the task.
    background_tx: mpsc::UnboundedSender<Background>,
    background_rx: Option<mpsc::UnboundedReceiver<Background>>,
}

/// Store work done off a room's task, answered back to it.
#[derive(Debug)]
enum Background {
    /// The member id for connection `conn`'s join (`None`: the store did
    /// not answer).
    Fresh(u64, Option<MemberId>),
    Lease(LeaseOutcome),
    /// The save of this `seq` is done (`None`: it failed).
    Saved(Option<u64>),
}

/// What one lease step found.
#[derive(Debug)]
enum LeaseOutcome {
    /// The owner renewed its lease.
    Renewed(Version),
    /// The owner's lease was gone (the store restarted) and it took it
    /// again.
    Reclaimed(Version),
    /// Another instance holds the lease now.
    Lost,
    /// The store did not answer.
    StoreDown,
    /// No owner, and this instance may not claim the room yet.
    Absent,
    /// Another instance owns the room.
    Present,
    /// No owner, and this instance took the lease.
    Claimed(Version),
    /// No owner, but another instance took the lease first.
    ClaimFailed,
}

/// One lease step: renew `held`, or look for an owner and claim the lease
/// when there is none and `may_claim`.
async fn lease_step(
    kv: &dyn videosync_core::kv::KeyValue,
    key: &Key,
    me: Bytes,
    held: Option<Version>,
    may_claim: bool,
) -> LeaseOutcome {
    let opts = |mode| PutOptions {
        mode,
        ttl: Some(LEASE_TTL),
    };
    if let Some(version) = held {
        return match kv
            .put(key, me.clone(), opts(PutMode::IfVersion(version)))
            .await
        {
            Ok(v) => LeaseOutcome::Renewed(v),
            // Expired (the store was away) or taken: claim it again, or
            // step down for the instance that holds it.
            Err(e) if e.kind() == ErrorKind::Precondition => {
                match kv.put(key, me, opts(PutMode::Create)).await {
                    Ok(v) => LeaseOutcome::Reclaimed(v),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => LeaseOutcome::Lost,
                    Err(_) => LeaseOutcome::StoreDown,
                }
            }
            // The store is away: the owner keeps running the room.
            Err(_) => LeaseOutcome::StoreDown,
        };
    }
    match kv.get(key).await {
        Ok(Some(_)) => LeaseOutcome::Present,
        Err(_) => LeaseOutcome::StoreDown,
        Ok(None) if !may_claim => LeaseOutcome::Absent,
        Ok(None) => match kv.put(key, me, opts(PutMode::Create)).await {
            Ok(v) => LeaseOutcome::Claimed(v),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => LeaseOutcome::ClaimFailed,
            Err(_) => LeaseOutcome::StoreDown,
        },
    }
}

impl RoomTask {
    pub(crate) fn new(app: AppState, channel: ChannelId) -> Self {
        let ns = app.backends.namespace.clone();
        let instance = app.realtime.instance().to_owned();
        let (background_tx, background_rx) = mpsc::unbounded_channel();
        RoomTask {
            channel,
            instance,
            local: HashMap::new(),
            pending: HashMap::new(),
            engine: None,
            lease: None,
            saved_seq: None,
            last_seq: 0,
            last_chat: 0,
            in_topic: in_topic(&ns, channel),
            out_topic: out_topic(&ns, channel),
            in_sub: None,
            empty_since: Some(mono_now()),
            next_lease_tick: mono_now(),
            takeover_not_before: mono_now(),
            evicted: Vec::new(),
            needs_rejoin: false,
            resync: None,
            store_was_down: false,
            lease_busy: false,
            next_resync: mono_now(),
            saving: false,
            background_tx,
            background_rx: Some(background_rx),
            app,
        }
    }

    fn key(&self, what: &str) -> Option<Key> {
        self.app
            .kv_key(&format!("room.{}.{what}", self.channel))
            .ok()
    }

    // ------------------------------------------------------------ to the owner

    /// Hands `msg` to the owner: the engine when it runs here (then
    /// [`RoomTask::settle`] sends what it said), else the bus.
    async fn send_owner(&mut self, msg: ToOwner) {
        if let Some(engine) = self.engine.as_mut() {
            engine.handle(msg).await;
        } else if let Some(topic) = &self.in_topic {
            match serde_json::to_vec(&msg) {
                Ok(body) => self.app.realtime.publish(topic.clone(), Bytes::from(body)),
                Err(e) => tracing::warn!(error = %e, "a room input could not be encoded"),
            }
        }
    }

    /// Sends what the engine said (to this instance's connections directly,
    /// to the others over the bus), then what that caused (the leaves of
    /// evicted connections, rejoins), until nothing is left; then saves
    /// the room when it changed.
    async fn settle(&mut self) {
        loop {
            self.save_ahead().await;
            let out = self
                .engine
                .as_mut()
                .map(Engine::take_output)
                .unwrap_or_default();
            for msg in out {
                let envelope = Envelope {
                    from: self.instance.clone(),
                    msg,
                };
                if let Some(topic) = &self.out_topic {
                    if let Ok(body) = serde_json::to_vec(&envelope) {
                        self.app.realtime.publish(topic.clone(), Bytes::from(body));
                    }
                }
                self.apply(envelope.msg);
            }
            let evicted = std::mem::take(&mut self.evicted);
            let rejoin = std::mem::take(&mut self.needs_rejoin);
            for (member, conn) in &evicted {
                self.send_owner(ToOwner::Leave {
                    member: *member,
                    conn: *conn,
                })
                .await;
            }
            if rejoin {
                self.rejoin_all().await;
            }
            let more = self.engine.as_ref().is_some_and(Engine::has_output);
            if evicted.is_empty() && !rejoin && !more {
                break;
            }
        }
        if let Some(seq) = self.engine.as_ref().map(Engine::seq) {
            if self.saved_seq != Some(seq) {
                self.save();
            }
        }
    }

    /// Saves the room before anyone hears of a change to its timeline or
    /// queue, so that a successor never restores a room older than what a
    /// member saw (it would refuse that member's resume, and reuse `seq`s).
    /// On a shared deployment only, and at most [`SAVE_AHEAD_TIMEOUT`]: a
    /// store that hangs delays a change that long, then the change goes
    /// out unsaved (the save is retried in the background).
    async fn save_ahead(&mut self) {
        if !self.app.realtime.is_shared() {
            return;
        }
        let (Some(engine), Some(key)) = (&self.engine, self.key("state")) else {
            return;
        };
        let seq = engine.seq();
        if self.saved_seq == Some(seq) || !engine.has_output() {
            return;
        }
        let Ok(body) = serde_json::to_vec(&engine.durable()) else {
            return;
        };
        let opts = PutOptions {
            mode: PutMode::Overwrite,
            ttl: Some(STATE_TTL),
        };
        let put = self.app.backends.kv.put(&key, body.into(), opts);
        if let Ok(Ok(_)) = tokio::time::timeout(SAVE_AHEAD_TIMEOUT, put).await {
            self.saved_seq = Some(seq);
        }
    }

    /// Saves the room's timeline and queue, for a successor: off the room's
    /// task (a slow store must not stall the room), one save at a time;
    /// [`Background::Saved`] says which `seq` is safe.
    fn save(&mut self) {
        if self.saving {
            return;
        }
        let (Some(engine), Some(key)) = (&self.engine, self.key("state")) else {
            return;
        };
        let seq = engine.seq();
        let Ok(body) = serde_json::to_vec(&engine.durable()) else {
            return;
        };
        self.saving = true;
        let (kv, done, channel) = (
            self.app.backends.kv.clone(),
            self.background_tx.clone(),
            self.channel,
        );
        tokio::spawn(async move {
            let opts = PutOptions {
                mode: PutMode::Overwrite,
                ttl: Some(STATE_TTL),
            };
            let saved = match kv.put(&key, body.into(), opts).await {
                Ok(_) => Some(seq),
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "the room could not be saved");
                    None
                }
            };
            let _ = done.send(Background::Saved(saved));
        });
    }

    // ------------------------------------------------------------ from the owner

    /// Acts on what the owner said, for this instance's connections.
    fn apply(&mut self, msg: FromOwner) {
        match msg {
            FromOwner::Deliver {
                to,
                text,
                droppable,
                seq,
                chat,
            } => {
                self.last_seq = self.last_seq.max(seq);
                if let (Some(id), super::wire::To::All) = (chat, to) {
                    self.last_chat = self.last_chat.max(id);
                }
                let frame = Frame::new(Utf8Bytes::from(text));
                let mut evicted = Vec::new();
                for (member, local) in &self.local {
                    if !to.includes(*member) {
                        continue;
                    }
                    match local.tx.try_send(frame.clone()) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) if droppable => {
                            metrics::counter!("ws_frames_dropped_total").increment(1);
                        }
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            local.closer.close(
                                close::TOO_SLOW,
                                "the connection read too slowly and fell behind the room",
                            );
                            metrics::counter!("ws_disconnects_total", "reason" => "too_slow")
                                .increment(1);
                            evicted.push((*member, local.conn));
                        }
                        // The connection is ending; its leave is on the way.
                        Err(mpsc::error::TrySendError::Closed(_)) => {}
                    }
                }
                for (member, conn) in evicted {
                    self.drop_local(member);
                    self.evicted.push((member, conn));
                }
            }
            FromOwner::Joined { conn, member } => {
                if let Some(p) = self.pending.remove(&conn) {
                    self.local.insert(
                        member,
                        Local {
                            conn,
                            tx: p.tx,
                            closer: p.closer,
                            identity: p.join.identity,
                            who: p.join.who,
                            name: p.join.name,
                            version: p.join.version,
                        },
                    );
                    metrics::gauge!("ws_connections").increment(1.0);
                    self.empty_since = None;
                    let _ = p.reply.send(Ok(member));
                }
            }
            FromOwner::Refused { conn, text, code } => {
                if let Some(p) = self.pending.remove(&conn) {
                    let _ = p.reply.send(Err((text, code)));
                }
            }
            FromOwner::Close {
                member,
                conn,
                code,
                reason,
            } => {
                if self.local.get(&member).is_some_and(|l| l.conn == conn) {
                    if let Some(l) = self.local.get(&member) {
                        l.closer.close(code, reason);
                    }
                    self.drop_local(member);
                }
            }
            FromOwner::Resynced { token } => {
                if self.resync == Some(token) {
                    self.resync = None;
                }
            }
            FromOwner::Owner { instance } => {
                if instance != self.instance {
                    if self.engine.take().is_some() {
                        self.in_sub = None;
                        self.lease = None;
                    }
                    self.needs_rejoin = true;
                }
            }
        }
    }

    fn drop_local(&mut self, member: MemberId) {
        if self.local.remove(&member).is_some() {
            metrics::gauge!("ws_connections").decrement(1.0);
        }
        if self.local.is_empty() && self.pending.is_empty() {
            self.empty_since = Some(mono_now());
        }
    }

    /// Joins this instance's members to a new owner, and asks again for
    /// the connections still waiting.
    async fn rejoin_all(&mut self) {
        let joins: Vec<Join> = self
            .local
            .iter()
            .map(|(member, l)| Join {
                conn: l.conn,
                fresh: *member,
                identity: l.identity.clone(),
                who: l.who,
                name: l.name.clone(),
                version: l.version,
                resume: Some(Resume {
                    member: *member,
                    last_seq: self.last_seq,
                }),
                rejoin: true,
            })
            .chain(
                self.pending
                    .values()
                    .filter(|p| p.sent)
                    .map(|p| p.join.clone()),
            )
            .collect();
        for join in joins {
            self.send_owner(ToOwner::Join(Box::new(join))).await;
        }
    }

    // ------------------------------------------------------------ inputs

    async fn input(&mut self, input: Input) {
        self.take_input(input).await;
        self.settle().await;
    }

    async fn take_input(&mut self, input: Input) {
        match input {
            Input::Join(j) => {
                // The member id comes from the store, off the room's task;
                // the join goes on in `joined_id`.
                let j = *j;
                let key = self.key("members");
                let (kv, done, conn) = (
                    self.app.backends.kv.clone(),
                    self.background_tx.clone(),
                    j.conn,
                );
                tokio::spawn(async move {
                    let id = match key {
                        Some(key) => kv
                            .incr(&key, 1, None)
                            .await
                            .ok()
                            .and_then(|n| u64::try_from(n).ok()),
                        None => None,
                    };
                    let _ = done.send(Background::Fresh(conn, id.map(MemberId)));
                });
                let join = Join {
                    conn: j.conn,
                    fresh: MemberId(0),
                    identity: j.identity,
                    who: j.who,
                    name: j.name,
                    version: j.version,
                    resume: j.resume,
                    rejoin: false,
                };
                self.pending.insert(
                    j.conn,
                    Pending {
                        join,
                        tx: j.tx,
                        closer: j.closer,
                        reply: j.reply,
                        since: mono_now(),
                        sent: false,
                    },
                );
                self.empty_since = None;
            }
            Input::Frame {
                member,
                conn,
                msg,
                sent_ms,
                received_ms,
            } => {
                if self.local.get(&member).is_some_and(|l| l.conn == conn) {
                    let frame = ToOwner::Frame {
                        member,
                        conn,
                        msg,
                        sent_ms,
                        received_ms,
                    };
                    self.send_owner(frame).await;
                }
            }
            Input::Leave { member, conn } => {
                if self.local.get(&member).is_some_and(|l| l.conn == conn) {
                    self.drop_local(member);
                    self.send_owner(ToOwner::Leave { member, conn }).await;
                } else if self.pending.remove(&conn).is_some() {
                    // Gave up before the owner answered.
                    self.drop_local(member);
                }
            }
        }
    }

    /// The member id of a pending join came: the join goes to the owner,
    /// or is refused when the store did not answer.
    async fn fresh(&mut self, conn: u64, id: Option<MemberId>) {
        let Some(p) = self.pending.get_mut(&conn) else {
            return;
        };
        match id {
            Some(id) => {
                p.join.fresh = id;
                p.sent = true;
                let join = p.join.clone();
                self.send_owner(ToOwner::Join(Box::new(join))).await;
                self.settle().await;
            }
            None => {
                if let Some(p) = self.pending.remove(&conn) {
                    let err = ProtocolError::new(
                        ErrorCode::Unavailable,
                        "the room could not be reached; retry",
                    );
                    let text = encode(&Stamped::new(
                        self.app.realtime.clock().now_ms(),
                        err.to_message(),
                    ));
                    let _ = p.reply.send(Err((text, 1011)));
                }
            }
        }
    }

    /// An input from another instance, for the engine.
    async fn on_bus_in(&mut self, delivery: Option<Delivery>) {
        match delivery {
            Some(Delivery::Event(e)) => match serde_json::from_slice::<ToOwner>(&e.payload) {
                Ok(msg) => {
                    if let Some(engine) = self.engine.as_mut() {
                        engine.handle(msg).await;
                        self.settle().await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "an undecodable room input"),
            },
            // Inputs lost while the bus was away: their senders retry (a
            // command that got no state, a join that got no answer).
            Some(Delivery::Lagged(_) | Delivery::Disconnected) => {}
            None => self.in_sub = None,
        }
    }

    /// What the owner said, from the bus.
    async fn on_bus_out(&mut self, delivery: Option<Delivery>) -> bool {
        match delivery {
            Some(Delivery::Event(e)) => match serde_json::from_slice::<Envelope>(&e.payload) {
                Ok(env) if env.from != self.instance => {
                    self.apply(env.msg);
                    self.settle().await;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "an undecodable room output"),
            },
            Some(d @ (Delivery::Lagged(_) | Delivery::Disconnected)) => {
                if matches!(d, Delivery::Disconnected) {
                    self.takeover_not_before = mono_now() + STORE_RECOVERY_GRACE;
                }
                // Frames may be lost: the owner sends each member here a
                // snapshot (asked again every tick until it answers: after
                // a disconnect the bus is back only some time later). The
                // owner itself delivers directly and lost nothing.
                if self.engine.is_none() && !self.local.is_empty() {
                    self.resync = Some(self.resync.unwrap_or(0) + 1);
                    self.next_resync = mono_now();
                    self.ask_resync();
                }
            }
            None => return false,
        }
        true
    }

    /// Asks the owner for snapshots of this instance's members.
    fn ask_resync(&mut self) {
        let (Some(token), Some(topic)) = (self.resync, &self.in_topic) else {
            return;
        };
        if mono_now() < self.next_resync {
            return;
        }
        self.next_resync = mono_now() + RESYNC_EVERY;
        let msg = ToOwner::Resync {
            members: self.local.keys().copied().collect(),
            token,
            after_chat: self.last_chat,
        };
        if let Ok(body) = serde_json::to_vec(&msg) {
            self.app.realtime.publish(topic.clone(), Bytes::from(body));
        }
    }

    // ------------------------------------------------------------ the lease

    /// Renews the lease (owner), or looks for an owner and takes the room
    /// over when there is none. The store is asked off the room's task (a
    /// store that hangs must not stall the room); the answer comes back as
    /// [`Background::Lease`].
    async fn lease_tick(&mut self) {
        if !self.app.realtime.is_shared() {
            // Nothing to renew: come back only to expire departed members.
            self.next_lease_tick = mono_now() + Duration::from_secs(30);
            // Alone: this instance owns every room, without a lease.
            if self.engine.is_none() {
                self.become_owner(None).await;
            }
            return;
        }
        self.next_lease_tick = mono_now() + LEASE_TICK;
        if self.lease_busy {
            return;
        }
        let Some(key) = self.key("owner") else {
            return;
        };
        let kv = self.app.backends.kv.clone();
        let me = Bytes::from(self.instance.clone());
        let held = self.lease;
        let may_claim = !self.store_was_down && mono_now() >= self.takeover_not_before;
        let done = self.background_tx.clone();
        self.lease_busy = true;
        tokio::spawn(async move {
            let _ = done.send(Background::Lease(
                lease_step(&*kv, &key, me, held, may_claim).await,
            ));
        });
    }

    /// Acts on the answer of a [`RoomTask::lease_tick`].
    async fn on_lease(&mut self, outcome: LeaseOutcome) {
        self.lease_busy = false;
        match outcome {
            LeaseOutcome::Renewed(v) => self.lease = Some(v),
            LeaseOutcome::Reclaimed(v) => {
                // The store restarted: it may have lost the saved room too.
                self.lease = Some(v);
                self.saved_seq = None;
                self.save();
            }
            LeaseOutcome::Lost => self.step_down_quietly(),
            LeaseOutcome::StoreDown => self.store_was_down = true,
            LeaseOutcome::Absent => {
                if self.store_was_down {
                    // The store is back, empty (it restarted): the previous
                    // owner, which still runs the room, gets the first claim.
                    self.store_was_down = false;
                    self.takeover_not_before = mono_now() + STORE_RECOVERY_GRACE;
                }
            }
            LeaseOutcome::Present | LeaseOutcome::ClaimFailed => self.store_was_down = false,
            LeaseOutcome::Claimed(v) => {
                self.store_was_down = false;
                if self.engine.is_none() {
                    self.become_owner(Some(v)).await;
                }
            }
        }
    }

    async fn become_owner(&mut self, version: Option<Version>) {
        // Listen for inputs before announcing, so no rejoin is missed.
        let sub = match &self.in_topic {
            Some(t) => self.app.backends.bus.subscribe(t).await.ok(),
            None => None,
        };
        let Some(sub) = sub else {
            // Without inputs from the bus this instance cannot own the room.
            if let (Some(key), Some(version)) = (self.key("owner"), version) {
                let _ = self.app.backends.kv.delete(&key, Some(version)).await;
            }
            return;
        };
        let durable = match self.key("state") {
            Some(key) => match self.app.backends.kv.get(&key).await {
                Ok(Some(v)) => serde_json::from_slice::<Durable>(&v.value).ok(),
                _ => None,
            },
            None => None,
        };
        self.in_sub = Some(sub);
        self.lease = version;
        self.engine = Some(Engine::new(self.app.clone(), self.channel, durable));
        self.saved_seq = None;
        if version.is_some() {
            metrics::counter!("ws_room_takeovers_total").increment(1);
            tracing::info!(channel = %self.channel, restored = self.engine.as_ref().is_some_and(|e| e.seq() > 0), "this instance took the room over");
        }
        if let Some(topic) = self
            .out_topic
            .as_ref()
            .filter(|_| self.app.realtime.is_shared())
        {
            let envelope = Envelope {
                from: self.instance.clone(),
                msg: FromOwner::Owner {
                    instance: self.instance.clone(),
                },
            };
            if let Ok(body) = serde_json::to_vec(&envelope) {
                self.app.realtime.publish(topic.clone(), Bytes::from(body));
            }
        }
        self.needs_rejoin = true;
        self.settle().await;
    }

    fn step_down_quietly(&mut self) {
        if self.engine.is_some() && self.app.realtime.is_shared() {
            tracing::info!(channel = %self.channel, "this instance no longer owns the room");
        }
        self.engine = None;
        self.in_sub = None;
        self.lease = None;
    }

    /// Leaves the room to a successor: saved, the lease released.
    async fn step_down(&mut self) {
        if let (Some(engine), Some(key)) = (&self.engine, self.key("state")) {
            if let Ok(body) = serde_json::to_vec(&engine.durable()) {
                let opts = PutOptions {
                    mode: PutMode::Overwrite,
                    ttl: Some(STATE_TTL),
                };
                let _ = self.app.backends.kv.put(&key, body.into(), opts).await;
            }
        }
        if let (Some(version), Some(key)) = (self.lease, self.key("owner")) {
            let _ = self.app.backends.kv.delete(&key, Some(version)).await;
        }
        self.step_down_quietly();
    }

    // ------------------------------------------------------------ the loop

    fn next_wake(&self) -> Instant {
        let mut wake = self.next_lease_tick;
        if let Some(t) = self.engine.as_ref().and_then(Engine::next_wake) {
            wake = wake.min(t);
        }
        wake
    }

    async fn on_timer(&mut self) {
        let now = mono_now();
        if now >= self.next_lease_tick {
            self.lease_tick().await;
            if self.engine.is_none() {
                self.ask_resync();
            }
        }
        if let Some(engine) = self.engine.as_mut() {
            engine.on_timer().await;
        }
        self.settle().await;
        let stale: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.since) >= JOIN_TIMEOUT)
            .map(|(conn, _)| *conn)
            .collect();
        for conn in stale {
            if let Some(p) = self.pending.remove(&conn) {
                let err = ProtocolError::new(
                    ErrorCode::Unavailable,
                    "the room's owner did not answer; retry",
                );
                let text = encode(&Stamped::new(
                    self.app.realtime.clock().now_ms(),
                    err.to_message(),
                ));
                let _ = p.reply.send(Err((text, 1013)));
            }
        }
    }

    fn wants_to_retire(&self) -> bool {
        let linger = Duration::from_secs(self.app.realtime.settings().linger_seconds);
        self.local.is_empty()
            && self.pending.is_empty()
            && self.engine.as_ref().is_none_or(Engine::is_empty)
            && self
                .empty_since
                .is_some_and(|t| mono_now().duration_since(t) >= linger)
    }
}

/// Runs a channel's room on this instance until nobody here (and, on the
/// owner, nobody anywhere) has been in it for the linger time, or the
/// server shuts down.
pub(crate) async fn run(mut task: RoomTask, mut inbox: mpsc::Receiver<Input>) {
    let shutdown = task.app.realtime.shutdown_token();
    let out_sub = match &task.out_topic {
        Some(t) => task.app.backends.bus.subscribe(t).await.ok(),
        None => None,
    };
    let Some(mut out_sub) = out_sub else {
        tracing::warn!(channel = %task.channel, "the room's bus topic could not be subscribed");
        refuse_all(&task, &mut inbox);
        task.app.realtime.retire(task.channel, &inbox);
        return;
    };
    let Some(mut background) = task.background_rx.take() else {
        return;
    };
    task.lease_tick().await;
    loop {
        let wake = task.next_wake();
        tokio::select! {
            Some(done) = background.recv() => match done {
                Background::Fresh(conn, id) => task.fresh(conn, id).await,
                Background::Lease(outcome) => task.on_lease(outcome).await,
                Background::Saved(seq) => {
                    task.saving = false;
                    if seq.is_some() {
                        task.saved_seq = seq;
                    }
                    // Changed meanwhile: save the newer room.
                    if task.engine.as_ref().map(Engine::seq) != task.saved_seq && seq.is_some() {
                        task.save();
                    }
                }
            },
            input = inbox.recv() => match input {
                Some(input) => task.input(input).await,
                None => break,
            },
            d = out_sub.recv() => {
                if !task.on_bus_out(d).await {
                    break;
                }
            }
            d = recv_in(&mut task.in_sub) => task.on_bus_in(d).await,
            () = tokio::time::sleep_until(wake) => task.on_timer().await,
            () = shutdown.cancelled() => {
                // Connections close themselves (1001); the room goes to
                // the instance their members reconnect to.
                task.step_down().await;
                break;
            }
        }
        if task.wants_to_retire() && task.app.realtime.retire(task.channel, &inbox) {
            task.step_down().await;
            break;
        }
    }
}

async fn recv_in(sub: &mut Option<Subscription>) -> Option<Delivery> {
    match sub {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Answers every waiting join with "unavailable" (the room cannot run).
fn refuse_all(task: &RoomTask, inbox: &mut mpsc::Receiver<Input>) {
    while let Ok(input) = inbox.try_recv() {
        if let Input::Join(j) = input {
            let err = ProtocolError::new(ErrorCode::Unavailable, "the room could not start; retry");
            let text = encode(&Stamped::new(
                task.app.realtime.clock().now_ms(),
                err.to_message(),
            ));
            let _ = j.reply.send(Err((text, 1011)));
        }
    }
}
