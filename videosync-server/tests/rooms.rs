//! One room across two `videosync serve` processes sharing Postgres, Redis
//! and S3: members connected to different instances see one timeline and
//! one chat, and when the instance that owns the room is killed (SIGKILL),
//! its members reconnect to the other and carry on from where they were.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.
#![cfg(unix)]

mod common;
#[path = "common/ws.rs"]
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use videosync_core::catalog::catalog_from_url;
use videosync_core::conformance::{postgres_namespace, service_url, unique_name};
use videosync_core::{Clock, SystemClock, VideoId};

use common::serve::{sign_up_with_id, Server, JWT_SECRET};
use ws::Ws;

/// A stopwatch on the project's clock.
#[derive(Clone, Copy)]
struct Watch(SystemClock);

impl Watch {
    fn start() -> Watch {
        Watch(SystemClock::new())
    }

    fn elapsed(self) -> Duration {
        self.0.monotonic()
    }
}

struct Cluster {
    a: Server,
    b: Server,
    database: String,
}

async fn cluster() -> Option<Cluster> {
    let (Some(pg), Some(redis), Some(s3)) = (
        service_url("VIDEOSYNC_TEST_POSTGRES_URL"),
        service_url("VIDEOSYNC_TEST_REDIS_URL"),
        service_url("VIDEOSYNC_TEST_S3_URL"),
    ) else {
        return None;
    };
    let database = postgres_namespace(&pg).await;
    let store = match s3.split_once('?') {
        Some((bucket, query)) => format!(
            "{}/{}?{query}",
            bucket.trim_end_matches('/'),
            unique_name("rooms-")
        ),
        None => format!("{}/{}", s3.trim_end_matches('/'), unique_name("rooms-")),
    };
    let namespace = unique_name("rooms");
    let env = [
        ("VIDEOSYNC_JWT_SECRET", JWT_SECRET.to_owned()),
        ("VIDEOSYNC_DATABASE_URL", database.clone()),
        ("VIDEOSYNC_STORE_URL", store),
        ("VIDEOSYNC_QUEUE_URL", redis.clone()),
        ("VIDEOSYNC_BUS_URL", redis.clone()),
        ("VIDEOSYNC_LOG_URL", redis.clone()),
        ("VIDEOSYNC_KV_URL", redis),
        ("VIDEOSYNC_NAMESPACE", namespace),
    ];
    let a = Server::start(&env);
    let b = Server::start(&env);
    Some(Cluster { a, b, database })
}

fn addr(server: &Server) -> SocketAddr {
    server.addr.parse().expect("a socket address")
}

/// A video of `channel`, marked ready in the shared catalog.
async fn ready_video(c: &Cluster, token: &str, channel: &str) -> String {
    let video = c.a.expect(
        201,
        "POST",
        &format!("/api/v1/channels/{channel}/videos"),
        Some(token),
        Some(json!({"title": "feature"})),
    );
    let id: VideoId = video["id"].as_str().unwrap().parse().unwrap();
    let catalog = catalog_from_url(&c.database, Arc::new(SystemClock::new()))
        .await
        .expect("the catalog");
    ws::mark_ready(&*catalog, id, None).await;
    id.to_string()
}

/// A setup with two members on different instances of one room.
async fn two_members(c: &Cluster) -> (String, String, String, String, String) {
    let (ada, _) = sign_up_with_id(&c.a, "ada");
    let (bob, bob_id) = sign_up_with_id(&c.b, "bob");
    let channel = c.a.expect(
        201,
        "POST",
        "/api/v1/channels",
        Some(&ada),
        Some(json!({"name": "Film club", "visibility": "private"})),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let invite = c.a.expect(
        201,
        "POST",
        &format!("/api/v1/channels/{channel}/invites"),
        Some(&ada),
        Some(json!({"role": "admin", "max_uses": 1})),
    );
    let code = invite["code"].as_str().unwrap();
    c.b.expect(
        200,
        "POST",
        &format!("/api/v1/invites/{code}/accept"),
        Some(&bob),
        Some(json!({})),
    );
    let video = ready_video(c, &ada, &channel).await;
    (ada, bob, bob_id, channel, video)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_two_instances_share_one_room() {
    let Some(c) = cluster().await else { return };
    let (ada, bob, bob_user, channel, video) = two_members(&c).await;
    let (mut a, welcome) = Ws::join(addr(&c.a), &channel, &ada).await;
    let ada_id = welcome["member"].as_u64().unwrap();
    let (mut b, welcome) = Ws::join(addr(&c.b), &channel, &bob).await;
    let bob_id = welcome["member"].as_u64().unwrap();
    assert_ne!(ada_id, bob_id, "member ids are unique across instances");
    assert_eq!(
        welcome["room"]["members"].as_array().unwrap().len(),
        2,
        "{welcome}"
    );
    let joined = a.recv_type("presence").await;
    assert_eq!(
        (joined["event"].as_str(), joined["member"]["id"].as_u64()),
        (Some("joined"), Some(bob_id))
    );

    // A command from either instance reaches both, once, in one order.
    b.send(
        json!({"type": "command", "id": 1, "based_on_seq": 0, "command": "load", "media": video}),
    )
    .await;
    let sa = a.recv_type("state").await;
    let sb = b.recv_type("state").await;
    assert_eq!(sa["playback"], sb["playback"]);
    assert_eq!(sa["cause"], json!({"by": bob_id, "request_id": 1}));
    let seq = sa["playback"]["seq"].as_u64().unwrap();
    // Concurrent commands from both sides: everyone sees the same order.
    a.send(json!({"type": "command", "id": 2, "based_on_seq": seq, "command": "set_rate", "rate": 1.5}))
        .await;
    b.send(json!({"type": "command", "id": 3, "based_on_seq": seq, "command": "set_rate", "rate": 0.5}))
        .await;
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    for _ in 0..2 {
        seen_a.push(a.recv_type("state").await["playback"].clone());
        seen_b.push(b.recv_type("state").await["playback"].clone());
    }
    assert_eq!(seen_a, seen_b);

    // Chat from one instance, stored once, relayed to both with its id.
    b.send(json!({"type": "chat", "text": "hello from B"}))
        .await;
    let ca = a.recv_type("chat").await;
    let cb = b.recv_type("chat").await;
    assert_eq!(ca["id"], cb["id"]);
    assert_eq!(ca["text"], "hello from B");
    let history = c.a.expect(
        200,
        "GET",
        &format!("/api/v1/channels/{channel}/messages"),
        Some(&ada),
        None,
    );
    assert_eq!(history["items"].as_array().unwrap().len(), 1, "{history}");

    // A kick made on instance A reaches a member connected to B.
    let (status, _) = c.a.call(
        "DELETE",
        &format!("/api/v1/channels/{channel}/members/{bob_user}"),
        Some(&ada),
        None,
    );
    assert_eq!(status, 204);
    let (code, _) = b.closed().await;
    assert_eq!(code, 4003);
    let left = a.recv_type("presence").await;
    assert_eq!(left["event"], "left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_owner_moves_the_room_to_the_other_instance() {
    let Some(mut c) = cluster().await else { return };
    let (ada, bob, _, channel, video) = two_members(&c).await;
    // Ada joins first, on A: A owns the room.
    let (mut a, welcome) = Ws::join(addr(&c.a), &channel, &ada).await;
    let ada_id = welcome["member"].as_u64().unwrap();
    let (mut b, _) = Ws::join(addr(&c.b), &channel, &bob).await;
    a.send(
        json!({"type": "command", "id": 1, "based_on_seq": 0, "command": "load", "media": video}),
    )
    .await;
    let loaded = a.recv_type("state").await;
    let seq = loaded["playback"]["seq"].as_u64().unwrap();
    a.send(json!({"type": "command", "id": 2, "based_on_seq": seq, "command": "play"}))
        .await;
    let playing = a.recv_type("state").await["playback"].clone();
    assert_eq!(b.recv_type("state").await["playback"], loaded["playback"]);
    assert_eq!(b.recv_type("state").await["playback"], playing);
    let last_seq = playing["seq"].as_u64().unwrap();

    // A dies.
    c.a.child.kill().expect("SIGKILL");
    let _ = c.a.child.wait();
    let killed = Watch::start();
    while a.try_recv().await.is_some() {}

    // Ada reconnects to B and resumes: back in the room, playing the same
    // timeline, within 3 s.
    let (mut a, welcome) = loop {
        let mut ws = Ws::open(addr(&c.b), &channel).await;
        ws.hello(&ada, Some(json!({"member": ada_id, "last_seq": last_seq})))
            .await;
        match ws.try_recv().await {
            Some(w) if w["type"] == "welcome" => break (ws, w),
            other => {
                assert!(
                    killed.elapsed() < Duration::from_secs(10),
                    "no welcome: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(welcome["member"], ada_id, "{welcome}");
    let view = match welcome.get("room") {
        Some(room) => room["pending"]
            .as_array()
            .and_then(|p| p.last().cloned())
            .unwrap_or_else(|| room["playback"].clone()),
        None => playing.clone(),
    };
    assert_eq!(view["media"], playing["media"]);
    assert_eq!(view["playing"], true);
    assert_eq!(view["rate"], playing["rate"]);
    // Same timeline: the position both imply at one instant agrees.
    let at = |p: &Value, t: f64| {
        p["position_ms"].as_f64().unwrap()
            + (t - p["at_ms"].as_f64().unwrap()) * p["rate"].as_f64().unwrap()
    };
    let t = view["at_ms"]
        .as_f64()
        .unwrap()
        .max(playing["at_ms"].as_f64().unwrap())
        + 1000.0;
    assert!(
        (at(&view, t) - at(&playing, t)).abs() < 1.0,
        "{view} vs {playing}"
    );
    let resynced = killed.elapsed();
    assert!(
        resynced < Duration::from_secs(3),
        "back in sync after {resynced:?}"
    );

    // The room works on B: a command from Ada reaches Bob.
    a.send(json!({"type": "command", "id": 3, "based_on_seq": last_seq, "command": "pause"}))
        .await;
    let paused = a.recv_type("state").await;
    assert_eq!(paused["playback"]["playing"], false, "{paused}");
    let seen = b.recv_type("state").await;
    assert_eq!(seen["playback"], paused["playback"]);
    eprintln!("resynced {resynced:?} after the owner was killed");
}

/// A Redis of this test's own, on a port of its own, so it can be
/// restarted without disturbing anything else.
struct PrivateRedis {
    port: u16,
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = PrivateRedis::spawn(port, dir.path());
        PrivateRedis { port, child, dir }
    }

    fn spawn(port: u16, dir: &std::path::Path) -> std::process::Child {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/services.sh installs it)");
        let started = Watch::start();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills it (it keeps nothing) and starts a fresh one on the same port.
    fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        self.child = PrivateRedis::spawn(self.port, self.dir.path());
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `ws` until a chat with `text` arrives; answers its id.
async fn until_chat(ws: &mut Ws, text: &str) -> Option<u64> {
    loop {
        let m = ws.try_recv().await?;
        if m["type"] == "chat" && m["text"] == text {
            return m["id"].as_u64();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_redis_under_a_thousand_clients_loses_no_acknowledged_chat() {
    const ROOMS: usize = 10;
    const PER_ROOM: usize = 100;
    let Some(pg) = service_url("VIDEOSYNC_TEST_POSTGRES_URL") else {
        return;
    };
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut redis = PrivateRedis::start();
    let database = postgres_namespace(&pg).await;
    let env = [
        ("VIDEOSYNC_JWT_SECRET", JWT_SECRET.to_owned()),
        ("VIDEOSYNC_DATABASE_URL", database),
        ("VIDEOSYNC_QUEUE_URL", redis.url()),
        ("VIDEOSYNC_BUS_URL", redis.url()),
        ("VIDEOSYNC_LOG_URL", redis.url()),
        ("VIDEOSYNC_KV_URL", redis.url()),
        ("VIDEOSYNC_NAMESPACE", unique_name("restart")),
        ("VIDEOSYNC_CHAT_PER_MINUTE", "600".to_owned()),
    ];
    let a = Server::start(&env);
    let b = Server::start(&env);
    let servers = [addr(&a), addr(&b)];

    // Ten rooms of a hundred, every other member on the other instance
    // (the first on A, which then owns the room).
    let mut rooms = Vec::new();
    for r in 0..ROOMS {
        let (token, _) = sign_up_with_id(&a, &format!("host{r}"));
        let channel = a.expect(
            201,
            "POST",
            "/api/v1/channels",
            Some(&token),
            Some(json!({"name": format!("room {r}"), "visibility": "public"})),
        )["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut clients = Vec::new();
        for batch in 0..PER_ROOM / 25 {
            let joins = (0..25).map(|i| {
                let server = servers[(batch * 25 + i) % 2];
                let (channel, token) = (channel.clone(), token.clone());
                async move { Ws::join(server, &channel, &token).await.0 }
            });
            clients.extend(futures::future::join_all(joins).await);
        }
        rooms.push((token, channel, clients));
    }

    // Each room: a chat from a member on B (the owner's peer instance),
    // acknowledged when it comes back to its sender, then seen by all.
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for (r, (_, channel, clients)) in rooms.iter_mut().enumerate() {
        let text = format!("before in room {r}");
        clients[1].send(json!({"type": "chat", "text": text})).await;
        let reads = clients.iter_mut().map(|ws| until_chat(ws, &text));
        let ids = futures::future::join_all(reads).await;
        assert!(
            ids.iter().all(|id| id.is_some() && *id == ids[0]),
            "room {r}: {ids:?}"
        );
        acknowledged.push((channel.clone(), text));
    }

    // Redis goes away and comes back empty.
    redis.restart();
    let back = Watch::start();

    // Every room carries on: a chat from B, sent until it is acknowledged
    // (inputs sent before the bus reconnects are lost, unacknowledged),
    // reaches all hundred members within 5 s of Redis being back.
    let checks = rooms
        .iter_mut()
        .enumerate()
        .map(|(r, (_, channel, clients))| {
            async move {
                // Each try says something new: a try sent while the bus was
                // still away may or may not arrive, and must not be taken for
                // the acknowledged one.
                let mut attempt = 0;
                let (text, sender_ack) = loop {
                    attempt += 1;
                    let text = format!("after in room {r}, try {attempt}");
                    clients[1].send(json!({"type": "chat", "text": text})).await;
                    let echo = tokio::time::timeout(
                        Duration::from_secs(1),
                        until_chat(&mut clients[1], &text),
                    )
                    .await;
                    if let Ok(Some(id)) = echo {
                        break (text, id);
                    }
                    assert!(
                        back.elapsed() < Duration::from_secs(30),
                        "room {r}: no acknowledgement"
                    );
                };
                let reads = clients
                    .iter_mut()
                    .enumerate()
                    .filter(|(i, _)| *i != 1)
                    .map(|(_, ws)| until_chat(ws, &text));
                let ids = futures::future::join_all(reads).await;
                assert!(
                    ids.iter().all(|id| *id == Some(sender_ack)),
                    "room {r}: {ids:?}"
                );
                let took = back.elapsed();
                eprintln!("room {r} back after {took:?} ({attempt} tries)");
                (took, (channel.clone(), text))
            }
        });
    let results = futures::future::join_all(checks).await;
    let worst = results.iter().map(|(t, _)| *t).max().unwrap();
    acknowledged.extend(results.into_iter().map(|(_, a)| a));
    if worst >= Duration::from_secs(5) {
        let log_a: Vec<String> = a.log.try_iter().collect();
        let log_b: Vec<String> = b.log.try_iter().collect();
        eprintln!("A: {log_a:#?}\nB: {log_b:#?}");
    }
    assert!(
        worst < Duration::from_secs(5),
        "the last room was back after {worst:?}"
    );

    // Every acknowledged message is in the history.
    for (channel, text) in &acknowledged {
        let history = a.expect(
            200,
            "GET",
            &format!("/api/v1/channels/{channel}/messages?limit=200"),
            Some(&rooms[0].0),
            None,
        );
        let texts: Vec<&str> = history["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["text"].as_str())
            .collect();
        assert!(
            texts.contains(&text.as_str()),
            "{text} missing from {texts:?}"
        );
    }
    eprintln!(
        "{} clients: every room back within {worst:?} of Redis's restart",
        ROOMS * PER_ROOM
    );
}
