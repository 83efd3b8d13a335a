//! A CDN in front of `videosync serve`: nginx as a caching reverse proxy
//! (`proxy_cache`) with the `secure_link` check of docs/operations.md. A
//! public segment is a cache hit the second time; a playlist is revalidated
//! once its short lifetime is over; a private segment needs a valid
//! signature at the edge, and a signed answer is never cached and never
//! served to anyone else.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.
#![cfg(unix)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::make_clip;
use common::serve::{channel, http, quick_ladder, sign_up, tus_upload, wait_processed, Server};

const NGINX: &str = "/usr/sbin/nginx";
const MEDIA_SECRET: &str = "cdn-test-media-secret-cdn-test-media-secret";

/// nginx in the foreground with a config of its own in `dir`.
struct Nginx {
    child: Child,
    addr: String,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_nginx(dir: &Path, origin: &str) -> Nginx {
    let port = free_port();
    let d = dir.display();
    // The `location /media/` block is the one docs/operations.md shows.
    let conf = format!(
        r#"
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    proxy_cache_path {d}/cache keys_zone=media:10m;
    proxy_cache_revalidate on;
    upstream videosync {{ server {origin}; }}
    map $arg_md5 $media_signed {{ "" 0; default 1; }}
    server {{
        listen 127.0.0.1:{port};
        add_header X-Cache-Status $upstream_cache_status always;
        location /media/ {{
            secure_link $arg_md5,$arg_expires;
            secure_link_md5 "$secure_link_expires$uri {MEDIA_SECRET}";
            set $media_check "$media_signed:$secure_link";
            if ($media_check = "1:")  {{ return 403; }}
            if ($media_check = "1:0") {{ return 410; }}
            proxy_pass http://videosync;
            proxy_cache media;
        }}
        location / {{
            proxy_pass http://videosync;
        }}
    }}
}}
"#
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(NGINX)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting nginx");
    // Owned at once: a failure below kills and reaps it.
    let nginx = Nginx {
        child,
        addr: format!("127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(&nginx.addr).is_ok() {
            return nginx;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let addr = nginx.addr.clone();
    drop(nginx);
    panic!(
        "nginx did not listen on {addr}: {}",
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
}

fn nginx_installed() -> bool {
    if Path::new(NGINX).exists() {
        return true;
    }
    assert!(
        std::env::var("VIDEOSYNC_REQUIRE_SERVICES").is_err(),
        "nginx is missing: run scripts/deps.sh test"
    );
    eprintln!("skipping: nginx is not installed (run under `make test`)");
    false
}

/// `GET` through nginx: status, cache status, cache control, body.
fn fetch(cdn: &Nginx, path: &str) -> (u16, String, String, Vec<u8>) {
    let (status, headers, body) = http(&cdn.addr, "GET", path, None, None);
    let h = |k: &str| headers.get(k).cloned().unwrap_or_default();
    (status, h("x-cache-status"), h("cache-control"), body)
}

fn first_uri(playlist: &[u8], ext: &str) -> String {
    String::from_utf8_lossy(playlist)
        .lines()
        .find(|l| !l.starts_with('#') && l.contains(ext))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn nginx_caches_public_media_revalidates_playlists_and_keeps_private_media_private() {
    if !nginx_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip, 4);
    let source = std::fs::read(&clip).unwrap();
    let mut env = quick_ladder();
    env.push(("VIDEOSYNC_MEDIA_SIGNING_SECRET", MEDIA_SECRET.to_owned()));
    env.push(("VIDEOSYNC_PLAYLIST_MAX_AGE_SECONDS", "1".to_owned()));
    let server = Server::start_in(&dir.path().join("data"), 1, &env);
    let token = sign_up(&server, "ada");
    let public = channel(&server, &token, "public");
    let private = channel(&server, &token, "private");
    let open_video = tus_upload(&server, &token, &public, "Open", &source);
    let closed_video = tus_upload(&server, &token, &private, "Closed", &source);
    for v in [&open_video, &closed_video] {
        let v = wait_processed(&server, &token, v);
        assert_eq!(v["status"], "ready", "{v}");
    }
    let cache_dir = dir.path().join("nginx");
    std::fs::create_dir_all(&cache_dir).unwrap();
    let cdn = start_nginx(&cache_dir, &server.addr);

    // Public: a segment is fetched from the origin once, then from the cache.
    let play = server.expect(
        200,
        "GET",
        &format!("/api/v1/videos/{open_video}/playback"),
        None,
        None,
    );
    let master = play["master_url"].as_str().unwrap();
    let (status, _, _, body) = fetch(&cdn, master);
    assert_eq!(status, 200);
    let variant = first_uri(&body, ".m3u8");
    let (status, _, _, media) = fetch(&cdn, &variant);
    assert_eq!(status, 200);
    let dir_of = |p: &str| p.rsplit_once('/').unwrap().0.to_owned();
    let segment = format!("{}/{}", dir_of(&variant), first_uri(&media, ".m4s"));
    let first = fetch(&cdn, &segment);
    assert_eq!((first.0, first.1.as_str()), (200, "MISS"));
    assert_eq!(first.2, "public, max-age=31536000, immutable");
    let second = fetch(&cdn, &segment);
    assert_eq!((second.0, second.1.as_str()), (200, "HIT"));
    assert_eq!(second.3, first.3, "the cache serves the same bytes");

    // A playlist: cached for its short lifetime, then revalidated with the
    // origin (a 304 refreshes it).
    let (_, state, cache, _) = fetch(&cdn, &variant);
    assert_eq!(cache, "public, max-age=1");
    assert!(matches!(state.as_str(), "HIT" | "MISS"), "{state}");
    let (_, state, _, _) = fetch(&cdn, &variant);
    assert_eq!(state, "HIT");
    std::thread::sleep(Duration::from_millis(2100));
    let (status, state, _, again) = fetch(&cdn, &variant);
    assert_eq!(status, 200);
    assert_eq!(state, "REVALIDATED");
    assert_eq!(again, media);

    // Private: the edge refuses a missing or forged signature, and a
    // signed answer is private: never cached, never shared.
    let play = server.expect(
        200,
        "GET",
        &format!("/api/v1/videos/{closed_video}/playback"),
        Some(&token),
        None,
    );
    let master = play["master_url"].as_str().unwrap();
    let (status, state, cache, body) = fetch(&cdn, master);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(cache, "private, max-age=1");
    assert_ne!(state, "HIT");
    let variant = first_uri(&body, ".m3u8");
    let (status, _, _, media) = fetch(&cdn, &variant);
    assert_eq!(status, 200);
    let signed_segment = first_uri(&media, ".m4s");
    assert!(signed_segment.contains("md5="), "{signed_segment}");
    for _ in 0..2 {
        let (status, state, cache, _) = fetch(&cdn, &signed_segment);
        assert_eq!(status, 200);
        assert_eq!(cache, "private, max-age=31536000, immutable");
        assert_ne!(
            state, "HIT",
            "a private answer is never served from the cache"
        );
    }
    let bare = signed_segment.split('?').next().unwrap();
    assert_eq!(fetch(&cdn, bare).0, 403, "no signature: the origin refuses");
    let forged = signed_segment.replace("md5=", "md5=x");
    assert_eq!(
        fetch(&cdn, &forged).0,
        403,
        "a forged signature: the edge refuses"
    );
    let expired = {
        let (path, query) = signed_segment.split_once('?').unwrap();
        let md5 = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("md5="))
            .unwrap();
        format!("{path}?md5={md5}&expires=1")
    };
    assert_eq!(
        fetch(&cdn, &expired).0,
        403,
        "another expiry is another signature"
    );
    server.stop();
}
