//! The core benchmark: object store throughput and job queue round trips,
//! each beside a named baseline measured in the same run.
//!
//! - Object store, 64 KiB and 8 MiB objects, sequential put then get:
//!   - `fs` against **raw files** (`tokio::fs::write`/`read` of the same
//!     bytes, with no temporary file, fsync or rename): the ratio is the cost
//!     of atomic, durable writes.
//!   - `s3` against **raw HTTP** (reqwest `PUT`/`GET` on presigned URLs, no
//!     SDK): the ratio is the cost of the SDK layer.
//! - Job queue, enqueue -> reserve -> ack of N jobs, one worker, with the
//!   latency of each reserve+ack pair:
//!   - `sqlite` and `postgres` against a **naive SQL queue** (insert; delete
//!     the oldest row returning it): no lease, no retry, no dedupe.
//!   - `redis` against **LPUSH/RPOP**: a list that loses a job whose worker
//!     dies.
//!
//!   The ratio is the cost of at-least-once delivery.
//!
//! - Event log append throughput and append -> tail latency on every backend
//!   against raw Redis `XADD`/`XREAD BLOCK` (see `core/eventlog.rs`).
//! - Key-value store: compare-and-set and incr operations per second on every
//!   backend, beside raw Redis commands (`core/kv.rs`).
//!
//! Run with `make bench` (starts the services), or
//! `cargo bench --all-features --bench core` with the service URLs in the
//! environment (a backend whose URL is unset is skipped, unless
//! `VIDEOSYNC_REQUIRE_SERVICES=1`). Writes `benches/results/core.json` and
//! `benches/results/core.md`.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use videosync::core::conformance::{postgres_namespace, service_url, unique_name};
use videosync::core::queue::{queue_from_url, DynJobQueue, ReserveOptions};
use videosync::core::store::sign::SignRequest;
use videosync::core::store::{store_from_url, DynObjectStore};
use videosync::core::{Clock, NewJob, ObjectKey, ObjectStoreExt, RetryPolicy, SystemClock};

#[path = "core/eventlog.rs"]
mod eventlog;
#[path = "core/kv.rs"]
mod kv;
#[path = "core/uploads.rs"]
mod uploads;

#[path = "watch.rs"]
mod watch;
use watch::Watch;

#[derive(Debug, Serialize)]
struct StoreResult {
    backend: String,
    baseline: String,
    object_bytes: usize,
    objects: usize,
    put_mib_s: f64,
    get_mib_s: f64,
    baseline_put_mib_s: f64,
    baseline_get_mib_s: f64,
    put_ratio: f64,
    get_ratio: f64,
}

impl StoreResult {
    /// A row from (backend, baseline), (object size, count), measured
    /// (put, get) and baseline (put, get) MiB/s.
    fn new(
        (backend, baseline): (&str, &str),
        (object_bytes, objects): (usize, usize),
        (put, get): (f64, f64),
        (bput, bget): (f64, f64),
    ) -> Self {
        StoreResult {
            backend: backend.into(),
            baseline: baseline.into(),
            object_bytes,
            objects,
            put_mib_s: put,
            get_mib_s: get,
            baseline_put_mib_s: bput,
            baseline_get_mib_s: bget,
            put_ratio: put / bput,
            get_ratio: get / bget,
        }
    }
}

#[derive(Debug, Serialize)]
struct QueueResult {
    backend: String,
    baseline: String,
    jobs: usize,
    enqueue_per_s: f64,
    reserve_ack_per_s: f64,
    cycle_per_s: f64,
    reserve_ack_p50_ms: f64,
    reserve_ack_p99_ms: f64,
    baseline_cycle_per_s: f64,
    baseline_p99_ms: f64,
    cycle_ratio: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    bench: &'static str,
    machine: Machine,
    store: Vec<StoreResult>,
    queue: Vec<QueueResult>,
    uploads: Vec<uploads::UploadResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eventlog: Option<eventlog::EventLogReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kv: Option<kv::KvReport>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cores: usize,
    os: &'static str,
    profile: &'static str,
}

const SIZES: [(usize, usize); 2] = [(64 * 1024, 200), (8 * 1024 * 1024, 12)];
const JOBS: usize = 500;

fn mib_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / secs.max(1e-9)
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted_ms.len() as f64 - 1.0) * p).round() as usize;
    sorted_ms[idx.min(sorted_ms.len() - 1)]
}

fn payload(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i * 7 % 251) as u8)
        .collect::<Vec<_>>()
        .into()
}

/// Puts then gets `count` objects of `size` bytes; returns (put, get) MiB/s.
async fn bench_store(
    clock: &SystemClock,
    store: &DynObjectStore,
    prefix: &str,
    size: usize,
    count: usize,
) -> (f64, f64) {
    let data = payload(size);
    let keys: Vec<ObjectKey> = (0..count)
        .map(|i| ObjectKey::parse(&format!("{prefix}/{size}/{i}")).unwrap())
        .collect();
    let w = Watch::start(clock);
    for k in &keys {
        store.put(k, data.clone().into()).await.unwrap();
    }
    let put = mib_s(size * count, w.secs());
    let w = Watch::start(clock);
    for k in &keys {
        let got = store.get_bytes(k).await.unwrap();
        assert_eq!(got.len(), size);
    }
    let get = mib_s(size * count, w.secs());
    for k in &keys {
        store.delete(k).await.unwrap();
    }
    (put, get)
}

/// The filesystem baseline: plain writes and reads of the same bytes.
async fn bench_raw_files(clock: &SystemClock, dir: &Path, size: usize, count: usize) -> (f64, f64) {
    let data = payload(size);
    tokio::fs::create_dir_all(dir).await.unwrap();
    let paths: Vec<_> = (0..count)
        .map(|i| dir.join(format!("{size}-{i}")))
        .collect();
    let w = Watch::start(clock);
    for p in &paths {
        tokio::fs::write(p, &data).await.unwrap();
    }
    let put = mib_s(size * count, w.secs());
    let w = Watch::start(clock);
    for p in &paths {
        assert_eq!(tokio::fs::read(p).await.unwrap().len(), size);
    }
    let get = mib_s(size * count, w.secs());
    (put, get)
}

/// The S3 baseline: plain HTTP on presigned URLs (signing included).
async fn bench_raw_http(
    clock: &SystemClock,
    store: &DynObjectStore,
    prefix: &str,
    size: usize,
    count: usize,
) -> (f64, f64) {
    let http = reqwest::Client::new();
    let data = payload(size);
    let keys: Vec<ObjectKey> = (0..count)
        .map(|i| ObjectKey::parse(&format!("{prefix}/raw/{size}/{i}")).unwrap())
        .collect();
    let ttl = Duration::from_secs(600);
    let signer = store.signer().expect("the S3 store signs URLs");
    let w = Watch::start(clock);
    for k in &keys {
        let url = signer
            .sign(&SignRequest::put(k.clone(), ttl))
            .await
            .unwrap()
            .url;
        let r = http.put(url).body(data.clone()).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    let put = mib_s(size * count, w.secs());
    let w = Watch::start(clock);
    for k in &keys {
        let url = signer
            .sign(&SignRequest::get(k.clone(), ttl))
            .await
            .unwrap()
            .url;
        let body = http.get(url).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(body.len(), size);
    }
    let get = mib_s(size * count, w.secs());
    for k in &keys {
        store.delete(k).await.unwrap();
    }
    (put, get)
}

struct QueueRun {
    enqueue_per_s: f64,
    reserve_ack_per_s: f64,
    cycle_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn bench_queue(clock: &SystemClock, q: &DynJobQueue) -> QueueRun {
    let total = Watch::start(clock);
    let w = Watch::start(clock);
    for i in 0..JOBS {
        q.enqueue(NewJob::new("bench", serde_json::json!({ "i": i })))
            .await
            .unwrap();
    }
    let enqueue_secs = w.secs();
    let mut lat = Vec::with_capacity(JOBS);
    let w = Watch::start(clock);
    loop {
        let one = Watch::start(clock);
        let Some(lease) = q
            .reserve(ReserveOptions::lease(Duration::from_secs(60)))
            .await
            .unwrap()
        else {
            break;
        };
        q.ack(&lease).await.unwrap();
        lat.push(one.secs() * 1000.0);
    }
    let drain_secs = w.secs();
    assert_eq!(lat.len(), JOBS, "every job was handed out once");
    lat.sort_by(f64::total_cmp);
    QueueRun {
        enqueue_per_s: JOBS as f64 / enqueue_secs,
        reserve_ack_per_s: JOBS as f64 / drain_secs,
        cycle_per_s: JOBS as f64 / total.secs(),
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
    }
}

/// The SQL baseline: the simplest queue a table can be.
async fn bench_naive_sql(clock: &SystemClock, url: &str, postgres: bool) -> (f64, f64) {
    use sqlx::Executor;
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .unwrap();
    if !postgres {
        // The same journal mode as the measured queue, so the baseline is
        // not handicapped by rollback-journal fsyncs.
        pool.execute("PRAGMA journal_mode = WAL").await.unwrap();
    }
    let table = unique_name("bench_naive_");
    let id = if postgres { "BIGSERIAL" } else { "INTEGER" };
    pool.execute(
        format!("CREATE TABLE {table} (id {id} PRIMARY KEY, payload TEXT NOT NULL)").as_str(),
    )
    .await
    .unwrap();
    let lock = if postgres {
        "FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let take = format!(
        "DELETE FROM {table} WHERE id = (SELECT id FROM {table} ORDER BY id LIMIT 1 {lock}) RETURNING payload"
    );
    let insert = format!("INSERT INTO {table} (payload) VALUES ($1)");
    let total = Watch::start(clock);
    for i in 0..JOBS {
        sqlx::query(&insert)
            .bind(format!("{{\"i\":{i}}}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    let mut lat = Vec::with_capacity(JOBS);
    loop {
        let one = Watch::start(clock);
        let row = sqlx::query(&take).fetch_optional(&pool).await.unwrap();
        if row.is_none() {
            break;
        }
        lat.push(one.secs() * 1000.0);
    }
    let cycle = JOBS as f64 / total.secs();
    pool.execute(format!("DROP TABLE {table}").as_str())
        .await
        .unwrap();
    lat.sort_by(f64::total_cmp);
    (cycle, percentile(&lat, 0.99))
}

/// The Redis baseline: LPUSH then RPOP.
async fn bench_redis_list(clock: &SystemClock, url: &str) -> (f64, f64) {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let key = unique_name("vs:bench:list:");
    let total = Watch::start(clock);
    for i in 0..JOBS {
        redis::cmd("LPUSH")
            .arg(&key)
            .arg(format!("{{\"i\":{i}}}"))
            .query_async::<i64>(&mut con)
            .await
            .unwrap();
    }
    let mut lat = Vec::with_capacity(JOBS);
    loop {
        let one = Watch::start(clock);
        let got: Option<String> = redis::cmd("RPOP")
            .arg(&key)
            .query_async(&mut con)
            .await
            .unwrap();
        if got.is_none() {
            break;
        }
        lat.push(one.secs() * 1000.0);
    }
    let cycle = JOBS as f64 / total.secs();
    lat.sort_by(f64::total_cmp);
    (cycle, percentile(&lat, 0.99))
}

fn markdown(r: &Report) -> String {
    let mut md = String::from("# Core benchmark\n\n");
    md.push_str(&format!(
        "{} cores, {} build. Reproduce: `make bench`.\n\n",
        r.machine.cores, r.machine.profile
    ));
    md.push_str("## Object store (sequential, MiB/s)\n\n");
    md.push_str("| backend | object | put | get | baseline | baseline put | baseline get | put ratio | get ratio |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for s in &r.store {
        md.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {:.2} | {:.2} |\n",
            s.backend,
            human_size(s.object_bytes),
            s.put_mib_s,
            s.get_mib_s,
            s.baseline,
            s.baseline_put_mib_s,
            s.baseline_get_mib_s,
            s.put_ratio,
            s.get_ratio
        ));
    }
    md.push_str(&format!(
        "\n## Job queue ({JOBS} jobs, one worker: enqueue all, then reserve + ack each)\n\n"
    ));
    md.push_str("| backend | enqueue/s | reserve+ack/s | cycle jobs/s | p50 ms | p99 ms | baseline | baseline jobs/s | baseline p99 ms | ratio |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for q in &r.queue {
        md.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {} | {:.0} | {:.2} | {:.2} |\n",
            q.backend,
            q.enqueue_per_s,
            q.reserve_ack_per_s,
            q.cycle_per_s,
            q.reserve_ack_p50_ms,
            q.reserve_ack_p99_ms,
            q.baseline,
            q.baseline_cycle_per_s,
            q.baseline_p99_ms,
            q.cycle_ratio
        ));
    }
    md.push_str(
        "\nRatios are videosync / baseline (below 1: slower than the baseline). Baselines: raw \
         files (no temp file, fsync or rename), raw HTTP on presigned URLs, a naive SQL table queue, \
         Redis LPUSH/RPOP; none of them survives a crash the way the measured backend does.\n",
    );
    md.push_str(&uploads::markdown(&r.uploads));
    if let Some(e) = &r.eventlog {
        md.push_str(&eventlog::markdown(e));
    }
    if let Some(kv) = &r.kv {
        md.push_str(&kv::markdown(kv));
    }
    md
}

fn human_size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass
    // nothing and must not run the whole benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("core bench: run with `cargo bench --bench core`");
        return;
    }
    let clock = SystemClock::new();
    if std::env::var("VIDEOSYNC_BENCH_ONLY").is_ok_and(|only| only == "kv") {
        kv::run_alone(&clock).await;
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let mut report = Report {
        bench: "core",
        machine: Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            os: std::env::consts::OS,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        },
        store: Vec::new(),
        queue: Vec::new(),
        uploads: Vec::new(),
        eventlog: None,
        kv: None,
    };
    // `VIDEOSYNC_BENCH_ONLY=eventlog` runs that section alone, into the
    // existing report.
    if std::env::var("VIDEOSYNC_BENCH_ONLY").is_ok_and(|s| s == "eventlog") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
        eventlog::run_only(&clock, &dir).await;
        return;
    }
    // `VIDEOSYNC_BENCH_ONLY=uploads` runs only that section and writes
    // `core-uploads.{json,md}`, leaving the full report alone.
    let only = std::env::var("VIDEOSYNC_BENCH_ONLY").ok();
    if only.is_none() || only.as_deref() == Some("uploads") {
        let mib = std::env::var("VIDEOSYNC_BENCH_UPLOAD_MIB")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(128);
        let fs = store_from_url(&format!("file://{}", scratch.path().join("up").display()))
            .await
            .unwrap();
        let db = format!("sqlite://{}", scratch.path().join("up.db").display());
        let fs_rows = uploads::run(&clock, "fs", fs, "bench", &db, mib << 20).await;
        report.uploads.extend(fs_rows);
        if let Some(url) = service_url("VIDEOSYNC_TEST_S3_URL") {
            let s3 = store_from_url(&url).await.unwrap();
            let prefix = format!("bench/{}", unique_name("up"));
            let rows = uploads::run(&clock, "s3 (Garage)", s3, &prefix, &db, mib << 20).await;
            report.uploads.extend(rows);
        }
    }
    if only.as_deref() == Some("uploads") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
        std::fs::create_dir_all(&dir).unwrap();
        let json = serde_json::to_string_pretty(&report.uploads).unwrap() + "\n";
        std::fs::write(dir.join("core-uploads.json"), json).unwrap();
        let md = format!(
            "# Core benchmark: upload sessions only\n{}",
            uploads::markdown(&report.uploads)
        );
        std::fs::write(dir.join("core-uploads.md"), &md).unwrap();
        println!("\n{md}");
        return;
    }

    let fs_store = store_from_url(&format!(
        "file://{}",
        scratch.path().join("store").display()
    ))
    .await
    .unwrap();
    for (size, count) in SIZES {
        let (put, get) = bench_store(&clock, &fs_store, "bench", size, count).await;
        let (bput, bget) = bench_raw_files(&clock, &scratch.path().join("raw"), size, count).await;
        report.store.push(StoreResult::new(
            ("fs", "raw files"),
            (size, count),
            (put, get),
            (bput, bget),
        ));
        println!(
            "fs {size}: put {put:.1} MiB/s (raw {bput:.1}), get {get:.1} MiB/s (raw {bget:.1})"
        );
    }
    if let Some(url) = service_url("VIDEOSYNC_TEST_S3_URL") {
        let s3 = store_from_url(&url).await.unwrap();
        let prefix = format!("bench/{}", unique_name("run"));
        for (size, count) in SIZES {
            let (put, get) = bench_store(&clock, &s3, &prefix, size, count).await;
            let (bput, bget) = bench_raw_http(&clock, &s3, &prefix, size, count).await;
            report.store.push(StoreResult::new(
                ("s3 (Garage)", "raw HTTP, presigned"),
                (size, count),
                (put, get),
                (bput, bget),
            ));
            println!(
                "s3 {size}: put {put:.1} MiB/s (raw {bput:.1}), get {get:.1} MiB/s (raw {bget:.1})"
            );
        }
    }

    let retry = RetryPolicy::default();
    let shared_clock: Arc<dyn Clock> = Arc::new(clock);
    let mut queues: Vec<(String, String, String, &str)> = vec![(
        "sqlite".into(),
        format!("sqlite://{}", scratch.path().join("queue.db").display()),
        format!(
            "sqlite://{}?mode=rwc",
            scratch.path().join("naive.db").display()
        ),
        "naive SQL table",
    )];
    if let Some(base) = service_url("VIDEOSYNC_TEST_POSTGRES_URL") {
        let url = postgres_namespace(&base).await;
        queues.push(("postgres".into(), url.clone(), url, "naive SQL table"));
    }
    if let Some(url) = service_url("VIDEOSYNC_TEST_REDIS_URL") {
        queues.push(("redis".into(), url.clone(), url, "LPUSH/RPOP"));
    }
    for (name, url, baseline_url, baseline) in queues {
        let q = queue_from_url(
            &url,
            &unique_name("bench"),
            shared_clock.clone(),
            retry.clone(),
        )
        .await
        .unwrap();
        let run = bench_queue(&clock, &q).await;
        let (bcycle, bp99) = match name.as_str() {
            "redis" => bench_redis_list(&clock, &baseline_url).await,
            other => bench_naive_sql(&clock, &baseline_url, other == "postgres").await,
        };
        println!(
            "queue {name}: {:.0} jobs/s (p99 {:.2} ms) vs {baseline} {bcycle:.0} jobs/s (p99 {bp99:.2} ms)",
            run.cycle_per_s, run.p99_ms
        );
        report.queue.push(QueueResult {
            backend: name,
            baseline: baseline.into(),
            jobs: JOBS,
            enqueue_per_s: run.enqueue_per_s,
            reserve_ack_per_s: run.reserve_ack_per_s,
            cycle_per_s: run.cycle_per_s,
            reserve_ack_p50_ms: run.p50_ms,
            reserve_ack_p99_ms: run.p99_ms,
            baseline_cycle_per_s: bcycle,
            baseline_p99_ms: bp99,
            cycle_ratio: run.cycle_per_s / bcycle,
        });
    }

    report.eventlog = Some(eventlog::run(&clock).await);
    report.kv = Some(kv::run(&clock).await);

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("core.json"),
        serde_json::to_string_pretty(&report).unwrap() + "\n",
    )
    .unwrap();
    let md = markdown(&report);
    std::fs::write(dir.join("core.md"), &md).unwrap();
    println!("\n{md}\nwrote {}", dir.join("core.json").display());
}
