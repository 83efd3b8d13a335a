//! Watch-together rooms over real WebSocket connections (tokio-tungstenite
//! clients over TCP to the served router), on both backend sets.

use std::net::SocketAddr;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use videosync_core::VideoId;

use crate::harness::{test_config, Set, TestApp, User};
use crate::ws::Ws;

/// The router served on a loopback port for as long as the value lives.
struct Served {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(t: &TestApp) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = t.app.clone();
    tokio::spawn(async move {
        let _ = videosync_server::serve(listener, app, async move {
            let _ = stopped.await;
        })
        .await;
    });
    Served { addr, _stop: stop }
}

/// A ready video in `channel`, marked ready in the catalog (no
/// transcoding: the room only needs its id and status).
async fn ready_video(t: &TestApp, owner: &User, channel: &str) -> String {
    ready_video_of(t, owner, channel, None).await
}

/// [`ready_video`], `duration_ms` long when given.
async fn ready_video_of(
    t: &TestApp,
    owner: &User,
    channel: &str,
    duration_ms: Option<u64>,
) -> String {
    let (status, video) = t
        .post(
            &format!("/api/v1/channels/{channel}/videos"),
            Some(&owner.token),
            json!({"title": "feature"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{video}");
    let id: VideoId = video["id"].as_str().unwrap().parse().unwrap();
    crate::ws::mark_ready(&*t.app.backends.catalog, id, duration_ms).await;
    id.to_string()
}

async fn ticket(t: &TestApp, user: &User, channel: &str) -> String {
    let (status, body) = t
        .post(
            &format!("/api/v1/channels/{channel}/live/tickets"),
            Some(&user.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["ticket"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn members_see_one_timeline_chat_and_presence() {
    for t in TestApp::each().await {
        let owner = t.register("rt-owner").await;
        let viewer = t.register("rt-viewer").await;
        let channel = t.channel(&owner, "public", false).await;
        t.add_member(&channel, &owner, &viewer, "viewer").await;
        let video = ready_video(&t, &owner, &channel).await;
        let served = serve(&t).await;

        let (mut a, welcome) = Ws::join(served.addr, &channel, &owner.token).await;
        assert_eq!(welcome["v"], 2);
        let room = &welcome["room"];
        assert_eq!(room["members"].as_array().unwrap().len(), 1, "{welcome}");
        assert_eq!(room["members"][0]["role"], "owner");
        assert_eq!(room["playback"]["media"], Value::Null);
        let a_id = welcome["member"].as_u64().unwrap();

        // The viewer comes in with a one-use ticket instead of the token.
        let viewer_ticket = ticket(&t, &viewer, &channel).await;
        let (mut b, welcome) = Ws::join(served.addr, &channel, &viewer_ticket).await;
        let b_id = welcome["member"].as_u64().unwrap();
        assert_ne!(a_id, b_id);
        assert_eq!(welcome["room"]["members"].as_array().unwrap().len(), 2);
        let joined = a.recv_type("presence").await;
        assert_eq!(joined["event"], "joined");
        assert_eq!(joined["member"]["id"], b_id);
        assert_eq!(joined["member"]["name"], "rt-viewer");
        assert_eq!(joined["member"]["role"], "viewer");

        // A ticket works once.
        let mut again = Ws::open(served.addr, &channel).await;
        again.hello(&viewer_ticket, None).await;
        let (code, errors) = again.closed().await;
        assert_eq!(code, 4001);
        assert_eq!(errors[0]["code"], "forbidden", "{errors:?}");

        // Clock pings are answered with the server's receive time.
        a.send(json!({"type": "ping", "id": 5})).await;
        let pong = a.recv_type("pong").await;
        assert_eq!(pong["id"], 5);
        assert_eq!(pong["t0_ms"], json!(a.sent));
        assert!(pong["t1_ms"].as_f64().unwrap() <= pong["sent_ms"].as_f64().unwrap());

        // The owner loads and plays; both get the same states, naming the
        // command.
        a.send(json!({"type": "command", "id": 1, "based_on_seq": 0, "command": "load", "media": video}))
            .await;
        let sa = a.recv_type("state").await;
        let sb = b.recv_type("state").await;
        assert_eq!(sa["playback"], sb["playback"]);
        assert_eq!(sa["playback"]["media"], video.as_str());
        assert_eq!(sa["cause"], json!({"by": a_id, "request_id": 1}));
        let seq = sa["playback"]["seq"].as_u64().unwrap();
        a.send(json!({"type": "command", "id": 2, "based_on_seq": seq, "command": "play"}))
            .await;
        let sa = a.recv_type("state").await;
        let sb = b.recv_type("state").await;
        assert_eq!(sa["playback"], sb["playback"]);
        assert_eq!(sa["playback"]["playing"], true);
        let at = sa["playback"]["at_ms"].as_f64().unwrap();
        assert!(
            at >= sa["sent_ms"].as_f64().unwrap(),
            "scheduled ahead: {sa}"
        );

        // A viewer may not control playback (the default matrix).
        b.send(json!({"type": "command", "id": 9, "based_on_seq": seq + 1, "command": "pause"}))
            .await;
        let err = b.recv_type("error").await;
        assert_eq!(err["code"], "forbidden");
        assert_eq!(err["request_id"], 9);

        // Only ready videos of this channel load.
        a.send(json!({"type": "command", "id": 3, "based_on_seq": seq + 1, "command": "queue_add", "media": "vid_nope"}))
            .await;
        let err = a.recv_type("error").await;
        assert_eq!(err["code"], "not_found", "{err}");
        assert_eq!(err["request_id"], 3);
        a.send(json!({"type": "command", "id": 4, "based_on_seq": seq + 1, "command": "queue_add", "media": video}))
            .await;
        let qa = a.recv_type("queue").await;
        let qb = b.recv_type("queue").await;
        assert_eq!(qa["items"], qb["items"]);
        assert_eq!(qa["total"], 1);

        // Chat is stored, numbered and relayed to everyone in one order.
        b.send(json!({"type": "chat", "text": "<b>hello</b> room"}))
            .await;
        a.send(json!({"type": "chat", "text": "second"})).await;
        let mut seen_a = Vec::new();
        let mut seen_b = Vec::new();
        for _ in 0..2 {
            seen_a.push(a.recv_type("chat").await);
            seen_b.push(b.recv_type("chat").await);
        }
        let strip = |v: &Vec<Value>| {
            v.iter()
                .map(|m| (m["id"].clone(), m["from"].clone(), m["text"].clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&seen_a), strip(&seen_b));
        let (status, history) = t
            .get(
                &format!("/api/v1/channels/{channel}/messages"),
                Some(&viewer.token),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{history}");
        let items = history["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        // Newest first, text kept as it was typed (never rendered).
        assert_eq!(items[1]["text"], "<b>hello</b> room");
        assert_eq!(items[1]["author_name"], "rt-viewer");
        let ids: Vec<&Value> = seen_a.iter().map(|m| &m["id"]).collect();
        assert!(ids.contains(&&items[0]["id"]) && ids.contains(&&items[1]["id"]));

        // Buffering and ready reach the room (policy `wait` by default:
        // the group waits for the viewer).
        b.send(json!({"type": "buffering", "position_ms": 1000.0}))
            .await;
        let waiting = a.recv_type("waiting").await;
        assert_eq!(waiting["members"][0]["member"], b_id, "{waiting}");
        b.send(json!({"type": "ready", "position_ms": 1000.0}))
            .await;
        let waiting = a.recv_type("waiting").await;
        assert_eq!(waiting["members"], json!([]));

        // Leaving is seen by the others.
        drop(b);
        let left = a.recv_type("presence").await;
        assert_eq!(left["event"], "left");
        assert_eq!(left["member"]["id"], b_id);
        let _ = t.set;
    }
}

#[tokio::test]
async fn a_reconnect_resumes_with_the_missed_changes() {
    for t in TestApp::each().await {
        let owner = t.register("rs-owner").await;
        let other = t.register("rs-other").await;
        let channel = t.channel(&owner, "public", false).await;
        t.add_member(&channel, &owner, &other, "admin").await;
        let video = ready_video(&t, &owner, &channel).await;
        let served = serve(&t).await;
        let (a, welcome) = Ws::join(served.addr, &channel, &owner.token).await;
        let a_id = welcome["member"].as_u64().unwrap();
        let (mut b, _) = Ws::join(served.addr, &channel, &other.token).await;
        let seq0 = welcome["room"]["seq"].as_u64().unwrap();

        // The owner's connection drops; meanwhile the other member loads.
        drop(a);
        b.send(json!({"type": "command", "id": 1, "based_on_seq": seq0, "command": "load", "media": video}))
            .await;
        let missed = b.recv_type("state").await;

        // Back with `resume`: the same member id, no full room, the missed
        // state.
        let mut a = Ws::open(served.addr, &channel).await;
        a.hello(
            &owner.token,
            Some(json!({"member": a_id, "last_seq": seq0})),
        )
        .await;
        let welcome = a.recv().await;
        assert_eq!(welcome["type"], "welcome");
        assert_eq!(welcome["member"], a_id);
        assert!(welcome.get("room").is_none(), "{welcome}");
        let state = a.recv_type("state").await;
        assert_eq!(state["playback"], missed["playback"]);

        // Someone else cannot take that member id over: they get their own.
        let mut c = Ws::open(served.addr, &channel).await;
        c.hello(&other.token, Some(json!({"member": a_id, "last_seq": 0})))
            .await;
        let welcome = c.recv().await;
        assert_ne!(welcome["member"], a_id, "{welcome}");

        // A resume from a sequence number the room never issued is refused.
        let mut d = Ws::open(served.addr, &channel).await;
        d.hello(
            &other.token,
            Some(json!({"member": 999, "last_seq": 1_000_000})),
        )
        .await;
        let (code, errors) = d.closed().await;
        assert_eq!(code, 4000);
        assert_eq!(errors[0]["code"], "invalid_value", "{errors:?}");
    }
}

#[tokio::test]
async fn bad_frames_get_protocol_errors_and_the_room_lives_on() {
    for t in TestApp::each().await {
        let owner = t.register("bad-owner").await;
        let stranger = t.register("bad-stranger").await;
        let channel = t.channel(&owner, "public", false).await;
        let private = t.channel(&owner, "private", false).await;
        let served = serve(&t).await;
        let addr = served.addr;

        // Something other than hello first.
        let mut ws = Ws::open(addr, &channel).await;
        ws.send(json!({"type": "ping", "id": 1})).await;
        let (code, errors) = ws.closed().await;
        assert_eq!(
            (code, errors[0]["code"].as_str()),
            (4000, Some("malformed"))
        );

        // A version this server does not speak.
        let mut ws = Ws::open(addr, &channel).await;
        ws.send(json!({"type": "hello", "versions": [1, 7], "token": owner.token, "name": "x"}))
            .await;
        let (code, errors) = ws.closed().await;
        assert_eq!(code, 4000);
        assert_eq!(errors[0]["code"], "unsupported_version");

        // Forged and foreign tokens.
        for token in [
            "not-a-token".to_owned(),
            format!("{}x", owner.token),
            "vst_forged".to_owned(),
        ] {
            let mut ws = Ws::open(addr, &channel).await;
            ws.hello(&token, None).await;
            let (code, errors) = ws.closed().await;
            assert_eq!(code, 4001, "{token}");
            assert_eq!(errors[0]["code"], "forbidden");
        }

        // A private channel is not there for a non-member (as over REST).
        let mut ws = Ws::open(addr, &private).await;
        ws.hello(&stranger.token, None).await;
        let (code, _) = ws.closed().await;
        assert_eq!(code, 4004);

        // A ticket is for one channel only.
        let ticket = ticket(&t, &owner, &channel).await;
        let mut ws = Ws::open(addr, &private).await;
        ws.hello(&ticket, None).await;
        assert_eq!(ws.closed().await.0, 4001);

        // A guest where guests are not let in.
        let (status, guest) = t
            .post("/api/v1/auth/guest", None, json!({"display_name": "Gus"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{guest}");
        let guest_token = guest["access_token"].as_str().unwrap().to_owned();
        let mut ws = Ws::open(addr, &channel).await;
        ws.hello(&guest_token, None).await;
        let (code, errors) = ws.closed().await;
        assert_eq!(code, 4003);
        assert_eq!(errors[0]["code"], "forbidden");

        // Inside the room: garbage gets errors, the connection lives.
        let (mut ws, _) = Ws::join(addr, &channel, &owner.token).await;
        ws.send_raw(Message::text("{not json")).await;
        assert_eq!(ws.recv_type("error").await["code"], "malformed");
        ws.send_raw(Message::binary(vec![1u8, 2, 3])).await;
        assert_eq!(ws.recv_type("error").await["code"], "malformed");
        ws.send(json!({"type": "teleport"})).await;
        assert_eq!(ws.recv_type("error").await["code"], "unknown_type");
        ws.send_raw(Message::text(
            r#"{"type":"command","id":1,"based_on_seq":0,"command":"set_rate","rate":1e400,"sent_ms":50}"#,
        ))
        .await;
        let err = ws.recv_type("error").await;
        assert_eq!(err["code"], "invalid_value", "{err}");
        ws.send(json!({"type": "command", "id": 2, "based_on_seq": 0, "command": "set_rate", "rate": 9.0}))
            .await;
        let err = ws.recv_type("error").await;
        assert_eq!(
            (err["code"].as_str(), err["request_id"].as_u64()),
            (Some("invalid_value"), Some(2))
        );
        ws.send(json!({"type": "chat", "text": "x".repeat(20_000)}))
            .await;
        assert_eq!(ws.recv_type("error").await["code"], "too_large");
        ws.send(json!({"type": "hello", "versions": [2], "token": owner.token, "name": "x"}))
            .await;
        assert_eq!(ws.recv_type("error").await["code"], "malformed");
        ws.send(json!({"type": "ping", "id": 77})).await;
        assert_eq!(ws.recv_type("pong").await["id"], 77);

        // A frame past the socket's limit ends the connection (1009).
        ws.send_raw(Message::text("y".repeat(200_000))).await;
        let (code, _) = ws.closed().await;
        assert!(code == 1009 || code == 1006 || code == 1005, "{code}");

        // The room still serves.
        let (mut ws, welcome) = Ws::join(addr, &channel, &owner.token).await;
        assert_eq!(welcome["type"], "welcome");
        ws.send(json!({"type": "ping", "id": 1})).await;
        ws.recv_type("pong").await;
    }
}

#[tokio::test]
async fn a_flood_is_refused_then_disconnected() {
    let mut config = test_config();
    config.realtime.frames_per_second = 5;
    let t = TestApp::with_config(Set::Embedded, config).await.unwrap();
    let owner = t.register("flood-owner").await;
    let channel = t.channel(&owner, "public", false).await;
    let served = serve(&t).await;
    let (mut ws, _) = Ws::join(served.addr, &channel, &owner.token).await;
    for i in 0..200 {
        ws.send(json!({"type": "typing", "active": i % 2 == 0}))
            .await;
    }
    let (code, errors) = ws.closed().await;
    assert_eq!(code, 4029);
    assert!(
        errors.iter().any(|e| e["code"] == "rate_limited"),
        "{errors:?}"
    );
    // Refusals are not a flood of their own: about one a second.
    assert!(errors.len() <= 3, "{}", errors.len());
}

#[tokio::test]
async fn kicks_bans_and_role_changes_take_effect_in_the_room() {
    for t in TestApp::each().await {
        let owner = t.register("mod-owner").await;
        let viewer = t.register("mod-viewer").await;
        let other = t.register("mod-other").await;
        let channel = t.channel(&owner, "private", false).await;
        t.add_member(&channel, &owner, &viewer, "viewer").await;
        t.add_member(&channel, &owner, &other, "viewer").await;
        let served = serve(&t).await;
        let (mut a, _) = Ws::join(served.addr, &channel, &owner.token).await;
        let (mut b, welcome) = Ws::join(served.addr, &channel, &viewer.token).await;
        let b_id = welcome["member"].as_u64().unwrap();
        let (mut c, _) = Ws::join(served.addr, &channel, &other.token).await;

        // Promoted: everyone sees the new role.
        let (status, body) = t
            .call(
                Method::PUT,
                &format!("/api/v1/channels/{channel}/members/{}", viewer.id),
                Some(&owner.token),
                Some(json!({"role": "moderator"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        loop {
            let p = a.recv_type("presence").await;
            if p["event"] == "updated" && p["member"]["id"] == b_id {
                assert_eq!(p["member"]["role"], "moderator");
                break;
            }
        }

        // Banned: disconnected at once, and refused when coming back.
        let (status, body) = t
            .call(
                Method::PUT,
                &format!("/api/v1/channels/{channel}/bans/{}", other.id),
                Some(&owner.token),
                Some(json!({"reason": "spam"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (code, _) = c.closed().await;
        assert_eq!(code, 4003);
        let mut again = Ws::open(served.addr, &channel).await;
        again.hello(&other.token, None).await;
        let (code, _) = again.closed().await;
        assert!(code == 4003 || code == 4004, "{code}");

        // Kicked: out of the room.
        let (status, _) = t
            .call(
                Method::DELETE,
                &format!("/api/v1/channels/{channel}/members/{}", viewer.id),
                Some(&owner.token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (code, _) = b.closed().await;
        assert_eq!(code, 4003);
        let _ = t.set;
    }
}

#[tokio::test]
async fn joining_the_channel_gives_a_visitor_in_the_room_the_members_rights() {
    for t in TestApp::each().await {
        let owner = t.register("join-owner").await;
        let visitor = t.register("join-visitor").await;
        let channel = t.channel(&owner, "public", false).await;
        let served = serve(&t).await;
        let (mut ws, welcome) = Ws::join(served.addr, &channel, &visitor.token).await;
        let me = welcome["member"].as_u64().unwrap();

        // Not a member yet: watching only.
        ws.send(json!({"type": "chat", "text": "hi"})).await;
        let err = ws.recv_type("error").await;
        assert_eq!(err["code"], "forbidden", "{err}");

        // Joined over the REST API: the same connection may chat now.
        let (status, body) = t
            .call(
                Method::POST,
                &format!("/api/v1/channels/{channel}/join"),
                Some(&visitor.token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        loop {
            let p = ws.recv_type("presence").await;
            if p["event"] == "updated" && p["member"]["id"] == me {
                assert_eq!(p["member"]["role"], "viewer", "{p}");
                // The account, for moderators acting through the API.
                assert_eq!(p["member"]["account"], visitor.id.as_str(), "{p}");
                break;
            }
        }
        ws.send(json!({"type": "chat", "text": "hi, as a member"}))
            .await;
        let chat = ws.recv_type("chat").await;
        assert_eq!(chat["text"], "hi, as a member");
    }
}

#[tokio::test]
async fn an_expiring_token_ends_the_connection_with_4001() {
    let mut config = test_config();
    config.auth.access_ttl_seconds = 2;
    let t = TestApp::with_config(Set::Embedded, config).await.unwrap();
    let owner = t.register("exp-owner").await;
    let channel = t.channel(&owner, "public", false).await;
    let served = serve(&t).await;
    let (mut ws, _) = Ws::join(served.addr, &channel, &owner.token).await;
    let (code, errors) = ws.closed().await;
    assert_eq!(code, 4001);
    assert!(errors[0]["message"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn the_queue_plays_on_at_the_end_of_the_video() {
    for t in TestApp::each().await {
        let owner = t.register("q-owner").await;
        let channel = t.channel(&owner, "public", false).await;
        let first = ready_video_of(&t, &owner, &channel, Some(1_200)).await;
        let second = ready_video_of(&t, &owner, &channel, Some(60_000)).await;
        let served = serve(&t).await;
        let (mut a, _) = Ws::join(served.addr, &channel, &owner.token).await;
        a.send(json!({"type": "command", "id": 1, "based_on_seq": 0, "command": "load", "media": first}))
            .await;
        let seq = a.recv_type("state").await["playback"]["seq"]
            .as_u64()
            .unwrap();
        a.send(json!({"type": "command", "id": 2, "based_on_seq": seq, "command": "queue_add", "media": second}))
            .await;
        let queue = a.recv_type("queue").await;
        assert_eq!(queue["total"], 1);
        let seq = queue["seq"].as_u64().unwrap();
        a.send(json!({"type": "command", "id": 3, "based_on_seq": seq, "command": "play"}))
            .await;
        let playing = a.recv_type("state").await["playback"].clone();
        assert_eq!(playing["media"], first.as_str());
        // 1.2 s later on the room's timeline, the second plays, from 0, and
        // leaves the queue.
        let queue = a.recv_type("queue").await;
        assert_eq!(queue["total"], 0, "{queue}");
        let next = a.recv_type("state").await;
        assert_eq!(next["playback"]["media"], second.as_str(), "{next}");
        assert_eq!(next["playback"]["playing"], true);
        assert_eq!(next["playback"]["position_ms"], 0.0);
        assert!(next.get("cause").is_none(), "the room's own change: {next}");
        let ended = playing["at_ms"].as_f64().unwrap() + 1_200.0;
        assert!(
            next["sent_ms"].as_f64().unwrap() >= ended - 1.0,
            "{next} before {ended}"
        );
    }
}

#[tokio::test]
async fn members_see_each_others_measured_sync() {
    let t = TestApp::new(Set::Embedded).await.unwrap();
    let owner = t.register("sync-owner").await;
    let viewer = t.register("sync-viewer").await;
    let channel = t.channel(&owner, "public", false).await;
    t.add_member(&channel, &owner, &viewer, "viewer").await;
    let video = ready_video(&t, &owner, &channel).await;
    let served = serve(&t).await;
    let (mut a, _) = Ws::join(served.addr, &channel, &owner.token).await;
    let (mut b, welcome) = Ws::join(served.addr, &channel, &viewer.token).await;
    let b_id = welcome["member"].as_u64().unwrap();
    a.send(
        json!({"type": "command", "id": 1, "based_on_seq": 0, "command": "load", "media": video}),
    )
    .await;
    a.recv_type("state").await;
    b.recv_type("state").await;
    // Paused at 0: a player reporting 250 ms is 250 ms ahead.
    let report = |position: f64| {
        json!({"type": "report", "position_ms": position, "sampled_at_ms": 0.0, "rate": 0.0,
               "rtt_ms": 40.0, "delay_ms": 20.0, "offset_uncertainty_ms": 5.0})
    };
    b.send(report(250.0)).await;
    let seen = loop {
        let p = a.recv_type("presence").await;
        if p["event"] == "updated" && p["member"]["id"] == b_id {
            break p;
        }
    };
    assert_eq!(seen["member"]["sync_error_ms"], 250.0, "{seen}");
    assert_eq!(seen["member"]["rtt_ms"], 40.0);
    // Within 50 ms of what was announced: nobody is told again.
    b.send(report(260.0)).await;
    b.send(json!({"type": "ping", "id": 9})).await;
    b.recv_type("pong").await;
    // A joiner sees the latest measurement in the room's member list.
    let (_c, welcome) = Ws::join(served.addr, &channel, &owner.token).await;
    let members = welcome["room"]["members"].as_array().unwrap();
    let bm = members.iter().find(|m| m["id"] == b_id).unwrap();
    assert_eq!(bm["sync_error_ms"], 260.0, "{bm}");
}

#[tokio::test]
async fn authors_edit_and_moderators_delete_chat_and_the_room_sees_it() {
    for t in TestApp::each().await {
        let owner = t.register("ed-owner").await;
        let viewer = t.register("ed-viewer").await;
        let other = t.register("ed-other").await;
        let channel = t.channel(&owner, "public", false).await;
        t.add_member(&channel, &owner, &viewer, "viewer").await;
        t.add_member(&channel, &owner, &other, "viewer").await;
        let served = serve(&t).await;
        let (mut a, _) = Ws::join(served.addr, &channel, &owner.token).await;
        let (mut b, _) = Ws::join(served.addr, &channel, &viewer.token).await;
        b.send(json!({"type": "chat", "text": "frist"})).await;
        let id = b.recv_type("chat").await["id"].as_u64().unwrap();
        a.recv_type("chat").await;
        let path = format!("/api/v1/channels/{channel}/messages/{id}");

        // Only the author edits; the room sees the new text.
        let edit = |text: &str| Some(json!({"text": text}));
        let r = t
            .call(Method::PATCH, &path, Some(&other.token), edit("hijack"))
            .await;
        assert_eq!(r.0, StatusCode::FORBIDDEN, "{}", r.1);
        let r = t
            .call(Method::PATCH, &path, Some(&owner.token), edit("hijack"))
            .await;
        assert_eq!(
            r.0,
            StatusCode::FORBIDDEN,
            "even a moderator does not put words in mouths"
        );
        let r = t
            .call(Method::PATCH, &path, Some(&viewer.token), edit("first"))
            .await;
        assert_eq!(r.0, StatusCode::OK, "{}", r.1);
        assert_eq!(r.1["text"], "first");
        let seen = a.recv_type("chat_edited").await;
        assert_eq!(
            (seen["id"].as_u64(), seen["text"].as_str()),
            (Some(id), Some("first"))
        );
        let r = t
            .call(Method::PATCH, &path, Some(&viewer.token), edit("   "))
            .await;
        assert_eq!(r.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.1);

        // A viewer may not delete someone else's; the owner (a moderator)
        // may; the room sees it; the history keeps the number, no text.
        let r = t
            .call(Method::DELETE, &path, Some(&other.token), None)
            .await;
        assert_eq!(r.0, StatusCode::FORBIDDEN, "{}", r.1);
        let r = t
            .call(Method::DELETE, &path, Some(&owner.token), None)
            .await;
        assert_eq!(r.0, StatusCode::NO_CONTENT, "{}", r.1);
        assert_eq!(b.recv_type("chat_deleted").await["id"].as_u64(), Some(id));
        let (_, history) = t
            .get(
                &format!("/api/v1/channels/{channel}/messages"),
                Some(&viewer.token),
            )
            .await;
        assert_eq!(history["items"][0]["deleted"], true, "{history}");
        assert_eq!(history["items"][0]["text"], "");
        // A deleted message cannot be edited; an unknown one is not there.
        let r = t
            .call(Method::PATCH, &path, Some(&viewer.token), edit("back"))
            .await;
        assert_eq!(r.0, StatusCode::CONFLICT, "{}", r.1);
        let missing = format!("/api/v1/channels/{channel}/messages/999");
        let r = t
            .call(Method::DELETE, &missing, Some(&owner.token), None)
            .await;
        assert_eq!(r.0, StatusCode::NOT_FOUND, "{}", r.1);
    }
}

/// `member`'s name as the room shows it, from a welcome's member list.
fn name_in(welcome: &Value, member: u64) -> String {
    welcome["room"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == member)
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .unwrap()
}

/// Changes the channel's settings and waits until the room has them: the
/// policy for members who fall behind moves, so the room sends a snapshot.
async fn set_room_settings(t: &TestApp, owner: &User, channel: &str, settings: Value, ws: &mut Ws) {
    let behind = settings["behind"].clone();
    let (status, body) = t
        .call(
            Method::PATCH,
            &format!("/api/v1/channels/{channel}"),
            Some(&owner.token),
            Some(json!({ "settings": settings })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    loop {
        let s = ws.recv_type("snapshot").await;
        if s["policy"]["behind"] == behind {
            return;
        }
    }
}

#[tokio::test]
async fn typing_expires_and_chat_mentions_members() {
    for t in TestApp::each().await {
        let owner = t.register("ty-owner").await;
        let viewer = t.register("ty-viewer").await;
        let channel = t.channel(&owner, "public", false).await;
        t.add_member(&channel, &owner, &viewer, "viewer").await;
        let served = serve(&t).await;
        let (mut a, welcome) = Ws::join(served.addr, &channel, &owner.token).await;
        let a_id = welcome["member"].as_u64().unwrap();
        let a_name = name_in(&welcome, a_id);
        let (mut b, welcome) = Ws::join(served.addr, &channel, &viewer.token).await;
        let b_id = welcome["member"].as_u64().unwrap();

        // Typing, then a message: the room hears the start, the stop (the
        // message ends it), and the message with whom it mentions.
        b.send(json!({"type": "typing", "active": true})).await;
        let typing = a.recv_among(&["typing", "chat"]).await;
        assert_eq!(
            (
                typing["type"].as_str(),
                typing["member"].as_u64(),
                typing["active"].as_bool()
            ),
            (Some("typing"), Some(b_id), Some(true))
        );
        // Said again while typing: no news for the room.
        b.send(json!({"type": "typing", "active": true})).await;
        let shout = a_name.to_uppercase();
        b.send(json!({"type": "chat", "text": format!("look @{shout}, and @nobody")}))
            .await;
        let stop = a.recv_among(&["typing", "chat"]).await;
        assert_eq!(
            (stop["type"].as_str(), stop["active"].as_bool()),
            (Some("typing"), Some(false)),
            "{stop}"
        );
        let chat = a.recv_among(&["typing", "chat"]).await;
        assert_eq!(chat["type"], "chat", "{chat}");
        assert_eq!(chat["mentions"], json!([a_id]), "{chat}");
        b.send(json!({"type": "chat", "text": "no mention here"}))
            .await;
        let plain = a.recv_type("chat").await;
        assert!(plain.get("mentions").is_none(), "{plain}");

        // Typing that is not said again runs out (6 s) and the room hears
        // it stopped.
        b.send(json!({"type": "typing", "active": true})).await;
        let started = a.recv_among(&["typing"]).await;
        assert_eq!(started["active"], true);
        let stopped =
            tokio::time::timeout(std::time::Duration::from_secs(9), a.recv_type("typing"))
                .await
                .expect("the typing lease runs out within 9 s");
        assert_eq!(
            (stopped["member"].as_u64(), stopped["active"].as_bool()),
            (Some(b_id), Some(false))
        );

        // Typing, then leaving: the room hears it stopped.
        b.send(json!({"type": "typing", "active": true})).await;
        assert_eq!(a.recv_type("typing").await["active"], true);
        drop(b);
        let stopped = a.recv_among(&["typing"]).await;
        assert_eq!(
            (stopped["member"].as_u64(), stopped["active"].as_bool()),
            (Some(b_id), Some(false))
        );
    }
}

#[tokio::test]
async fn mutes_and_slow_mode_hold_in_the_room() {
    for t in TestApp::each().await {
        let owner = t.register("mu-owner").await;
        let viewer = t.register("mu-viewer").await;
        let other = t.register("mu-other").await;
        let channel = t.channel(&owner, "public", false).await;
        t.add_member(&channel, &owner, &viewer, "viewer").await;
        t.add_member(&channel, &owner, &other, "viewer").await;
        let served = serve(&t).await;
        let (mut a, _) = Ws::join(served.addr, &channel, &owner.token).await;
        let (mut b, welcome) = Ws::join(served.addr, &channel, &viewer.token).await;
        let b_id = welcome["member"].as_u64().unwrap();
        let (mut c, _) = Ws::join(served.addr, &channel, &other.token).await;
        let mutes = format!("/api/v1/channels/{channel}/mutes");
        let mute_of = |u: &User| format!("{mutes}/{}", u.id);

        // Who may mute whom: not a viewer, not the owner, not an unknown
        // user, not for ever.
        let week = Some(json!({"seconds": 604_800}));
        let r = t
            .call(
                Method::PUT,
                &mute_of(&other),
                Some(&viewer.token),
                week.clone(),
            )
            .await;
        assert_eq!(r.0, StatusCode::FORBIDDEN, "{}", r.1);
        let r = t
            .call(
                Method::PUT,
                &mute_of(&owner),
                Some(&owner.token),
                week.clone(),
            )
            .await;
        assert_eq!(r.0, StatusCode::FORBIDDEN, "{}", r.1);
        let unknown = format!("{mutes}/{}", videosync_core::UserId::new());
        let r = t
            .call(Method::PUT, &unknown, Some(&owner.token), week.clone())
            .await;
        assert_eq!(r.0, StatusCode::NOT_FOUND, "{}", r.1);
        for bad in [
            json!({"seconds": 0}),
            json!({"seconds": 604_801}),
            json!({"seconds": "1"}),
            json!({"seconds": 1.5}),
            json!({}),
        ] {
            let r = t
                .call(
                    Method::PUT,
                    &mute_of(&viewer),
                    Some(&owner.token),
                    Some(bad.clone()),
                )
                .await;
            assert!(
                r.0.is_client_error() && r.0 != StatusCode::NOT_FOUND,
                "{bad}: {} {}",
                r.0,
                r.1
            );
        }

        // Muted: the room refuses their chat and reactions, drops their
        // typing, and lets everyone else talk.
        let r = t
            .call(
                Method::PUT,
                &mute_of(&viewer),
                Some(&owner.token),
                // JSON Schema's integer: 600.0 is a whole number too.
                Some(json!({"seconds": 600.0})),
            )
            .await;
        assert_eq!(r.0, StatusCode::OK, "{}", r.1);
        assert_eq!(r.1["user_id"], viewer.id.to_string());
        let (_, list) = t.get(&mutes, Some(&owner.token)).await;
        assert_eq!(list["items"][0]["user_id"], viewer.id.to_string(), "{list}");
        let r = t.get(&mutes, Some(&viewer.token)).await;
        assert_eq!(r.0, StatusCode::FORBIDDEN, "{}", r.1);
        set_room_settings(&t, &owner, &channel, json!({"behind": "skip"}), &mut a).await;
        b.send(json!({"type": "chat", "text": "let me talk"})).await;
        let refused = b.recv_type("error").await;
        assert_eq!(refused["code"], "forbidden", "{refused}");
        assert!(
            refused["message"].as_str().unwrap().contains("muted"),
            "{refused}"
        );
        b.send(json!({"type": "reaction", "emoji": "😠"})).await;
        assert_eq!(b.recv_type("error").await["code"], "forbidden");
        b.send(json!({"type": "typing", "active": true})).await;
        c.send(json!({"type": "chat", "text": "still here"})).await;
        let next = a.recv_among(&["typing", "chat", "reaction"]).await;
        assert_eq!(
            (next["type"].as_str(), next["text"].as_str()),
            (Some("chat"), Some("still here")),
            "{next}"
        );

        // Lifted: they talk again; lifting twice is a 404.
        let r = t
            .call(Method::DELETE, &mute_of(&viewer), Some(&owner.token), None)
            .await;
        assert_eq!(r.0, StatusCode::NO_CONTENT, "{}", r.1);
        let r = t
            .call(Method::DELETE, &mute_of(&viewer), Some(&owner.token), None)
            .await;
        assert_eq!(r.0, StatusCode::NOT_FOUND, "{}", r.1);
        set_room_settings(&t, &owner, &channel, json!({"behind": "wait"}), &mut a).await;
        b.send(json!({"type": "chat", "text": "thanks"})).await;
        let chat = a.recv_type("chat").await;
        assert_eq!(
            (chat["from"].as_u64(), chat["text"].as_str()),
            (Some(b_id), Some("thanks"))
        );

        // Slow mode: a bad value is refused; one message per 30 s for a
        // viewer; a moderator (the owner) is exempt.
        let r = t
            .call(
                Method::PATCH,
                &format!("/api/v1/channels/{channel}"),
                Some(&owner.token),
                Some(json!({"settings": {"slow_mode_seconds": 99_999}})),
            )
            .await;
        assert_eq!(r.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.1);
        assert!(
            r.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("slow_mode_seconds"),
            "{}",
            r.1
        );
        set_room_settings(
            &t,
            &owner,
            &channel,
            json!({"slow_mode_seconds": 30, "behind": "leave", "max_message_chars": 20}),
            &mut a,
        )
        .await;
        // A message sent before slow mode counts: "still here" was.
        c.send(json!({"type": "chat", "text": "again"})).await;
        let slow = c.recv_type("error").await;
        assert_eq!(slow["code"], "rate_limited", "{slow}");
        assert!(
            slow["message"].as_str().unwrap().contains("slow mode"),
            "{slow}"
        );
        // Someone who has not spoken: one message, then the wait.
        let quiet = t.register("mu-quiet").await;
        t.add_member(&channel, &owner, &quiet, "viewer").await;
        let (mut d, _) = Ws::join(served.addr, &channel, &quiet.token).await;
        d.send(json!({"type": "chat", "text": "one"})).await;
        let one = d.recv_among(&["error", "chat"]).await;
        assert_eq!(one["text"], "one", "{one}");
        d.send(json!({"type": "chat", "text": "two"})).await;
        let slow = d.recv_among(&["error", "chat"]).await;
        assert_eq!(slow["code"], "rate_limited", "{slow}");
        assert!(
            slow["message"].as_str().unwrap().contains("wait another"),
            "{slow}"
        );
        // The channel's longest message holds for everyone.
        a.send(json!({"type": "chat", "text": "a".repeat(21)}))
            .await;
        let long = a.recv_type("error").await;
        assert_eq!(long["code"], "invalid_value", "{long}");
        assert!(
            long["message"].as_str().unwrap().contains("at most 20"),
            "{long}"
        );
        for text in ["mod one", "mod two"] {
            a.send(json!({"type": "chat", "text": text})).await;
            loop {
                let got = a.recv_among(&["error", "chat"]).await;
                assert_eq!(got["type"], "chat", "{got}");
                if got["text"] == text {
                    break;
                }
            }
        }
    }
}

#[tokio::test]
async fn a_large_room_is_welcomed_in_member_pages() {
    let t = TestApp::new(Set::Embedded).await.unwrap();
    let owner = t.register("pg-owner").await;
    let channel = t.channel(&owner, "public", false).await;
    let served = serve(&t).await;
    let mut sockets = Vec::new();
    for _ in 0..27 {
        sockets.push(Ws::join(served.addr, &channel, &owner.token).await.0);
    }
    let (mut last, welcome) = Ws::join(served.addr, &channel, &owner.token).await;
    let room = &welcome["room"];
    assert_eq!(room["members"].as_array().unwrap().len(), 25, "{welcome}");
    assert_eq!(room["members_total"], 28);
    let page = last.recv_type("members").await;
    assert_eq!(
        (page["offset"].as_u64(), page["total"].as_u64()),
        (Some(25), Some(28))
    );
    let mut ids: Vec<u64> = room["members"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page["members"].as_array().unwrap())
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert!(ids.contains(&welcome["member"].as_u64().unwrap()));
    ids.dedup();
    assert_eq!(ids.len(), 28, "every member once, in id order");
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}
