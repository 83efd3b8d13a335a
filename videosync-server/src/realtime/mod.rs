//! Watch-together rooms over WebSocket: one room per channel, speaking
//! protocol version 2 of `videosync-sync` (`docs/protocol.md`); how the
//! server runs them is in `docs/realtime.md`.
//!
//! - [`Hub`] holds this instance's rooms. A room is a task (an actor) that
//!   owns the channel's [`videosync_sync::room::Room`], its members'
//!   connections and their rights, and is the only writer of all three, so
//!   every member sees commands in one order.
//! - A connection ([`conn`]) authenticates in its first message (`hello`,
//!   with an access token or a one-use ticket from
//!   `POST /api/v1/channels/{id}/live/tickets`: never a token in the URL),
//!   answers clock pings itself, and hands everything else to its room.
//! - Chat is stored in the database before it is relayed; its history is
//!   paged over REST (`GET /api/v1/channels/{id}/messages`).
//! - A slow client never slows its room: each connection has a bounded
//!   queue of encoded frames; when it is full the room drops that client's
//!   typing, presence and reaction frames, and closes it (4008) when a frame
//!   it must not miss does not fit.

pub mod conn;
mod engine;
pub mod mentions;
pub mod mutes;
pub mod room;
pub mod settings;
mod wire;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use videosync_core::bus::{DynEventBus, Topic};
use videosync_core::db::{Message, Messages};
use videosync_core::kv::{PutOptions, Version};
use videosync_core::{ChannelId, UserId};

use crate::auth::tokens::{Claims, TokenKind};
use crate::auth::{Authed, Caller, Identified};
use crate::channels::{load, ChannelPath};
use crate::config::RealtimeConfig;
use crate::dto::{rfc3339, PageOf, PageParams};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// WebSocket close codes the server uses, beside the standard ones
/// (1000 normal, 1001 going away, 1009 too big).
pub mod close {
    /// A protocol error that ends the connection (no `hello` first, an
    /// unsupported version, a forged resume).
    pub const PROTOCOL: u16 = 4000;
    /// The token was missing, wrong or expired (also when it expires
    /// during the connection): get a fresh one and reconnect with `resume`.
    pub const UNAUTHORIZED: u16 = 4001;
    /// Not allowed in this room: banned, kicked, or a private channel the
    /// caller is not a member of.
    pub const FORBIDDEN: u16 = 4003;
    /// The channel does not exist (or is not visible to the caller).
    pub const NOT_FOUND: u16 = 4004;
    /// The client read too slowly: its send queue overflowed.
    pub const TOO_SLOW: u16 = 4008;
    /// The member connected again elsewhere; this older connection ends.
    pub const REPLACED: u16 = 4009;
    /// The client kept sending faster than the frame limit.
    pub const FLOODING: u16 = 4029;
    /// The room is full ([`videosync_sync::protocol::MAX_MEMBERS`]).
    pub const FULL: u16 = 4013;
}

/// Now, on the monotonic clock of sockets and rooms: timeouts, rate limits
/// and the protocol's [`ServerClock`]. Not domain time (expiries, records),
/// which comes from the core's `Clock`.
#[allow(clippy::disallowed_methods)]
pub(crate) fn mono_now() -> Instant {
    Instant::now()
}

/// The server clock of the protocol: monotonic, anchored once, when the
/// server starts, to the core clock's time (the Unix epoch), so an NTP step
/// of the wall clock moves no scheduled state.
#[derive(Debug, Clone, Copy)]
pub struct ServerClock {
    epoch_ms: f64,
    start: Instant,
}

impl ServerClock {
    /// Anchored now at `epoch_ms` (ms since the Unix epoch).
    pub fn new(epoch_ms: f64) -> Self {
        ServerClock {
            epoch_ms,
            start: mono_now(),
        }
    }

    /// Server time now, in ms since the epoch.
    pub fn now_ms(&self) -> f64 {
        self.epoch_ms + mono_now().duration_since(self.start).as_secs_f64() * 1000.0
    }

    /// The instant at server time `ms` (now, when it has passed).
    pub fn instant_at(&self, ms: f64) -> Instant {
        let ahead = ms - self.now_ms();
        if ahead.is_finite() && ahead > 0.0 {
            mono_now() + Duration::from_secs_f64((ahead / 1000.0).min(86_400.0))
        } else {
            mono_now()
        }
    }
}

/// A room that cannot take an input now (its inbox is full, or the server
/// is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overloaded;

/// This instance's rooms, by channel.
#[derive(Debug)]
pub struct Hub {
    rooms: Mutex<HashMap<ChannelId, mpsc::Sender<room::Input>>>,
    clock: ServerClock,
    settings: RealtimeConfig,
    shutdown: CancellationToken,
    /// This process among the instances sharing rooms.
    instance: String,
    namespace: String,
    bus: DynEventBus,
    /// Whether other instances may share this instance's rooms (the bus
    /// reaches other processes). Alone, an instance owns every room without
    /// a lease and publishes nothing for others.
    shared: bool,
    /// Publishes in order, without making a room wait for the bus.
    publisher: OnceLock<mpsc::UnboundedSender<(Topic, Bytes, Instant)>>,
}

/// How long a batch of room messages may take to publish before it is
/// given up.
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a room message may wait to be published before it is dropped.
const STALE_AFTER: Duration = Duration::from_secs(1);

/// Most room messages published in one batch.
const PUBLISH_BATCH: usize = 256;

/// Inputs a room's inbox holds before senders wait.
const INBOX: usize = 4096;

impl Hub {
    /// An empty hub whose server clock starts at `epoch_ms`, sharing rooms
    /// with the other instances on `bus` (topics and keys in `namespace`).
    pub fn new(settings: RealtimeConfig, epoch_ms: f64, bus: DynEventBus, namespace: &str) -> Self {
        Hub {
            rooms: Mutex::new(HashMap::new()),
            clock: ServerClock::new(epoch_ms),
            settings,
            shutdown: CancellationToken::new(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            namespace: namespace.to_owned(),
            shared: bus.reaches_other_processes(),
            bus,
            publisher: OnceLock::new(),
        }
    }

    /// The protocol's server clock.
    pub fn clock(&self) -> ServerClock {
        self.clock
    }

    /// The settings.
    pub fn settings(&self) -> &RealtimeConfig {
        &self.settings
    }

    /// Whether other instances may share this instance's rooms.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// This instance's id among those sharing rooms.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Cancelled when the server shuts down: connections then close with
    /// 1001 (going away), and clients reconnect to another instance.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Closes every connection (1001) and hands the rooms on.
    pub fn shut_down(&self) {
        self.shutdown.cancel();
    }

    /// Rooms open on this instance.
    pub fn room_count(&self) -> usize {
        self.rooms.lock().map_or(0, |r| r.len())
    }

    /// Publishes `payload` on `topic` after everything published before
    /// it; a bus error is logged (the bus delivers at most once anyway).
    pub(crate) fn publish(&self, topic: Topic, payload: Bytes) {
        let tx = self.publisher.get_or_init(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<(Topic, Bytes, Instant)>();
            let bus = self.bus.clone();
            tokio::spawn(async move {
                while let Some(first) = rx.recv().await {
                    // Whatever queued up while the last batch was out goes
                    // in one batch (one round trip to Redis, in order):
                    // waiting for each reply in turn would make every room
                    // of the instance queue behind every other.
                    let mut events = Vec::new();
                    let mut next = Some(first);
                    while let Some((topic, payload, queued)) = next {
                        // Behind a bus that was away, what waited too long
                        // is stale for a room (a later state, a resync
                        // supersedes it): dropped, so the backlog never
                        // holds the room up.
                        if mono_now().duration_since(queued) > STALE_AFTER {
                            metrics::counter!("ws_bus_dropped_total").increment(1);
                        } else if payload.len() > videosync_core::bus::MAX_EVENT_LEN {
                            tracing::warn!(%topic, bytes = payload.len(), "a room message is too large for the bus");
                        } else {
                            events.push((topic, payload));
                        }
                        next = if events.len() < PUBLISH_BATCH { rx.try_recv().ok() } else { None };
                    }
                    if events.is_empty() {
                        continue;
                    }
                    let n = events.len();
                    // A bus that hangs (a restarting Redis) must not hold
                    // every later message: past the limit the batch is
                    // lost, as the bus may lose any (rooms resync).
                    match tokio::time::timeout(PUBLISH_TIMEOUT, bus.publish_batch(events)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(events = n, error = %e, "room messages could not be published");
                        }
                        Err(_) => tracing::warn!(events = n, "room messages timed out on the bus"),
                    }
                }
            });
            tx
        });
        let _ = tx.send((topic, payload, mono_now()));
    }

    /// Hands `input` to the room of `channel`, starting the room when it is
    /// not running here. Sent under the lock, so a room that retires (see
    /// [`Hub::retire`]) never drops a join.
    ///
    /// # Errors
    /// When the room's inbox is full (the room is overloaded).
    pub(crate) fn deliver(
        &self,
        app: &AppState,
        channel: ChannelId,
        input: room::Input,
    ) -> Result<(), Overloaded> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let mut input = input;
        if let Some(tx) = rooms.get(&channel) {
            match tx.try_send(input) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => return Err(Overloaded),
                Err(mpsc::error::TrySendError::Closed(i)) => input = i,
            }
        }
        // Only a join starts a room; what a connection says after its room
        // stopped (the server is shutting down) goes nowhere.
        if !matches!(input, room::Input::Join(_)) || self.shutdown.is_cancelled() {
            return match input {
                room::Input::Join(_) => Err(Overloaded),
                _ => Ok(()),
            };
        }
        let (tx, rx) = mpsc::channel(INBOX);
        tokio::spawn(room::run(room::RoomTask::new(app.clone(), channel), rx));
        let sent = tx.try_send(input).map_err(|_| Overloaded);
        rooms.insert(channel, tx);
        metrics::gauge!("ws_rooms").set(rooms.len() as f64);
        sent
    }

    /// Tells the owner of `channel`'s room, wherever it runs, that
    /// memberships, roles, bans or the permission matrix changed, so it
    /// checks its members again: one who may no longer be there is
    /// disconnected at once.
    pub fn channel_changed(&self, channel: ChannelId) {
        self.send_owner(channel, &wire::ToOwner::Refresh);
    }

    /// Tells the members of `channel`'s room that a stored chat message
    /// changed.
    pub(crate) fn chat_changed(&self, channel: ChannelId, change: wire::ChatChange) {
        self.send_owner(channel, &wire::ToOwner::Chat(change));
    }

    /// Disconnects `user` from the room of `channel` (4003), after a kick:
    /// they may come back through the channel's visibility, as anyone
    /// could, but are out of the room now.
    pub fn kick(&self, channel: ChannelId, user: UserId) {
        self.send_owner(channel, &wire::ToOwner::Kick(user));
    }

    fn send_owner(&self, channel: ChannelId, msg: &wire::ToOwner) {
        if let (Some(topic), Ok(body)) = (
            wire::in_topic(&self.namespace, channel),
            serde_json::to_vec(msg),
        ) {
            self.publish(topic, Bytes::from(body));
        }
    }

    /// A room with nobody in it asks to stop: granted (and the room is
    /// forgotten) when nothing is waiting in its inbox; joins are sent
    /// under this same lock, so none can be lost.
    pub(crate) fn retire(&self, channel: ChannelId, inbox: &mpsc::Receiver<room::Input>) -> bool {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if !inbox.is_empty() {
            return false;
        }
        rooms.remove(&channel);
        metrics::gauge!("ws_rooms").set(rooms.len() as f64);
        true
    }
}

/// The routes outside the OpenAPI document: the WebSocket endpoint.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/channels/{id}/live", get(upgrade))
}

/// The REST routes of this capability.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_ticket))
        .routes(routes!(history))
        .routes(routes!(edit_message, delete_message))
        .merge(mutes::routes())
}

/// Largest client frame the socket reads (larger ones end the connection
/// with 1009); frames above [`videosync_sync::protocol::MAX_MESSAGE_BYTES`]
/// but within this are refused with `too_large` and the connection lives.
const MAX_READ_FRAME: usize = 64 * 1024;

/// The read buffer of one connection: small, because a room holds
/// thousands of mostly idle connections and client frames are small (a
/// report is about 250 bytes); tungstenite fills the whole buffer on every
/// read, so every byte of it is resident. A larger frame is read in several
/// reads. (The default of 128 KiB would cost that much per connection.)
const SOCKET_BUFFER: usize = 1024;

async fn upgrade(
    State(app): State<AppState>,
    Path(p): Path<ChannelPath>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(videosync_sync::protocol::MAX_SERVER_MESSAGE_BYTES * 2)
        .max_message_size(MAX_READ_FRAME)
        .max_frame_size(MAX_READ_FRAME)
        .on_upgrade(move |socket| conn::run(app, p.id, socket))
}

/// Prefix of connection tickets, so `hello` tells them from access tokens.
pub(crate) const TICKET_PREFIX: &str = "vst_";

/// What a ticket stands for, kept in the key-value store until it is used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TicketRecord {
    pub channel: ChannelId,
    pub claims: Claims,
}

/// A one-use ticket for the WebSocket `hello`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TicketView {
    /// Send it as `hello`'s `token`, once, within `expires_in_s`.
    pub ticket: String,
    /// Seconds it stays valid.
    pub expires_in_s: u64,
    /// Where to connect (a path under this server).
    pub url: String,
}

/// A one-use ticket to open the channel's room (`GET
/// /api/v1/channels/{id}/live`, then `hello` with the ticket as its
/// token), for clients that would rather not hold the access token in the
/// page that opens the socket.
#[utoipa::path(post, path = "/channels/{id}/live/tickets", tag = "realtime", security(("bearer" = [])),
    params(ChannelPath),
    responses((status = 201, description = "A ticket", body = TicketView)))]
async fn create_ticket(
    State(app): State<AppState>,
    Identified(caller): Identified,
    Path(p): Path<ChannelPath>,
) -> ApiResult<(StatusCode, Json<TicketView>)> {
    let l = load(&app, &caller, p.id).await?;
    // A ticket only for someone the room would let in.
    if l.access.banned {
        return Err(ApiError::banned());
    }
    if matches!(caller, Caller::Guest(_)) && !l.access.guest {
        return Err(ApiError::forbidden("this channel does not let guests in"));
    }
    // The ticket stands for the caller as a fresh access token would: the
    // connection it opens ends (4001) when such a token would expire.
    let iat = app.backends.clock.now().as_millis().max(0) as u64 / 1000;
    let (sub, kind, name) = match &caller {
        Caller::User(u) => (u.id.to_string(), TokenKind::User, String::new()),
        Caller::Guest(g) => (g.id.clone(), TokenKind::Guest, g.name.clone()),
        Caller::Anonymous => return Err(ApiError::unauthenticated("sign in first")),
    };
    let claims = Claims {
        sub,
        kind,
        name,
        iat,
        exp: iat + app.auth.access_ttl_s,
        iss: "videosync".to_owned(),
    };
    let ttl = app.realtime.settings().ticket_ttl_seconds;
    let ticket = format!(
        "{TICKET_PREFIX}{}",
        crate::auth::tokens::new_refresh_token()
    );
    let record = TicketRecord {
        channel: p.id,
        claims,
    };
    let body = serde_json::to_vec(&record).map_err(ApiError::internal)?;
    app.backends
        .kv
        .put(
            &ticket_key(&app, &ticket)?,
            body.into(),
            PutOptions {
                ttl: Some(Duration::from_secs(ttl)),
                ..PutOptions::create()
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TicketView {
            ticket,
            expires_in_s: ttl,
            url: format!("/api/v1/channels/{}/live", p.id),
        }),
    ))
}

pub(crate) fn ticket_key(app: &AppState, ticket: &str) -> ApiResult<videosync_core::kv::Key> {
    use sha2::Digest as _;
    // The key names the ticket's hash: the store never holds a usable one.
    let digest = sha2::Sha256::digest(ticket.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    app.kv_key(&format!("ws.ticket.{hex}"))
}

/// Takes a ticket for `channel`: its claims, once; `None` when it is
/// unknown, used, expired or for another channel.
pub(crate) async fn redeem_ticket(
    app: &AppState,
    channel: ChannelId,
    ticket: &str,
) -> ApiResult<Option<Claims>> {
    let key = ticket_key(app, ticket)?;
    let Some(found) = app.backends.kv.get(&key).await? else {
        return Ok(None);
    };
    let version: Version = found.version;
    // Whoever deletes it first owns it: a ticket works once.
    if !app.backends.kv.delete(&key, Some(version)).await? {
        return Ok(None);
    }
    let record: TicketRecord = match serde_json::from_slice(&found.value) {
        Ok(r) => r,
        Err(_) => return Ok(None),
    };
    Ok((record.channel == channel).then_some(record.claims))
}

/// A chat message as history shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageView {
    /// Its number in the channel (the `id` of the live `chat` message).
    pub id: u64,
    /// The author's account id; absent for guests and deleted accounts.
    pub author_id: Option<String>,
    /// The author's name when it was written.
    pub author_name: String,
    /// Plain text (empty once deleted): never render it as HTML.
    pub text: String,
    /// When it was written (RFC 3339).
    pub created_at: String,
    /// When it was last edited.
    pub edited_at: Option<String>,
    /// Whether it was deleted.
    pub deleted: bool,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        MessageView {
            id: m.seq,
            author_id: m.author_id.map(|u| u.to_string()),
            author_name: m.author_name.clone(),
            text: m.body.clone(),
            created_at: rfc3339(m.created_at),
            edited_at: m.edited_at.map(rfc3339),
            deleted: m.deleted_at.is_some(),
        }
    }
}

/// The channel's chat, newest first, for whoever may see the channel.
#[utoipa::path(get, path = "/channels/{id}/messages", tag = "realtime", security(("bearer" = []), ()),
    params(ChannelPath, PageParams),
    responses((status = 200, description = "A page of messages, newest first", body = PageOf<MessageView>)))]
async fn history(
    State(app): State<AppState>,
    caller: Caller,
    Path(p): Path<ChannelPath>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<PageOf<MessageView>>> {
    let req = page.request()?;
    let l = load(&app, &caller, p.id).await?;
    if l.access.banned {
        return Err(ApiError::banned());
    }
    let mut tx = app.backends.db.read().await?;
    let page = tx.messages(p.id, req).await?;
    tx.commit().await?;
    Ok(Json(PageOf::from_page(page, |m| MessageView::from(&m))))
}

/// Path of a chat message.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MessagePath {
    /// Channel id.
    #[param(value_type = String, format = Uuid)]
    pub id: ChannelId,
    /// The message's number in the channel.
    #[param(minimum = 1, maximum = 9007199254740991_u64)]
    pub message: u64,
}

/// A message's new text.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditMessageRequest {
    /// 1 to 2000 characters, not blank.
    pub text: String,
}

/// The message `p` names, or 404.
async fn stored_message(app: &AppState, p: &MessagePath) -> ApiResult<Message> {
    let mut tx = app.backends.db.read().await?;
    let found = tx.message(p.id, p.message).await;
    tx.commit().await?;
    match found {
        Ok(m) => Ok(m),
        Err(e) if e.kind() == videosync_core::ErrorKind::NotFound => {
            Err(ApiError::not_found("no such message"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Edit one of your chat messages; the room sees the new text at once.
#[utoipa::path(patch, path = "/channels/{id}/messages/{message}", tag = "realtime", security(("bearer" = [])),
    params(MessagePath), request_body = EditMessageRequest,
    responses((status = 200, description = "The edited message", body = MessageView)))]
async fn edit_message(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(p): Path<MessagePath>,
    Json(req): Json<EditMessageRequest>,
) -> ApiResult<Json<MessageView>> {
    let caller = Caller::User(Box::new(user.clone()));
    let l = load(&app, &caller, p.id).await?;
    l.require(videosync_core::db::Permission::Chat)?;
    let found = stored_message(&app, &p).await?;
    if found.author_id != Some(user.id) {
        return Err(ApiError::forbidden("only its author may edit a message"));
    }
    let mut tx = app.backends.db.begin().await?;
    let edited = tx.edit_message(p.id, p.message, &req.text).await?;
    tx.commit().await?;
    app.realtime.chat_changed(
        p.id,
        wire::ChatChange::Edited {
            id: edited.seq,
            text: edited.body.clone(),
        },
    );
    Ok(Json(MessageView::from(&edited)))
}

/// Delete a chat message: your own, or anyone's when you may moderate the
/// chat. Its number stays in the history, without its text.
#[utoipa::path(delete, path = "/channels/{id}/messages/{message}", tag = "realtime", security(("bearer" = [])),
    params(MessagePath), responses((status = 204, description = "Deleted")))]
async fn delete_message(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(p): Path<MessagePath>,
) -> ApiResult<StatusCode> {
    let caller = Caller::User(Box::new(user.clone()));
    let l = load(&app, &caller, p.id).await?;
    let found = stored_message(&app, &p).await?;
    let own = found.author_id == Some(user.id) && !l.access.banned;
    if !own {
        l.require(videosync_core::db::Permission::ModerateChat)?;
    }
    let mut tx = app.backends.db.begin().await?;
    tx.delete_message(p.id, p.message).await?;
    tx.commit().await?;
    app.realtime
        .chat_changed(p.id, wire::ChatChange::Deleted { id: p.message });
    Ok(StatusCode::NO_CONTENT)
}
