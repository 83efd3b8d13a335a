//! The simulator: the same seed replays exactly, and the engine behaves
//! as a user would check (in sync on a LAN, a stalled member caught up,
//! rates within bounds, far closer than the baselines).

use videosync_sync::sim::metrics::Metrics;
use videosync_sync::sim::policy::PolicyKind;
use videosync_sync::sim::scenario::Scenario;
use videosync_sync::sim::{run, run_all};

fn short(mut s: Scenario, duration_ms: f64) -> Scenario {
    s.duration_ms = duration_ms;
    s
}

fn by_policy<'a>(rows: &'a [Metrics], policy: &str) -> &'a Metrics {
    rows.iter()
        .find(|m| m.policy == policy)
        .unwrap_or_else(|| panic!("no {policy} row"))
}

#[test]
fn the_same_seed_gives_the_same_metrics_and_another_seed_does_not() {
    let s = short(Scenario::mobile(), 60_000.0);
    for policy in PolicyKind::ALL {
        let a = run(&s, policy, 7);
        let b = run(&s, policy, 7);
        assert_eq!(a, b, "{policy:?}");
        let c = run(&s, policy, 8);
        assert_ne!(
            a.error_ms, c.error_ms,
            "{policy:?}: the seed changes nothing"
        );
    }
}

#[test]
fn on_a_lan_videosync_keeps_clients_within_tens_of_ms_and_far_closer_than_the_baselines() {
    let rows = run_all(&short(Scenario::lan(), 50_000.0), 1);
    let vs = by_policy(&rows, "videosync");
    assert!(vs.error_ms.n > 1000, "steady samples were taken: {vs:?}");
    assert!(vs.pairwise_ms.p50 < 20.0, "{vs:?}");
    assert!(vs.error_ms.p95 < 20.0, "{vs:?}");
    assert!(vs.pairwise_ms.p99 < 60.0, "{vs:?}");
    for baseline in ["syncplay", "cytube"] {
        let b = by_policy(&rows, baseline);
        assert!(
            b.error_ms.p99 > 5.0 * vs.error_ms.p99,
            "{baseline} {:?} vs videosync {:?}",
            b.error_ms,
            vs.error_ms
        );
    }
}

#[test]
fn videosync_never_nudges_beyond_five_percent_and_jellyfin_does() {
    for s in Scenario::all() {
        let s = short(s, 40_000.0);
        let vs = run(&s, PolicyKind::Videosync, 3);
        assert!(vs.max_rate_deviation() <= 0.05 + 1e-9, "{}: {vs:?}", s.name);
        assert!(
            vs.corrective_rate_s > 0.0 || s.name == "coarse-player",
            "{}",
            s.name
        );
    }
    let jf = run(
        &short(Scenario::broadband(), 40_000.0),
        PolicyKind::Jellyfin,
        3,
    );
    assert!(
        jf.max_rate_deviation() > 0.05,
        "Jellyfin's 1 + diff/1000: {jf:?}"
    );
}

#[test]
fn a_stalling_member_is_caught_up() {
    // The 2.5 s stall at 85 s leaves client 2 far behind; until the seek
    // at 95 s it must be back within the bound.
    let s = short(Scenario::broadband(), 95_000.0);
    let m = run(&s, PolicyKind::Videosync, 1);
    assert!(m.stalls >= 1, "{m:?}");
    assert!(m.stalls > m.catchup_unconverged, "{m:?}");
    assert!(m.catchup_max_ms < 5000.0, "{m:?}");
    assert!(m.seeks >= 1, "a 2.5 s lag is fixed by seeking: {m:?}");
    // CyTube never gets a lagging client within 20 ms.
    let cy = run(&s, PolicyKind::Cytube, 1);
    assert_eq!(cy.catchup_unconverged, cy.stalls, "{cy:?}");
}

#[test]
fn an_asymmetric_path_shows_in_the_error_and_stays_near_its_bound() {
    let s = short(Scenario::asymmetric(), 50_000.0);
    let m = run(&s, PolicyKind::Videosync, 1);
    assert_eq!(m.bound_ms, 40.0);
    // Half the clients are off by about half the asymmetry (20 ms): the
    // median error is well above the LAN's, and the pairwise stays within
    // the asymmetry plus the dead zones.
    assert!(m.error_ms.p95 > 15.0, "{m:?}");
    assert!(m.pairwise_ms.p50 < 20.0 + 40.0, "{m:?}");
}
