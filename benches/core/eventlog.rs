//! Event log: append throughput and append -> tail latency on every backend,
//! beside raw `XADD` / `XREAD BLOCK` on the same Redis in the same run.
//!
//! Each round runs every backend once, in a fixed order (A B C D E, A B C D
//! E, …), so drift in the machine's load hits all of them alike; the report
//! gives the median of the rounds with their min and max.
//!
//! - Throughput: one appender appends [`APPENDS`] entries of
//!   [`PAYLOAD_BYTES`] bytes, one after another.
//! - Latency: a tailer runs in its own task, forwarding what it gets over a
//!   channel; [`SAMPLES`] times, the bench appends one entry and waits for the
//!   tailer to hand it over. The time covers the append's round trip and the
//!   tailer's wake-up and read.
//! - Baseline: `XADD key * p <payload>` for throughput; for latency a task
//!   looping on `XREAD BLOCK 0` on its own connection. No sequence numbers,
//!   epochs, retention or recovery.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;
use videosync::core::conformance::{postgres_namespace, service_url, unique_name};
use videosync::core::eventlog::{eventlog_from_url, DynEventLog, LogOptions, TailItem};
use videosync::core::{Clock, SystemClock, Topic};

use super::{percentile, Watch};

/// Rounds of every backend.
pub(crate) const ROUNDS: usize = 5;
/// Appends per throughput run.
pub(crate) const APPENDS: usize = 300;
/// Append -> tail samples per latency run.
pub(crate) const SAMPLES: usize = 100;
/// Payload of every entry.
pub(crate) const PAYLOAD_BYTES: usize = 256;

/// A measure over the rounds.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Self {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Spread {
            median: percentile(&v, 0.5),
            min: v.first().copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// One backend's figures.
#[derive(Debug, Serialize)]
pub(crate) struct EventLogRow {
    pub(crate) backend: String,
    pub(crate) append_per_s: Spread,
    pub(crate) tail_p50_ms: Spread,
    pub(crate) tail_p99_ms: Spread,
    /// Median appends/s over raw XADD's (below 1: slower).
    pub(crate) append_ratio_vs_raw: Option<f64>,
    /// Median p50 latency over raw XREAD's (above 1: slower).
    pub(crate) p50_ratio_vs_raw: Option<f64>,
}

/// The event log section of the core report.
#[derive(Debug, Serialize)]
pub(crate) struct EventLogReport {
    pub(crate) rounds: usize,
    pub(crate) appends_per_run: usize,
    pub(crate) samples_per_run: usize,
    pub(crate) payload_bytes: usize,
    pub(crate) rows: Vec<EventLogRow>,
}

/// What one backend measured in one round: appends/s, p50 ms, p99 ms.
type Run = (f64, f64, f64);

enum Target {
    Log(DynEventLog),
    RawRedis(String),
}

/// Runs the event log section.
pub(crate) async fn run(clock: &SystemClock) -> EventLogReport {
    let scratch = tempfile::tempdir().unwrap();
    let shared: std::sync::Arc<dyn Clock> = std::sync::Arc::new(*clock);
    let options = LogOptions {
        max_len: Some(10_000),
        max_age: None,
    };
    let name = unique_name("bench");
    let mut urls = vec![
        ("memory".to_owned(), "memory://".to_owned()),
        (
            "sqlite".to_owned(),
            format!("sqlite://{}", scratch.path().join("log.db").display()),
        ),
    ];
    if let Some(base) = service_url("VIDEOSYNC_TEST_POSTGRES_URL") {
        urls.push(("postgres".into(), postgres_namespace(&base).await));
    }
    let redis = service_url("VIDEOSYNC_TEST_REDIS_URL");
    if let Some(url) = &redis {
        urls.push(("redis".into(), url.clone()));
    }
    let mut targets = Vec::new();
    for (backend, url) in urls {
        let log = eventlog_from_url(&url, &name, shared.clone(), options.clone())
            .await
            .unwrap();
        targets.push((backend, Target::Log(log)));
    }
    if let Some(url) = &redis {
        targets.push(("raw XADD/XREAD BLOCK".into(), Target::RawRedis(url.clone())));
    }

    let mut runs: Vec<Vec<Run>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..ROUNDS {
        for (i, (backend, target)) in targets.iter().enumerate() {
            let run = match target {
                Target::Log(log) => bench_log(clock, log).await,
                Target::RawRedis(url) => bench_raw(clock, url).await,
            };
            println!(
                "eventlog round {round} {backend}: {:.0} appends/s, tail p50 {:.3} ms p99 {:.3} ms",
                run.0, run.1, run.2
            );
            runs[i].push(run);
        }
    }
    if let Some(url) = &redis {
        drop_keys(url, &format!("vs:log:{name}:*")).await;
        drop_keys(url, &format!("vs:bench:rawlog:{name}:*")).await;
    }

    let spreads: Vec<(Spread, Spread, Spread)> = runs
        .iter()
        .map(|r| {
            let col = |f: fn(&Run) -> f64| Spread::of(&r.iter().map(f).collect::<Vec<_>>());
            (col(|r| r.0), col(|r| r.1), col(|r| r.2))
        })
        .collect();
    let raw = targets
        .iter()
        .position(|(_, t)| matches!(t, Target::RawRedis(_)))
        .map(|i| spreads[i]);
    let rows = targets
        .iter()
        .zip(&spreads)
        .map(|((backend, _), (append, p50, p99))| EventLogRow {
            backend: backend.clone(),
            append_per_s: *append,
            tail_p50_ms: *p50,
            tail_p99_ms: *p99,
            append_ratio_vs_raw: raw.map(|(a, _, _)| append.median / a.median),
            p50_ratio_vs_raw: raw.map(|(_, p, _)| p50.median / p.median),
        })
        .collect();
    EventLogReport {
        rounds: ROUNDS,
        appends_per_run: APPENDS,
        samples_per_run: SAMPLES,
        payload_bytes: PAYLOAD_BYTES,
        rows,
    }
}

fn payload() -> Bytes {
    Bytes::from(vec![b'x'; PAYLOAD_BYTES])
}

fn fresh_topic() -> Topic {
    Topic::parse(&unique_name("bench.")).unwrap()
}

async fn bench_log(clock: &SystemClock, log: &DynEventLog) -> Run {
    let p = payload();
    let topic = fresh_topic();
    let w = Watch::start(clock);
    for _ in 0..APPENDS {
        log.append(&topic, p.clone()).await.unwrap();
    }
    let per_s = APPENDS as f64 / w.secs();

    let topic = fresh_topic();
    let start = log.position(&topic).await.unwrap();
    let mut tail = log.tail(&topic, Some(&start)).await.unwrap();
    let (tx, mut rx) = mpsc::channel(SAMPLES);
    let tailer = tokio::spawn(async move {
        while let Some(item) = tail.next().await {
            if let Ok(TailItem::Entry(e)) = item {
                if tx.send(e.seq).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut lat = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let w = Watch::start(clock);
        let a = log.append(&topic, p.clone()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the tailer delivers within 10 s")
            .unwrap();
        assert_eq!(got, a.seq, "tail order");
        lat.push(w.secs() * 1000.0);
    }
    tailer.abort();
    lat.sort_by(f64::total_cmp);
    (per_s, percentile(&lat, 0.5), percentile(&lat, 0.99))
}

async fn bench_raw(clock: &SystemClock, url: &str) -> Run {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let p = payload();
    let key = format!("vs:bench:rawlog:{}", unique_name(""));
    let w = Watch::start(clock);
    for _ in 0..APPENDS {
        let _: String = redis::cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("p")
            .arg(p.as_ref())
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let per_s = APPENDS as f64 / w.secs();

    let key = format!("{key}:tail");
    let mut reader = client.get_multiplexed_async_connection().await.unwrap();
    let (tx, mut rx) = mpsc::channel(SAMPLES);
    let tail_key = key.clone();
    let tailer = tokio::spawn(async move {
        let mut last = "0-0".to_owned();
        loop {
            let reply: redis::streams::StreamReadReply = redis::cmd("XREAD")
                .arg("BLOCK")
                .arg(0)
                .arg("STREAMS")
                .arg(&tail_key)
                .arg(&last)
                .query_async(&mut reader)
                .await
                .unwrap();
            for stream in reply.keys {
                for entry in stream.ids {
                    last = entry.id.clone();
                    if tx.send(entry.id).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut lat = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let w = Watch::start(clock);
        let id: String = redis::cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("p")
            .arg(p.as_ref())
            .query_async(&mut conn)
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the reader delivers within 10 s")
            .unwrap();
        assert_eq!(got, id);
        lat.push(w.secs() * 1000.0);
    }
    tailer.abort();
    lat.sort_by(f64::total_cmp);
    (per_s, percentile(&lat, 0.5), percentile(&lat, 0.99))
}

async fn drop_keys(url: &str, pattern: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// The Markdown section.
pub(crate) fn markdown(r: &EventLogReport) -> String {
    let mut md = format!(
        "\n## Event log ({} rounds, alternating backends; {} appends and {} append->tail samples \
         of {} B per run)\n\n",
        r.rounds, r.appends_per_run, r.samples_per_run, r.payload_bytes
    );
    md.push_str(
        "| backend | appends/s median (min-max) | tail p50 ms median (min-max) | tail p99 ms median (min-max) | appends/s vs raw | p50 vs raw |\n",
    );
    md.push_str("|---|---|---|---|---|---|\n");
    let ratio = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
    for row in &r.rows {
        md.push_str(&format!(
            "| {} | {:.0} ({:.0}-{:.0}) | {:.3} ({:.3}-{:.3}) | {:.3} ({:.3}-{:.3}) | {} | {} |\n",
            row.backend,
            row.append_per_s.median,
            row.append_per_s.min,
            row.append_per_s.max,
            row.tail_p50_ms.median,
            row.tail_p50_ms.min,
            row.tail_p50_ms.max,
            row.tail_p99_ms.median,
            row.tail_p99_ms.min,
            row.tail_p99_ms.max,
            ratio(row.append_ratio_vs_raw),
            ratio(row.p50_ratio_vs_raw),
        ));
    }
    md.push_str(
        "\nRaw is `XADD` / `XREAD BLOCK` on the same Redis: no dense sequence numbers, epoch, \
         retention or recovery. The SQL tail wakes at once on appends made in its own process \
         (as here) and polls every 100 ms otherwise.\n",
    );
    md
}

/// `VIDEOSYNC_BENCH_ONLY=eventlog`: runs this section alone and puts it into
/// the existing report files in `dir`, replacing an earlier event log
/// section and keeping the others.
pub(crate) async fn run_only(clock: &SystemClock, dir: &std::path::Path) {
    let report = run(clock).await;
    std::fs::create_dir_all(dir).unwrap();
    // The section goes last, where a full run puts it, and the rest of the
    // file keeps its order (a `serde_json::Value` would sort the keys).
    let json_path = dir.join("core.json");
    let old = std::fs::read_to_string(&json_path).unwrap_or_default();
    let head = match old.find(",\n  \"eventlog\": ") {
        Some(at) => old[..at].to_owned(),
        None => old.trim_end().strip_suffix('}').map_or_else(
            || "{\n  \"bench\": \"core\"".to_owned(),
            |s| s.trim_end().to_owned(),
        ),
    };
    let body = serde_json::to_string_pretty(&report)
        .unwrap()
        .replace('\n', "\n  ");
    let json = format!("{head},\n  \"eventlog\": {body}\n}}\n");
    serde_json::from_str::<serde_json::Value>(&json).expect("the merged report is JSON");
    std::fs::write(&json_path, json).unwrap();
    let md_path = dir.join("core.md");
    let old = std::fs::read_to_string(&md_path).unwrap_or_else(|_| "# Core benchmark\n".into());
    let section = markdown(&report);
    let md = match old.find("\n## Event log") {
        // Replace the old section, keeping any that follow it.
        Some(at) => {
            let end = old[at + 1..]
                .find("\n## ")
                .map_or(old.len(), |n| at + 1 + n);
            format!("{}{section}{}", &old[..at], &old[end..])
        }
        None => old.trim_end().to_owned() + "\n" + &section,
    };
    std::fs::write(&md_path, md).unwrap();
    println!("{section}\nupdated {}", json_path.display());
}
