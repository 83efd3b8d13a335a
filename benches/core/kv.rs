//! The key-value part of the core benchmark: compare-and-set and increment
//! operations per second on every `KeyValue` backend, beside raw Redis
//! commands on the same server in the same run.
//!
//! - **cas**: one read plus one `IfVersion` put (`Create` the first time) that
//!   adds one to a decimal counter; each client on its own key, so no put
//!   loses a race and every operation is one read and one write.
//! - **incr**: `incr(key, 1, ttl)`.
//! - Baselines on the same Redis: **raw GET+SET** (the same read-modify-write
//!   with no atomicity at all), **raw WATCH/MULTI** (Redis's own optimistic
//!   CAS: WATCH, GET, MULTI, SET, EXEC) and **raw INCR**.
//!
//! Each (target, operation, clients) cell runs for [`WINDOW`]; the cells are
//! run round-robin, once to warm up and then [`ROUNDS`] times, so a slow moment of the machine is
//! spread over every target. Rows report the median, min and max of the
//! rounds and the ratio of medians to the raw Redis baseline of the same
//! operation and client count.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use videosync::core::conformance::{postgres_namespace, service_url, unique_name};
use videosync::core::kv::{kv_from_url, DynKeyValue, Key, PutOptions};
use videosync::core::{Clock, SystemClock};

use super::Watch;

/// How long one cell runs.
const WINDOW: Duration = Duration::from_millis(250);
/// How many times every cell runs.
const ROUNDS: usize = 5;
/// The concurrent client count besides 1.
const CLIENTS: usize = 8;
/// The TTL of the benchmark's counters (they must outlive the run).
const TTL: Duration = Duration::from_secs(600);

#[derive(Debug, Serialize)]
pub(crate) struct KvReport {
    rounds: usize,
    window_ms: u128,
    profile: &'static str,
    rows: Vec<KvRow>,
}

#[derive(Debug, Serialize)]
pub(crate) struct KvRow {
    target: String,
    op: &'static str,
    clients: usize,
    median_ops_s: f64,
    min_ops_s: f64,
    max_ops_s: f64,
    baseline: String,
    ratio_to_baseline: f64,
}

#[derive(Clone)]
enum Target {
    Kv(DynKeyValue),
    /// GET then SET: no atomicity.
    RawGetSet(redis::aio::MultiplexedConnection),
    /// WATCH, GET, MULTI, SET, EXEC on a connection per client.
    RawWatch(redis::Client),
    /// INCR.
    RawIncr(redis::aio::MultiplexedConnection),
}

struct Cell {
    target: String,
    op: &'static str,
    clients: usize,
    what: Target,
    samples: Vec<f64>,
}

async fn kv_cas(kv: &DynKeyValue, key: &Key) {
    let current = kv.get(key).await.unwrap();
    let (n, opts) = match &current {
        None => (0u64, PutOptions::create()),
        Some(v) => (
            std::str::from_utf8(&v.value).unwrap().parse().unwrap(),
            PutOptions::if_version(v.version),
        ),
    };
    kv.put(key, Bytes::from((n + 1).to_string()), opts)
        .await
        .unwrap();
}

async fn raw_get_set(con: &mut redis::aio::MultiplexedConnection, key: &str) {
    let n: Option<u64> = redis::cmd("GET").arg(key).query_async(con).await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(n.unwrap_or(0) + 1)
        .query_async(con)
        .await
        .unwrap();
}

async fn raw_watch(con: &mut redis::aio::MultiplexedConnection, key: &str) {
    loop {
        let _: () = redis::cmd("WATCH").arg(key).query_async(con).await.unwrap();
        let n: Option<u64> = redis::cmd("GET").arg(key).query_async(con).await.unwrap();
        let done: Option<(String,)> = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(key)
            .arg(n.unwrap_or(0) + 1)
            .query_async(con)
            .await
            .unwrap();
        if done.is_some() {
            return;
        }
    }
}

/// Operations per second of `clients` clients doing `op` on `what` for
/// [`WINDOW`], each on its own key.
async fn measure(clock: &SystemClock, what: &Target, op: &'static str, clients: usize) -> f64 {
    let run = unique_name("vs:bench:kv:");
    let w = Arc::new(Watch::start(clock));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (what, w) = (what.clone(), w.clone());
        let name = format!("{run}:{c}");
        tasks.push(tokio::spawn(async move {
            let mut ops = 0u64;
            match what {
                Target::Kv(kv) => {
                    let key = Key::parse(&name.replace("vs:bench", "bench")).unwrap();
                    while w.secs() < WINDOW.as_secs_f64() {
                        match op {
                            "cas" => kv_cas(&kv, &key).await,
                            _ => {
                                kv.incr(&key, 1, Some(TTL)).await.unwrap();
                            }
                        }
                        ops += 1;
                    }
                    kv.delete(&key, None).await.unwrap();
                }
                Target::RawGetSet(mut con) | Target::RawIncr(mut con) => {
                    while w.secs() < WINDOW.as_secs_f64() {
                        match op {
                            "cas" => raw_get_set(&mut con, &name).await,
                            _ => {
                                let _: i64 = redis::cmd("INCR")
                                    .arg(&name)
                                    .query_async(&mut con)
                                    .await
                                    .unwrap();
                            }
                        }
                        ops += 1;
                    }
                    let _: i64 = redis::cmd("DEL")
                        .arg(&name)
                        .query_async(&mut con)
                        .await
                        .unwrap();
                }
                Target::RawWatch(client) => {
                    let mut con = client.get_multiplexed_async_connection().await.unwrap();
                    while w.secs() < WINDOW.as_secs_f64() {
                        raw_watch(&mut con, &name).await;
                        ops += 1;
                    }
                    let _: i64 = redis::cmd("DEL")
                        .arg(&name)
                        .query_async(&mut con)
                        .await
                        .unwrap();
                }
            }
            (ops, w.secs())
        }));
    }
    let mut total = 0u64;
    let mut secs = 0f64;
    for t in tasks {
        let (ops, s) = t.await.unwrap();
        total += ops;
        secs = secs.max(s);
    }
    total as f64 / secs
}

fn stats(samples: &[f64]) -> (f64, f64, f64) {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

/// Runs the key-value benchmark on every backend whose service is
/// configured.
pub(crate) async fn run(clock: &SystemClock) -> KvReport {
    let scratch = tempfile::tempdir().unwrap();
    let store_clock: Arc<dyn Clock> = Arc::new(*clock);
    let mut targets: Vec<(String, Target)> = vec![(
        "memory".into(),
        Target::Kv(kv_from_url("memory://", store_clock.clone()).await.unwrap()),
    )];
    let sqlite = format!("sqlite://{}", scratch.path().join("kv.db").display());
    targets.push((
        "sqlite".into(),
        Target::Kv(kv_from_url(&sqlite, store_clock.clone()).await.unwrap()),
    ));
    if let Some(base) = service_url("VIDEOSYNC_TEST_POSTGRES_URL") {
        let url = postgres_namespace(&base).await;
        targets.push((
            "postgres".into(),
            Target::Kv(kv_from_url(&url, store_clock.clone()).await.unwrap()),
        ));
    }
    if let Some(url) = service_url("VIDEOSYNC_TEST_REDIS_URL") {
        targets.push((
            "redis".into(),
            Target::Kv(kv_from_url(&url, store_clock.clone()).await.unwrap()),
        ));
        let client = redis::Client::open(url.as_str()).unwrap();
        let con = client.get_multiplexed_async_connection().await.unwrap();
        targets.push(("raw Redis GET+SET".into(), Target::RawGetSet(con.clone())));
        targets.push(("raw Redis WATCH/MULTI".into(), Target::RawWatch(client)));
        targets.push(("raw Redis INCR".into(), Target::RawIncr(con)));
    }
    let mut cells = Vec::new();
    for (name, what) in &targets {
        let ops: &[&str] = match what {
            Target::Kv(_) => &["cas", "incr"],
            Target::RawGetSet(_) | Target::RawWatch(_) => &["cas"],
            Target::RawIncr(_) => &["incr"],
        };
        for op in ops {
            for clients in [1, CLIENTS] {
                cells.push(Cell {
                    target: name.clone(),
                    op,
                    clients,
                    what: what.clone(),
                    samples: Vec::new(),
                });
            }
        }
    }
    // A round that is not counted: pools open their connections and
    // servers cache their plans and scripts.
    for cell in &cells {
        measure(clock, &cell.what, cell.op, cell.clients).await;
    }
    for round in 0..ROUNDS {
        for cell in &mut cells {
            let ops_s = measure(clock, &cell.what, cell.op, cell.clients).await;
            cell.samples.push(ops_s);
        }
        println!("kv round {}/{ROUNDS} done", round + 1);
    }
    let median_of = |target: &str, op: &str, clients: usize| {
        cells
            .iter()
            .find(|c| c.target == target && c.op == op && c.clients == clients)
            .map(|c| stats(&c.samples).0)
    };
    let rows = cells
        .iter()
        .map(|c| {
            let (median, min, max) = stats(&c.samples);
            let baseline = if c.op == "cas" {
                "raw Redis GET+SET"
            } else {
                "raw Redis INCR"
            };
            let base = median_of(baseline, c.op, c.clients).unwrap_or(f64::NAN);
            println!(
                "kv {} {} x{}: {median:.0} ops/s (min {min:.0}, max {max:.0}), {:.2}x {baseline}",
                c.target,
                c.op,
                c.clients,
                median / base
            );
            KvRow {
                target: c.target.clone(),
                op: c.op,
                clients: c.clients,
                median_ops_s: median,
                min_ops_s: min,
                max_ops_s: max,
                baseline: baseline.into(),
                ratio_to_baseline: median / base,
            }
        })
        .collect();
    KvReport {
        rounds: ROUNDS,
        window_ms: WINDOW.as_millis(),
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        rows,
    }
}

/// The report's Markdown section.
pub(crate) fn markdown(r: &KvReport) -> String {
    let mut md = format!(
        "\n## Key-value store ({} build; ops/s, median of {} rounds of {} ms per cell, round-robin)\n\n",
        r.profile, r.rounds, r.window_ms
    );
    md.push_str(
        "`cas` = get + put(IfVersion) adding one to a counter, each client on its own key; \
         `incr` = incr(key, 1, ttl).\n\n",
    );
    md.push_str("| target | op | clients | median ops/s | min | max | baseline | ratio |\n");
    md.push_str("|---|---|---|---|---|---|---|---|\n");
    for row in &r.rows {
        md.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {:.2} |\n",
            row.target,
            row.op,
            row.clients,
            row.median_ops_s,
            row.min_ops_s,
            row.max_ops_s,
            row.baseline,
            row.ratio_to_baseline
        ));
    }
    md.push_str(
        "\nRatio = median / the baseline's median at the same client count. Raw GET+SET is not \
         atomic (concurrent writers lose updates); WATCH/MULTI and the measured backends are.\n",
    );
    md
}

/// `VIDEOSYNC_BENCH_ONLY=kv`: runs only this part and writes
/// `benches/results/core-kv.{json,md}`, leaving the full report alone.
pub(crate) async fn run_alone(clock: &SystemClock) {
    let report = run(clock).await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("core-kv.json"),
        serde_json::to_string_pretty(&report).unwrap() + "\n",
    )
    .unwrap();
    let md = format!(
        "# Core benchmark: key-value part\n\n{} cores. Reproduce: \
         `VIDEOSYNC_BENCH_ONLY=kv cargo bench{} --features all-backends --bench core`.\n{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if cfg!(debug_assertions) {
            " --profile dev"
        } else {
            ""
        },
        markdown(&report)
    );
    std::fs::write(dir.join("core-kv.md"), &md).unwrap();
    println!("\n{md}\nwrote {}", dir.join("core-kv.json").display());
}
