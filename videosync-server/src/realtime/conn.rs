//! One WebSocket connection: the `hello` handshake (version, credentials,
//! admission), clock pings answered on the spot, the frame limits, and the
//! writer that drains the member's bounded queue. Everything else goes to
//! the room.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use videosync_core::ChannelId;
use videosync_sync::protocol::{
    decode_client, encode, negotiate, ClientMessage, ProtocolError, ServerMessage, Stamped,
    MAX_MESSAGE_BYTES,
};
use videosync_sync::state::{ErrorCode, MemberId};

use super::room::{Bucket, Closer, Frame, Input, JoinRequest};
use super::wire::Identity;
use super::{close, mono_now, redeem_ticket, TICKET_PREFIX};
use crate::auth::tokens::Claims;
use crate::auth::Caller;
use crate::channels::who;
use crate::state::AppState;

/// How long a new connection may take to send `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the closing handshake waits for the client's close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Frames written to the socket before it is flushed.
const WRITE_BATCH: usize = 64;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A connection id unique across the instances sharing rooms: this
/// process's random 32-bit prefix, then a counter.
fn new_conn_id() -> u64 {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let prefix = *PREFIX.get_or_init(|| u64::from(rand::random::<u32>()) << 32);
    prefix | (NEXT_CONN.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
}

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

/// Serves one connection to the room of `channel` until either side ends
/// it.
pub(crate) async fn run(app: AppState, channel: ChannelId, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let clock = app.realtime.clock();
    let stamp = |msg: ServerMessage| Utf8Bytes::from(encode(&Stamped::new(clock.now_ms(), msg)));

    // 1. `hello`, then who it is and whether they may be here.
    let Hello {
        version,
        identity,
        who,
        name,
        resume,
        expires_s,
    } = // Boxed: the handshake's state (reading the credential and the
        // channel from the stores) would otherwise be part of every
        // connection's task for as long as it lives.
        match Box::pin(handshake(&app, channel, &mut stream)).await {
        Ok(Some(hello)) => hello,
        Ok(None) => return,
        Err((err, code)) => {
            return refuse(&mut sink, &mut stream, stamp(err.to_message()), code).await
        }
    };

    // 2. Join the room.
    let settings = app.realtime.settings().clone();
    let (tx, mut rx) = mpsc::channel::<Frame>(settings.send_queue_frames);
    let closer = Closer::new();
    let conn = new_conn_id();
    let (reply, joined) = oneshot::channel();
    let join = JoinRequest {
        conn,
        tx,
        closer: closer.clone(),
        identity,
        who,
        name,
        version,
        resume,
        reply,
    };
    if app
        .realtime
        .deliver(&app, channel, Input::Join(Box::new(join)))
        .is_err()
    {
        let err = ProtocolError::new(ErrorCode::Unavailable, "the room is overloaded; retry");
        return refuse(&mut sink, &mut stream, stamp(err.to_message()), 1013).await;
    }
    let member = match joined.await {
        Ok(Ok(member)) => member,
        Ok(Err((text, code))) => {
            return refuse(&mut sink, &mut stream, Utf8Bytes::from(text), code).await
        }
        Err(_) => return close_with(&mut sink, &mut stream, 1011, "the room stopped").await,
    };

    // 3. Serve until someone ends it.
    let reason = serve(
        &app,
        channel,
        member,
        conn,
        &mut sink,
        &mut stream,
        &mut rx,
        &closer,
        expires_s,
    )
    .await;
    // The room forgets the member before the socket closes, so nothing
    // more is queued for it.
    let _ = app
        .realtime
        .deliver(&app, channel, Input::Leave { member, conn });
    if let Some((code, text)) = reason {
        close_with(&mut sink, &mut stream, code, &text).await;
    }
}

/// A client that said `hello` and may join.
struct Hello {
    version: u32,
    identity: Identity,
    who: crate::policy::Who,
    /// The name others see.
    name: String,
    resume: Option<videosync_sync::protocol::Resume>,
    /// When its credential expires, Unix seconds.
    expires_s: u64,
}

/// Reads `hello` (within the time limit) and checks, in order, the
/// message, the version, the credential and whether the caller may see the
/// channel. `None`: the client went away first; an error: what to tell
/// the client, and the close code.
async fn handshake(
    app: &AppState,
    channel: ChannelId,
    stream: &mut Stream,
) -> Result<Option<Hello>, (ProtocolError, u16)> {
    let protocol = |err: ProtocolError| (err, close::PROTOCOL);
    let text = match tokio::time::timeout(HELLO_TIMEOUT, next_text(stream)).await {
        Ok(Some(text)) => text.map_err(protocol)?,
        Ok(None) => return Ok(None),
        Err(_) => {
            let err = ProtocolError::new(ErrorCode::Malformed, "no hello within 10 s");
            return Err(protocol(err));
        }
    };
    let ClientMessage::Hello {
        versions,
        token,
        name,
        resume,
    } = decode_client(&text).map_err(protocol)?.msg
    else {
        let err = ProtocolError::new(ErrorCode::Malformed, "the first message must be hello");
        return Err(protocol(err));
    };
    let version = negotiate(&versions).map_err(protocol)?;
    let (caller, expires_s) = authenticate(app, channel, &token).await?;
    if crate::channels::load(app, &caller, channel).await.is_err() {
        let err = ProtocolError::new(ErrorCode::NotFound, "no such channel");
        return Err((err, close::NOT_FOUND));
    }
    let (identity, name) = match &caller {
        Caller::User(u) => (
            Identity::User(u.id),
            display_name(&u.display_name, &u.username),
        ),
        Caller::Guest(g) => (Identity::Guest(g.id.clone()), display_name(&g.name, &name)),
        Caller::Anonymous => {
            let err = ProtocolError::new(ErrorCode::Forbidden, "sign in first");
            return Err((err, close::UNAUTHORIZED));
        }
    };
    Ok(Some(Hello {
        version,
        identity,
        who: who(&caller),
        name,
        resume,
        expires_s,
    }))
}

/// The connection loop; returns the close frame to send, if any.
#[allow(clippy::too_many_arguments)]
async fn serve(
    app: &AppState,
    channel: ChannelId,
    member: MemberId,
    conn: u64,
    sink: &mut Sink,
    stream: &mut Stream,
    rx: &mut mpsc::Receiver<Frame>,
    closer: &Arc<Closer>,
    expires_s: u64,
) -> Option<(u16, String)> {
    let settings = app.realtime.settings().clone();
    let clock = app.realtime.clock();
    let shutdown = app.realtime.shutdown_token();
    let idle = Duration::from_secs(settings.idle_timeout_seconds);
    let fps = f64::from(settings.frames_per_second);
    let mut flood = Bucket::new(fps * 2.0, fps);
    // Refused frames, less one for each accepted: a client that keeps
    // sending well past the limit runs this up and is disconnected.
    let mut strikes: f64 = 0.0;
    let mut last_refusal: Option<Instant> = None;
    let expiry = expiry_instant(app, expires_s);
    let mut idle_at = mono_now() + idle;
    loop {
        tokio::select! {
            biased;
            (code, why) = closer.closed() => return Some((code, why)),
            () = shutdown.cancelled() => {
                return Some((1001, "the server is shutting down; reconnect".to_owned()))
            }
            out = rx.recv() => {
                let frame = out?;
                if write_batch(sink, rx, frame).await.is_err() {
                    return None;
                }
            }
            incoming = stream.next() => {
                let received_ms = clock.now_ms();
                let text = match incoming {
                    None => return None,
                    // A frame over the read limit is the only read error a
                    // live client can cause; anything else is a broken
                    // connection, which the close will not reach anyway.
                    Some(Err(_)) => return Some((1009, "a frame over 64 KiB".to_owned())),
                    Some(Ok(Message::Close(_))) => return None,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        idle_at = mono_now() + idle;
                        continue;
                    }
                    Some(Ok(Message::Binary(_))) => Err(ProtocolError::new(
                        ErrorCode::Malformed,
                        "binary frames are not part of the protocol; send JSON text",
                    )),
                    Some(Ok(Message::Text(t))) => Ok(t),
                };
                idle_at = mono_now() + idle;
                if !flood.take(mono_now()) {
                    strikes += 1.0;
                    if strikes > fps * 5.0 {
                        metrics::counter!("ws_disconnects_total", "reason" => "flooding").increment(1);
                        return Some((close::FLOODING, "too many frames too fast".to_owned()));
                    }
                    // One refusal a second at most: a flood is not answered
                    // with a flood.
                    if last_refusal.is_none_or(|t| mono_now().duration_since(t) >= Duration::from_secs(1)) {
                        last_refusal = Some(mono_now());
                        let err = ProtocolError::new(
                            ErrorCode::RateLimited,
                            "too many frames too fast; slow down",
                        );
                        if send_now(sink, clock.now_ms(), err.to_message()).await.is_err() {
                            return None;
                        }
                    }
                    continue;
                }
                strikes = (strikes - 1.0).max(0.0);
                let decoded = text.and_then(|t| decode_client(t.as_str()));
                let frame = match decoded {
                    Ok(f) => f,
                    Err(err) => {
                        if send_now(sink, clock.now_ms(), err.to_message()).await.is_err() {
                            return None;
                        }
                        continue;
                    }
                };
                match frame.msg {
                    ClientMessage::Ping { id } => {
                        let pong = ServerMessage::Pong { id, t0_ms: frame.sent_ms, t1_ms: received_ms };
                        if send_now(sink, clock.now_ms(), pong).await.is_err() {
                            return None;
                        }
                    }
                    ClientMessage::Hello { .. } => {
                        let err = ProtocolError::new(ErrorCode::Malformed, "hello was already sent");
                        if send_now(sink, clock.now_ms(), err.to_message()).await.is_err() {
                            return None;
                        }
                    }
                    msg => {
                        let input = Input::Frame { member, conn, msg, sent_ms: frame.sent_ms, received_ms };
                        if app.realtime.deliver(app, channel, input).is_err() {
                            let err = ProtocolError::new(ErrorCode::Unavailable, "the room is overloaded; retry");
                            if send_now(sink, clock.now_ms(), err.to_message()).await.is_err() {
                                return None;
                            }
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(idle_at) => {
                metrics::counter!("ws_disconnects_total", "reason" => "idle").increment(1);
                return Some((1000, format!("no frame in {} s", idle.as_secs())));
            }
            () = tokio::time::sleep_until(expiry) => {
                let err = ProtocolError::new(
                    ErrorCode::Forbidden,
                    "your token expired; reconnect with a fresh one and resume",
                );
                let _ = send_now(sink, clock.now_ms(), err.to_message()).await;
                return Some((close::UNAUTHORIZED, "token expired".to_owned()));
            }
        }
    }
}

/// Writes `first` and whatever else is queued (up to a batch), then
/// flushes once.
async fn write_batch(
    sink: &mut Sink,
    rx: &mut mpsc::Receiver<Frame>,
    first: Frame,
) -> Result<(), axum::Error> {
    sink.feed(Message::Text(Utf8Bytes::clone(&first))).await?;
    for _ in 1..WRITE_BATCH {
        match rx.try_recv() {
            Ok(frame) => sink.feed(Message::Text(Utf8Bytes::clone(&frame))).await?,
            Err(_) => break,
        }
    }
    sink.flush().await
}

async fn send_now(sink: &mut Sink, now_ms: f64, msg: ServerMessage) -> Result<(), axum::Error> {
    sink.send(Message::Text(Utf8Bytes::from(encode(&Stamped::new(
        now_ms, msg,
    )))))
    .await
}

/// The next text frame, or the refusal of whatever came instead.
async fn next_text(stream: &mut Stream) -> Option<Result<String, ProtocolError>> {
    loop {
        return match stream.next().await? {
            Ok(Message::Text(t)) if t.len() > MAX_MESSAGE_BYTES => Some(Err(ProtocolError::new(
                ErrorCode::TooLarge,
                format!("a frame holds at most {MAX_MESSAGE_BYTES} bytes"),
            ))),
            Ok(Message::Text(t)) => Some(Ok(t.as_str().to_owned())),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Binary(_)) => Some(Err(ProtocolError::new(
                ErrorCode::Malformed,
                "binary frames are not part of the protocol; send JSON text",
            ))),
            Ok(Message::Close(_)) | Err(_) => None,
        };
    }
}

/// Checks `hello`'s token: a one-use ticket for this channel, or an
/// access token.
async fn authenticate(
    app: &AppState,
    channel: ChannelId,
    token: &str,
) -> Result<(Caller, u64), (ProtocolError, u16)> {
    let refused = |message: &str| {
        (
            ProtocolError::new(ErrorCode::Forbidden, message),
            close::UNAUTHORIZED,
        )
    };
    let unavailable = || {
        (
            ProtocolError::new(ErrorCode::Unavailable, "credentials could not be checked"),
            1011,
        )
    };
    let claims: Claims = if token.starts_with(TICKET_PREFIX) {
        match redeem_ticket(app, channel, token).await {
            Ok(Some(claims)) => claims,
            Ok(None) => {
                return Err(refused(
                    "the ticket is unknown, used, expired or for another channel",
                ))
            }
            Err(_) => return Err(unavailable()),
        }
    } else {
        app.auth
            .keys
            .verify(token, app.backends.clock.now())
            .map_err(|e| refused(&e.message))?
    };
    let expires = claims.exp;
    match Caller::from_claims(app, &claims).await {
        Ok(caller) => Ok((caller, expires)),
        Err(e) if e.status.is_client_error() => Err(refused(&e.message)),
        Err(_) => Err(unavailable()),
    }
}

/// The instant a token that expires at `exp_s` (Unix seconds, by the
/// core clock) runs out.
fn expiry_instant(app: &AppState, exp_s: u64) -> Instant {
    let now_s = u64::try_from(app.backends.clock.now().as_millis().max(0)).unwrap_or(0) / 1000;
    mono_now() + Duration::from_secs(exp_s.saturating_sub(now_s).min(366 * 24 * 3600))
}

/// A name to show: the first usable of `preferred` and `fallback`.
fn display_name(preferred: &str, fallback: &str) -> String {
    let usable = |s: &str| {
        let t = s.trim();
        (!t.is_empty()).then(|| t.chars().take(64).collect::<String>())
    };
    usable(preferred)
        .or_else(|| usable(fallback))
        .unwrap_or_else(|| "someone".to_owned())
}

async fn refuse(sink: &mut Sink, stream: &mut Stream, frame: Utf8Bytes, code: u16) {
    let _ = sink.send(Message::Text(frame)).await;
    let reason = match code {
        close::UNAUTHORIZED => "unauthorized",
        close::FORBIDDEN => "forbidden",
        close::NOT_FOUND => "not found",
        close::FULL => "room full",
        _ => "protocol error",
    };
    close_with(sink, stream, code, reason).await;
}

/// The closing handshake: our close frame, then whatever the client still
/// sends until its close (at most 2 s). Closing the socket with unread data
/// would reset the connection, and the client would lose the frames before
/// the close, the error that says why among them.
async fn close_with(sink: &mut Sink, stream: &mut Stream, code: u16, reason: &str) {
    let reason: String = reason.chars().take(100).collect();
    let sent = sink
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        })))
        .await;
    if sent.is_ok() {
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    let _ = sink.close().await;
}
