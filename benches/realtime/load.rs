//! The load tool of the realtime benchmark: one process of many (a process
//! may hold at most 20 000 open files here), opening WebSocket connections
//! (tokio-tungstenite) to rooms, speaking protocol v2, and measuring the
//! delivery latency of every `state` and `chat` frame from the server's
//! send stamp (`sent_ms`) to its receipt, on the same machine's clock.
//!
//! The harness starts it with `VIDEOSYNC_REALTIME_CLIENT` holding a
//! [`Spec`] as JSON. It prints `connected <n>` once every connection has
//! its `welcome`, waits for a line on stdin, drives the traffic for the
//! spec's duration, writes the latencies (little-endian `f32` ms) to the
//! spec's file and prints a [`Report`] as JSON.

use std::io::BufRead as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use videosync::core::{Clock, SystemClock};

/// One room this process joins.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RoomSpec {
    pub(crate) channel: String,
    /// The `hello` token of every member.
    pub(crate) token: String,
    /// What the driver loads.
    pub(crate) media: String,
    /// Members, the first of which drives.
    pub(crate) members: usize,
}

/// What one load process does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Spec {
    /// `host:port` of the servers; member `i` of a room uses server
    /// `i % servers.len()`.
    pub(crate) servers: Vec<String>,
    pub(crate) rooms: Vec<RoomSpec>,
    /// Playback updates and chat messages each room's driver sends per
    /// second (each kind).
    pub(crate) per_second: f64,
    /// How long to drive, and how much of the start not to measure.
    pub(crate) seconds: f64,
    pub(crate) warmup_seconds: f64,
    /// Where the latencies go.
    pub(crate) samples_file: String,
}

/// What one load process saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Report {
    pub(crate) connections: usize,
    /// Frames measured (state and chat, after the warm-up).
    pub(crate) delivered: u64,
    /// Commands and chats the drivers sent.
    pub(crate) sent: u64,
    /// Protocol errors received.
    pub(crate) errors: u64,
    /// Connections that ended before the run did.
    pub(crate) dropped: u64,
}

/// Server time on this machine: the wall clock once, then the monotonic
/// clock (as the server stamps its frames).
#[derive(Clone, Copy)]
struct Now {
    clock: SystemClock,
    epoch_ms: f64,
}

impl Now {
    fn new() -> Self {
        let clock = SystemClock::new();
        Now {
            epoch_ms: clock.now().as_millis() as f64,
            clock,
        }
    }

    fn ms(&self) -> f64 {
        self.epoch_ms + self.clock.monotonic().as_secs_f64() * 1000.0
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn join(server: &str, room: &RoomSpec, now: Now) -> Option<(Socket, u64)> {
    let url = format!("ws://{server}/api/v1/channels/{}/live", room.channel);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.ok()?;
    let hello = json!({"type": "hello", "versions": [2], "token": room.token, "name": "load", "sent_ms": now.ms()});
    ws.send(Message::text(hello.to_string())).await.ok()?;
    loop {
        let Message::Text(t) = ws.next().await?.ok()? else {
            continue;
        };
        let v: Value = serde_json::from_str(t.as_str()).ok()?;
        if v["type"] == "welcome" {
            let seq = v["room"]["seq"].as_u64().unwrap_or(0);
            return Some((ws, seq));
        }
        if v["type"] == "error" {
            eprintln!("load: refused: {v}");
            return None;
        }
    }
}

/// Runs one load process (see the module docs).
pub(crate) async fn run(spec: Spec) {
    let now = Now::new();
    let samples = Arc::new(Mutex::new(Vec::<f32>::new()));
    let report = Arc::new(Mutex::new(Report::default()));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = tokio_util_stop();
    let sent = Arc::new(AtomicU64::new(0));

    // Connect everyone, a few at a time.
    let mut sockets = Vec::new();
    for (r, room) in spec.rooms.iter().enumerate() {
        let joined = futures::future::join_all(
            (0..room.members)
                .map(|i| {
                    let server = spec.servers[i % spec.servers.len()].clone();
                    let room = room.clone();
                    async move { (i, join(&server, &room, now).await) }
                })
                .collect::<Vec<_>>(),
        )
        .await;
        for (i, s) in joined {
            match s {
                Some((ws, seq)) => sockets.push((r, i, ws, seq)),
                None => report.lock().unwrap().dropped += 1,
            }
        }
    }
    report.lock().unwrap().connections = sockets.len();
    println!("connected {}", sockets.len());
    // Wait for the go.
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    })
    .await;

    let started = now.ms();
    let warm_until = started + spec.warmup_seconds * 1000.0;
    let end = started + spec.seconds * 1000.0;
    let mut tasks = tokio::task::JoinSet::new();
    for (r, i, ws, seq) in sockets {
        let (samples, report, measuring, stop, sent) = (
            samples.clone(),
            report.clone(),
            measuring.clone(),
            stop.clone(),
            sent.clone(),
        );
        let room = spec.rooms[r].clone();
        let driver = i == 0;
        let per_second = spec.per_second;
        let rooms = spec.rooms.len() as f64;
        tasks.spawn(async move {
            let (mut tx, mut rx) = ws.split();
            let mut seq = seq;
            let mut local = Vec::new();
            // Pings keep the connection alive (the server closes idle ones
            // after 30 s); drivers stagger their first update by room.
            let mut ping = tokio::time::interval(Duration::from_secs(10));
            let period = Duration::from_secs_f64(1.0 / per_second);
            let offset = Duration::from_secs_f64((r as f64 / rooms) / per_second);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::from_std(std_now()) + offset, period);
            let mut n = 0u64;
            if driver {
                let load = json!({"type": "command", "id": 0, "based_on_seq": seq, "command": "load", "media": room.media, "sent_ms": now.ms()});
                let _ = tx.send(Message::text(load.to_string())).await;
            }
            loop {
                tokio::select! {
                    _ = tick.tick(), if driver => {
                        n += 1;
                        let command = if n % 2 == 1 { "play" } else { "pause" };
                        let cmd = json!({"type": "command", "id": n, "based_on_seq": seq, "command": command, "sent_ms": now.ms()});
                        let chat = json!({"type": "chat", "text": format!("message {n}"), "sent_ms": now.ms()});
                        if tx.send(Message::text(cmd.to_string())).await.is_err()
                            || tx.send(Message::text(chat.to_string())).await.is_err() {
                            report.lock().unwrap().dropped += 1;
                            break;
                        }
                        sent.fetch_add(2, Ordering::Relaxed);
                    }
                    _ = ping.tick() => {
                        let p = json!({"type": "ping", "id": 1, "sent_ms": now.ms()});
                        let _ = tx.send(Message::text(p.to_string())).await;
                    }
                    msg = rx.next() => {
                        let at = now.ms();
                        let Some(Ok(msg)) = msg else {
                            if now.ms() < end {
                                report.lock().unwrap().dropped += 1;
                            }
                            break;
                        };
                        let Message::Text(t) = msg else { continue };
                        let text = t.as_str();
                        // Cheap checks first: most frames are state or chat.
                        let kind = if text.starts_with(r#"{"type":"state""#) {
                            1
                        } else if text.starts_with(r#"{"type":"chat""#) {
                            2
                        } else if text.starts_with(r#"{"type":"error""#) {
                            3
                        } else {
                            0
                        };
                        if kind == 0 {
                            continue;
                        }
                        let v: Value = match serde_json::from_str(text) {
                            Ok(v) => v,
                            Err(_) => continue,
                        };
                        if kind == 3 {
                            report.lock().unwrap().errors += 1;
                            continue;
                        }
                        if kind == 1 {
                            seq = seq.max(v["playback"]["seq"].as_u64().unwrap_or(0));
                        }
                        if at >= warm_until && measuring.load(Ordering::Relaxed) {
                            if let Some(sent_ms) = v["sent_ms"].as_f64() {
                                local.push((at - sent_ms) as f32);
                            }
                        }
                    }
                    () = stop.cancelled() => break,
                }
            }
            report.lock().unwrap().delivered += local.len() as u64;
            samples.lock().unwrap().extend(local);
        });
    }
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(spec.seconds)).await;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(&spec.samples_file, bytes).unwrap();
    let mut report = report.lock().unwrap().clone();
    report.sent = sent.load(Ordering::Relaxed);
    println!("{}", serde_json::to_string(&report).unwrap());
}

fn tokio_util_stop() -> tokio_util::sync::CancellationToken {
    tokio_util::sync::CancellationToken::new()
}

/// Now on the OS's monotonic clock, for timers only.
#[allow(clippy::disallowed_methods)]
fn std_now() -> std::time::Instant {
    std::time::Instant::now()
}
