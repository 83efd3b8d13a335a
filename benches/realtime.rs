//! The realtime benchmark: watch-together rooms under load, on this
//! 2-core machine with the load tool sharing it.
//!
//! One `videosync serve` (the release binary, embedded backends) beside the
//! baseline of the platform's original design, a Node.js `ws` server fanned
//! out through Redis pub/sub (`benches/realtime/node-baseline/`), in
//! alternating rounds: rooms of members connected over WebSocket, each
//! room's first member sending one playback update (play or pause) and one
//! chat message per second, everyone receiving both. The load tool
//! (`benches/realtime/load.rs`, tokio-tungstenite) runs as several
//! processes (a process may hold at most 20 000 open files here) and
//! measures each `state` and `chat` frame from the server's send stamp to
//! its receipt. Reported: p50/p99/max delivery latency, frames delivered
//! per second, the server's CPU (and Redis's, for the baseline), and the
//! server's memory per connection (resident memory with everyone connected
//! less before anyone was, divided by the connections).
//!
//! Run with `make bench BENCH=realtime` (builds the release binary, installs
//! the baseline's packages from its lock file, starts Redis), or by hand:
//! `cargo build --release -p videosync-server`, `npm ci` in the baseline's
//! folder, then `cargo bench --bench realtime` with
//! `VIDEOSYNC_TEST_REDIS_URL` set. `VIDEOSYNC_BENCH_QUICK=1` runs 10 rooms
//! of 50 for 10 s. Writes `benches/results/realtime.json` and `.md` (the
//! quick version `realtime-quick.*`). `VIDEOSYNC_BENCH_INSTANCES=2` runs two
//! instances of each server instead (videosync on shared Postgres and Redis,
//! with `VIDEOSYNC_TEST_POSTGRES_URL` set; two Node processes), twice the
//! rooms, every room's members split across both: `realtime-two.*`.
//! `VIDEOSYNC_BENCH_RAMP=capacity` finds the connections each server holds
//! at p99 <= 50 ms (rooms of 100 added 2 500 connections a step):
//! `realtime-capacity.*`; `VIDEOSYNC_BENCH_RAMP=rate` doubles the messages
//! per room per second over 10 000 connections until p99 passes 100 ms:
//! `realtime-rate.*`.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use videosync::core::catalog::{catalog_from_url, StatusChange};
use videosync::core::{SystemClock, VideoId};

#[path = "realtime/load.rs"]
mod load;
#[path = "stats.rs"]
mod stats;
use stats::{percentile, spread, Spread};

/// What one run loads.
#[derive(Debug, Clone, Copy, Serialize)]
struct Plan {
    rooms: usize,
    members: usize,
    per_second: f64,
    seconds: f64,
    warmup_seconds: f64,
    rounds: usize,
    processes: usize,
    instances: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                rooms: 10,
                members: 50,
                per_second: 1.0,
                seconds: 10.0,
                warmup_seconds: 2.0,
                rounds: 1,
                processes: 2,
                instances: 1,
            }
        } else {
            Plan {
                rooms: 100,
                members: 100,
                per_second: 1.0,
                seconds: 30.0,
                warmup_seconds: 5.0,
                rounds: 2,
                processes: 4,
                instances: 1,
            }
        }
    }

    fn connections(&self) -> usize {
        self.rooms * self.members
    }
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
struct Run {
    server: String,
    connections: usize,
    dropped: u64,
    errors: u64,
    delivered_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    server_cpu_percent: f64,
    redis_cpu_percent: Option<f64>,
    server_rss_idle_mib: f64,
    server_rss_connected_mib: f64,
    kib_per_connection: f64,
}

fn sh(cmd: &str) -> String {
    let out = Command::new("bash").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `VmRSS` of `pid`, MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// CPU time of `pid` so far, seconds (user + system).
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces) start after ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// A server under load: its process and address.
struct Served {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn read_addr(child: &mut Child) -> String {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server exited before it listened")
            .unwrap();
        if let Some((_, rest)) = line.split_once("listening on http://") {
            break rest.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    addr
}

fn start_videosync(bin: &Path, env: &[(&str, String)]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("VIDEOSYNC_") {
            cmd.env_remove(&name);
        }
    }
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let mut child = cmd
        .args(["serve", "--addr", "127.0.0.1:0", "--workers", "0"])
        .env("VIDEOSYNC_DATA_DIR", dir.path().join("data"))
        .env("VIDEOSYNC_ACCESS_TTL_SECONDS", "86400")
        .env("VIDEOSYNC_CHAT_PER_MINUTE", "600")
        .env("RUST_LOG", "warn,videosync=info")
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("starting videosync serve");
    let addr = read_addr(&mut child);
    Served {
        child,
        addr,
        _dir: dir,
    }
}

fn start_node(node_dir: &Path, redis: &str, namespace: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let mut child = Command::new("node")
        .arg("server.mjs")
        .current_dir(node_dir)
        .env("PORT", port.to_string())
        .env("REDIS_URL", redis)
        .env("NAMESPACE", namespace)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("starting the Node baseline (node on PATH, npm ci done)");
    let addr = read_addr(&mut child);
    Served {
        child,
        addr,
        _dir: dir,
    }
}

async fn api(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Value,
) -> Value {
    let mut req = http
        .request(method, url)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap_or_default();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

/// A user, and `rooms` channels with a ready video each, on videosync.
async fn videosync_rooms(served: &Served, plan: &Plan, db: Option<&str>) -> Vec<load::RoomSpec> {
    let http = reqwest::Client::new();
    let base = format!("http://{}", served.addr);
    let user = api(
        &http,
        reqwest::Method::POST,
        &format!("{base}/api/v1/auth/register"),
        None,
        json!({"username": "host", "password": "password of the host"}),
    )
    .await;
    let token = user["access_token"].as_str().unwrap().to_owned();
    let db = match db {
        Some(url) => url.to_owned(),
        None => format!(
            "sqlite://{}",
            served._dir.path().join("data/videosync.db").display()
        ),
    };
    let catalog = catalog_from_url(&db, Arc::new(SystemClock::new()))
        .await
        .unwrap();
    let mut rooms = Vec::new();
    for r in 0..plan.rooms {
        let channel = api(
            &http,
            reqwest::Method::POST,
            &format!("{base}/api/v1/channels"),
            Some(&token),
            json!({"name": format!("room {r}"), "visibility": "public"}),
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let video = api(
            &http,
            reqwest::Method::POST,
            &format!("{base}/api/v1/channels/{channel}/videos"),
            Some(&token),
            json!({"title": "feature"}),
        )
        .await;
        let id: VideoId = video["id"].as_str().unwrap().parse().unwrap();
        let fence = "bench".to_owned();
        catalog
            .update_status(
                id,
                None,
                StatusChange::Processing {
                    fence: fence.clone(),
                },
            )
            .await
            .unwrap();
        catalog
            .update_status(
                id,
                None,
                StatusChange::Ready {
                    fence,
                    renditions: Vec::new(),
                    output_prefix: format!("videos/{id}/a1"),
                },
            )
            .await
            .unwrap();
        rooms.push(load::RoomSpec {
            channel,
            token: token.clone(),
            media: id.to_string(),
            members: plan.members,
        });
    }
    rooms
}

fn node_rooms(plan: &Plan) -> Vec<load::RoomSpec> {
    (0..plan.rooms)
        .map(|r| load::RoomSpec {
            channel: format!("room-{r}"),
            token: "unused".to_owned(),
            media: format!("vid_{r}"),
            members: plan.members,
        })
        .collect()
}

struct Loader {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    samples: PathBuf,
}

/// Runs the load over `rooms` against `servers`, watching `pid` (and
/// `redis_pid`); answers the run.
fn drive(
    name: &str,
    servers: Vec<String>,
    rooms: Vec<load::RoomSpec>,
    plan: &Plan,
    pids: &[u32],
    redis_pid: Option<u32>,
    scratch: &Path,
) -> Run {
    let me = std::env::current_exe().unwrap();
    let rss = || pids.iter().map(|&p| rss_mib(p)).sum::<f64>();
    let cpu = || pids.iter().map(|&p| cpu_s(p)).sum::<f64>();
    let rss_idle = rss();
    let per = rooms.len().div_ceil(plan.processes);
    let mut loaders = Vec::new();
    for (k, chunk) in rooms.chunks(per).enumerate() {
        let samples = scratch.join(format!("{name}-{k}.f32"));
        let spec = load::Spec {
            servers: servers.clone(),
            rooms: chunk.to_vec(),
            per_second: plan.per_second,
            seconds: plan.seconds,
            warmup_seconds: plan.warmup_seconds,
            samples_file: samples.display().to_string(),
        };
        let mut child = Command::new(&me)
            .env(
                "VIDEOSYNC_REALTIME_CLIENT",
                serde_json::to_string(&spec).unwrap(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        loaders.push(Loader {
            child,
            stdin,
            stdout,
            samples,
        });
    }
    let mut connected = 0;
    for l in &mut loaders {
        let mut line = String::new();
        l.stdout.read_line(&mut line).unwrap();
        connected += line
            .trim()
            .strip_prefix("connected ")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_connected = rss();
    let (cpu0, rcpu0) = (cpu(), redis_pid.map(cpu_s));
    let clock = SystemClock::new();
    for l in &mut loaders {
        writeln!(l.stdin).unwrap();
    }
    let mut reports = Vec::new();
    for l in &mut loaders {
        let mut line = String::new();
        l.stdout.read_line(&mut line).unwrap();
        reports.push(serde_json::from_str::<load::Report>(line.trim()).unwrap_or_default());
    }
    let wall = videosync::core::Clock::monotonic(&clock).as_secs_f64();
    let (cpu1, rcpu1) = (cpu(), redis_pid.map(cpu_s));
    let mut samples = Vec::new();
    for l in &mut loaders {
        let _ = l.child.wait();
        let bytes = std::fs::read(&l.samples).unwrap_or_default();
        samples.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        );
    }
    samples.sort_by(f64::total_cmp);
    let delivered: u64 = reports.iter().map(|r| r.delivered).sum();
    let measured_s = plan.seconds - plan.warmup_seconds;
    Run {
        server: name.to_owned(),
        connections: connected,
        dropped: reports.iter().map(|r| r.dropped).sum(),
        errors: reports.iter().map(|r| r.errors).sum(),
        delivered_per_s: delivered as f64 / measured_s,
        p50_ms: percentile(&samples, 0.5),
        p99_ms: percentile(&samples, 0.99),
        max_ms: samples.last().copied().unwrap_or(f64::NAN),
        server_cpu_percent: (cpu1 - cpu0) / wall * 100.0,
        redis_cpu_percent: match (rcpu0, rcpu1) {
            (Some(a), Some(b)) => Some((b - a) / wall * 100.0),
            _ => None,
        },
        server_rss_idle_mib: rss_idle,
        server_rss_connected_mib: rss_connected,
        kib_per_connection: (rss_connected - rss_idle) * 1024.0 / connected.max(1) as f64,
    }
}

/// What every run needs: the binaries, Redis, and where the second
/// instance's database is.
struct Setup {
    bin: PathBuf,
    node_dir: PathBuf,
    redis: String,
    rpid: Option<u32>,
    /// Postgres, when two instances run.
    two: Option<String>,
    instances: usize,
    scratch: PathBuf,
}

/// One run of `name` (`videosync` or `node`) under `plan`, on fresh
/// servers.
async fn measure(setup: &Setup, name: &str, plan: &Plan, round: usize) -> Run {
    let Setup {
        bin,
        node_dir,
        redis,
        rpid,
        two,
        instances,
        scratch,
    } = setup;
    let (rpid, instances) = (*rpid, *instances);
    // Chat at the plan's rate must not meet the per-member chat limit.
    let chat_per_minute = ((plan.per_second * 60.0 * 2.0) as u64).max(600).to_string();
    if name == "videosync" {
        // Alone: the embedded backends. Two: Postgres and Redis shared,
        // members of every room split across both.
        let shared = match two {
            Some(pg) => {
                let db = videosync::core::conformance::postgres_namespace(pg).await;
                let env = vec![
                    ("VIDEOSYNC_DATABASE_URL", db.clone()),
                    ("VIDEOSYNC_QUEUE_URL", redis.clone()),
                    ("VIDEOSYNC_BUS_URL", redis.clone()),
                    ("VIDEOSYNC_LOG_URL", redis.clone()),
                    ("VIDEOSYNC_KV_URL", redis.clone()),
                    (
                        "VIDEOSYNC_NAMESPACE",
                        format!("bench{round}{}", std::process::id()),
                    ),
                    (
                        "VIDEOSYNC_JWT_SECRET",
                        "realtime-bench-secret-realtime-bench-0123".to_owned(),
                    ),
                ];
                Some((db, env))
            }
            None => None,
        };
        let mut env = shared.as_ref().map(|(_, e)| e.clone()).unwrap_or_default();
        env.push(("VIDEOSYNC_CHAT_PER_MINUTE", chat_per_minute));
        let servers: Vec<Served> = (0..instances).map(|_| start_videosync(bin, &env)).collect();
        let db = shared.as_ref().map(|(db, _)| db.as_str());
        let rooms = videosync_rooms(&servers[0], plan, db).await;
        let pids: Vec<u32> = servers.iter().map(|s| s.child.id()).collect();
        drive(
            name,
            servers.iter().map(|s| s.addr.clone()).collect(),
            rooms,
            plan,
            &pids,
            (instances > 1).then_some(rpid).flatten(),
            scratch,
        )
    } else {
        let namespace = format!("bench{round}{}", std::process::id());
        let servers: Vec<Served> = (0..instances)
            .map(|_| start_node(node_dir, redis, &namespace))
            .collect();
        let pids: Vec<u32> = servers.iter().map(|s| s.child.id()).collect();
        drive(
            name,
            servers.iter().map(|s| s.addr.clone()).collect(),
            node_rooms(plan),
            plan,
            &pids,
            rpid,
            scratch,
        )
    }
}

/// One step of a ramp: the plan's knob and the run at it.
#[derive(Debug, Clone, Serialize)]
struct Step {
    server: String,
    connections: usize,
    per_second: f64,
    /// Frames the load asks for per second: every member receives each
    /// room's updates and chat.
    offered_per_s: f64,
    run: Run,
}

/// Raises `knob` step by step for both servers, alternating which goes
/// first, and stops a server at the first step whose p99 passes
/// `limit_ms` (or that could not connect everyone). Answers every step.
async fn ramp(
    setup: &Setup,
    base: &Plan,
    steps: &[f64],
    limit_ms: f64,
    apply: fn(&mut Plan, f64),
) -> Vec<Step> {
    let mut out = Vec::new();
    let mut done = [false, false];
    for (k, &knob) in steps.iter().enumerate() {
        let mut plan = *base;
        apply(&mut plan, knob);
        let order = if k % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            if done[i] {
                continue;
            }
            let name = ["videosync", "node"][i];
            let run = measure(setup, name, &plan, k).await;
            println!(
                "  {name} at {} connections, {}/s: p99 {:.1} ms ({} connected)",
                plan.connections(),
                plan.per_second,
                run.p99_ms,
                run.connections
            );
            let step = Step {
                server: name.to_owned(),
                connections: plan.connections(),
                per_second: plan.per_second,
                offered_per_s: plan.connections() as f64 * 2.0 * plan.per_second,
                run,
            };
            if !within(&step, limit_ms) {
                done[i] = true;
            }
            out.push(step);
        }
        if done.iter().all(|d| *d) {
            break;
        }
    }
    out
}

/// The largest step of `server` that held `limit_ms` at p99.
fn held<'a>(steps: &'a [Step], server: &str, limit_ms: f64) -> Option<&'a Step> {
    steps
        .iter()
        .filter(|s| s.server == server)
        .take_while(|s| within(s, limit_ms))
        .last()
}

/// Whether a step connected everyone, delivered what the load offered
/// (95 % of it at least: latency is measured from the server's stamp, so a
/// server that falls behind on its input shows it as lost throughput, not
/// as latency) and kept p99 within `limit_ms`.
fn within(s: &Step, limit_ms: f64) -> bool {
    s.run.connections == s.connections
        && s.run.delivered_per_s >= 0.95 * s.offered_per_s
        && s.run.p99_ms <= limit_ms
}

fn ramp_table(steps: &[Step]) -> String {
    let mut md = String::from("| server | connections | per room per s | p50 ms | p99 ms | max ms | frames delivered/s of offered | server CPU % | KiB per connection |\n|---|---|---|---|---|---|---|---|---|\n");
    for s in steps {
        let r = &s.run;
        md.push_str(&format!(
            "| {} | {} of {} | {} | {:.2} | {:.2} | {:.2} | {:.0} of {:.0} | {:.0} | {:.1} |\n",
            s.server,
            r.connections,
            s.connections,
            s.per_second,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.delivered_per_s,
            s.offered_per_s,
            r.server_cpu_percent,
            r.kib_per_connection
        ));
    }
    md
}

/// Capacity: rooms of 100 added 2 500 connections at a time (up to 19 000:
/// a process holds at most 20 000 open files here), one update and one
/// chat per room per second, until p99 passes 50 ms.
async fn ramp_capacity(setup: &Setup, base: &Plan, root: &Path, loadavg: &str, node: &str) {
    const LIMIT_MS: f64 = 50.0;
    let mut plan = *base;
    plan.seconds = 20.0;
    plan.warmup_seconds = 5.0;
    let steps: Vec<f64> = [25.0, 50.0, 75.0, 100.0, 125.0, 150.0, 175.0, 190.0].to_vec();
    let steps = ramp(setup, &plan, &steps, LIMIT_MS, |p, rooms| {
        p.rooms = rooms as usize;
        p.processes = (p.rooms / 25).max(2);
    })
    .await;
    let cap = |name: &str| held(&steps, name, LIMIT_MS).map_or(0, |s| s.connections);
    let (v, n) = (cap("videosync"), cap("node"));
    let ratio = v as f64 / n.max(1) as f64;
    let report = json!({
        "limit_p99_ms": LIMIT_MS,
        "machine": {"loadavg_before": loadavg.trim(), "node": node},
        "capacity": {"videosync": v, "node": n, "ratio": ratio},
        "steps": steps,
    });
    let mut md = format!(
        "# Realtime benchmark: capacity\n\nConnections held at p99 <= {LIMIT_MS} ms on one server, rooms of 100 added 2 500 connections at a time (at most 19 000: a process may hold 20 000 open files here), each room's first member sending one playback update and one chat message per second; {} s per step, the first {} s not measured; the servers take turns going first. A server stops at the first step past the limit, or that delivers less than 95 % of the frames offered.\n\n**Capacity: videosync {v}, Node baseline {n} ({ratio:.1}x).** Where videosync held every step, its capacity here is bounded by the open-file limit, not by latency.\n\n",
        plan.seconds, plan.warmup_seconds
    );
    md.push_str(&ramp_table(&steps));
    println!("capacity at p99 <= {LIMIT_MS} ms: videosync {v}, node {n} ({ratio:.1}x)");
    write_results(root, "realtime-capacity", &report, &md);
}

/// Message rate: 100 rooms of 100, the updates and chat per room per second
/// doubled until p99 passes 100 ms.
async fn ramp_rate(setup: &Setup, base: &Plan, root: &Path, loadavg: &str, node: &str) {
    const LIMIT_MS: f64 = 100.0;
    let mut plan = *base;
    plan.seconds = 20.0;
    plan.warmup_seconds = 5.0;
    let steps = ramp(
        setup,
        &plan,
        &[1.0, 2.0, 4.0, 8.0, 16.0],
        LIMIT_MS,
        |p, rate| {
            p.per_second = rate;
        },
    )
    .await;
    let rate = |name: &str| held(&steps, name, LIMIT_MS).map_or(0.0, |s| s.per_second);
    let past = |name: &str| {
        steps
            .iter()
            .find(|s| s.server == name && !within(s, LIMIT_MS))
            .map(|s| s.per_second)
    };
    let report = json!({
        "limit_p99_ms": LIMIT_MS,
        "machine": {"loadavg_before": loadavg.trim(), "node": node},
        "held_per_room_per_s": {"videosync": rate("videosync"), "node": rate("node")},
        "passed_at_per_room_per_s": {"videosync": past("videosync"), "node": past("node")},
        "steps": steps,
    });
    let say = |name: &str| match past(name) {
        Some(r) => format!(
            "{name} held {} per room per second and fell past the limits at {r}",
            rate(name)
        ),
        None => format!("{name} held every step (up to {})", rate(name)),
    };
    let mut md = format!(
        "# Realtime benchmark: message rate\n\n100 rooms of 100 on one server; each room's first member sends N playback updates and N chat messages per second (N doubling), everyone receiving all; {} s per step, the first {} s not measured; the servers take turns going first; a server stops at the first step whose p99 passes {LIMIT_MS} ms or that delivers less than 95 % of the frames offered (latency runs from the server's send stamp, so a server behind on its input shows as lost throughput).\n\n**{}; {}.**\n\n",
        plan.seconds, plan.warmup_seconds, say("videosync"), say("node")
    );
    md.push_str(&ramp_table(&steps));
    write_results(root, "realtime-rate", &report, &md);
}

/// Writes `benches/results/<name>.json` and `<name>.md`.
fn write_results(root: &Path, name: &str, report: &Value, md: &str) {
    let dir = root.join("benches/results");
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(report).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join(format!("{name}.md")), md).unwrap();
    println!("wrote benches/results/{name}.json and .md");
}

fn redis_pid(url: &str) -> Option<u32> {
    let u = url::Url::parse(url).ok()?;
    let out = sh(&format!(
        "redis-cli -h {} -p {} info server",
        u.host_str()?,
        u.port().unwrap_or(6379)
    ));
    out.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::main]
async fn main() {
    if let Ok(spec) = std::env::var("VIDEOSYNC_REALTIME_CLIENT") {
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        load::run(serde_json::from_str(&spec).unwrap()).await;
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // and must not run the whole benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("realtime bench: run with `cargo bench --bench realtime`");
        return;
    }
    let quick = std::env::var("VIDEOSYNC_BENCH_QUICK").is_ok_and(|v| v == "1");
    // `VIDEOSYNC_BENCH_INSTANCES=2`: two instances of each server sharing
    // Redis (and Postgres), twice the rooms, members split across both.
    let instances: usize = std::env::var("VIDEOSYNC_BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .clamp(1, 2);
    let mut plan = Plan::new(quick);
    plan.rooms *= instances;
    plan.instances = instances;
    let two = (instances > 1).then(|| {
        std::env::var("VIDEOSYNC_TEST_POSTGRES_URL")
            .expect("VIDEOSYNC_TEST_POSTGRES_URL (Postgres for two instances)")
    });
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
    let node_dir = root.join("benches/realtime/node-baseline");
    assert!(
        node_dir.join("node_modules").exists(),
        "run `npm ci` in {}",
        node_dir.display()
    );
    let redis = std::env::var("VIDEOSYNC_TEST_REDIS_URL")
        .expect("VIDEOSYNC_TEST_REDIS_URL (Redis for the baseline)");
    let rpid = redis_pid(&redis);
    let node_version = sh("node --version").trim().to_owned();
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("realtime bench ({}): {} rooms of {}, {} update + {} chat per room per second, {} s (first {} s not measured), node {node_version}, load {loadavg}",
        if quick { "quick" } else { "full" }, plan.rooms, plan.members, plan.per_second, plan.per_second, plan.seconds, plan.warmup_seconds);
    let scratch = tempfile::tempdir().unwrap();
    let setup = Setup {
        bin,
        node_dir,
        redis,
        rpid,
        two,
        instances,
        scratch: scratch.path().to_owned(),
    };
    match std::env::var("VIDEOSYNC_BENCH_RAMP").as_deref() {
        Ok("capacity") => return ramp_capacity(&setup, &plan, root, &loadavg, &node_version).await,
        Ok("rate") => return ramp_rate(&setup, &plan, root, &loadavg, &node_version).await,
        Ok(other) => panic!("VIDEOSYNC_BENCH_RAMP={other}: expected capacity or rate"),
        Err(_) => {}
    }
    let mut runs = Vec::new();
    for round in 0..plan.rounds {
        let order: [&str; 2] = if round % 2 == 0 {
            ["videosync", "node"]
        } else {
            ["node", "videosync"]
        };
        for name in order {
            let run = measure(&setup, name, &plan, round).await;
            println!("  {name}: {run:?}");
            runs.push(run);
        }
    }
    let pick = |name: &str, f: fn(&Run) -> f64| {
        spread(runs.iter().filter(|r| r.server == name).map(f).collect())
    };
    let summary = |name: &str| -> Value {
        json!({
            "p50_ms": pick(name, |r| r.p50_ms),
            "p99_ms": pick(name, |r| r.p99_ms),
            "max_ms": pick(name, |r| r.max_ms),
            "delivered_per_s": pick(name, |r| r.delivered_per_s),
            "server_cpu_percent": pick(name, |r| r.server_cpu_percent),
            "kib_per_connection": pick(name, |r| r.kib_per_connection),
        })
    };
    let report = json!({
        "plan": plan,
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), "loadavg_before": loadavg.trim(), "node": node_version},
        "runs": runs,
        "videosync": summary("videosync"),
        "node": summary("node"),
    });
    let suffix = match (quick, instances) {
        (true, 1) => "-quick",
        (true, _) => "-two-quick",
        (false, 1) => "",
        (false, _) => "-two",
    };
    let row = |name: &str| {
        let s = |f: fn(&Run) -> f64| -> Spread { pick(name, f) };
        format!(
            "| {name} | {:.1} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.1} |\n",
            s(|r| r.connections as f64).median,
            s(|r| r.p50_ms),
            s(|r| r.p99_ms),
            s(|r| r.max_ms),
            s(|r| r.delivered_per_s).median,
            s(|r| r.server_cpu_percent).median,
            s(|r| r.kib_per_connection).median,
        )
    };
    let mut md = format!(
        "# Realtime benchmark{}\n\n{} rooms of {} members ({} connections) on {}, each room's first member sending {} playback update and {} chat message per second, everyone receiving both; {} s per run, the first {} s not measured; {} rounds alternating; medians (min..max) of the rounds. Load tool: {} processes of tokio-tungstenite clients on the same 2-core machine. Latency: server send stamp to receipt.\n\n",
        if quick { " (quick)" } else { "" }, plan.rooms, plan.members, plan.connections(),
        if instances == 1 { "one server".to_owned() } else { format!("{instances} instances of each server, every room's members split across them") },
        plan.per_second, plan.per_second, plan.seconds, plan.warmup_seconds, plan.rounds, plan.processes,
    );
    md.push_str("| server | connections | p50 ms | p99 ms | max ms | frames delivered/s | server CPU % | KiB per connection |\n|---|---|---|---|---|---|---|---|\n");
    md.push_str(&row("videosync"));
    md.push_str(&row("node"));
    for name in ["videosync", "node"] {
        let redis_cpu: Vec<f64> = runs
            .iter()
            .filter(|r| r.server == name)
            .filter_map(|r| r.redis_cpu_percent)
            .collect();
        if !redis_cpu.is_empty() {
            md.push_str(&format!(
                "\n{name} also used Redis: {:.0} % CPU (median).\n",
                spread(redis_cpu).median
            ));
        }
    }
    if instances == 1 {
        md.push_str("\nvideosync runs on its embedded backends (SQLite, in-process bus); chat is stored in the database before it is relayed. The baseline checks no token or permission and stores no chat.\n");
    } else {
        md.push_str("\nvideosync: instances sharing Postgres and Redis (each room owned by one instance under a lease, the rest relaying over Redis pub/sub); chat is stored in Postgres before it is relayed. The baseline: Node processes sharing Redis pub/sub; it checks no token or permission and stores no chat. CPU and memory are the instances' sums.\n");
    }
    write_results(root, &format!("realtime{suffix}"), &report, &md);
}
