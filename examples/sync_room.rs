//! A small simulated room: five viewers on home broadband, one of them on
//! a lossy mobile link (RTT 400 ms, 50 % jitter, 1 s spikes), ten minutes,
//! run under videosync (the engine's client session) and the baseline
//! rows (Jellyfin SyncPlay default and with correction, Syncplay, CyTube);
//! prints the table.
//!
//! ```text
//! cargo run --release --example sync_room
//! ```
// An example reports on stdout.
#![allow(clippy::print_stdout)]

use videosync::sync::sim::{metrics::markdown_table, run_all, scenario::Scenario};

fn main() {
    let scenario = Scenario::one_bad_link();
    println!(
        "{} clients, {:.0} s session, client 1 on a bad link; errors against the room's timeline:\n",
        scenario.clients,
        scenario.duration_ms / 1000.0
    );
    let rows = run_all(&scenario, 1);
    println!("{}", markdown_table(&rows));
}
