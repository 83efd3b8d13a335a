//! The sync benchmark: every scenario of the simulator under videosync and
//! the policies of Jellyfin SyncPlay (default: correction off; and
//! correction on), Syncplay and CyTube, on identical seeded sessions (see
//! `videosync_sync::sim`).
//!
//! Run with `cargo bench --bench sync` (it belongs to the root package;
//! `-p videosync` from elsewhere). Writes `benches/results/sync.json` and
//! `benches/results/sync.md`, and prints the report with the issue's
//! targets checked for videosync on every seed.
//!
//! `SYNC_SEEDS=3 SYNC_DURATION_MS=120000 SYNC_SCENARIOS=lan,broadband`
//! make a quick run (the report says what it ran).
// A bench binary reports on stdout; its setup may fail loudly.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;
use videosync::sync::sim::metrics::{Metrics, SAMPLE_MS, SETTLE_MS, STAY_MS};
use videosync::sync::sim::policy::PolicyKind;
use videosync::sync::sim::{run, scenario::Scenario};

#[derive(Serialize)]
struct Report {
    seeds: Vec<u64>,
    duration_ms: f64,
    runs: Vec<Metrics>,
    targets: Vec<TargetRow>,
}

/// The targets for videosync in one scenario, judged per seed.
#[derive(Serialize)]
struct TargetRow {
    scenario: String,
    /// The pairwise p99 target, ms.
    pairwise_target_ms: f64,
    /// Whether it is a target or an aim (mobile links, extra scenarios).
    pairwise_is_aim: bool,
    /// Worst seed's steady pairwise p99, ms.
    pairwise_p99_worst_ms: f64,
    pairwise_met_seeds: Vec<u64>,
    convergence_worst_ms: f64,
    convergence_met_seeds: Vec<u64>,
    join_convergence_worst_ms: f64,
    join_convergence_met_seeds: Vec<u64>,
    /// The click-to-effect target: the slowest member's one-way p99 +
    /// 150 ms.
    click_target_ms: f64,
    click_p95_worst_ms: f64,
    click_met_seeds: Vec<u64>,
    seek_p95_worst_ms: f64,
    seek_met_seeds: Vec<u64>,
    rate_changes_worst_per_min: f64,
    rate_met_seeds: Vec<u64>,
    /// Per seed, the smallest ratio of a baseline's steady pairwise p99
    /// to videosync's.
    worst_ratio_per_seed: Vec<(u64, f64, String)>,
    ratio_met_seeds: Vec<u64>,
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let seeds: Vec<u64> = (1..=env_or("SYNC_SEEDS", 10u64)).collect();
    let only: Option<Vec<String>> = std::env::var("SYNC_SCENARIOS")
        .ok()
        .map(|s| s.split(',').map(str::to_owned).collect());
    let scenarios: Vec<Scenario> = Scenario::all()
        .into_iter()
        .filter(|s| only.as_ref().is_none_or(|o| o.contains(&s.name)))
        .map(|mut s| {
            s.duration_ms = env_or("SYNC_DURATION_MS", s.duration_ms);
            s
        })
        .collect();
    let duration_ms = scenarios.first().map_or(0.0, |s| s.duration_ms);

    // Every (scenario, policy, seed) is independent: run them on a few
    // threads, then order the results.
    let mut jobs = Vec::new();
    for si in 0..scenarios.len() {
        for (pi, p) in PolicyKind::ALL.iter().enumerate() {
            for &seed in &seeds {
                jobs.push((si, pi, *p, seed));
            }
        }
    }
    let jobs = Mutex::new(jobs.into_iter().rev().collect::<Vec<_>>());
    let results = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(env_or("SYNC_THREADS", 2usize));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let Some((si, pi, p, seed)) = jobs.lock().unwrap().pop() else {
                    break;
                };
                let m = run(&scenarios[si], p, seed);
                results.lock().unwrap().push(((si, pi, seed), m));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(k, _)| *k);
    let runs: Vec<Metrics> = results.into_iter().map(|(_, m)| m).collect();

    let targets: Vec<TargetRow> = scenarios
        .iter()
        .map(|s| target_row(s, &seeds, &runs))
        .collect();
    let md = report(&scenarios, &seeds, &runs, &targets);
    println!("{md}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    std::fs::create_dir_all(&dir).expect("create benches/results");
    let report = Report {
        seeds,
        duration_ms,
        runs,
        targets,
    };
    std::fs::write(
        dir.join("sync.json"),
        serde_json::to_string_pretty(&report).expect("serialize"),
    )
    .expect("write sync.json");
    std::fs::write(dir.join("sync.md"), md).expect("write sync.md");
}

fn rows<'a>(runs: &'a [Metrics], scenario: &str, policy: &str) -> Vec<&'a Metrics> {
    runs.iter()
        .filter(|m| m.scenario == scenario && m.policy == policy)
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn max(v: impl Iterator<Item = f64>) -> f64 {
    v.fold(0.0, f64::max)
}

fn target_row(s: &Scenario, seeds: &[u64], runs: &[Metrics]) -> TargetRow {
    let vs = rows(runs, &s.name, "videosync");
    let target = s.pairwise_target_ms();
    let click_target = s.one_way_p99_ms() + 150.0;
    let met = |ok: &dyn Fn(&Metrics) -> bool| -> Vec<u64> {
        vs.iter().filter(|m| ok(m)).map(|m| m.seed).collect()
    };
    let mut worst_ratio_per_seed = Vec::new();
    let mut ratio_met_seeds = Vec::new();
    for &seed in seeds {
        let Some(v) = vs.iter().find(|m| m.seed == seed) else {
            continue;
        };
        let worst = runs
            .iter()
            .filter(|m| m.scenario == s.name && m.seed == seed && m.policy != "videosync")
            .map(|m| {
                (
                    m.pairwise_ms.p99 / v.pairwise_ms.p99.max(1e-9),
                    m.policy.clone(),
                )
            })
            .min_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((ratio, policy)) = worst {
            if ratio > 1.0 {
                ratio_met_seeds.push(seed);
            }
            worst_ratio_per_seed.push((seed, ratio, policy));
        }
    }
    TargetRow {
        scenario: s.name.clone(),
        pairwise_target_ms: target,
        pairwise_is_aim: !s.in_target() || s.spike_every_ms.is_some(),
        pairwise_p99_worst_ms: max(vs.iter().map(|m| m.pairwise_ms.p99)),
        pairwise_met_seeds: met(&|m| m.pairwise_ms.p99 <= target),
        convergence_worst_ms: max(vs.iter().map(|m| {
            if m.unconverged > 0 {
                f64::INFINITY
            } else {
                m.convergence_max_ms
            }
        })),
        convergence_met_seeds: met(&|m| m.unconverged == 0 && m.convergence_max_ms <= 1000.0),
        join_convergence_worst_ms: max(vs.iter().map(|m| {
            if m.join_unconverged > 0 {
                f64::INFINITY
            } else {
                m.join_convergence_max_ms
            }
        })),
        join_convergence_met_seeds: met(&|m| {
            m.join_unconverged == 0 && m.join_convergence_max_ms <= 1000.0
        }),
        click_target_ms: click_target,
        click_p95_worst_ms: max(vs.iter().map(|m| p95_or_never(&m.click_to_effect_ms))),
        click_met_seeds: met(&|m| p95_or_never(&m.click_to_effect_ms) <= click_target),
        seek_p95_worst_ms: max(vs.iter().map(|m| p95_or_never(&m.seek_to_effect_ms))),
        seek_met_seeds: met(&|m| p95_or_never(&m.seek_to_effect_ms) <= click_target),
        rate_changes_worst_per_min: max(vs.iter().map(|m| m.rate_changes_per_min)),
        rate_met_seeds: met(&|m| {
            m.max_rate_deviation() <= 0.05 + 1e-9 && m.rate_changes_per_min <= 6.0
        }),
        worst_ratio_per_seed,
        ratio_met_seeds,
    }
}

fn p95_or_never(p: &videosync::sync::sim::metrics::Percentiles) -> f64 {
    if p.n == 0 {
        f64::INFINITY
    } else {
        p.p95
    }
}

fn seeds_text(met: &[u64], all: &[u64]) -> String {
    if met.len() == all.len() {
        format!("**met**, all {}", all.len())
    } else if met.is_empty() {
        "missed on every seed".to_owned()
    } else {
        format!("met on {} of {}: {:?}", met.len(), all.len(), met)
    }
}

fn report(
    scenarios: &[Scenario],
    seeds: &[u64],
    runs: &[Metrics],
    targets: &[TargetRow],
) -> String {
    let mut md = String::from("# Sync benchmark\n\n");
    md.push_str(&format!(
        "`cargo bench --bench sync` ({} seeds, {:.0}-minute sessions, {} scenarios, {} runs). Every client speaks protocol v2 through the encoder and the decoders; the videosync client is the engine's `client::Session`, driven by a thin adapter as a browser drives it.\n\n",
        seeds.len(),
        scenarios.first().map_or(0.0, |s| s.duration_ms / 60_000.0),
        scenarios.len(),
        runs.len(),
    ));
    md.push_str(&format!(
        "**What is measured.** Error is |client − room timeline|, pairwise the largest difference among clients, both on the true (on-screen) positions sampled every {SAMPLE_MS} ms. \
**Steady state excludes** exactly: every scheduled state (play, pause, seek, rate, load) from when the room scheduled it until {SETTLE_MS} ms after its instant; {SETTLE_MS} ms after every join and after every user action (a seek the user makes on the player moves that player before the room schedules anything); and the stalling client from the start of each of its stalls until it is back within the bound. The *all samples* column has no exclusion. \
**Convergence** (after play, seek, load; joins apart): from the state's instant (the join) until every client (but a stalled or recovering one) is within the bound (20 ms + half the path asymmetry) and stays within it for {STAY_MS} ms; an event whose window ends first is *unconverged* (shown as ∞ in the targets). \
**Click-to-effect**: from a play or pause command leaving its client until every client is within the bound of the new state; seeks apart (*seek-to-effect*). \
**Rate changes** per minute per client count the playback-rate changes that took effect (the player model ignores changes under 0.2 %, as Chromium does) in steady state. \
**Echo commands**: commands a client sent for player events it caused itself (the videosync adapter feeds every player event to the session; users' seeks are made on the player). Cells of the first table are the median over seeds, except *unconverged* (sum), click- and seek-to-effect and rate changes (worst seed).\n\n",
    ));
    md.push_str("Models, per policy (see `sim::policy` and `sim::model`): videosync reads `performance.now` (device crystal, ±50 ppm); the baselines read an NTP-disciplined `Date` (±3 ppm); every player's media clock runs on its device crystal. HLS seeks are bimodal (within the buffer 30–120 ms per device, outside it RTT + 0.3–2 s with `waiting`), play/pause/rate act after 5–20 ms, timers fire up to 4 ms late. Jellyfin is modelled with its Waiting-state seek and join, its seek-to-position on pause and its 3 s buffering debounce, in two rows. Syncplay and CyTube keep kinder-than-real details (an ideal server timeline, seeks both ways).\n\n");

    md.push_str("## Every scenario and policy (median over seeds)\n\n");
    md.push_str("| scenario | policy | error p50 / p99 (ms) | pairwise p50 / p95 / p99 (ms) | pairwise p99, all samples (ms) | convergence p50 / max (ms) | unconverged | join convergence max (ms) | click / seek-to-effect p95, worst seed (ms) | rate changes / min, worst seed | rate factors | seeks | echo commands | wire errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for s in scenarios {
        for p in PolicyKind::ALL {
            let name = p.policy().name();
            let r = rows(runs, &s.name, name);
            if r.is_empty() {
                continue;
            }
            let med = |f: &dyn Fn(&Metrics) -> f64| median(r.iter().map(|m| f(m)).collect());
            md.push_str(&format!(
                "| {} | {} | {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {:.0} | {:.0} / {:.0} | {} of {} | {:.0} ({} unconverged) | {} / {} | {:.1} | {:.3}..{:.3} | {:.0} | {} | {} |\n",
                s.name,
                name,
                med(&|m| m.error_ms.p50),
                med(&|m| m.error_ms.p99),
                med(&|m| m.pairwise_ms.p50),
                med(&|m| m.pairwise_ms.p95),
                med(&|m| m.pairwise_ms.p99),
                med(&|m| m.pairwise_all_ms.p99),
                med(&|m| m.convergence_p50_ms),
                med(&|m| m.convergence_max_ms),
                r.iter().map(|m| m.unconverged).sum::<usize>(),
                r.iter().map(|m| m.events).sum::<usize>(),
                med(&|m| m.join_convergence_max_ms),
                r.iter().map(|m| m.join_unconverged).sum::<usize>(),
                worst_p95(r.iter().map(|m| &m.click_to_effect_ms)),
                worst_p95(r.iter().map(|m| &m.seek_to_effect_ms)),
                max(r.iter().map(|m| m.rate_changes_per_min)),
                r.iter().map(|m| m.min_rate_factor).fold(f64::INFINITY, f64::min),
                r.iter().map(|m| m.max_rate_factor).fold(0.0, f64::max),
                med(&|m| m.seeks as f64),
                r.iter().map(|m| m.echo_commands).sum::<u64>(),
                r.iter().map(|m| m.wire_errors).sum::<u64>(),
            ));
        }
    }

    md.push_str("\n## Targets for videosync (per scenario, every seed)\n\n");
    md.push_str("Pairwise p99 targets: 10 ms on lan and broadband, 20 ms intercontinental, 20 ms + half the asymmetry on the asymmetric path, 40 ms aimed for on mobile links (mobile, one-bad-link); the broadband variants (coarse-player, wait-for-all, background-tab, big-room) are held to broadband's 10 ms. Convergence ≤ 1 s after every play, pause, seek (and, apart, join); click-to-effect p95 ≤ the slowest member's one-way p99 + 150 ms (play and pause; seeks apart); rate within ±5 % and at most 6 changes per minute per client; pairwise p99 lower than every baseline's (the smallest ratio printed).\n\n");
    md.push_str("| scenario | pairwise p99 ≤ target (worst seed) | convergence ≤ 1 s (worst) | join convergence ≤ 1 s (worst) | click-to-effect p95 ≤ target (worst) | seek-to-effect p95 ≤ target (worst) | rate ±5 %, ≤ 6 changes/min (worst) | lower p99 than every baseline (smallest ratio per seed) |\n|---|---|---|---|---|---|---|---|\n");
    for t in targets {
        let ratios: Vec<String> = t
            .worst_ratio_per_seed
            .iter()
            .map(|(seed, r, p)| format!("{seed}: {r:.1}× {}", short_name(p)))
            .collect();
        md.push_str(&format!(
            "| {} | {} ≤ {:.0}{}: {} | {}: {} | {}: {} | {} ≤ {:.0}: {} | {}: {} | {:.1}/min: {} | {}; {} |\n",
            t.scenario,
            fmt_ms(t.pairwise_p99_worst_ms),
            t.pairwise_target_ms,
            if t.pairwise_is_aim { " (aim)" } else { "" },
            seeds_text(&t.pairwise_met_seeds, seeds),
            fmt_ms(t.convergence_worst_ms),
            seeds_text(&t.convergence_met_seeds, seeds),
            fmt_ms(t.join_convergence_worst_ms),
            seeds_text(&t.join_convergence_met_seeds, seeds),
            fmt_whole(t.click_p95_worst_ms),
            t.click_target_ms,
            seeds_text(&t.click_met_seeds, seeds),
            fmt_whole(t.seek_p95_worst_ms),
            seeds_text(&t.seek_met_seeds, seeds),
            t.rate_changes_worst_per_min,
            seeds_text(&t.rate_met_seeds, seeds),
            seeds_text(&t.ratio_met_seeds, seeds),
            ratios.join(", "),
        ));
    }

    md.push_str("\n## Waiting for buffering members (videosync, `wait-for-all`: timeout 4 s, a new group wait at most every 30 s; client 2 stalls 2.5 s at 85 s and 7 s at 100 s, and at random)\n\n");
    md.push_str("| seed | group waits | members given up on at the timeout | largest spread of the others while paused for a wait (ms) | stall catch-up max (ms), stalls not caught up |\n|---|---|---|---|---|\n");
    for m in runs
        .iter()
        .filter(|m| m.scenario == "wait-for-all" && m.policy == "videosync")
    {
        md.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.0}, {} of {} |\n",
            m.seed,
            m.group_waits,
            m.wait_timeouts,
            m.wait_pause_spread_ms,
            m.catchup_max_ms,
            m.catchup_unconverged,
            m.stalls,
        ));
    }
    md
}

/// The worst seed's p95, or "never" when a seed never had every client
/// within the bound after such a command.
fn worst_p95<'a>(
    p: impl Iterator<Item = &'a videosync::sync::sim::metrics::Percentiles>,
) -> String {
    let mut worst: f64 = 0.0;
    for p in p {
        if p.n == 0 {
            return "never".to_owned();
        }
        worst = worst.max(p.p95);
    }
    format!("{worst:.0}")
}

/// A policy's name, short enough for a table cell.
fn short_name(policy: &str) -> &str {
    if policy.contains("default") {
        "jellyfin-default"
    } else if policy.contains("correction") {
        "jellyfin-correction"
    } else {
        policy
    }
}

fn fmt_whole(ms: f64) -> String {
    if ms.is_finite() {
        format!("{ms:.0}")
    } else {
        "never".to_owned()
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms.is_finite() {
        format!("{ms:.1}")
    } else {
        "∞".to_owned()
    }
}
