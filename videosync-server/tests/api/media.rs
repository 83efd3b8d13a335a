//! The media path in-process: tus uploads (interrupted and resumed, bad
//! input of every kind), processing by a real worker, live progress over
//! SSE, and delivery of the ladder (ranges, validators, cache headers,
//! signed URLs for private channels), on both backend sets.

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use sha1::Digest;
use tower::ServiceExt;
use videosync_transcode::worker::{Outcome, Worker, WorkerConfig};

use crate::harness::{test_config, Set, TestApp, User};

/// A test server that transcodes quickly: one 240p rung, ultrafast.
async fn media_app(set: Set) -> Option<TestApp> {
    let mut c = test_config();
    c.processing.rungs = vec![240];
    c.processing.preset = "ultrafast".to_owned();
    c.processing.segment_seconds = 2;
    c.uploads.direct_single_put_max_bytes = 5 * 1024 * 1024;
    TestApp::with_config(set, c).await
}

async fn each_media_app() -> Vec<TestApp> {
    let mut apps = vec![media_app(Set::Embedded).await.expect("embedded")];
    apps.extend(media_app(Set::Services).await);
    apps
}

/// A 3 s 320x240 clip with a tone.
fn clip(dir: &Path) -> Vec<u8> {
    let path = dir.join("clip.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-y", "-v", "error", "-nostdin", "-f", "lavfi", "-i"])
        .args([
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-t",
            "3",
        ])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs (the test needs the ffmpeg CLI)");
    assert!(status.success());
    std::fs::read(path).unwrap()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A response with its headers and raw body.
struct Raw {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Raw {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

async fn raw(t: &TestApp, req: Request<Body>) -> Raw {
    let response = t.router.clone().oneshot(req).await.expect("a response");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    Raw {
        status,
        headers,
        body,
    }
}

fn tus(method: Method, uri: &str, user: Option<&User>) -> axum::http::request::Builder {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("tus-resumable", "1.0.0");
    if let Some(u) = user {
        b = b.header(header::AUTHORIZATION, format!("Bearer {}", u.token));
    }
    b
}

/// Starts an upload of `len` bytes into `channel`; answers its path.
async fn start(t: &TestApp, user: &User, channel: &str, len: usize) -> (String, String) {
    let r = raw(
        t,
        tus(Method::POST, "/api/v1/uploads", Some(user))
            .header("upload-length", len.to_string())
            .header(
                "upload-metadata",
                format!(
                    "channel {},title {},filename {}",
                    b64(channel),
                    b64("A clip"),
                    b64("clip.mp4")
                ),
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    assert_eq!(r.header("tus-resumable"), "1.0.0");
    assert_eq!(r.header("upload-offset"), "0");
    assert!(!r.header("upload-expires").is_empty());
    let location = r.header("location").to_owned();
    assert!(location.starts_with("/api/v1/uploads/"), "{location}");
    (location, r.header("videosync-video-id").to_owned())
}

async fn patch(t: &TestApp, user: &User, path: &str, offset: usize, body: Body) -> Raw {
    raw(
        t,
        tus(Method::PATCH, path, Some(user))
            .header(header::CONTENT_TYPE, "application/offset+octet-stream")
            .header("upload-offset", offset.to_string())
            .body(body)
            .unwrap(),
    )
    .await
}

async fn offset_of(t: &TestApp, user: &User, path: &str) -> usize {
    let r = raw(
        t,
        tus(Method::HEAD, path, Some(user))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cache-control"), "no-store");
    r.header("upload-offset").parse().unwrap()
}

/// The server's worker, run until the queue is empty.
async fn run_worker(t: &TestApp, scratch: &Path) {
    let b = &t.app.backends;
    let worker = Worker {
        store: b.store.clone(),
        sources: b.uploads.clone(),
        queue: b.queue.clone(),
        catalog: b.catalog.clone(),
        bus: b.bus.clone(),
        log: Some(b.log.clone()),
        config: WorkerConfig {
            scratch_dir: scratch.to_owned(),
            remove_source: true,
            ..WorkerConfig::default()
        },
    };
    for _ in 0..10 {
        match worker.run_once().await.expect("the worker runs") {
            Outcome::Idle => return,
            // A job whose video was deleted ends without doing anything.
            Outcome::Ready(_) | Outcome::Dropped { .. } => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    panic!("the worker did not drain the queue");
}

/// Uploads `bytes` whole and returns the video id.
async fn upload(t: &TestApp, user: &User, channel: &str, bytes: &[u8]) -> String {
    let (path, video) = start(t, user, channel, bytes.len()).await;
    let r = patch(t, user, &path, 0, Body::from(bytes.to_vec())).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.json());
    assert_eq!(r.header("videosync-video-id"), video);
    video
}

async fn get(t: &TestApp, uri: &str, headers: &[(&str, &str)]) -> Raw {
    let mut b = Request::builder().uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    raw(t, b.body(Body::empty()).unwrap()).await
}

/// Every URI of a playlist (variants, renditions, maps and segments).
fn uris(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(i) = line.find("URI=\"") {
            let rest = &line[i + 5..];
            out.push(rest[..rest.find('"').unwrap()].to_owned());
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            out.push(line.trim().to_owned());
        }
    }
    out
}

/// Fetches the whole ladder from the master; answers (files, bytes).
async fn fetch_ladder(t: &TestApp, master: &str, private: bool) -> (usize, usize) {
    let r = get(t, master, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{master}: {:?}", r.json());
    assert_eq!(r.header("content-type"), "application/vnd.apple.mpegurl");
    let want_cache = if private {
        "private, max-age=10"
    } else {
        "public, max-age=10"
    };
    assert_eq!(r.header("cache-control"), want_cache);
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    let (mut files, mut bytes) = (0, 0);
    for playlist in uris(&text) {
        assert!(playlist.starts_with("/media/"), "{playlist}");
        assert_eq!(playlist.contains("md5="), private, "{playlist}");
        let p = get(t, &playlist, &[]).await;
        assert_eq!(p.status, StatusCode::OK, "{playlist}");
        let media = String::from_utf8(p.body.to_vec()).unwrap();
        assert!(media.contains("#EXT-X-ENDLIST"), "{media}");
        let dir = playlist
            .split('?')
            .next()
            .unwrap()
            .rsplit_once('/')
            .unwrap()
            .0
            .to_owned();
        for seg in uris(&media) {
            let url = if seg.starts_with('/') {
                seg.clone()
            } else {
                format!("{dir}/{seg}")
            };
            assert_eq!(url.contains("md5="), private, "{url}");
            let s = get(t, &url, &[]).await;
            assert_eq!(s.status, StatusCode::OK, "{url}");
            let immutable = if private {
                "private, max-age=31536000, immutable"
            } else {
                "public, max-age=31536000, immutable"
            };
            assert_eq!(s.header("cache-control"), immutable, "{url}");
            assert_eq!(s.header("accept-ranges"), "bytes");
            assert!(!s.header("etag").is_empty());
            assert!(!s.body.is_empty());
            files += 1;
            bytes += s.body.len();
        }
    }
    (files, bytes)
}

#[tokio::test]
async fn an_interrupted_upload_resumes_processes_and_plays() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = clip(dir.path());
    for t in each_media_app().await {
        let owner = t.register("owner").await;
        let channel = t.channel(&owner, "public", false).await;
        let r = raw(
            &t,
            Request::builder()
                .method(Method::OPTIONS)
                .uri("/api/v1/uploads")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(r.header("tus-version"), "1.0.0");
        assert!(r.header("tus-extension").contains("creation-defer-length"));
        assert_eq!(r.header("tus-checksum-algorithm"), "sha1,sha256");
        assert!(!r.header("tus-max-size").is_empty());

        let (path, video) = start(&t, &owner, &channel, bytes.len()).await;
        // The connection breaks after the first half has been sent.
        let half = bytes.len() / 2;
        let first = Bytes::copy_from_slice(&bytes[..half]);
        let broken = futures::stream::iter(vec![
            Ok::<Bytes, std::io::Error>(first),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "cut",
            )),
        ]);
        let r = patch(&t, &owner, &path, 0, Body::from_stream(broken)).await;
        assert!(
            r.status.is_client_error() || r.status.is_server_error(),
            "{}",
            r.status
        );
        assert_ne!(
            r.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{:?}",
            r.json()
        );
        let at = offset_of(&t, &owner, &path).await;
        assert_eq!(at, half, "what arrived before the cut is kept");
        // Not done: no video yet.
        assert_eq!(
            t.get(&format!("/api/v1/videos/{video}"), Some(&owner.token))
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        let r = patch(&t, &owner, &path, at, Body::from(bytes[at..].to_vec())).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.json());
        assert_eq!(r.header("upload-offset"), bytes.len().to_string());
        assert_eq!(r.header("videosync-video-id"), video);
        let (status, v) = t
            .get(&format!("/api/v1/videos/{video}"), Some(&owner.token))
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "pending");
        assert_eq!(v["title"], "A clip");
        // The stored source is byte for byte what was sent.
        let key =
            videosync_core::ObjectKey::parse(&format!("uploads/{}/source", video.replace('-', "")))
                .unwrap();
        let stored = videosync_core::ObjectStoreExt::get_bytes(&*t.app.backends.uploads, &key)
            .await
            .unwrap();
        assert_eq!(stored.as_ref(), bytes.as_slice());
        // Progress: the stream opens now, the worker runs, the stream ends.
        let events = t
            .router
            .clone()
            .oneshot(
                Request::builder()
                    .uri(format!("/api/v1/videos/{video}/events"))
                    .header(header::AUTHORIZATION, format!("Bearer {}", owner.token))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(events.status(), StatusCode::OK);
        assert_eq!(events.headers()[header::CONTENT_TYPE], "text/event-stream");
        let mut body = events.into_body();
        // The snapshot comes first, while the video is still pending.
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let first = String::from_utf8(first.to_vec()).unwrap();
        assert!(first.starts_with("event: snapshot"), "{first}");
        assert!(first.contains("\"status\":\"pending\""), "{first}");
        let rest = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(60), body.collect()).await
        });
        run_worker(&t, dir.path()).await;
        let rest = rest
            .await
            .unwrap()
            .expect("the event stream ends once the video is ready")
            .unwrap()
            .to_bytes();
        let sse = first + std::str::from_utf8(&rest).unwrap();
        let names: Vec<&str> = sse
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(names.first(), Some(&"snapshot"), "{sse}");
        assert_eq!(names.last(), Some(&"end"), "{sse}");
        assert!(names.contains(&"progress"), "{sse}");
        assert!(sse.contains("\"status\":\"ready\""), "{sse}");
        // Resuming after the snapshot replays every progress event.
        let snapshot_id = sse
            .lines()
            .find_map(|l| l.strip_prefix("id: "))
            .unwrap()
            .to_owned();
        let again = t
            .router
            .clone()
            .oneshot(
                Request::builder()
                    .uri(format!("/api/v1/videos/{video}/events"))
                    .header(header::AUTHORIZATION, format!("Bearer {}", owner.token))
                    .header("last-event-id", &snapshot_id)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let replay = tokio::time::timeout(Duration::from_secs(30), again.into_body().collect())
            .await
            .expect("a finished video's stream ends")
            .unwrap()
            .to_bytes();
        let replay = String::from_utf8(replay.to_vec()).unwrap();
        let progress = |s: &str| s.lines().filter(|l| *l == "event: progress").count();
        assert_eq!(progress(&replay), progress(&sse), "{replay}");
        // The original is gone once the ladder is ready.
        assert!(
            !videosync_core::ObjectStoreExt::exists(&*t.app.backends.uploads, &key)
                .await
                .unwrap()
        );

        // Playback: open URLs for a public channel, anyone may fetch.
        let (status, play) = t
            .get(&format!("/api/v1/videos/{video}/playback"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{play}");
        let master = play["master_url"].as_str().unwrap();
        assert_eq!(master, format!("/media/{video}/master.m3u8"));
        assert!(play.get("expires_at").is_none());
        let (files, total) = fetch_ladder(&t, master, false).await;
        assert!(files >= 4, "{files} files");
        assert!(total > 10_000, "{total} bytes");
        let poster = play["poster_url"].as_str().expect("a poster");
        let p = get(&t, poster, &[]).await;
        assert_eq!(p.status, StatusCode::OK);
        assert_eq!(p.header("content-type"), "image/jpeg");
        assert!(p.body.starts_with(&[0xFF, 0xD8]));
        let sb = play["storyboard_url"].as_str().expect("a storyboard");
        let s = get(&t, sb, &[]).await;
        assert_eq!(s.status, StatusCode::OK);
        assert!(s.body.starts_with(b"WEBVTT"));

        // Ranges and validators on a segment.
        let text = String::from_utf8(get(&t, master, &[]).await.body.to_vec()).unwrap();
        let variant = uris(&text)
            .into_iter()
            .find(|u| u.contains("240p"))
            .unwrap();
        let media = String::from_utf8(get(&t, &variant, &[]).await.body.to_vec()).unwrap();
        let seg = uris(&media)
            .into_iter()
            .find(|u| u.ends_with(".m4s"))
            .unwrap();
        let seg = format!("{}/{seg}", variant.rsplit_once('/').unwrap().0);
        let whole = get(&t, &seg, &[]).await;
        let etag = whole.header("etag").to_owned();
        let r = get(&t, &seg, &[("range", "bytes=10-19")]).await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.body.as_ref(), &whole.body[10..20]);
        assert_eq!(
            r.header("content-range"),
            format!("bytes 10-19/{}", whole.body.len())
        );
        let r = get(&t, &seg, &[("range", "bytes=-5")]).await;
        assert_eq!(r.body.as_ref(), &whole.body[whole.body.len() - 5..]);
        let beyond = format!("bytes={}-", whole.body.len() + 10);
        let r = get(&t, &seg, &[("range", &beyond)]).await;
        assert_eq!(
            r.status,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "{:?}",
            r.json()
        );
        assert_eq!(
            r.header("content-range"),
            format!("bytes */{}", whole.body.len())
        );
        assert_eq!(r.code(), "range_not_satisfiable");
        let r = get(&t, &seg, &[("if-none-match", &etag)]).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED);
        assert!(r.body.is_empty());
        // Players on other origins.
        let r = get(&t, &seg, &[("origin", "https://player.example")]).await;
        assert_eq!(r.header("access-control-allow-origin"), "*");
        // Paths outside the video's folder do not exist.
        for bad in [
            format!("/media/{video}/../../secrets/jwt.key"),
            format!("/media/{video}/a1/..%2F..%2Fx"),
            format!("/media/{video}/"),
            "/media/not-a-uuid/master.m3u8".to_owned(),
            format!("/media/{}/master.m3u8", uuid::Uuid::new_v4()),
        ] {
            let r = get(&t, &bad, &[]).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}");
        }
    }
}

#[tokio::test]
async fn private_media_needs_a_valid_signature() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = clip(dir.path());
    for t in each_media_app().await {
        let owner = t.register("owner").await;
        let outsider = t.register("outsider").await;
        let channel = t.channel(&owner, "private", false).await;
        let video = upload(&t, &owner, &channel, &bytes).await;
        run_worker(&t, dir.path()).await;
        let r = t
            .get(
                &format!("/api/v1/videos/{video}/playback"),
                Some(&outsider.token),
            )
            .await;
        assert_eq!(r.0, StatusCode::NOT_FOUND, "{}", r.1);
        assert_eq!(
            t.get(&format!("/api/v1/videos/{video}/playback"), None)
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        let (status, play) = t
            .get(
                &format!("/api/v1/videos/{video}/playback"),
                Some(&owner.token),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{play}");
        assert!(play["expires_at"].is_string());
        let master = play["master_url"].as_str().unwrap().to_owned();
        assert!(
            master.contains("md5=") && master.contains("expires="),
            "{master}"
        );
        let (files, _) = fetch_ladder(&t, &master, true).await;
        assert!(files >= 4);
        // Without, with a forged, with another file's signature: refused.
        let bare = master.split('?').next().unwrap().to_owned();
        let r = get(&t, &bare, &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.code(), "bad_signature");
        let query = master.split_once('?').unwrap().1;
        let forged = query.replace("md5=", "md5=A");
        assert_eq!(
            get(&t, &format!("{bare}?{forged}"), &[]).await.status,
            StatusCode::FORBIDDEN
        );
        let text = String::from_utf8(get(&t, &master, &[]).await.body.to_vec()).unwrap();
        let variant = uris(&text).into_iter().next().unwrap();
        let variant_path = variant.split('?').next().unwrap();
        let swapped = format!("{variant_path}?{query}");
        assert_eq!(get(&t, &swapped, &[]).await.status, StatusCode::FORBIDDEN);
        let later = variant.replace("expires=", "expires=9");
        assert_eq!(
            get(&t, &later, &[]).await.status,
            StatusCode::FORBIDDEN,
            "a longer expiry is not signed"
        );
        // Past the expiry: gone.
        t.advance(Duration::from_secs(3 * 3600));
        let r = get(&t, &variant, &[]).await;
        assert_eq!(r.status, StatusCode::GONE, "{:?}", r.json());
        assert_eq!(r.code(), "bad_signature");

        // Delivery looks a video up at most once a second: the channel made
        // public opens its media within a second, no sooner.
        let (status, again) = t
            .post(
                "/api/v1/auth/login",
                None,
                serde_json::json!({"login": "owner", "password": "password-owner"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{again}");
        let token = again["access_token"].as_str().unwrap().to_owned();
        let r = t
            .call(
                Method::PATCH,
                &format!("/api/v1/channels/{channel}"),
                Some(&token),
                Some(serde_json::json!({"visibility": "public"})),
            )
            .await;
        assert_eq!(r.0, StatusCode::OK, "{}", r.1);
        assert_eq!(get(&t, &bare, &[]).await.status, StatusCode::FORBIDDEN);
        t.advance(Duration::from_millis(1100));
        let open = get(&t, &bare, &[]).await;
        assert_eq!(open.status, StatusCode::OK);
        // A deleted video's media goes within a second, though its small
        // files are kept in memory.
        let r = t
            .call(
                Method::DELETE,
                &format!("/api/v1/videos/{video}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(r.0, StatusCode::NO_CONTENT, "{}", r.1);
        let remembered = get(&t, &bare, &[]).await;
        assert_eq!(remembered.status, StatusCode::OK);
        assert_eq!(remembered.body, open.body);
        t.advance(Duration::from_millis(1100));
        assert_eq!(get(&t, &bare, &[]).await.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn bad_tus_requests_get_clear_errors_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = clip(dir.path());
    for t in each_media_app().await {
        let owner = t.register("owner").await;
        let viewer = t.register("viewer").await;
        let stranger = t.register("stranger").await;
        let channel = t.channel(&owner, "public", false).await;
        t.add_member(&channel, &owner, &viewer, "viewer").await;
        let meta = format!("channel {},title {}", b64(&channel), b64("x"));
        let post = |user: &User, headers: Vec<(&str, String)>| {
            let mut b = tus(Method::POST, "/api/v1/uploads", Some(user));
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.body(Body::empty()).unwrap()
        };
        // Protocol version.
        let r = raw(
            &t,
            Request::builder()
                .method(Method::POST)
                .uri("/api/v1/uploads")
                .header(header::AUTHORIZATION, format!("Bearer {}", owner.token))
                .header("upload-length", "10")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(r.code(), "tus_version");
        let r = raw(
            &t,
            Request::builder()
                .method(Method::POST)
                .uri("/api/v1/uploads")
                .header(header::AUTHORIZATION, format!("Bearer {}", owner.token))
                .header("tus-resumable", "0.2.2")
                .header("upload-length", "10")
                .header("upload-metadata", meta.clone())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
        // Anonymous, lengths, metadata.
        let r = raw(
            &t,
            tus(Method::POST, "/api/v1/uploads", None)
                .header("upload-length", "10")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        for (headers, want) in [
            (
                vec![("upload-metadata", meta.clone())],
                StatusCode::BAD_REQUEST,
            ),
            (
                vec![
                    ("upload-length", "-4".into()),
                    ("upload-metadata", meta.clone()),
                ],
                StatusCode::BAD_REQUEST,
            ),
            (
                vec![("upload-length", "10".into())],
                StatusCode::BAD_REQUEST,
            ),
            (
                vec![
                    ("upload-length", "10".into()),
                    ("upload-metadata", "channel !!!".into()),
                ],
                StatusCode::BAD_REQUEST,
            ),
            (
                vec![
                    ("upload-length", "10".into()),
                    ("upload-metadata", format!("channel {}", b64("nope"))),
                ],
                StatusCode::BAD_REQUEST,
            ),
            (
                vec![
                    ("upload-length", "10".into()),
                    (
                        "upload-metadata",
                        format!("{meta},vs.user {}", b64(&stranger.id)),
                    ),
                ],
                StatusCode::BAD_REQUEST,
            ),
            (
                vec![
                    ("upload-length", "10".into()),
                    (
                        "upload-metadata",
                        format!("channel {},title {}", b64(&channel), b64(&"t".repeat(301))),
                    ),
                ],
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                vec![
                    ("upload-length", (30u64 << 30).to_string()),
                    ("upload-metadata", meta.clone()),
                ],
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
        ] {
            let r = raw(&t, post(&owner, headers.clone())).await;
            assert_eq!(r.status, want, "{headers:?}: {:?}", r.json());
            assert!(!r.code().is_empty());
        }
        let r = raw(
            &t,
            post(
                &owner,
                vec![
                    ("upload-length", (30u64 << 30).to_string()),
                    ("upload-metadata", meta.clone()),
                ],
            ),
        )
        .await;
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&(20u64 << 30).to_string()),
            "the limit is named"
        );
        // A viewer may not upload; a channel one cannot see does not exist.
        let r = raw(
            &t,
            post(
                &viewer,
                vec![
                    ("upload-length", "10".into()),
                    ("upload-metadata", meta.clone()),
                ],
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.json());
        let private = t.channel(&owner, "private", false).await;
        let r = raw(
            &t,
            post(
                &stranger,
                vec![
                    ("upload-length", "10".into()),
                    ("upload-metadata", format!("channel {}", b64(&private))),
                ],
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.json());

        // PATCH: content type, offset, someone else's upload.
        let (path, _) = start(&t, &owner, &channel, bytes.len()).await;
        let r = raw(
            &t,
            tus(Method::PATCH, &path, Some(&owner))
                .header("upload-offset", "0")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let r = patch(&t, &owner, &path, 5, Body::from(bytes[..10].to_vec())).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        let r = patch(&t, &stranger, &path, 0, Body::from(bytes[..10].to_vec())).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = raw(
            &t,
            tus(Method::HEAD, &path, Some(&stranger))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = raw(
            &t,
            tus(Method::PATCH, &path, Some(&owner))
                .header(header::CONTENT_TYPE, "application/offset+octet-stream")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "no Upload-Offset");
        for bad_id in [
            "/api/v1/uploads/zz",
            "/api/v1/uploads/00000000000000000000000000000000",
        ] {
            let r = patch(&t, &owner, bad_id, 0, Body::from("x")).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad_id}");
        }
        assert_eq!(offset_of(&t, &owner, &path).await, 0, "nothing was stored");

        // Checksums: a mismatch stores nothing (460), a match is kept.
        let chunk = &bytes[..8192];
        let good = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(chunk));
        let bad = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(b"other"));
        let with_sum = |sum: String| {
            tus(Method::PATCH, &path, Some(&owner))
                .header(header::CONTENT_TYPE, "application/offset+octet-stream")
                .header("upload-offset", "0")
                .header("upload-checksum", sum)
                .body(Body::from(chunk.to_vec()))
                .unwrap()
        };
        let r = raw(&t, with_sum(format!("sha1 {bad}"))).await;
        assert_eq!(r.status.as_u16(), 460, "{:?}", r.json());
        assert_eq!(r.code(), "checksum_mismatch");
        assert_eq!(offset_of(&t, &owner, &path).await, 0);
        let r = raw(&t, with_sum(format!("md5 {good}"))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = raw(&t, with_sum(format!("sha1 {good}"))).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.json());
        assert_eq!(offset_of(&t, &owner, &path).await, 8192);
        // Past the declared end.
        let mut more = bytes[8192..].to_vec();
        more.extend_from_slice(b"extra");
        let r = patch(&t, &owner, &path, 8192, Body::from(more)).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.json());
        assert_eq!(offset_of(&t, &owner, &path).await, 8192);
        // Termination.
        let r = raw(
            &t,
            tus(Method::DELETE, &path, Some(&owner))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let r = raw(
            &t,
            tus(Method::HEAD, &path, Some(&owner))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::GONE);
        let r = patch(&t, &owner, &path, 8192, Body::from(bytes[8192..].to_vec())).await;
        assert_eq!(r.status, StatusCode::GONE);

        // Not media: refused at the first bytes, the upload ends.
        let (path, video) = start(&t, &owner, &channel, 9000).await;
        let r = patch(&t, &owner, &path, 0, Body::from(vec![b'%'; 9000])).await;
        assert_eq!(
            r.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{:?}",
            r.json()
        );
        assert!(r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a video"));
        let r = raw(
            &t,
            tus(Method::HEAD, &path, Some(&owner))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::GONE);
        assert_eq!(
            t.get(&format!("/api/v1/videos/{video}"), Some(&owner.token))
                .await
                .0,
            StatusCode::NOT_FOUND
        );

        // Deferred length, creation with upload, expiry.
        let r = raw(
            &t,
            tus(Method::POST, "/api/v1/uploads", Some(&owner))
                .header("upload-defer-length", "1")
                .header("upload-metadata", meta.clone())
                .header(header::CONTENT_TYPE, "application/offset+octet-stream")
                .body(Body::from(bytes[..4096].to_vec()))
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
        assert_eq!(r.header("upload-offset"), "4096");
        let path = r.header("location").to_owned();
        let h = raw(
            &t,
            tus(Method::HEAD, &path, Some(&owner))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(h.header("upload-defer-length"), "1");
        assert!(h.header("upload-metadata").contains("channel "));
        assert!(
            !h.header("upload-metadata").contains("vs."),
            "the server's own keys stay inside"
        );
        let r = raw(
            &t,
            tus(Method::PATCH, &path, Some(&owner))
                .header(header::CONTENT_TYPE, "application/offset+octet-stream")
                .header("upload-offset", "4096")
                .header("upload-length", bytes.len().to_string())
                .body(Body::from(bytes[4096..].to_vec()))
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.json());
        assert!(!r.header("videosync-video-id").is_empty());
        let (path, _) = start(&t, &owner, &channel, bytes.len()).await;
        t.advance(Duration::from_secs(25 * 3600));
        let (status, tokens) = t
            .post(
                "/api/v1/auth/login",
                None,
                serde_json::json!({"login": owner.username, "password": owner.password()}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        let owner = User::from_tokens(&tokens);
        let r = patch(&t, &owner, &path, 0, Body::from(bytes.to_vec())).await;
        assert_eq!(r.status, StatusCode::GONE, "{:?}", r.json());
        let swept = t
            .app
            .uploads
            .expire(t.app.backends.clock.now())
            .await
            .unwrap();
        assert!(swept >= 1);
    }
}

/// A request to a presigned URL (plain HTTP, as the test S3 server speaks).
fn presigned(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, std::collections::HashMap<String, String>) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    // The helper sends Host and the body's real Content-Length itself.
    let h: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| {
            !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("host")
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, headers, _) = crate::serve::request(addr, method, path, &h, body);
    (status, headers)
}

#[tokio::test]
async fn direct_uploads_go_to_the_bucket_on_presigned_urls() {
    let dir = tempfile::tempdir().unwrap();
    let clip_bytes = clip(dir.path());
    for t in each_media_app().await {
        let owner = t.register("owner").await;
        let stranger = t.register("stranger").await;
        let channel = t.channel(&owner, "public", false).await;
        let start = |size: usize, content_type: &str| serde_json::json!({"channel_id": channel, "filename": "clip.mp4", "size": size, "content_type": content_type});
        if t.set == Set::Embedded {
            let r = t
                .post(
                    "/api/v1/uploads/direct",
                    Some(&owner.token),
                    start(10, "video/mp4"),
                )
                .await;
            assert_eq!(
                r.0,
                StatusCode::CONFLICT,
                "the file store cannot sign: {}",
                r.1
            );
            continue;
        }
        // Multipart: 12 MiB in parts of 5 MiB (the test config's threshold).
        let mut data = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
        data.extend((0..12 * 1024 * 1024 - 24).map(|i: usize| (i * 31 % 251) as u8));
        let (status, up) = t
            .post(
                "/api/v1/uploads/direct",
                Some(&owner.token),
                start(data.len(), "video/mp4"),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{up}");
        assert_eq!(up["mode"], "multipart");
        let id = up["id"].as_str().unwrap().to_owned();
        let pending = up["pending"].as_array().unwrap().clone();
        assert_eq!(pending.len(), 3);
        let part = |p: &Value| -> (String, Vec<(String, String)>, usize, usize) {
            let headers = p["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap().to_owned(),
                        h[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            (
                p["url"].as_str().unwrap().to_owned(),
                headers,
                p["offset"].as_u64().unwrap() as usize,
                p["size"].as_u64().unwrap() as usize,
            )
        };
        for p in [&pending[0], &pending[2]] {
            let (url, headers, offset, size) = part(p);
            let (status, _) = presigned("PUT", &url, &headers, &data[offset..offset + size]);
            assert_eq!(status, 200, "{url}");
        }
        // Cut off: the server says what is stored and signs the rest again.
        let (status, again) = t
            .get(&format!("/api/v1/uploads/direct/{id}"), Some(&owner.token))
            .await;
        assert_eq!(status, StatusCode::OK, "{again}");
        let stored: Vec<u64> = again["uploaded"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["number"].as_u64().unwrap())
            .collect();
        assert_eq!(stored, vec![1, 3]);
        let rest = again["pending"].as_array().unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0]["number"], 2);
        assert_eq!(
            t.get(
                &format!("/api/v1/uploads/direct/{id}"),
                Some(&stranger.token)
            )
            .await
            .0,
            StatusCode::NOT_FOUND
        );
        let r = t
            .post(
                &format!("/api/v1/uploads/direct/{id}/complete"),
                Some(&owner.token),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(r.0, StatusCode::CONFLICT, "a part is missing: {}", r.1);
        // A URL signed for 5 MiB does not take more.
        let (url, headers, offset, size) = part(&rest[0]);
        let mut bigger = data[offset..offset + size].to_vec();
        bigger.extend_from_slice(b"more");
        let (status, _) = presigned("PUT", &url, &headers, &bigger);
        assert!(
            (400..500).contains(&status),
            "the store refuses a larger body: {status}"
        );
        let (status, _) = presigned("PUT", &url, &headers, &data[offset..offset + size]);
        assert_eq!(status, 200);
        let (status, v) = t
            .post(
                &format!("/api/v1/uploads/direct/{id}/complete"),
                Some(&owner.token),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        assert_eq!(v["status"], "pending");
        assert_eq!(v["id"], id.as_str());
        let key =
            videosync_core::ObjectKey::parse(&format!("uploads/{}/source", id.replace('-', "")))
                .unwrap();
        let stored = videosync_core::ObjectStoreExt::get_bytes(&*t.app.backends.uploads, &key)
            .await
            .unwrap();
        assert!(stored.as_ref() == data.as_slice(), "the object is the file");
        assert_eq!(
            t.get(&format!("/api/v1/uploads/direct/{id}"), Some(&owner.token))
                .await
                .0,
            StatusCode::NOT_FOUND,
            "done"
        );
        // Not a real video: deleting it removes the object from the bucket.
        let r = t
            .call(
                Method::DELETE,
                &format!("/api/v1/videos/{id}"),
                Some(&owner.token),
                None,
            )
            .await;
        assert_eq!(r.0, StatusCode::NO_CONTENT, "{}", r.1);
        assert!(
            !videosync_core::ObjectStoreExt::exists(&*t.app.backends.uploads, &key)
                .await
                .unwrap()
        );

        // A single PUT of a real clip, processed to the end.
        let (status, up) = t
            .post(
                "/api/v1/uploads/direct",
                Some(&owner.token),
                start(clip_bytes.len(), "video/mp4"),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{up}");
        assert_eq!(up["mode"], "single");
        let id = up["id"].as_str().unwrap().to_owned();
        let (url, headers, _, _) = part(&up["pending"][0]);
        let (status, _) = presigned("PUT", &url, &headers, &clip_bytes);
        assert_eq!(status, 200);
        let (status, v) = t
            .post(
                &format!("/api/v1/uploads/direct/{id}/complete"),
                Some(&owner.token),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        run_worker(&t, dir.path()).await;
        let (_, v) = t
            .get(&format!("/api/v1/videos/{id}"), Some(&owner.token))
            .await;
        assert_eq!(v["status"], "ready", "{v}");

        // Not media: refused at completion, nothing stays.
        let junk = vec![b'%'; 5000];
        let (_, up) = t
            .post(
                "/api/v1/uploads/direct",
                Some(&owner.token),
                start(junk.len(), "video/mp4"),
            )
            .await;
        let id = up["id"].as_str().unwrap().to_owned();
        let (url, headers, _, _) = part(&up["pending"][0]);
        assert_eq!(presigned("PUT", &url, &headers, &junk).0, 200);
        let r = t
            .post(
                &format!("/api/v1/uploads/direct/{id}/complete"),
                Some(&owner.token),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(r.0, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.1);
        let key =
            videosync_core::ObjectKey::parse(&format!("uploads/{}/source", id.replace('-', "")))
                .unwrap();
        assert!(
            !videosync_core::ObjectStoreExt::exists(&*t.app.backends.uploads, &key)
                .await
                .unwrap()
        );
        // Bad declarations.
        for (body, want) in [
            (start(0, "video/mp4"), StatusCode::UNPROCESSABLE_ENTITY),
            (
                start(30usize << 30, "video/mp4"),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                serde_json::json!({"channel_id": channel, "size": 10}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        ] {
            let r = t
                .post("/api/v1/uploads/direct", Some(&owner.token), body.clone())
                .await;
            assert_eq!(r.0, want, "{body}: {}", r.1);
        }
        let r = t
            .post(
                "/api/v1/uploads/direct",
                Some(&stranger.token),
                start(10, "video/mp4"),
            )
            .await;
        assert_eq!(r.0, StatusCode::FORBIDDEN, "{}", r.1);

        // Abandoned: a multipart upload with one part sent, and a single
        // PUT never completed. Once they expire, the sweep removes both.
        let (_, up) = t
            .post(
                "/api/v1/uploads/direct",
                Some(&owner.token),
                start(data.len(), "video/mp4"),
            )
            .await;
        let multi = up["id"].as_str().unwrap().to_owned();
        let (url, headers, offset, size) = part(&up["pending"][0]);
        let (status, _) = presigned("PUT", &url, &headers, &data[offset..offset + size]);
        assert_eq!(status, 200);
        let (_, up) = t
            .post(
                "/api/v1/uploads/direct",
                Some(&owner.token),
                start(clip_bytes.len(), "video/mp4"),
            )
            .await;
        let single = up["id"].as_str().unwrap().to_owned();
        let (url, headers, _, _) = part(&up["pending"][0]);
        assert_eq!(presigned("PUT", &url, &headers, &clip_bytes).0, 200);
        let key_of = |id: &str| {
            videosync_core::ObjectKey::parse(&format!("uploads/{}/source", id.replace('-', "")))
                .unwrap()
        };
        let booking = t
            .app
            .backends
            .kv
            .get(
                &t.app
                    .kv_key(&format!("direct.{}", multi.replace('-', "")))
                    .unwrap(),
            )
            .await
            .unwrap()
            .expect("the multipart upload's booking");
        let booking: Value = serde_json::from_slice(&booking.value).unwrap();
        let upload_id =
            videosync_core::store::MultipartId(booking["multipart"].as_str().unwrap().to_owned());
        let store = &t.app.backends.uploads;
        assert_eq!(
            store
                .list_parts(&key_of(&multi), &upload_id)
                .await
                .unwrap()
                .len(),
            1
        );
        let sweep = videosync_server::uploads::direct::sweep_expired;
        assert_eq!(sweep(&t.app).await.unwrap(), 0, "nothing expired yet");
        t.advance(Duration::from_secs(24 * 3600 + 1));
        assert_eq!(sweep(&t.app).await.unwrap(), 2);
        assert!(
            store.list_parts(&key_of(&multi), &upload_id).await.is_err(),
            "the multipart upload is aborted"
        );
        assert!(
            !videosync_core::ObjectStoreExt::exists(&**store, &key_of(&single))
                .await
                .unwrap()
        );
        assert_eq!(sweep(&t.app).await.unwrap(), 0, "each is removed once");
    }
}

#[tokio::test]
async fn re_transcoding_dead_letters_and_quotas() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = clip(dir.path());
    for set in [Set::Embedded, Set::Services] {
        let mut c = test_config();
        c.processing.rungs = vec![240];
        c.processing.preset = "ultrafast".to_owned();
        c.uploads.keep_originals = true;
        c.uploads.quota_bytes_per_user = 2 * bytes.len() as u64 + 100;
        let Some(t) = TestApp::with_config(set, c).await else {
            continue;
        };
        let admin = t.register("admin").await;
        let owner = t.register("owner").await;
        let channel = t.channel(&owner, "public", false).await;
        let video = upload(&t, &owner, &channel, &bytes).await;
        // The worker of this test keeps originals (as the configuration says).
        let b = &t.app.backends;
        let keep = Worker {
            store: b.store.clone(),
            sources: b.uploads.clone(),
            queue: b.queue.clone(),
            catalog: b.catalog.clone(),
            bus: b.bus.clone(),
            log: Some(b.log.clone()),
            config: WorkerConfig {
                scratch_dir: dir.path().to_owned(),
                remove_source: false,
                ..WorkerConfig::default()
            },
        };
        assert!(matches!(keep.run_once().await.unwrap(), Outcome::Ready(_)));
        let (_, v) = t
            .get(&format!("/api/v1/videos/{video}"), Some(&owner.token))
            .await;
        assert_eq!(v["status"], "ready");
        let (_, play) = t
            .get(&format!("/api/v1/videos/{video}/playback"), None)
            .await;
        let before = play["poster_url"].as_str().unwrap().to_owned();
        // Again, from the kept original: a new attempt, new URLs.
        let path = format!("/api/v1/videos/{video}/transcode");
        let viewer = t.register("viewer").await;
        t.add_member(&channel, &owner, &viewer, "viewer").await;
        let r = t
            .post(&path, Some(&viewer.token), serde_json::json!({}))
            .await;
        assert_eq!(
            r.0,
            StatusCode::FORBIDDEN,
            "only the uploader or an editor: {}",
            r.1
        );
        let (status, v) = t
            .post(&path, Some(&owner.token), serde_json::json!({}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v["status"], "pending");
        let outcome = keep.run_once().await.unwrap();
        assert!(matches!(outcome, Outcome::Ready(_)), "{outcome:?}");
        let (_, play) = t
            .get(&format!("/api/v1/videos/{video}/playback"), None)
            .await;
        let after = play["poster_url"].as_str().unwrap();
        assert_ne!(after, before, "the new attempt has its own folder");
        assert_eq!(get(&t, after, &[]).await.status, StatusCode::OK);
        let (files, _) = fetch_ladder(&t, play["master_url"].as_str().unwrap(), false).await;
        assert!(files >= 2);

        // The quota: two originals fit, a third does not.
        let _second = upload(&t, &owner, &channel, &bytes).await;
        let r = raw(
            &t,
            tus(Method::POST, "/api/v1/uploads", Some(&owner))
                .header("upload-length", bytes.len().to_string())
                .header("upload-metadata", format!("channel {}", b64(&channel)))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.json());
        assert_eq!(r.code(), "quota_exceeded");

        // Dead letters: only instance administrators see and requeue them.
        let job = videosync_core::NewJob::new("probe-later", serde_json::json!({"video": video}))
            .max_attempts(1);
        let id = b.queue.enqueue(job).await.unwrap().id();
        let lease = b
            .queue
            .reserve(videosync_core::queue::ReserveOptions {
                lease: Duration::from_secs(60),
                kinds: Some(vec!["probe-later".to_owned()]),
            })
            .await
            .unwrap()
            .unwrap();
        b.queue.fail(&lease, "the disk was full").await.unwrap();
        let r = t.get("/api/v1/admin/jobs/dead", Some(&owner.token)).await;
        assert_eq!(r.0, StatusCode::FORBIDDEN);
        let (status, dead) = t.get("/api/v1/admin/jobs/dead", Some(&admin.token)).await;
        assert_eq!(status, StatusCode::OK, "{dead}");
        let item = &dead["items"][0];
        assert_eq!(item["id"], id.to_string());
        assert_eq!(item["last_error"], "the disk was full");
        assert_eq!(item["video_id"], video.as_str());
        let requeue = format!("/api/v1/admin/jobs/{id}/requeue");
        assert_eq!(
            t.post(&requeue, Some(&owner.token), serde_json::json!({}))
                .await
                .0,
            StatusCode::FORBIDDEN
        );
        let r = t
            .post(&requeue, Some(&admin.token), serde_json::json!({}))
            .await;
        assert_eq!(r.0, StatusCode::NO_CONTENT, "{}", r.1);
        let (_, dead) = t.get("/api/v1/admin/jobs/dead", Some(&admin.token)).await;
        assert_eq!(dead["items"].as_array().unwrap().len(), 0);
        let r = t
            .post(
                "/api/v1/admin/jobs/nope/requeue",
                Some(&admin.token),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(r.0, StatusCode::NOT_FOUND);
    }
}
