//! What a run measures.
//!
//! Every [`SAMPLE_MS`] of server time, once media is loaded, the simulator
//! compares each joined client's true (on-screen) position with the
//! *ideal* position, the room's timeline (`Room::playback_at(t)`), and
//! the clients with each other.
//!
//! - **Steady state** excludes every disturbance and [`SETTLE_MS`] after
//!   it: a state (play, pause, seek, rate, load) from when the room
//!   scheduled it until `SETTLE_MS` after its `at_ms` (a client may start a
//!   seek before `at_ms` so as to land on time: the on-screen jump happens
//!   in that window, and shows in the all-samples pairwise figure), and a
//!   join (for everyone); and, for the stalling client alone, its
//!   stall and its recovery (below). Error percentiles are over the
//!   steady samples of each client; pairwise ones are over the largest
//!   difference among the steady clients of each sample.
//! - **Convergence** after a play, a seek (or load) or a join: the time
//!   from the event until every joined client is within the bound (20 ms
//!   plus half the scenario's asymmetry) of the ideal and stays there for
//!   [`STAY_MS`] (2 s); a client stalled or recovering from a stall
//!   (below) is left out until it is back within the bound, as in the
//!   steady state (a room that gives up waiting for it resumes without it,
//!   and its recovery is its catch-up). **Catch-up** after a stall is
//!   the same for the stalled client alone, and that client is out of the
//!   steady state from the start of its stall until it is back within the
//!   bound (its recovery shows in the catch-up figures instead). An event followed by another
//!   disturbance within [`MIN_WINDOW_MS`] (a seek storm) is not judged on
//!   its own; one whose window ends with a client still outside the bound
//!   is *unconverged*.
//! - **Rates**: the time each client plays at a corrective rate, the
//!   smallest and largest factor over the room's rate it used, and the
//!   rate changes that took effect per minute per client in steady state.
//! - **Click-to-effect**: from a play or pause command leaving a client
//!   until every client is within the bound of the new state (the first
//!   sample at or after its `at_ms`); seeks apart (a seek outside the
//!   buffer fetches a segment first).
//! - Joins are judged for convergence apart from the other events (a
//!   joiner's first seek fetches).
//! - **Waits** (a room that waits for buffering members): how often the
//!   group started waiting, how many members it gave up on at the timeout,
//!   and the largest spread among the members not waited for while the
//!   group was paused for a wait (from [`WAIT_SETTLE_MS`] after the pause
//!   took effect, and only while that pause is the state in force and no
//!   other change is scheduled: a seek during the wait is a jump, measured
//!   by convergence, and a client may cue it early): whether everyone
//!   stopped at one position.

use serde::Serialize;

use crate::state::Playback;

use super::policy;

/// Sampling period, ms of server time.
pub const SAMPLE_MS: f64 = 10.0;
/// How long every client must stay within the bound for an event to count
/// as converged.
pub const STAY_MS: f64 = 2000.0;

/// One client at one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ClientSample {
    /// The true (on-screen) position.
    pub(crate) position_ms: f64,
    /// Stalled.
    pub(crate) stalled: bool,
    /// The corrective rate factor, if one is applied.
    pub(crate) factor: Option<f64>,
    /// Rate changes that took effect so far.
    pub(crate) rate_changes: u64,
}
/// Window after a disturbance left out of the steady state.
pub const SETTLE_MS: f64 = 3000.0;
/// Shortest window in which convergence is judged.
pub const MIN_WINDOW_MS: f64 = 2000.0;
/// Time after a pause for a wait takes effect before the spread of the
/// paused members is measured: their players' pause actuation, and the
/// seek each client's drift controller makes to the exact paused position
/// (after a few reports) when its player stopped a little off it.
pub const WAIT_SETTLE_MS: f64 = 1000.0;

/// Percentiles of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Number of samples (all zero when none).
    pub n: usize,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values`.
    pub fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        let at = |p: f64| {
            if values.is_empty() {
                return 0.0;
            }
            let rank = (p * values.len() as f64).ceil() as usize;
            values
                .get(rank.saturating_sub(1).min(values.len() - 1))
                .copied()
                .unwrap_or(0.0)
        };
        Percentiles {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            n: values.len(),
        }
    }
}

/// The result of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// The scenario.
    pub scenario: String,
    /// The policy.
    pub policy: String,
    /// The seed.
    pub seed: u64,
    /// The accuracy bound: 20 ms plus half the scenario's asymmetry.
    pub bound_ms: f64,
    /// |client - ideal| in steady state, ms.
    pub error_ms: Percentiles,
    /// Largest pairwise difference among clients in steady state, ms.
    pub pairwise_ms: Percentiles,
    /// Largest pairwise difference over every sample, ms.
    pub pairwise_all_ms: Percentiles,
    /// Events (play, seek, load) judged for convergence.
    pub events: usize,
    /// Of those, events whose window ended with a client out of bounds.
    pub unconverged: usize,
    /// Longest convergence among the converged events, ms.
    pub convergence_max_ms: f64,
    /// Median convergence among the converged events, ms.
    pub convergence_p50_ms: f64,
    /// Stalls judged for catch-up.
    pub stalls: usize,
    /// Of those, stalls whose window ended with the client still out of
    /// bounds.
    pub catchup_unconverged: usize,
    /// Longest catch-up after a stall among those that caught up, ms.
    pub catchup_max_ms: f64,
    /// Corrective seeks, all clients.
    pub seeks: u64,
    /// Commands the room refused (stale seeks of the storm).
    pub rejected: u64,
    /// Client-seconds at a corrective rate.
    pub corrective_rate_s: f64,
    /// Fraction of client-time (while playing) at a corrective rate.
    pub corrective_rate_fraction: f64,
    /// Smallest corrective rate factor used (1 if none).
    pub min_rate_factor: f64,
    /// Largest corrective rate factor used (1 if none).
    pub max_rate_factor: f64,
    /// Times the group started waiting for buffering members.
    pub group_waits: usize,
    /// Members the group stopped waiting for at the timeout.
    pub wait_timeouts: usize,
    /// Largest spread among the members not waited for while the group was
    /// paused for a wait, ms (0 if it never was).
    pub wait_pause_spread_ms: f64,
    /// Rate changes per minute per client, in steady state.
    pub rate_changes_per_min: f64,
    /// Click-to-effect latency of play and pause commands, ms.
    pub click_to_effect_ms: Percentiles,
    /// Click-to-effect latency of seek commands, ms (a seek outside the
    /// buffer fetches a segment first).
    pub seek_to_effect_ms: Percentiles,
    /// Joins judged for convergence (not among `events`).
    pub joins: usize,
    /// Of those, joins whose window ended with a client out of bounds.
    pub join_unconverged: usize,
    /// Longest convergence after a join, ms.
    pub join_convergence_max_ms: f64,
    /// Commands a client sent for player events it caused itself (echoes;
    /// must be 0).
    pub echo_commands: u64,
    /// Frames the wire refused (must be 0).
    pub wire_errors: u64,
}

impl Metrics {
    /// Largest distance of a corrective rate from the room's, as a
    /// fraction (0.05: 5 %).
    pub fn max_rate_deviation(&self) -> f64 {
        (self.max_rate_factor - 1.0)
            .abs()
            .max((1.0 - self.min_rate_factor).abs())
    }
}

/// Collects samples during a run.
#[derive(Debug)]
pub(crate) struct Recorder {
    bound_ms: f64,
    stalls: Vec<(usize, f64, f64)>,
    /// (start, end) of every disturbance: from when a change was scheduled
    /// (or a client joined) to when it took effect.
    disturbances: Vec<(f64, f64)>,
    /// (time, is a join) of every event judged for convergence.
    events: Vec<(f64, bool)>,
    /// Per stalling client: recovering since the end of its stall (out of
    /// the steady state until back within the bound).
    recovering: Vec<bool>,
    /// (t, client, error) of the clients that stall.
    stall_errors: Vec<(f64, usize, f64)>,
    last_state: Option<Playback>,
    errors: Vec<f64>,
    pairwise: Vec<f64>,
    pairwise_all: Vec<f64>,
    worst: Vec<(f64, f64)>,
    playing_ms: f64,
    corrective_ms: f64,
    min_factor: f64,
    max_factor: f64,
    pub(crate) rejected: u64,
    waiting: bool,
    /// The `seq` of every state that pauses without moving the position.
    plain_pauses: Vec<u64>,
    group_waits: usize,
    pub(crate) wait_timeouts: usize,
    wait_pause_spread: f64,
    /// Per client: rate changes at the previous sample.
    last_changes: Vec<Option<u64>>,
    steady_changes: u64,
    steady_client_ms: f64,
    /// (command send time, the state's at_ms, a seek).
    clicks: Vec<(f64, f64, bool)>,
}

impl Recorder {
    pub(crate) fn new(bound_ms: f64, stalls: Vec<(usize, f64, f64)>) -> Self {
        let clients = stalls.iter().map(|s| s.0 + 1).max().unwrap_or(0);
        Recorder {
            bound_ms,
            stalls,
            disturbances: Vec::new(),
            events: Vec::new(),
            recovering: vec![false; clients],
            stall_errors: Vec::new(),
            last_state: None,
            errors: Vec::new(),
            pairwise: Vec::new(),
            pairwise_all: Vec::new(),
            worst: Vec::new(),
            playing_ms: 0.0,
            corrective_ms: 0.0,
            min_factor: 1.0,
            max_factor: 1.0,
            rejected: 0,
            waiting: false,
            plain_pauses: Vec::new(),
            group_waits: 0,
            wait_timeouts: 0,
            wait_pause_spread: 0.0,
            last_changes: Vec::new(),
            steady_changes: 0,
            steady_client_ms: 0.0,
            clicks: Vec::new(),
        }
    }

    /// A play, pause or seek command sent at `sent` (true time) was
    /// scheduled for `at_ms`.
    pub(crate) fn on_click(&mut self, sent: f64, at_ms: f64, seek: bool) {
        self.clicks.push((sent, at_ms, seek));
    }

    /// The room published its wait list.
    pub(crate) fn on_waiting(&mut self, members: &[crate::state::MemberId]) {
        if !self.waiting && !members.is_empty() {
            self.group_waits += 1;
        }
        self.waiting = !members.is_empty();
    }

    /// The room scheduled `p` at `now`.
    pub(crate) fn on_state(&mut self, p: &Playback, now: f64) {
        self.disturbances.push((now.min(p.at_ms), p.at_ms));

        let judged = match &self.last_state {
            None => true,
            Some(prev) => policy::jumps_for_metrics(p, prev) || (p.playing && !prev.playing),
        };
        if judged {
            self.events.push((p.at_ms, false));
        }
        if self
            .last_state
            .as_ref()
            .is_some_and(|prev| prev.playing && !p.playing && !policy::jumps_for_metrics(p, prev))
        {
            self.plain_pauses.push(p.seq);
        }
        self.last_state = Some(p.clone());
    }

    /// A user acted on a player at `t` (a seek made on the player jumps it
    /// before the room has scheduled anything): out of the steady state for
    /// the settling time, not an event of its own.
    pub(crate) fn on_user(&mut self, t: f64) {
        self.disturbances.push((t, t));
    }

    /// A client joined at `t`.
    pub(crate) fn on_join(&mut self, t: f64) {
        self.disturbances.push((t, t));
        self.events.push((t, true));
    }

    fn settling(&self, t: f64) -> bool {
        self.disturbances
            .iter()
            .any(|(start, end)| *start <= t && t < end + SETTLE_MS)
    }

    /// Whether client `c` is stalled, or recovering from a stall, at `t`
    /// with error `err`.
    fn stalled(&mut self, c: usize, t: f64, err: f64) -> bool {
        let Some(recovering) = self.recovering.get_mut(c) else {
            return false;
        };
        let mut has_stalls = false;
        for (s, a, b) in &self.stalls {
            if *s != c {
                continue;
            }
            has_stalls = true;
            if *a <= t && t < *b {
                *recovering = true;
                return true;
            }
        }
        if has_stalls {
            self.stall_errors.push((t, c, err));
        }
        if *recovering && err <= self.bound_ms {
            *recovering = false;
        }
        *recovering
    }

    /// One sample: each client's (position, stalled, corrective factor) if
    /// it joined, and the clients the room is waiting for.
    pub(crate) fn sample(
        &mut self,
        t: f64,
        ideal: &Playback,
        clients: &[Option<ClientSample>],
        waiting: &[usize],
    ) {
        if self.last_changes.len() < clients.len() {
            self.last_changes.resize(clients.len(), None);
        }
        if ideal.media.is_none() {
            return;
        }
        if !waiting.is_empty()
            && self.plain_pauses.contains(&ideal.seq)
            && t >= ideal.at_ms + WAIT_SETTLE_MS
            && !self.settling(t)
        {
            let paused: Vec<f64> = clients
                .iter()
                .enumerate()
                .filter(|(c, _)| !waiting.contains(c))
                .filter_map(|(_, client)| client.map(|c| c.position_ms))
                .collect();
            if let Some(s) = spread(&paused) {
                self.wait_pause_spread = self.wait_pause_spread.max(s);
            }
        }
        let ideal_pos = ideal.position_at(t);
        let settling = self.settling(t);
        let mut steady = Vec::new();
        let mut all = Vec::new();
        let mut worst: f64 = 0.0;
        for (c, client) in clients.iter().enumerate() {
            let Some(sample) = client else {
                continue;
            };
            let pos = &sample.position_ms;
            let factor = &sample.factor;
            let err = (pos - ideal_pos).abs();
            all.push(*pos);
            let stalled = self.stalled(c, t, err);
            if !stalled {
                worst = worst.max(err);
            }
            let previous = self.last_changes.get(c).copied().flatten();
            if let Some(slot) = self.last_changes.get_mut(c) {
                *slot = Some(sample.rate_changes);
            }
            if !settling && !stalled {
                self.errors.push(err);
                steady.push(*pos);
                if ideal.playing {
                    self.steady_client_ms += SAMPLE_MS;
                    if let Some(prev) = previous {
                        self.steady_changes += sample.rate_changes.saturating_sub(prev);
                    }
                }
            }
            if ideal.playing {
                self.playing_ms += SAMPLE_MS;
                if let Some(f) = factor {
                    self.corrective_ms += SAMPLE_MS;
                    self.min_factor = self.min_factor.min(*f);
                    self.max_factor = self.max_factor.max(*f);
                }
            }
        }
        if let Some(spread) = spread(&steady) {
            self.pairwise.push(spread);
        }
        if let Some(spread) = spread(&all) {
            self.pairwise_all.push(spread);
        }
        self.worst.push((t, worst));
    }

    pub(crate) fn finish(
        self,
        scenario: &str,
        policy: &str,
        seed: u64,
        seeks: u64,
        duration_ms: f64,
    ) -> Metrics {
        // The window of an event at `e` ends when the first disturbance
        // that takes effect after `e` starts (which may be before `e`: a
        // change scheduled before the event took effect supersedes it).
        let mut disturbances = self.disturbances.clone();
        disturbances.extend(self.stalls.iter().map(|s| (s.1, s.1)));
        let window_end = |e: f64| {
            disturbances
                .iter()
                .filter(|d| d.1 > e)
                .map(|d| d.0)
                .fold(duration_ms, f64::min)
        };
        let mut events = self.events.clone();
        events.sort_by(|a, b| a.0.total_cmp(&b.0));
        events.dedup_by(|a, b| a.0 == b.0);
        let mut judged = 0;
        let mut unconverged = 0;
        let mut times = Vec::new();
        let mut join_judged = 0;
        let mut join_unconverged = 0;
        let mut join_times = Vec::new();
        for (e, join) in events {
            let end = window_end(e);
            if end - e < MIN_WINDOW_MS {
                continue;
            }
            let from = self.worst.partition_point(|(t, _)| *t < e);
            let to = self.worst.partition_point(|(t, _)| *t < end);
            let Some(window) = self.worst.get(from..to) else {
                continue;
            };
            if window.is_empty() {
                continue;
            }
            if join {
                join_judged += 1;
            } else {
                judged += 1;
            }
            // The first sample from which every client stays within the
            // bound for STAY_MS (or to the window's end, if that is
            // sooner, but at least MIN_WINDOW_MS was there).
            let mut converged = None;
            let mut run_start: Option<f64> = None;
            for (t, w) in window {
                if *w > self.bound_ms {
                    run_start = None;
                    continue;
                }
                let start = *run_start.get_or_insert(*t);
                if *t - start >= STAY_MS - SAMPLE_MS {
                    converged = Some(start);
                    break;
                }
            }
            if converged.is_none() {
                converged = run_start.filter(|s| end - s >= STAY_MS.min(end - e));
            }
            match (converged, join) {
                (Some(t), false) => times.push(t - e),
                (Some(t), true) => join_times.push(t - e),
                (None, false) => unconverged += 1,
                (None, true) => join_unconverged += 1,
            }
        }
        // Click-to-effect: from the command to the first sample at or after
        // the state's instant with every client within the bound.
        let mut clicks = Vec::new();
        let mut seek_clicks = Vec::new();
        for (sent, at, seek) in &self.clicks {
            let from = self.worst.partition_point(|(t, _)| t < at);
            if let Some((t, _)) = self
                .worst
                .get(from..)
                .unwrap_or(&[])
                .iter()
                .find(|(_, w)| *w <= self.bound_ms)
            {
                if *seek {
                    seek_clicks.push(t - sent);
                } else {
                    clicks.push(t - sent);
                }
            }
        }
        let conv = Percentiles::of(times.clone());
        // Catch-up: from the end of each stall until the stalled client is
        // within the bound and stays there until the next disturbance.
        let mut catchups = Vec::new();
        let mut catchup_unconverged = 0;
        let mut stalls_judged = 0;
        for (c, _, e) in &self.stalls {
            let end = window_end(*e);
            let window: Vec<(f64, f64)> = self
                .stall_errors
                .iter()
                .filter(|(t, s, _)| s == c && t >= e && *t < end)
                .map(|(t, _, err)| (*t, *err))
                .collect();
            if end - e < MIN_WINDOW_MS || window.is_empty() {
                continue;
            }
            stalls_judged += 1;
            match window.iter().rposition(|(_, w)| *w > self.bound_ms) {
                None => catchups.push(0.0),
                Some(i) if i + 1 == window.len() => catchup_unconverged += 1,
                Some(i) => catchups.push(window.get(i + 1).map_or(end, |s| s.0) - e),
            }
        }
        Metrics {
            scenario: scenario.to_string(),
            policy: policy.to_string(),
            seed,
            bound_ms: self.bound_ms,
            error_ms: Percentiles::of(self.errors),
            pairwise_ms: Percentiles::of(self.pairwise),
            pairwise_all_ms: Percentiles::of(self.pairwise_all),
            events: judged,
            unconverged,
            convergence_max_ms: times.iter().copied().fold(0.0, f64::max),
            convergence_p50_ms: conv.p50,
            stalls: stalls_judged,
            catchup_unconverged,
            catchup_max_ms: catchups.iter().copied().fold(0.0, f64::max),
            seeks,
            rejected: self.rejected,
            corrective_rate_s: self.corrective_ms / 1000.0,
            corrective_rate_fraction: if self.playing_ms > 0.0 {
                self.corrective_ms / self.playing_ms
            } else {
                0.0
            },
            min_rate_factor: self.min_factor,
            max_rate_factor: self.max_factor,
            group_waits: self.group_waits,
            wait_timeouts: self.wait_timeouts,
            wait_pause_spread_ms: self.wait_pause_spread,
            rate_changes_per_min: if self.steady_client_ms > 0.0 {
                self.steady_changes as f64 / (self.steady_client_ms / 60_000.0)
            } else {
                0.0
            },
            click_to_effect_ms: Percentiles::of(clicks),
            seek_to_effect_ms: Percentiles::of(seek_clicks),
            joins: join_judged,
            join_unconverged,
            join_convergence_max_ms: join_times.iter().copied().fold(0.0, f64::max),
            echo_commands: 0,
            wire_errors: 0,
        }
    }
}

fn spread(positions: &[f64]) -> Option<f64> {
    if positions.len() < 2 {
        return None;
    }
    let max = positions.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = positions.iter().copied().fold(f64::INFINITY, f64::min);
    Some(max - min)
}

/// The results as a Markdown table, one row per run.
///
/// In a scenario with path asymmetry the pairwise p99 is shown beside its
/// bound (20 ms plus half the asymmetry).
pub fn markdown_table(rows: &[Metrics]) -> String {
    let mut out = String::from(
        "| scenario | policy | error p50 / p95 / p99 (ms) | pairwise p50 / p95 / p99 (ms) | bound (ms) | pairwise p99, all samples (ms) | convergence p50 / max (ms) | unconverged | click-to-effect p50 / p95 (ms) | rate changes / min | rate factors | seeks | echo commands |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for m in rows {
        let bound = if m.bound_ms > 20.0 {
            format!("**{:.0}** (20 + asym/2)", m.bound_ms)
        } else {
            format!("{:.0}", m.bound_ms)
        };
        out.push_str(&format!(
            "| {} | {} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {} | {:.0} | {} | {} of {} | {:.0} / {:.0} | {:.1} | {:.3}..{:.3} | {} | {} |\n",
            m.scenario,
            m.policy,
            m.error_ms.p50,
            m.error_ms.p95,
            m.error_ms.p99,
            m.pairwise_ms.p50,
            m.pairwise_ms.p95,
            m.pairwise_ms.p99,
            bound,
            m.pairwise_all_ms.p99,
            if m.unconverged < m.events {
                format!("{:.0} / {:.0}", m.convergence_p50_ms, m.convergence_max_ms)
            } else {
                "never".to_string()
            },
            m.unconverged,
            m.events,
            m.click_to_effect_ms.p50,
            m.click_to_effect_ms.p95,
            m.rate_changes_per_min,
            m.min_rate_factor,
            m.max_rate_factor,
            m.seeks,
            m.echo_commands,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p95, p.p99, p.n), (50.0, 95.0, 99.0, 100));
        assert_eq!(Percentiles::of(Vec::new()).p99, 0.0);
    }
}
