//! The sync benchmark: every scenario of the simulator under videosync and
//! the policies of Jellyfin SyncPlay (correction on), Syncplay and CyTube,
//! on identical seeded sessions (see `videosync_sync::sim`).
//!
//! Run with `cargo bench --bench sync`. Writes `benches/results/sync.json`
//! and `benches/results/sync.md`, and prints the table with the issue's
//! targets checked for videosync.
// A bench binary reports on stdout; its setup may fail loudly.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::path::Path;

use serde::Serialize;
use videosync::sync::sim::metrics::{markdown_table, Metrics};
use videosync::sync::sim::{run_all, scenario::Scenario};

/// The seeds every scenario runs with; the table shows the first, the
/// target check looks at all.
const SEEDS: [u64; 3] = [1, 2, 3];

#[derive(Serialize)]
struct Report {
    seeds: Vec<u64>,
    runs: Vec<Metrics>,
    targets: Vec<TargetCheck>,
}

#[derive(Serialize)]
struct TargetCheck {
    scenario: String,
    seed: u64,
    bound_ms: f64,
    pairwise_p99_ms: f64,
    pairwise_ok: bool,
    convergence_max_ms: f64,
    unconverged: usize,
    convergence_ok: bool,
    max_rate_deviation: f64,
    rate_ok: bool,
    /// Each baseline's p99 pairwise over videosync's, in
    /// `jellyfin, syncplay, cytube` order.
    baseline_ratios: Vec<(String, f64)>,
    /// The smallest of them.
    worst_baseline_ratio: f64,
    ratio_ok: bool,
}

fn main() {
    let mut runs = Vec::new();
    let mut targets = Vec::new();
    for scenario in Scenario::all() {
        for seed in SEEDS {
            let rows = run_all(&scenario, seed);
            if scenario.in_target() {
                targets.push(check(&scenario, seed, &rows));
            }
            runs.extend(rows);
        }
    }
    let first: Vec<Metrics> = runs
        .iter()
        .filter(|m| m.seed == SEEDS[0])
        .cloned()
        .collect();
    let mut md = String::from("# Sync benchmark\n\n");
    md.push_str(&format!(
        "`cargo bench --bench sync`; seed {} shown (seeds {:?} in `sync.json`). Error is |client - room timeline|, pairwise the largest difference among clients, both on the true (on-screen) positions sampled every {} ms. Steady state excludes every play, pause, seek, rate change and load from when the room scheduled it until {} ms after it took effect (a client may start a seek before the state's instant so as to land on time; the on-screen jump falls in that window and shows in the all-samples column), the same time after every join, and the stalling client from the start of each stall until it is back within the bound (its recovery is the catch-up column). Convergence (after play, seek, load, join) is from the state's instant until every client (but one stalled or recovering) is within the bound (20 ms + half the path asymmetry) and stays there until the next change; \"unconverged\" events ended with a client still outside it. Rates are corrective rates over the room's rate. Only the videosync client reports buffering, so only its room waits in `wait-for-all`.\n\n",
        SEEDS[0],
        SEEDS,
        videosync::sync::sim::metrics::SAMPLE_MS,
        videosync::sync::sim::metrics::SETTLE_MS,
    ));
    md.push_str(&markdown_table(&first));
    md.push_str(
        "\n## Targets for videosync (scenarios up to 300 ms RTT, 30 % jitter; every seed)\n\n",
    );
    md.push_str("| scenario | seed | p99 pairwise <= bound | convergence <= 1 s | rate within ±5 % | >= 10x lower p99 pairwise than each baseline (ratios) |\n|---|---|---|---|---|---|\n");
    let mark = |ok: bool| if ok { "met" } else { "**missed**" };
    for t in &targets {
        md.push_str(&format!(
            "| {} | {} | {} ({:.1} vs {:.0}) | {} (max {:.0} ms, {} unconverged) | {} ({:.1} %) | {} ({}) |\n",
            t.scenario,
            t.seed,
            mark(t.pairwise_ok),
            t.pairwise_p99_ms,
            t.bound_ms,
            mark(t.convergence_ok),
            t.convergence_max_ms,
            t.unconverged,
            mark(t.rate_ok),
            t.max_rate_deviation * 100.0,
            mark(t.ratio_ok),
            t.baseline_ratios
                .iter()
                .map(|(p, r)| format!("{p} {r:.1}x"))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    let count = |ok: fn(&TargetCheck) -> bool| targets.iter().filter(|t| ok(t)).count();
    md.push_str(&format!(
        "\nMet, of {} runs: p99 pairwise within the bound {}, convergence within 1 s {}, rate within ±5 % {}, 10x below every baseline {}.\n",
        targets.len(),
        count(|t| t.pairwise_ok),
        count(|t| t.convergence_ok),
        count(|t| t.rate_ok),
        count(|t| t.ratio_ok),
    ));
    md.push_str("\n## Waiting for buffering members (videosync, `wait-for-all`: timeout 4 s; client 2 stalls 2.5 s at 85 s and 7 s at 100 s)\n\n");
    md.push_str("| seed | group waits | members given up on at the timeout | largest spread of the others while paused for a wait (ms) | convergence max, every event including the resumes (ms) | stall catch-up max (ms), stalls not caught up |\n|---|---|---|---|---|---|\n");
    for m in runs
        .iter()
        .filter(|m| m.scenario == "wait-for-all" && m.policy == "videosync")
    {
        md.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.0} | {:.0}, {} of {} |\n",
            m.seed,
            m.group_waits,
            m.wait_timeouts,
            m.wait_pause_spread_ms,
            m.convergence_max_ms,
            m.catchup_max_ms,
            m.catchup_unconverged,
            m.stalls,
        ));
    }
    println!("{md}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    std::fs::create_dir_all(&dir).expect("create benches/results");
    let report = Report {
        seeds: SEEDS.to_vec(),
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

fn check(scenario: &Scenario, seed: u64, rows: &[Metrics]) -> TargetCheck {
    let vs = rows
        .iter()
        .find(|m| m.policy == "videosync")
        .expect("videosync ran");
    let p99 = vs.pairwise_ms.p99;
    let ratios: Vec<(String, f64)> = rows
        .iter()
        .filter(|m| m.policy != "videosync")
        .map(|m| (m.policy.clone(), m.pairwise_ms.p99 / p99.max(1e-9)))
        .collect();
    let worst_ratio = ratios.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
    TargetCheck {
        scenario: scenario.name.clone(),
        seed,
        bound_ms: vs.bound_ms,
        pairwise_p99_ms: p99,
        pairwise_ok: p99 <= vs.bound_ms,
        convergence_max_ms: vs.convergence_max_ms,
        unconverged: vs.unconverged,
        convergence_ok: vs.convergence_max_ms <= 1000.0 && vs.unconverged == 0,
        max_rate_deviation: vs.max_rate_deviation(),
        rate_ok: vs.max_rate_deviation() <= 0.05 + 1e-9,
        baseline_ratios: ratios,
        worst_baseline_ratio: worst_ratio,
        ratio_ok: worst_ratio >= 10.0,
    }
}
