//! The server benchmark: the `videosync-server` router served in-process on
//! a TCP port with the default configuration (Argon2id m=19456 KiB, t=2,
//! p=1; embedded SQLite) and the `videosync` binary's allocator (mimalloc),
//! loaded by `oha`, and search latency over a
//! generated catalog on SQLite and on Postgres.
//!
//! - **HTTP** (over the SQLite catalog): `POST /api/v1/auth/login` at
//!   saturation; `GET /api/v1/channels/{id}` and `GET /api/v1/search/videos`
//!   with a bearer token at a fixed 1 000 req/s and at saturation, in
//!   alternating rounds; then a rate ladder for the two reads, up to the
//!   highest rate served with p99 within the 5 ms target.
//! - **Search**: `Videos::search_videos` over 100 000 generated videos
//!   (see `server/gen.rs`) on SQLite and on Postgres, five fixed queries
//!   (one word, two words, a prefix, a rare word, a common word) for an
//!   anonymous visitor and for a member, one at a time, the databases taking
//!   turns.
//!
//! The load tool and the server share the machine's cores. Run with
//! `make bench BENCH=server` (installs `oha`, starts the services), or
//! `cargo bench --all-features --bench server` with `oha` on `PATH` and
//! `VIDEOSYNC_TEST_POSTGRES_URL` set (without it the Postgres rows are
//! skipped, unless `VIDEOSYNC_REQUIRE_SERVICES=1`). `VIDEOSYNC_BENCH_QUICK=1`
//! runs a short version (10 000 videos, short windows) in a few minutes.
//! Writes `benches/results/server.json` and `benches/results/server.md`
//! (the quick version `server-quick.*`).
//!
//! For work on search: `VIDEOSYNC_BENCH_SEARCH_ONLY=1` skips the HTTP part
//! (no `oha` needed) and writes `server-search.*` instead;
//! `VIDEOSYNC_BENCH_KEEP_SCHEMA=1` keeps the seeded Postgres schema (its
//! name is printed) for `EXPLAIN` by hand; `VIDEOSYNC_BENCH_PG_SCHEMA=<name>`
//! searches such a kept schema instead of seeding a new one (and keeps it);
//! `VIDEOSYNC_BENCH_SEARCH_QUERIES=a,b c,...` replaces the fixed queries of a
//! search-only run. `VIDEOSYNC_BENCH_SERVE=1` seeds the SQLite catalog, then
//! serves it until Ctrl-C and prints a token, for profiling by hand.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use videosync::core::conformance::{service_url, unique_name};
use videosync::core::db::Viewer;
use videosync::core::sql::Database;
use videosync::core::SystemClock;
use videosync_server::config::{Config, Secret};
use videosync_server::{serve, App, BackendUrls, Backends};

#[path = "server/gen.rs"]
mod gen;
#[path = "server/load.rs"]
mod load;
#[path = "server/search.rs"]
mod search;
#[path = "server/seed.rs"]
mod seed;

#[path = "stats.rs"]
mod stats;
use stats::{percentile, spread, Spread};

#[path = "watch.rs"]
mod watch;
use watch::Watch;

/// Sizes of a run: the full one, or the quick check.
#[derive(Debug, Clone, Serialize)]
struct Plan {
    quick: bool,
    videos: usize,
    channels: usize,
    /// Rounds of the HTTP runs, and the length of each run.
    http_rounds: usize,
    window_s: f64,
    /// Length of each step of the rate ladder.
    ladder_window_s: f64,
    search_rounds: usize,
    search_samples_per_round: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                videos: 10_000,
                channels: 50,
                http_rounds: 2,
                window_s: 2.0,
                ladder_window_s: 1.5,
                search_rounds: 2,
                search_samples_per_round: 5,
            }
        } else {
            Plan {
                quick,
                videos: 100_000,
                channels: 500,
                http_rounds: 5,
                window_s: 6.0,
                ladder_window_s: 4.0,
                // 100 samples a cell, 1 000 a database: its p99 is then
                // the tenth slowest search, not the third.
                search_rounds: 5,
                search_samples_per_round: 20,
            }
        }
    }
}

/// The generator's seed.
const SEED: u64 = 0x5EED_0011;
/// The authenticated read target of the issue: p99 at 1 000 req/s.
const READ_P99_MS: f64 = 5.0;
const READ_RATE: u32 = 1_000;
/// Offered rates of the ladder.
const LADDER: &[u32] = &[
    25, 50, 100, 250, 500, 1_000, 1_500, 2_000, 3_000, 4_000, 5_000, 6_000, 8_000,
];
/// The ladder stops at a step whose p99 is above this, or that serves
/// under 90 % of its offered rate: the server is behind.
const LADDER_STOP_P99_MS: f64 = 100.0;
/// In-flight requests of each kind of run.
const LOGIN_CONCURRENCY: usize = 8;
const FIXED_CONCURRENCY: usize = 32;
const SATURATION_CONCURRENCY: usize = 16;
/// The HTTP search.
const HTTP_QUERY: &str = "guitar lesson";

#[derive(Debug, Serialize)]
struct Machine {
    cores: usize,
    os: &'static str,
    profile: &'static str,
    /// `/proc/loadavg` (1, 5, 15 minutes) when the run began and ended.
    load_before: String,
    load_after: String,
}

#[derive(Debug, Serialize)]
struct Seeding {
    database: String,
    videos: usize,
    channels: usize,
    seconds: f64,
    videos_per_s: f64,
}

#[derive(Debug, Serialize)]
struct HttpRow {
    endpoint: &'static str,
    mode: String,
    concurrency: usize,
    offered_rps: Option<u32>,
    ok_rps: Spread,
    p50_ms: Spread,
    p99_ms: Spread,
    /// Summed over the rounds.
    not_ok: u64,
    errors: u64,
    runs: Vec<load::Run>,
}

#[derive(Debug, Serialize)]
struct Ladder {
    endpoint: &'static str,
    p99_bound_ms: f64,
    /// The highest offered rate served in full with p99 within the bound.
    max_sustained_rps: Option<u32>,
    steps: Vec<load::Run>,
}

#[derive(Debug, Serialize)]
struct TargetCheck {
    what: String,
    target: String,
    measured: String,
    met: bool,
}

#[derive(Debug, Serialize)]
struct HttpReport {
    database: &'static str,
    load_tool: String,
    argon2: String,
    rate_limits: &'static str,
    search_query: &'static str,
    rounds: usize,
    window_s: f64,
    rows: Vec<HttpRow>,
    ladders: Vec<Ladder>,
}

#[derive(Debug, Serialize)]
struct Report {
    bench: &'static str,
    machine: Machine,
    plan: Plan,
    seeding: Vec<Seeding>,
    /// The Postgres server, when there was one.
    postgres: Option<String>,
    /// `None` under `VIDEOSYNC_BENCH_SEARCH_ONLY=1`.
    http: Option<HttpReport>,
    search: search::SearchReport,
    targets: Vec<TargetCheck>,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Signs `bench-member` in over HTTP; answers the access token.
async fn sign_in(http: &reqwest::Client, base: &str) -> String {
    let body = serde_json::json!({"login": seed::MEMBER, "password": seed::PASSWORD});
    let r = http
        .post(format!("{base}/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let bytes = r.bytes().await.unwrap();
    assert!(
        status.is_success(),
        "signing in: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

/// The requests of the HTTP runs, with a fresh token.
struct Requests {
    login: load::Request,
    channel: load::Request,
    search: load::Request,
}

fn requests(base: &str, token: &str, channel: &str) -> Requests {
    let bearer = vec![("authorization".to_owned(), format!("Bearer {token}"))];
    Requests {
        login: load::Request {
            method: "POST",
            url: format!("{base}/api/v1/auth/login"),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(
                serde_json::json!({"login": seed::MEMBER, "password": seed::PASSWORD}).to_string(),
            ),
        },
        channel: load::Request {
            method: "GET",
            url: format!("{base}/api/v1/channels/{channel}"),
            headers: bearer.clone(),
            body: None,
        },
        search: load::Request {
            method: "GET",
            url: format!(
                "{base}/api/v1/search/videos?q={}",
                HTTP_QUERY.replace(' ', "%20")
            ),
            headers: bearer,
            body: None,
        },
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Login,
    Channel,
    Search,
}

impl Kind {
    fn endpoint(self) -> &'static str {
        match self {
            Kind::Login => "POST /api/v1/auth/login",
            Kind::Channel => "GET /api/v1/channels/{id}",
            Kind::Search => "GET /api/v1/search/videos",
        }
    }

    fn request(self, r: &Requests) -> &load::Request {
        match self {
            Kind::Login => &r.login,
            Kind::Channel => &r.channel,
            Kind::Search => &r.search,
        }
    }
}

async fn http_runs(
    plan: &Plan,
    oha: &load::Oha,
    base: &str,
    channel: &str,
    argon2: String,
) -> HttpReport {
    let http = reqwest::Client::new();
    let window = Duration::from_secs_f64(plan.window_s);
    // (kind, concurrency, rate)
    let cells: [(Kind, usize, Option<u32>); 5] = [
        (Kind::Login, LOGIN_CONCURRENCY, None),
        (Kind::Channel, FIXED_CONCURRENCY, Some(READ_RATE)),
        (Kind::Search, FIXED_CONCURRENCY, Some(READ_RATE)),
        (Kind::Channel, SATURATION_CONCURRENCY, None),
        (Kind::Search, SATURATION_CONCURRENCY, None),
    ];
    // Warm up every path once.
    let reqs = requests(base, &sign_in(&http, base).await, channel);
    for (kind, c, _) in cells {
        oha.run(kind.request(&reqs), Duration::from_millis(500), c, None)
            .await;
    }
    let mut runs: Vec<Vec<load::Run>> = vec![Vec::new(); cells.len()];
    for round in 0..plan.http_rounds {
        // A fresh token each round (access tokens live 15 minutes).
        let reqs = requests(base, &sign_in(&http, base).await, channel);
        for i in 0..cells.len() {
            let ci = (i + round) % cells.len();
            let (kind, c, rate) = cells[ci];
            let run = oha.run(kind.request(&reqs), window, c, rate).await;
            println!(
                "round {}: {} {}: {:.0} ok/s, p50 {:.2} ms, p99 {:.2} ms, {} not ok, {} errors",
                round + 1,
                kind.endpoint(),
                rate.map_or("saturation".to_owned(), |r| format!("at {r} req/s")),
                run.ok_rps,
                run.p50_ms,
                run.p99_ms,
                run.not_ok,
                run.errors
            );
            runs[ci].push(run);
        }
    }
    let rows = cells
        .iter()
        .zip(runs)
        .map(|(&(kind, c, rate), runs)| HttpRow {
            endpoint: kind.endpoint(),
            mode: rate.map_or("saturation".to_owned(), |r| format!("fixed {r} req/s")),
            concurrency: c,
            offered_rps: rate,
            ok_rps: spread(runs.iter().map(|r| r.ok_rps).collect()),
            p50_ms: spread(runs.iter().map(|r| r.p50_ms).collect()),
            p99_ms: spread(runs.iter().map(|r| r.p99_ms).collect()),
            not_ok: runs.iter().map(|r| r.not_ok).sum(),
            errors: runs.iter().map(|r| r.errors).sum(),
            runs,
        })
        .collect();
    let mut ladders = Vec::new();
    for kind in [Kind::Channel, Kind::Search] {
        let reqs = requests(base, &sign_in(&http, base).await, channel);
        let mut steps = Vec::new();
        let mut max = None;
        for &rate in LADDER {
            let run = oha
                .run(
                    kind.request(&reqs),
                    Duration::from_secs_f64(plan.ladder_window_s),
                    FIXED_CONCURRENCY,
                    Some(rate),
                )
                .await;
            let ok = run.sustained(READ_P99_MS);
            println!(
                "ladder {}: {rate} req/s -> {:.0} ok/s, p99 {:.2} ms{}",
                kind.endpoint(),
                run.ok_rps,
                run.p99_ms,
                if ok { "" } else { " (not sustained)" }
            );
            let behind = run.ok_rps < 0.9 * f64::from(rate) || run.p99_ms > LADDER_STOP_P99_MS;
            steps.push(run);
            if ok {
                max = Some(rate);
            }
            // Past what the server can serve: higher steps only queue.
            if behind {
                break;
            }
        }
        ladders.push(Ladder {
            endpoint: kind.endpoint(),
            p99_bound_ms: READ_P99_MS,
            max_sustained_rps: max,
            steps,
        });
    }
    HttpReport {
        database: "SQLite (embedded defaults)",
        load_tool: oha.version.clone(),
        argon2,
        rate_limits: "login limits raised to 1 000 000 a minute (per address and per account) \
                      so that the run measures hashing, not the limiter; the limiter's counter \
                      is still incremented on every login",
        search_query: HTTP_QUERY,
        rounds: plan.http_rounds,
        window_s: plan.window_s,
        rows,
        ladders,
    }
}

fn bench_config() -> Config {
    let mut c = Config::default();
    c.auth.jwt_secret = Secret::new("bench-secret-bench-secret-bench-secret-0123");
    c.limits.login_per_ip_per_minute = 1_000_000;
    c.limits.login_per_account_per_minute = 1_000_000;
    c
}

/// A schema of the benchmark's own on `base`, as a URL whose connections
/// use it. Not `vs_t_*`: `scripts/services.sh start` drops those (the test
/// schemas of earlier runs), and another `make test` on the machine would
/// drop this one mid-run.
async fn bench_schema(base: &str) -> String {
    use sqlx::Connection;
    let schema = unique_name("vs_bench_");
    let mut conn = sqlx::PgConnection::connect(base).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    schema_url(base, &schema)
}

/// The schema a [`bench_schema`] URL points at.
fn schema_of(url: &str) -> Option<String> {
    url.split("search_path%3D").nth(1).map(|s| {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    })
}

async fn drop_schema(base: &str, schema: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(base).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// The Postgres server's version and the settings that shape search plans.
async fn pg_settings(url: &str) -> String {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let mut parts = Vec::new();
    for (name, q) in [
        ("", "SELECT split_part(version(), ' on ', 1)"),
        ("jit", "SHOW jit"),
        ("jit_above_cost", "SHOW jit_above_cost"),
        ("shared_buffers", "SHOW shared_buffers"),
        ("work_mem", "SHOW work_mem"),
    ] {
        let row = sqlx::query(q).fetch_one(&mut conn).await.unwrap();
        let v: String = row.get(0);
        parts.push(if name.is_empty() {
            v
        } else {
            format!("{name}={v}")
        });
    }
    parts.join(", ")
}

/// A URL of `base` whose connections use the kept `schema`.
fn schema_url(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// The member that [`seed::seed`] made in a kept schema.
async fn kept_member(db: &Database) -> videosync::core::db::User {
    use videosync::core::db::Users;
    let mut tx = db.read().await.unwrap();
    let member = tx
        .user_by_login(seed::MEMBER)
        .await
        .unwrap()
        .expect("the kept schema holds the seeded member");
    tx.commit().await.unwrap();
    member
}

async fn analyze(url: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
}

/// Serves the seeded SQLite catalog until Ctrl-C, for probing and
/// profiling by hand (`VIDEOSYNC_BENCH_SERVE=1`): prints the address, the
/// member's channel, a token and the requests of the HTTP runs.
async fn hold(app: Arc<App>, seeded: &seed::Seeded) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(serve(listener, app, async {
        let _ = tokio::signal::ctrl_c().await;
    }));
    let token = sign_in(&reqwest::Client::new(), &base).await;
    let reqs = requests(&base, &token, &seeded.member_channel.to_string());
    println!("serving {base} (pid {}) until Ctrl-C", std::process::id());
    println!("token (15 minutes): {token}");
    for r in [&reqs.channel, &reqs.search] {
        println!("{} {}", r.method, r.url);
    }
    server.await.unwrap().unwrap();
}

/// The allocator of the `videosync` binary, so the server in this process
/// runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass
    // nothing and must not run the whole benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("server bench: run with `cargo bench --all-features --bench server`");
        return;
    }
    let flag = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
    let quick = flag("VIDEOSYNC_BENCH_QUICK");
    let search_only = flag("VIDEOSYNC_BENCH_SEARCH_ONLY");
    let reuse_schema = std::env::var("VIDEOSYNC_BENCH_PG_SCHEMA")
        .ok()
        .filter(|s| !s.is_empty());
    let keep_schema = flag("VIDEOSYNC_BENCH_KEEP_SCHEMA") || reuse_schema.is_some();
    let plan = Plan::new(quick);
    let oha = if search_only {
        None
    } else {
        Some(load::Oha::find().unwrap_or_else(|e| panic!("{e}")))
    };
    // The same subscriber and filter as `videosync serve` (request spans
    // are made and dropped), writing nowhere.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .init();
    let clock = SystemClock::new();
    let load_before = loadavg();
    println!(
        "server bench ({}{}): {} videos, load tool {}, load average {load_before}",
        if quick { "quick" } else { "full" },
        if search_only { ", search only" } else { "" },
        plan.videos,
        oha.as_ref().map_or("none", |o| o.version.as_str())
    );

    // The server: default configuration on embedded backends.
    let scratch = tempfile::tempdir().unwrap();
    let config = bench_config();
    let backends = Backends::open(&BackendUrls::embedded(scratch.path()))
        .await
        .unwrap();
    let app = Arc::new(App::new(backends, &config, &config.auth.jwt_secret).unwrap());
    let argon2 = app.auth.passwords.describe();
    let hash = app.auth.passwords.hash(seed::PASSWORD).await.unwrap();

    let mut seeding = Vec::new();
    let sizes = (plan.videos, plan.channels);
    let sqlite = seed::seed(&clock, &app.backends.db, SEED, sizes, &hash, 1).await;
    println!("seeded SQLite: {:.1} s", sqlite.seconds);
    if flag("VIDEOSYNC_BENCH_SERVE") {
        hold(app, &sqlite).await;
        return;
    }
    seeding.push(Seeding {
        database: "SQLite".into(),
        videos: plan.videos,
        channels: plan.channels,
        seconds: sqlite.seconds,
        videos_per_s: plan.videos as f64 / sqlite.seconds,
    });
    let mut targets = vec![search::Target {
        name: "SQLite".into(),
        db: app.backends.db.clone(),
        member: Viewer {
            user: Some(sqlite.member.id),
            is_admin: false,
        },
    }];
    let pg_base = service_url("VIDEOSYNC_TEST_POSTGRES_URL");
    let mut pg_schema = None;
    let mut pg_about = None;
    if let Some(base) = &pg_base {
        let url = match &reuse_schema {
            Some(schema) => schema_url(base, schema),
            None => bench_schema(base).await,
        };
        pg_schema = schema_of(&url);
        pg_about = Some(pg_settings(&url).await);
        // Connecting runs the migrations, so a kept schema gets new ones.
        let db = Database::connect(&url).await.unwrap();
        let member = if reuse_schema.is_some() {
            println!(
                "Postgres: searching the kept schema {}",
                pg_schema.as_deref().unwrap_or("?")
            );
            kept_member(&db).await
        } else {
            let pg = seed::seed(&clock, &db, SEED, sizes, &hash, 4).await;
            analyze(&url).await;
            println!("seeded Postgres: {:.1} s", pg.seconds);
            seeding.push(Seeding {
                database: "Postgres".into(),
                videos: plan.videos,
                channels: plan.channels,
                seconds: pg.seconds,
                videos_per_s: plan.videos as f64 / pg.seconds,
            });
            pg.member
        };
        let member = Viewer {
            user: Some(member.id),
            is_admin: false,
        };
        targets.push(search::Target {
            name: "Postgres".into(),
            db,
            member,
        });
        // The same schema through connections with JIT compilation off.
        // The planner's cost of ranking every match of a common word is
        // above `jit_above_cost`, so a custom plan of it is compiled, which
        // takes longer than the query; a prepared statement gets custom
        // plans for its first executions on each connection only, so this
        // shows in the tail.
        let no_jit = Database::connect(&format!("{url}%20-c%20jit%3Doff"))
            .await
            .unwrap();
        targets.push(search::Target {
            name: "Postgres, jit=off".into(),
            db: no_jit,
            member,
        });
    }
    assert!(
        search_only || std::env::var_os("VIDEOSYNC_BENCH_SEARCH_QUERIES").is_none(),
        "VIDEOSYNC_BENCH_SEARCH_QUERIES is for search-only runs (VIDEOSYNC_BENCH_SEARCH_ONLY=1): \
         the full report keeps the fixed queries"
    );
    let queries = search::queries();
    let matching: Vec<usize> = queries
        .iter()
        .map(|(_, q)| {
            (0..plan.videos)
                .filter(|&i| gen::matches(&gen::video(SEED, i, plan.channels), q))
                .count()
        })
        .collect();

    let http = match &oha {
        Some(oha) => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(serve(listener, app.clone(), async move {
                let _ = stopped.await;
            }));
            let http = http_runs(
                &plan,
                oha,
                &base,
                &sqlite.member_channel.to_string(),
                argon2,
            )
            .await;
            let _ = stop.send(());
            server.await.unwrap().unwrap();
            Some(http)
        }
        None => None,
    };

    let search = search::run(
        &clock,
        &targets,
        (plan.videos, &matching),
        plan.search_rounds,
        plan.search_samples_per_round,
    )
    .await;
    for t in &targets {
        t.db.close().await;
    }
    if let (Some(base), Some(schema)) = (&pg_base, &pg_schema) {
        if keep_schema {
            println!(
                "kept the Postgres schema {schema} (drop it with `DROP SCHEMA {schema} CASCADE`)"
            );
        } else {
            drop_schema(base, schema).await;
        }
    }

    let mut checks = Vec::new();
    for row in http
        .iter()
        .flat_map(|h| &h.rows)
        .filter(|r| r.offered_rps == Some(READ_RATE))
    {
        checks.push(TargetCheck {
            what: format!("{} at {READ_RATE} req/s, p99", row.endpoint),
            target: format!("<= {READ_P99_MS} ms"),
            measured: format!(
                "{:.2} ms (median of {} rounds)",
                row.p99_ms.median,
                row.runs.len()
            ),
            met: row.p99_ms.median <= READ_P99_MS && row.not_ok == 0,
        });
    }
    for t in &search.totals {
        checks.push(TargetCheck {
            what: format!(
                "search on {} over {} videos, p99",
                t.database, search.videos
            ),
            target: format!("<= {} ms", t.target_p99_ms),
            measured: format!("{:.2} ms ({} searches)", t.p99_ms, t.samples),
            met: t.meets_target,
        });
    }
    let report = Report {
        bench: "server",
        machine: Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            os: std::env::consts::OS,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            load_before,
            load_after: loadavg(),
        },
        plan,
        seeding,
        postgres: pg_about,
        http,
        search,
        targets: checks,
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    std::fs::create_dir_all(&dir).unwrap();
    let stem = match (quick, search_only) {
        (true, true) => "server-search-quick",
        (true, false) => "server-quick",
        (false, true) => "server-search",
        (false, false) => "server",
    };
    std::fs::write(
        dir.join(format!("{stem}.json")),
        serde_json::to_string_pretty(&report).unwrap() + "\n",
    )
    .unwrap();
    let md = markdown(&report);
    std::fs::write(dir.join(format!("{stem}.md")), &md).unwrap();
    println!(
        "\n{md}\nwrote {}",
        dir.join(format!("{stem}.json")).display()
    );
}

/// How search answers, for the report's readers.
const HOW_SEARCH_WORKS: &str = "
### How search answers

In relevance tiers (every word in the title, else in the tags, else anywhere), newest first within a \
tier, at a cost that follows the page rather than the number of matches. SQLite: one FTS5 table per \
field (title, tags, all three) holding row ids only (`detail = none`: search asks for no positions) \
with prefix indexes of 2 to 8 characters, so a prefix query streams its matches instead of merging the \
posting lists of every word it starts; each tier is one statement that walks its table in row order, \
reads the whole video rows as it goes and stops once the page is full, and a later tier leaves out the \
earlier ones with `NOT IN`, which only runs when they did not fill the page. Postgres: a tsvector per field behind GIN \
indexes without a pending list, in a table whose status changes are HOT updates (no index on `status`, \
pages 80 % full), so that a catalog seeded without a vacuum holds one index entry per video, not three. \
One walk of the newest 40 videos per result wanted (2 040 for a first page of 50) down the primary key sorts every match there into its tier; a tier that the walk cannot \
fill, having under one match in 40 videos, comes whole from its GIN index and a sort. The words reach \
each statement as a parameter that the planner cannot see (`(SELECT to_tsquery('simple', $1))`), so \
every statement has the same plan whatever they are: before, a prepared statement's generic plan, \
which takes every word for one that matches 0.5 % of videos, sorted every match of a common word (the \
20 000 titles with `music`: 130 ms).
";

fn markdown(r: &Report) -> String {
    let mut md = String::from("# Server benchmark\n\n");
    md.push_str(&format!(
        "{} cores shared by the server and the load tool ({}), {} build{}. Load average (1, 5, 15 min) {} at the start, {} at the end. Reproduce: `make bench BENCH=server`.\n\n",
        r.machine.cores,
        r.http.as_ref().map_or("none: search only", |h| h.load_tool.as_str()),
        r.machine.profile,
        if r.plan.quick { ", **quick mode** (`VIDEOSYNC_BENCH_QUICK=1`: small catalog, short windows; not for comparison)" } else { "" },
        r.machine.load_before,
        r.machine.load_after,
    ));
    md.push_str("## Targets\n\n| what | target | measured | met |\n|---|---|---|---|\n");
    for t in &r.targets {
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            t.what,
            t.target,
            t.measured,
            if t.met { "yes" } else { "**no**" }
        ));
    }
    if let Some(h) = &r.http {
        http_markdown(&mut md, h);
    }
    let s = &r.search;
    md.push_str(&format!(
        "\n## Search latency ({} videos; {} rounds x {} samples per cell, cells and databases taking turns)\n\n\
         `Videos::search_videos` in a read transaction (what the handler does besides JSON), first page of {}, \
         one query at a time. The catalog is generated from a fixed seed (`benches/server/gen.rs`): \
         titles, tags and descriptions over a Zipf-like vocabulary, {} channels (70 % public, 15 % unlisted, \
         15 % private), 10 % of videos with their own visibility, every video ready. The member belongs to 12 \
         channels (3 private, 3 unlisted). \"matching\" counts every video the words match; \"returned\" what \
         the viewer got on the first page.\n\n",
        s.videos, s.rounds, s.samples_per_round, s.page_size, r.plan.channels
    ));
    md.push_str("| database | all samples | p50 ms | p99 ms | p99 per round: median (min..max) | target p99 | met |\n|---|---|---|---|---|---|---|\n");
    for t in &s.totals {
        md.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {} | {} ms | {} |\n",
            t.database,
            t.samples,
            t.p50_ms,
            t.p99_ms,
            t.round_p99_ms,
            t.target_p99_ms,
            if t.meets_target { "yes" } else { "**no**" }
        ));
    }
    md.push_str("\n| database | query | kind | viewer | matching | returned | p50 ms | p99 ms | max ms | p50 per round |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for c in &s.cells {
        md.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} |\n",
            c.database,
            c.query,
            c.kind,
            c.viewer,
            c.matching,
            c.returned,
            c.p50_ms,
            c.p99_ms,
            c.max_ms,
            c.round_p50_ms
        ));
    }
    md.push_str(HOW_SEARCH_WORKS);
    md.push_str("\n## Seeding (through the `Videos` repository: create, processing, ready; 2 000 videos a transaction)\n\n| database | videos | channels | seconds | videos/s |\n|---|---|---|---|---|\n");
    for sd in &r.seeding {
        md.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.0} |\n",
            sd.database, sd.videos, sd.channels, sd.seconds, sd.videos_per_s
        ));
    }
    if let Some(pg) = &r.postgres {
        md.push_str(&format!("\nPostgres: {pg}.\n"));
    }
    md.push_str("\nPostgres runs `ANALYZE` after seeding (as autovacuum would soon after a bulk load); SQLite gets no `ANALYZE` (the server never runs one).\n");
    md
}

fn http_markdown(md: &mut String, h: &HttpReport) {
    md.push_str(&format!(
        "\n## HTTP ({} rounds of {} s per row, rows alternating)\n\n\
         One server in-process on a TCP port with the default configuration on {}: passwords with {}; \
         {}. The reads carry a bearer token of a member (the user is read from the database on every \
         request); the channel is a public one the member belongs to; the search is `q={}` (first page, \
         50 results) over the catalog below. Fixed-rate rows use `oha -q` with latency correction \
         (latency counts from when a request was due). Values are the median (min..max) over rounds.\n\n",
        h.rounds, h.window_s, h.database, h.argon2, h.rate_limits, h.search_query
    ));
    md.push_str("| endpoint | load | in flight | ok req/s | p50 ms | p99 ms | not 2xx | errors |\n|---|---|---|---|---|---|---|---|\n");
    for row in &h.rows {
        md.push_str(&format!(
            "| `{}` | {} | {} | {:.0} | {:.2} | {:.2} | {} | {} |\n",
            row.endpoint,
            row.mode,
            row.concurrency,
            row.ok_rps,
            row.p50_ms,
            row.p99_ms,
            row.not_ok,
            row.errors
        ));
    }
    md.push_str("\nRate ladder (one run per step, ascending until the server falls behind: under 90 % of the offered rate served, or p99 over 100 ms; a single run per step, so a step's p99 is noisier than the rows above):\n\n| endpoint | highest rate served, p99 <= 5 ms | steps (offered: ok/s, p99 ms) |\n|---|---|---|\n");
    for l in &h.ladders {
        let steps: Vec<String> = l
            .steps
            .iter()
            .map(|s| {
                format!(
                    "{}: {:.0}, {:.2}",
                    s.offered_rps.unwrap_or(0),
                    s.ok_rps,
                    s.p99_ms
                )
            })
            .collect();
        md.push_str(&format!(
            "| `{}` | {} | {} |\n",
            l.endpoint,
            l.max_sustained_rps
                .map_or("below the first step".to_owned(), |r| format!("{r} req/s")),
            steps.join("; ")
        ));
    }
}
