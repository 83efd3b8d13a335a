//! The media benchmark: the path every video takes through `videosync
//! serve` (the release binary, as a process of its own, on embedded
//! backends), each part beside a baseline in the same run, rounds
//! alternating:
//!
//! 1. **Upload to ready**: a generated 60 s 1080p30 clip (x264 CRF 18 with
//!    stereo AAC, as the ladder benchmark makes) uploaded by tus and
//!    processed by the server's embedded worker with the default ladder,
//!    the time split into upload (tus creation to the last `204`), queue
//!    wait (to the worker's first progress report), transcode (to its
//!    `finishing` report), images and playlists (to `done`) and publish (to
//!    the video reading `ready`), as a browser sees them on the progress
//!    stream opened when the upload is in (its snapshot carries a report
//!    that came before). Baseline: `videosync transcode` of the same file with the same
//!    ladder, poster and storyboard, no server.
//! 2. **Delivery** from the filesystem store, loaded by `oha` at saturation:
//!    the ladder's 720p media playlist and its segment nearest 1 MiB, beside
//!    nginx serving the same store directory with `sendfile`.
//! 3. **tus upload of 1 GiB** (the clip looped, stream-copied to MPEG-TS,
//!    so the server's sniffing accepts it) in one `PATCH` by `curl`, beside
//!    `cp` of the same file into the same file system (and `cp` then an
//!    fsync of the copy, as durable as the upload), and the server's
//!    peak resident memory above idle during the upload (`VmHWM` after
//!    resetting it through `/proc/<pid>/clear_refs`).
//!
//! Run with `make bench BENCH=media` (builds the release binary, installs
//! `oha`), or `cargo build --release -p videosync-server` then
//! `cargo bench --bench media` with `oha`, `nginx`, `curl` and `ffmpeg`
//! present. `VIDEOSYNC_BENCH_QUICK=1` runs one short round of each (a 20 s
//! clip, 256 MiB upload). Writes `benches/results/media.json` and
//! `benches/results/media.md` (the quick version `media-quick.*`).
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use videosync::core::SystemClock;

// The server benchmark's `oha` runner; this harness uses a part of it.
#[allow(dead_code)]
#[path = "server/load.rs"]
mod load;
#[path = "stats.rs"]
mod stats;
use stats::{spread, Spread};
#[path = "watch.rs"]
mod watch;
use watch::Watch;

const NGINX: &str = "/usr/sbin/nginx";
const MIB: u64 = 1024 * 1024;

/// Sizes of a run: the full one, or the quick check.
#[derive(Debug, Clone, Serialize)]
struct Plan {
    quick: bool,
    clip_seconds: u32,
    ready_rounds: usize,
    delivery_rounds: usize,
    delivery_window_s: f64,
    delivery_concurrency: usize,
    upload_bytes: u64,
    upload_rounds: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                clip_seconds: 20,
                ready_rounds: 1,
                delivery_rounds: 1,
                delivery_window_s: 3.0,
                delivery_concurrency: 32,
                upload_bytes: 256 * MIB,
                upload_rounds: 1,
            }
        } else {
            Plan {
                quick,
                clip_seconds: 60,
                ready_rounds: 3,
                delivery_rounds: 3,
                delivery_window_s: 10.0,
                delivery_concurrency: 32,
                upload_bytes: 1024 * MIB,
                upload_rounds: 3,
            }
        }
    }
}

fn sh(cmd: &str) -> String {
    let out = Command::new("bash")
        .args(["-c", cmd])
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `videosync serve` as a process of its own.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// Starts the binary on a free port with its data in `data` and
    /// `workers` embedded transcode workers, logging into `log`.
    fn start(bin: &Path, data: &Path, workers: usize, log: &Path) -> Server {
        let mut cmd = Command::new(bin);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("VIDEOSYNC_") {
                cmd.env_remove(&name);
            }
        }
        let log = std::fs::File::create(log).unwrap();
        let mut child = cmd
            .args(["serve", "--addr", "127.0.0.1:0", "--workers"])
            .arg(workers.to_string())
            .env("VIDEOSYNC_DATA_DIR", data)
            // One sign-in lasts the whole run.
            .env("VIDEOSYNC_ACCESS_TTL_SECONDS", "86400")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting videosync serve");
        // The address is in the log on stdout; the rest of it is drained on
        // a thread so the server never blocks on a full pipe.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("videosync serve exited before it listened")
                .unwrap();
            if let Some((_, rest)) = line.split_once("listening on http://") {
                break format!("http://{}", rest.trim());
            }
        };
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Server { child, base }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        // SIGTERM: a clean stop, as a service manager would.
        sh(&format!("kill -TERM {}", self.child.id()));
        let status = self.child.wait().unwrap();
        assert!(status.success(), "videosync serve stopped with {status}");
    }
}

/// A `/proc/<pid>/status` field in KiB.
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

async fn api(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Value {
    let mut req = http.request(method.clone(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let bytes = r.bytes().await.unwrap();
    assert!(
        status.is_success(),
        "{method} {url}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    }
}

/// Signs up (the first account is the instance's administrator) and makes
/// a public channel; answers the token and the channel.
async fn account(http: &reqwest::Client, base: &str) -> (String, String) {
    let who = json!({"username": "bench", "password": "a bench password, long enough"});
    let r = api(
        http,
        reqwest::Method::POST,
        &format!("{base}/api/v1/auth/register"),
        None,
        Some(who),
    )
    .await;
    let token = r["access_token"].as_str().unwrap().to_owned();
    let c = api(
        http,
        reqwest::Method::POST,
        &format!("{base}/api/v1/channels"),
        Some(&token),
        Some(json!({"name": "Bench", "visibility": "public"})),
    )
    .await;
    (token, c["id"].as_str().unwrap().to_owned())
}

/// Creates a tus upload of `len` bytes; answers its URL and the video.
async fn tus_create(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    channel: &str,
    title: &str,
    len: u64,
) -> (String, String) {
    use base64::Engine;
    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
    let r = http
        .post(format!("{base}/api/v1/uploads"))
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", len.to_string())
        .header(
            "upload-metadata",
            format!("channel {},title {}", b64(channel), b64(title)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "tus creation: {}", r.text().await.unwrap());
    let header = |n: &str| r.headers()[n].to_str().unwrap().to_owned();
    let location = header("location");
    let video = header("videosync-video-id");
    let url = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    (url, video)
}

/// Sends `file` as one tus `PATCH` with `curl`, which streams it from disk.
fn tus_patch(url: &str, token: &str, file: &Path) {
    let out = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--fail-with-body",
            "-o",
            "/dev/null",
        ])
        .args(["-X", "PATCH", "-T"])
        .arg(file)
        .args(["-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0"])
        .args(["-H", "Content-Type: application/offset+octet-stream"])
        .args(["-H", "Expect:"])
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tus PATCH failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// --- 1. Upload to ready ---------------------------------------------------

/// One upload-to-ready run, in seconds from the tus creation.
#[derive(Debug, Clone, Serialize)]
struct ReadyRun {
    upload_s: f64,
    queue_s: f64,
    transcode_s: f64,
    images_playlists_s: f64,
    publish_s: f64,
    total_s: f64,
}

/// Reads the progress stream of a video, recording when each stage was
/// first seen and when the stream ended (the video ready).
async fn watch_progress(
    http: reqwest::Client,
    url: String,
    token: String,
    watch: Arc<Watch>,
) -> BTreeMap<String, f64> {
    let mut seen = BTreeMap::new();
    let mut r = http
        .get(&url)
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "progress stream: {}", r.status());
    let mut buf = String::new();
    let mut event = String::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        let at = watch.secs();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = buf.find('\n') {
            let line = buf[..i].trim_end_matches('\r').to_owned();
            buf.drain(..=i);
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_owned();
            } else if let Some(d) = line.strip_prefix("data:") {
                let data: Value = serde_json::from_str(d.trim()).unwrap_or(Value::Null);
                match event.as_str() {
                    // Opened once the upload is in: the worker may have
                    // started already.
                    "snapshot" => {
                        if let Some(stage) = data["progress"]["stage"].as_str() {
                            seen.entry(stage.to_owned()).or_insert(at);
                        }
                    }
                    "progress" => {
                        let stage = data["stage"].as_str().unwrap_or("?").to_owned();
                        seen.entry(stage).or_insert(at);
                    }
                    "end" => {
                        assert_eq!(
                            data["status"], "ready",
                            "the video did not get ready: {data}"
                        );
                        seen.insert("ready".to_owned(), at);
                        return seen;
                    }
                    _ => {}
                }
            }
        }
    }
    panic!("the progress stream closed before the end: {seen:?}");
}

async fn upload_to_ready(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    channel: &str,
    clip: &Path,
    clock: &SystemClock,
) -> (String, ReadyRun) {
    let len = std::fs::metadata(clip).unwrap().len();
    let watch = Arc::new(Watch::start(clock));
    let (url, video) = tus_create(http, base, token, channel, "upload to ready", len).await;
    let (token2, clip2) = (token.to_owned(), clip.to_owned());
    tokio::task::spawn_blocking(move || tus_patch(&url, &token2, &clip2))
        .await
        .unwrap();
    let uploaded = watch.secs();
    // The video exists once its last byte is in.
    let progress = tokio::spawn(watch_progress(
        http.clone(),
        format!("{base}/api/v1/videos/{video}/events"),
        token.to_owned(),
        watch.clone(),
    ));
    let seen = tokio::time::timeout(Duration::from_secs(1800), progress)
        .await
        .expect("not ready within 30 minutes")
        .unwrap();
    let at = |stage: &str| {
        *seen
            .get(stage)
            .unwrap_or_else(|| panic!("no {stage} event: {seen:?}"))
    };
    let first = seen
        .iter()
        .filter(|(k, _)| k.as_str() != "ready")
        .map(|(_, t)| *t)
        .fold(f64::INFINITY, f64::min);
    // `done` is first the transcoder's last report (ladder and images in
    // the store), then the worker's last word once the video is ready.
    let (done, ready) = (at("done"), at("ready"));
    let finishing = seen.get("finishing").copied().unwrap_or(done);
    let run = ReadyRun {
        upload_s: uploaded,
        queue_s: first - uploaded,
        transcode_s: finishing - first,
        images_playlists_s: done - finishing,
        publish_s: ready - done,
        total_s: ready,
    };
    (video, run)
}

/// `videosync transcode` of the clip: the same ladder without the server.
fn bare_transcode(bin: &Path, clip: &Path, out: &Path, clock: &SystemClock) -> f64 {
    let _ = std::fs::remove_dir_all(out);
    let watch = Watch::start(clock);
    let status = Command::new(bin)
        .arg("transcode")
        .arg(clip)
        .arg("--out")
        .arg(out)
        .arg("--quiet")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "videosync transcode failed");
    watch.secs()
}

// --- 2. Delivery ------------------------------------------------------------

/// nginx in the foreground serving `root` with `sendfile`.
struct Nginx {
    child: Child,
    base: String,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master stops its workers too (SIGKILL would leave
        // them running).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
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

fn start_nginx(dir: &Path, root: &Path) -> Nginx {
    std::fs::create_dir_all(dir).unwrap();
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        "daemon off;
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; video/mp4 mp4; }}
    default_type application/octet-stream;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
",
        root = root.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(NGINX)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(Stdio::null())
        .spawn()
        .expect("starting nginx");
    let nginx = Nginx {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return nginx;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nginx did not listen on port {port}");
}

/// One kind of request, on both servers.
#[derive(Debug, Clone, Serialize)]
struct Target {
    name: &'static str,
    /// Its path on videosync, and on nginx.
    videosync_path: String,
    nginx_path: String,
    bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
struct DeliveryRow {
    target: Target,
    videosync: Vec<load::Run>,
    nginx: Vec<load::Run>,
    videosync_rps: Spread,
    nginx_rps: Spread,
    videosync_p99_ms: Spread,
    nginx_p99_ms: Spread,
    /// Median requests/s of videosync over nginx's.
    ratio: f64,
}

/// The files of the video's ladder on disk, relative to its folder.
fn ladder_files(folder: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![folder.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(folder)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, e.metadata().unwrap().len()));
            }
        }
    }
    out.sort();
    out
}

fn delivery_targets(store_objects: &Path, video: &str) -> Vec<Target> {
    let prefix = format!("videos/{}", video.replace('-', ""));
    let files = ladder_files(&store_objects.join(&prefix));
    let playlist = files
        .iter()
        .find(|(f, _)| f.ends_with("720p/index.m3u8"))
        .unwrap_or_else(|| panic!("no 720p media playlist among {files:?}"));
    let segment = files
        .iter()
        .filter(|(f, _)| f.ends_with(".m4s") || f.ends_with(".ts"))
        .min_by_key(|(_, n)| n.abs_diff(MIB))
        .expect("no segments");
    [("playlist", playlist), ("segment", segment)]
        .into_iter()
        .map(|(name, (rel, bytes))| Target {
            name,
            videosync_path: format!("/media/{video}/{rel}"),
            nginx_path: format!("/{prefix}/{rel}"),
            bytes: *bytes,
        })
        .collect()
}

async fn delivery(
    oha: &load::Oha,
    plan: &Plan,
    server: &Server,
    nginx: &Nginx,
    targets: &[Target],
    http: &reqwest::Client,
) -> Vec<DeliveryRow> {
    let window = Duration::from_secs_f64(plan.delivery_window_s);
    let mut rows = Vec::new();
    for t in targets {
        // Both answer the same bytes before anything is timed.
        let a = http
            .get(format!("{}{}", server.base, t.videosync_path))
            .send()
            .await
            .unwrap();
        assert!(
            a.status().is_success(),
            "{}: {}",
            t.videosync_path,
            a.status()
        );
        let a = a.bytes().await.unwrap();
        let b = http
            .get(format!("{}{}", nginx.base, t.nginx_path))
            .send()
            .await
            .unwrap();
        assert!(b.status().is_success(), "{}: {}", t.nginx_path, b.status());
        assert_eq!(a, b.bytes().await.unwrap(), "{} differs", t.name);
        let req = |base: &str, path: &str| load::Request {
            method: "GET",
            url: format!("{base}{path}"),
            headers: Vec::new(),
            body: None,
        };
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 0..plan.delivery_rounds {
            // Alternate which goes first.
            let order = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for videosync_turn in order {
                let (r, runs) = if videosync_turn {
                    (req(&server.base, &t.videosync_path), &mut ours)
                } else {
                    (req(&nginx.base, &t.nginx_path), &mut theirs)
                };
                let run = oha.run(&r, window, plan.delivery_concurrency, None).await;
                println!(
                    "  {} {}: {:.0} req/s, p99 {:.2} ms ({} not 2xx, {} errors)",
                    t.name,
                    if videosync_turn { "videosync" } else { "nginx" },
                    run.ok_rps,
                    run.p99_ms,
                    run.not_ok,
                    run.errors
                );
                assert_eq!(run.not_ok + run.errors, 0, "failed requests on {}", r.url);
                runs.push(run);
            }
        }
        let rps = |v: &[load::Run]| spread(v.iter().map(|r| r.ok_rps).collect());
        let p99 = |v: &[load::Run]| spread(v.iter().map(|r| r.p99_ms).collect());
        let (vr, nr) = (rps(&ours), rps(&theirs));
        rows.push(DeliveryRow {
            target: t.clone(),
            videosync_rps: vr,
            nginx_rps: nr,
            videosync_p99_ms: p99(&ours),
            nginx_p99_ms: p99(&theirs),
            ratio: vr.median / nr.median,
            videosync: ours,
            nginx: theirs,
        });
    }
    rows
}

// --- 3. tus upload of 1 GiB -------------------------------------------------

#[derive(Debug, Clone, Serialize)]
struct UploadRun {
    tus_s: f64,
    cp_s: f64,
    /// `cp`, then an fsync of the copy: what a durable write costs here.
    cp_sync_s: f64,
    idle_rss_mib: f64,
    peak_rss_mib: f64,
    /// The largest resident size the poller saw (every 10 ms), a check on
    /// `VmHWM`.
    polled_peak_rss_mib: f64,
}

#[derive(Debug, Clone, Serialize)]
struct UploadSummary {
    bytes: u64,
    runs: Vec<UploadRun>,
    tus_mib_s: Spread,
    cp_mib_s: Spread,
    cp_sync_mib_s: Spread,
    /// Median tus throughput over median `cp` throughput.
    ratio: f64,
    /// Median tus throughput over median `cp` + fsync throughput.
    ratio_durable: f64,
    rss_above_idle_mib: Spread,
}

async fn upload_round(
    http: &reqwest::Client,
    server: &Server,
    (token, channel): (&str, &str),
    big: &Path,
    copy_to: &Path,
    clock: &SystemClock,
    cp_first: bool,
) -> UploadRun {
    let len = std::fs::metadata(big).unwrap().len();
    let cp = |then_sync: bool| {
        let w = Watch::start(clock);
        sh(&format!("cp {} {}", big.display(), copy_to.display()));
        if then_sync {
            // coreutils' `sync FILE` is an fsync of that file.
            sh(&format!("sync {}", copy_to.display()));
        }
        let s = w.secs();
        std::fs::remove_file(copy_to).unwrap();
        s
    };
    let (mut cp_s, mut cp_sync_s) = if cp_first {
        (cp(false), cp(true))
    } else {
        (0.0, 0.0)
    };

    let pid = server.pid();
    let idle = proc_kib(pid, "VmRSS");
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("resetting VmHWM");
    let stop = Arc::new(AtomicBool::new(false));
    let polled = Arc::new(AtomicU64::new(0));
    let poller = {
        let (stop, polled) = (stop.clone(), polled.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                polled.fetch_max(proc_kib(pid, "VmRSS"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let w = Watch::start(clock);
    let (url, video) = tus_create(http, &server.base, token, channel, "1 GiB", len).await;
    let (t, b) = (token.to_owned(), big.to_owned());
    tokio::task::spawn_blocking(move || tus_patch(&url, &t, &b))
        .await
        .unwrap();
    let tus_s = w.secs();
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    let peak = proc_kib(pid, "VmHWM");
    // The stored source must be whole before the round counts.
    let v = api(
        http,
        reqwest::Method::GET,
        &format!("{}/api/v1/videos/{video}", server.base),
        Some(token),
        None,
    )
    .await;
    assert_eq!(v["status"], "pending", "after the upload: {v}");
    api(
        http,
        reqwest::Method::DELETE,
        &format!("{}/api/v1/videos/{video}", server.base),
        Some(token),
        None,
    )
    .await;
    if !cp_first {
        cp_s = cp(false);
        cp_sync_s = cp(true);
    }
    UploadRun {
        tus_s,
        cp_s,
        cp_sync_s,
        idle_rss_mib: idle as f64 / 1024.0,
        peak_rss_mib: peak as f64 / 1024.0,
        polled_peak_rss_mib: polled.load(Ordering::Relaxed) as f64 / 1024.0,
    }
}

// --- The run ------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct Report {
    bench: &'static str,
    plan: Plan,
    cores: usize,
    load_tool: String,
    nginx: String,
    clip: String,
    ready: Vec<ReadyRun>,
    ready_total_s: Spread,
    bare_transcode: Vec<f64>,
    bare_transcode_s: Spread,
    stages_median_s: BTreeMap<&'static str, f64>,
    delivery: Vec<DeliveryRow>,
    upload: UploadSummary,
    loadavg_before: String,
    loadavg_after: String,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass
    // nothing and must not run the whole benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("media bench: run with `cargo bench --bench media`");
        return;
    }
    let quick = std::env::var("VIDEOSYNC_BENCH_QUICK").is_ok_and(|v| v == "1");
    let plan = Plan::new(quick);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let bin = target.join("release/videosync");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release -p videosync-server` first",
        bin.display()
    );
    let oha = load::Oha::find().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        Path::new(NGINX).exists(),
        "nginx is missing: run scripts/deps.sh test"
    );
    let nginx_version = {
        let out = Command::new(NGINX).arg("-v").output().unwrap();
        String::from_utf8_lossy(&out.stderr).trim().to_owned()
    };
    let clock = SystemClock::new();
    let loadavg_before = loadavg();
    println!(
        "media bench ({}): load tool {}, {nginx_version}, load average {loadavg_before}",
        if quick { "quick" } else { "full" },
        oha.version
    );
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let http = reqwest::Client::new();

    let clip = s.join("clip.mp4");
    let clip_desc = format!(
        "{} s 1920x1080 30 fps testsrc2 (x264 CRF 18, veryfast) + 48 kHz stereo sine (AAC 192 kb/s)",
        plan.clip_seconds
    );
    println!("generating the clip: {clip_desc}");
    sh(&format!(
        "ffmpeg -v error -y -f lavfi -i testsrc2=size=1920x1080:rate=30 \
         -f lavfi -i 'sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo' \
         -t {} -c:v libx264 -preset veryfast -crf 18 -pix_fmt yuv420p \
         -c:a aac -b:a 192k {}",
        plan.clip_seconds,
        clip.display()
    ));

    // 1. Upload to ready, alternating with the bare transcode.
    println!("1. upload to ready ({} rounds)", plan.ready_rounds);
    let data = s.join("data");
    let server = Server::start(&bin, &data, 1, &s.join("serve-ready.log"));
    let (token, channel) = account(&http, &server.base).await;
    let mut ready = Vec::new();
    let mut bare = Vec::new();
    let mut last_video = String::new();
    for round in 0..plan.ready_rounds {
        if round % 2 == 1 {
            bare.push(bare_transcode(&bin, &clip, &s.join("bare"), &clock));
        }
        let (video, run) =
            upload_to_ready(&http, &server.base, &token, &channel, &clip, &clock).await;
        println!("  upload to ready: {run:?}");
        ready.push(run);
        last_video = video;
        if round % 2 == 0 {
            bare.push(bare_transcode(&bin, &clip, &s.join("bare"), &clock));
        }
        println!("  bare transcode: {:.2} s", bare.last().unwrap());
    }

    // 2. Delivery of the last ladder, beside nginx on the same directory.
    println!(
        "2. delivery ({} rounds of {} s)",
        plan.delivery_rounds, plan.delivery_window_s
    );
    let objects = data.join("store/objects");
    let targets = delivery_targets(&objects, &last_video);
    let nginx = start_nginx(&s.join("nginx"), &objects);
    let rows = delivery(&oha, &plan, &server, &nginx, &targets, &http).await;
    drop(nginx);
    server.stop();

    // 3. tus upload of a large file beside cp, with no worker in the server.
    println!(
        "3. tus upload of {} MiB ({} rounds)",
        plan.upload_bytes / MIB,
        plan.upload_rounds
    );
    let big = s.join("big.ts");
    sh(&format!(
        "ffmpeg -v error -y -stream_loop -1 -i {} -map 0 -c copy -fs {} -f mpegts {}",
        clip.display(),
        plan.upload_bytes,
        big.display()
    ));
    let server = Server::start(&bin, &s.join("data-upload"), 0, &s.join("serve-upload.log"));
    let (token, channel) = account(&http, &server.base).await;
    // One upload first, untimed, so the server's idle size is that of a
    // server that has taken an upload.
    let _ = upload_round(
        &http,
        &server,
        (&token, &channel),
        &clip,
        &s.join("copy.bin"),
        &clock,
        true,
    )
    .await;
    let mut uploads = Vec::new();
    for round in 0..plan.upload_rounds {
        let run = upload_round(
            &http,
            &server,
            (&token, &channel),
            &big,
            &s.join("copy.bin"),
            &clock,
            round % 2 == 0,
        )
        .await;
        println!("  {run:?}");
        uploads.push(run);
    }
    server.stop();
    let bytes = std::fs::metadata(&big).unwrap().len();
    let mib_s = |s: f64| bytes as f64 / MIB as f64 / s;
    let tus_mib_s = spread(uploads.iter().map(|r| mib_s(r.tus_s)).collect());
    let cp_mib_s = spread(uploads.iter().map(|r| mib_s(r.cp_s)).collect());
    let cp_sync_mib_s = spread(uploads.iter().map(|r| mib_s(r.cp_sync_s)).collect());
    let upload = UploadSummary {
        bytes,
        tus_mib_s,
        cp_mib_s,
        cp_sync_mib_s,
        ratio: tus_mib_s.median / cp_mib_s.median,
        ratio_durable: tus_mib_s.median / cp_sync_mib_s.median,
        rss_above_idle_mib: spread(
            uploads
                .iter()
                .map(|r| r.peak_rss_mib - r.idle_rss_mib)
                .collect(),
        ),
        runs: uploads,
    };

    let median = |f: fn(&ReadyRun) -> f64| spread(ready.iter().map(f).collect()).median;
    let stages_median_s = BTreeMap::from([
        ("1 upload", median(|r| r.upload_s)),
        ("2 queue wait", median(|r| r.queue_s)),
        ("3 transcode", median(|r| r.transcode_s)),
        ("4 images and playlists", median(|r| r.images_playlists_s)),
        ("5 publish", median(|r| r.publish_s)),
    ]);
    let report = Report {
        bench: "media",
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_tool: oha.version.clone(),
        nginx: nginx_version,
        clip: clip_desc,
        ready_total_s: spread(ready.iter().map(|r| r.total_s).collect()),
        bare_transcode_s: spread(bare.clone()),
        bare_transcode: bare,
        ready,
        stages_median_s,
        delivery: rows,
        upload,
        loadavg_before,
        loadavg_after: loadavg(),
        plan,
    };
    let stem = if quick { "media-quick" } else { "media" };
    let dir = root.join("benches/results");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{stem}.json")),
        serde_json::to_string_pretty(&report).unwrap() + "\n",
    )
    .unwrap();
    let md = markdown(&report);
    std::fs::write(dir.join(format!("{stem}.md")), &md).unwrap();
    println!("\n{md}");
}

fn markdown(r: &Report) -> String {
    let mut md = String::from("# Media benchmark: upload to ready, delivery, tus upload\n\n");
    md.push_str(&format!(
        "{} cores shared by the server, its worker and the load tools; release build{}. \
         Load average (1, 5, 15 min) {} at the start, {} at the end. \
         Reproduce: `make bench BENCH=media`. Medians of the rounds with (min..max).\n\n",
        r.cores,
        if r.plan.quick { "; quick run" } else { "" },
        r.loadavg_before,
        r.loadavg_after
    ));

    md.push_str(&format!(
        "## Upload to ready\n\nThe clip: {}. `videosync serve` on embedded backends with one \
         worker and the default ladder (1080p, 720p, 480p, 360p; 4 s segments; x264 veryfast; \
         poster and storyboard), uploaded by tus in one `PATCH`; each stage as a client sees it \
         on the progress stream. Baseline: `videosync transcode` of the same file, same ladder \
         and images, no server. {} rounds, alternating.\n\n",
        r.clip,
        r.ready.len()
    ));
    md.push_str("| stage | median s |\n|---|---|\n");
    for (k, v) in &r.stages_median_s {
        md.push_str(&format!("| {} | {v:.2} |\n", &k[2..]));
    }
    md.push_str(&format!(
        "| **upload to ready** | **{:.2}** |\n| baseline: bare transcode | {:.2} |\n\n\
         Upload to ready is {:.2}x the bare transcode ({:.1} s more).\n\n",
        r.ready_total_s,
        r.bare_transcode_s,
        r.ready_total_s.median / r.bare_transcode_s.median,
        r.ready_total_s.median - r.bare_transcode_s.median
    ));

    md.push_str(&format!(
        "## Delivery\n\n`oha` at saturation ({} connections, {} s per run, {} rounds alternating \
         which server goes first) against `videosync serve` (`/media/...`, public video, \
         filesystem store) and {} serving the store's directory (`sendfile on`, \
         `tcp_nopush on`, access log off, `worker_processes auto`). Both answered the same \
         bytes first.\n\n\
         | file | bytes | videosync req/s | nginx req/s | ratio | videosync p99 ms | nginx p99 ms |\n\
         |---|---|---|---|---|---|---|\n",
        r.plan.delivery_concurrency, r.plan.delivery_window_s, r.plan.delivery_rounds, r.nginx
    ));
    for row in &r.delivery {
        md.push_str(&format!(
            "| {} `{}` | {} | {:.0} | {:.0} | {:.2}x | {:.2} | {:.2} |\n",
            row.target.name,
            row.target
                .videosync_path
                .rsplit('/')
                .next()
                .unwrap_or_default(),
            row.target.bytes,
            row.videosync_rps,
            row.nginx_rps,
            row.ratio,
            row.videosync_p99_ms,
            row.nginx_p99_ms
        ));
    }

    let u = &r.upload;
    md.push_str(&format!(
        "\n## tus upload\n\n{} bytes (the clip looped into MPEG-TS) in one tus `PATCH` by \
         `curl` streaming from disk, to `videosync serve` with no worker; baseline `cp` of the \
         same file into the same file system. {} rounds, alternating which goes first. Memory: \
         the server's `VmHWM` over the upload (reset before it) less its `VmRSS` just before.\n\n\
         The server makes an upload durable (each 8 MiB part written and fsynced, then the \
         parts joined into the object, fsynced again); `cp` alone leaves the copy in the page \
         cache, so `cp` followed by an fsync of the copy is shown too.\n\n\
         | | MiB/s | tus over it |\n|---|---|---|\n| tus upload | {:.0} | |\n\
         | `cp` | {:.0} | {:.2}x |\n| `cp` + fsync | {:.0} | {:.2}x |\n\n\
         Peak resident memory above idle: {:.1} MiB (idle {:.1} MiB).\n",
        u.bytes,
        u.runs.len(),
        u.tus_mib_s,
        u.cp_mib_s,
        u.ratio,
        u.cp_sync_mib_s,
        u.ratio_durable,
        u.rss_above_idle_mib,
        spread(u.runs.iter().map(|r| r.idle_rss_mib).collect()),
    ));
    md
}
