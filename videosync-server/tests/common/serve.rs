//! `videosync serve` as a process: start it on a free port, read its log,
//! call it over TCP with a minimal HTTP/1.1 client, stop it.
#![allow(dead_code, unreachable_pub)] // Each test binary uses a part.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use serde_json::{json, Value};

pub const WAIT: Duration = Duration::from_secs(60);

/// A signing key of the right length that must never be printed.
pub const JWT_SECRET: &str = "serve-test-secret-serve-test-secret-7f3a";

/// The binary with a clean environment: nothing of the caller's that the
/// configuration reads (it refuses unknown `VIDEOSYNC_*` variables, and a
/// `VIDEOSYNC_DATABASE_URL` of the caller's must not redirect a test).
pub fn videosync() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_videosync"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("VIDEOSYNC_") {
            cmd.env_remove(&name);
        }
    }
    cmd.env("NO_COLOR", "1").env_remove("RUST_BACKTRACE");
    cmd
}

/// A running `videosync serve` and its log lines.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub log: Receiver<String>,
    pub seen: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `serve` on a free port with the settings in `env`.
    pub fn start(env: &[(&str, String)]) -> Server {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut server = Server::start_in(&dir.path().join("data"), 0, env);
        server._dir = Some(dir);
        server
    }

    /// Starts `serve` with its data in `data` (kept after it stops) and
    /// `workers` embedded transcode workers.
    pub fn start_in(data: &std::path::Path, workers: usize, env: &[(&str, String)]) -> Server {
        let mut cmd = videosync();
        cmd.args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--workers",
            &workers.to_string(),
        ])
        .env("VIDEOSYNC_DATA_DIR", data)
        // Cheap hashes: the flow signs up three people on a debug build.
        .env("VIDEOSYNC_ARGON2_MEMORY_KIB", "64")
        .env("VIDEOSYNC_ARGON2_ITERATIONS", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting videosync serve");
        // Read the log (stdout) and errors (stderr) on threads, so a silent
        // server cannot hang the test.
        let (tx, log) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for pipe in [Box::new(stdout) as Box<dyn Read + Send>, Box::new(stderr)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut seen = Vec::new();
        let addr = loop {
            let Ok(line) = log.recv_timeout(WAIT) else {
                let _ = child.kill();
                panic!("videosync serve logged no address within {WAIT:?}: {seen:#?}");
            };
            if let Some((_, rest)) = line.split_once("listening on http://") {
                seen.push(line.clone());
                break rest.trim().to_owned();
            }
            seen.push(line);
        };
        Server {
            child,
            addr,
            log,
            seen,
            _dir: None,
        }
    }

    /// One request over a fresh connection: the status and the JSON body
    /// (`Null` when empty).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, _, body) = http(&self.addr, method, path, token, body);
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!(
                    "{method} {path}: a body that is not JSON ({e}): {}",
                    String::from_utf8_lossy(&body)
                )
            })
        };
        (status, body)
    }

    /// A call that must answer `expected`; answers the body.
    #[track_caller]
    pub fn expect(
        &self,
        expected: u16,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (status, body) = self.call(method, path, token, body);
        assert_eq!(status, expected, "{method} {path}: {body}");
        body
    }

    /// Sends SIGTERM; the server must exit 0 within 30 s, having logged
    /// that it stopped. Answers every log line.
    pub fn stop(mut self) -> Vec<String> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("sending SIGTERM");
        assert!(status.success());
        let mut exit = None;
        for _ in 0..300 {
            if let Some(code) = self.child.try_wait().expect("polling the child") {
                exit = Some(code);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let Some(code) = exit else {
            let _ = self.child.kill();
            panic!("videosync serve did not stop within 30 s of SIGTERM");
        };
        // The pipes close with the process; collect what is left.
        let mut log = std::mem::take(&mut self.seen);
        while let Ok(line) = self.log.recv_timeout(Duration::from_secs(5)) {
            log.push(line);
        }
        assert!(code.success(), "exit status {code}: {log:#?}");
        assert!(
            log.iter().any(|l| l.contains("videosync stopped")),
            "{log:#?}"
        );
        log
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failed assertion must not leave the server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 client: one request, `Connection: close`; answers the
/// status, the headers (lower-case names) and the body (de-chunked).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, HashMap<String, String>, Vec<u8>) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Accept", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    request(addr, method, path, &headers, body.as_bytes())
}

/// One request with these headers and body, `Connection: close`.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, HashMap<String, String>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connecting to the server");
    stream.set_read_timeout(Some(WAIT)).expect("a read timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream
        .write_all(req.as_bytes())
        .expect("sending the request");
    // A server may answer and close before taking the whole body (a
    // refusal): its answer is still there to read.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {status_line:?}"));
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("a hex chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// A fast ladder for the tests (one 240p rung, ultrafast, 2 s segments).
pub fn quick_ladder() -> Vec<(&'static str, String)> {
    vec![
        ("VIDEOSYNC_RUNGS", "240".to_owned()),
        ("VIDEOSYNC_PRESET", "ultrafast".to_owned()),
        ("VIDEOSYNC_SEGMENT_SECONDS", "2".to_owned()),
    ]
}

pub fn sign_up(server: &Server, name: &str) -> String {
    sign_up_with_id(server, name).0
}

/// [`sign_up`], answering the access token and the user's id.
pub fn sign_up_with_id(server: &Server, name: &str) -> (String, String) {
    let body = server.expect(
        201,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"username": name, "password": format!("password of {name}")})),
    );
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["user"]["id"].as_str().unwrap().to_owned(),
    )
}

pub fn channel(server: &Server, token: &str, visibility: &str) -> String {
    let body = server.expect(
        201,
        "POST",
        "/api/v1/channels",
        Some(token),
        Some(json!({"name": "Uploads", "visibility": visibility})),
    );
    body["id"].as_str().unwrap().to_owned()
}

pub fn tus_headers(token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Tus-Resumable", "1.0.0".to_owned()),
        ("Authorization", format!("Bearer {token}")),
    ]
}

pub fn call(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&'static str, String)],
    body: &[u8],
) -> (u16, std::collections::HashMap<String, String>, Vec<u8>) {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    request(addr, method, path, &h, body)
}

/// Fetches every playlist and segment of a public ready `video`, from its
/// playback answer on; answers the count.
pub fn fetch_public_ladder(server: &Server, video: &str) -> usize {
    let play = server.expect(
        200,
        "GET",
        &format!("/api/v1/videos/{video}/playback"),
        None,
        None,
    );
    fetch_ladder(&server.addr, play["master_url"].as_str().unwrap())
}

/// Fetches every playlist and segment under `master`; answers the count.
pub fn fetch_ladder(addr: &str, master: &str) -> usize {
    let get = |p: &str| {
        let (status, _, body) = http(addr, "GET", p, None, None);
        assert_eq!(status, 200, "GET {p}");
        body
    };
    let uris = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| {
                if let Some(i) = l.find("URI=\"") {
                    let rest = &l[i + 5..];
                    Some(rest[..rest.find('"')?].to_owned())
                } else if !l.starts_with('#') && !l.trim().is_empty() {
                    Some(l.trim().to_owned())
                } else {
                    None
                }
            })
            .collect()
    };
    let mut n = 0;
    for playlist in uris(&String::from_utf8(get(master)).unwrap()) {
        let dir = playlist.rsplit_once('/').unwrap().0.to_owned();
        for seg in uris(&String::from_utf8(get(&playlist)).unwrap()) {
            assert!(!get(&format!("{dir}/{seg}")).is_empty());
            n += 1;
        }
    }
    n
}

/// Starts a tus upload of `len` bytes into `channel`; answers its path and
/// the video it becomes.
pub fn tus_create(
    server: &Server,
    token: &str,
    channel: &str,
    title: &str,
    len: usize,
) -> (String, String) {
    use base64::Engine;
    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
    let mut create = tus_headers(token);
    create.push(("Upload-Length", len.to_string()));
    create.push((
        "Upload-Metadata",
        format!("channel {},title {}", b64(channel), b64(title)),
    ));
    let (status, headers, body) = call(&server.addr, "POST", "/api/v1/uploads", &create, b"");
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    (
        headers["location"].clone(),
        headers["videosync-video-id"].clone(),
    )
}

/// Uploads `data` by tus in one PATCH into `channel`; answers the video id.
pub fn tus_upload(server: &Server, token: &str, channel: &str, title: &str, data: &[u8]) -> String {
    let (path, video) = tus_create(server, token, channel, title, data.len());
    let mut patch = tus_headers(token);
    patch.push(("Content-Type", "application/offset+octet-stream".to_owned()));
    patch.push(("Upload-Offset", "0".to_owned()));
    let (status, _, body) = call(&server.addr, "PATCH", &path, &patch, data);
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    video
}

/// Waits (up to 3 minutes) until `video` is ready or failed; answers it.
pub fn wait_processed(server: &Server, token: &str, video: &str) -> Value {
    let mut v = Value::Null;
    for _ in 0..900 {
        v = server.expect(
            200,
            "GET",
            &format!("/api/v1/videos/{video}"),
            Some(token),
            None,
        );
        if v["status"] == "ready" || v["status"] == "failed" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    v
}
