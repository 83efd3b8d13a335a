//! NTP-style estimation of the server clock, seen from a client.
//!
//! A client pings the server and gets back four timestamps per round trip:
//! `t0` (client sends, local clock), `t1` (server receives, server clock),
//! `t2` (server replies, server clock) and `t3` (client receives, local
//! clock). From them:
//!
//! - offset = ((t1 - t0) + (t2 - t3)) / 2, so that `server = local + offset`;
//! - round-trip time = (t3 - t0) - (t2 - t1).
//!
//! Whatever the asymmetry of the link, a sample's offset is wrong by at most
//! half its round-trip time, and queuing only ever adds delay, so the samples
//! with the lowest RTT are the most trustworthy. [`OffsetEstimator`]:
//!
//! - keeps a sliding window of samples and estimates the offset from its
//!   lowest-RTT ones (those over twice the best RTT left out), each carried
//!   forward to now along the skew; until the skew is known (the first
//!   minute), a sample's bound also grows by the largest plausible skew
//!   ([`ClockConfig::max_skew_ppm`]) times its age, so recent samples are
//!   preferred over the join burst and the reported uncertainty covers
//!   what the unknown skew can do;
//! - fits the skew (the drift rate of one clock against the other) by least
//!   squares through the lowest-RTT sample of each 30 s block over the last
//!   ten minutes: a longer baseline than the window, so a few ms of noise
//!   make a few ppm, and [`server_time`](OffsetEstimator::server_time)
//!   extrapolates between pings;
//! - bounds how far the estimate moves per sample, unless the move persists;
//! - checks every sample against the estimate: one that disagrees by more
//!   than its own RTT / 2 plus the estimate's uncertainty is held aside, and
//!   several in a row that agree with each other are a real clock step, taken
//!   at once.
//!
//! It also tells the client when to ping: a quick burst on join, then slow
//! polling ([`OffsetEstimator::next_ping_at`]).
//!
//! The JavaScript twin (`js/videosync-sync.js`) implements the same
//! arithmetic in the same order; the shared vectors in `vectors/clock.json`
//! hold both to the same outputs.
//!
//! # Examples
//!
//! ```
//! use videosync_sync::clock::{ClockConfig, OffsetEstimator, SampleOutcome};
//!
//! let mut est = OffsetEstimator::new(ClockConfig::default());
//! // The server clock is 1000 ms ahead; 20 ms each way, 1 ms in the server.
//! assert_eq!(est.next_ping_at(0.0), 0.0, "ping at once on join");
//! est.on_ping_sent(0.0);
//! let outcome = est.add_sample(0.0, 1020.0, 1021.0, 41.0);
//! assert_eq!(outcome, SampleOutcome::Accepted);
//! assert_eq!(est.offset_ms(), 1000.0);
//! assert_eq!(est.uncertainty_ms(), 20.0);
//! assert_eq!(est.server_time(100.0), 1100.0);
//! assert_eq!(est.next_ping_at(41.0), 200.0, "warm-up burst");
//! ```

use std::cmp::Ordering;
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Tuning of an [`OffsetEstimator`]. Field names are the same in the
/// JavaScript twin and in the JSON vectors.
///
/// Out-of-range values are replaced when the estimator is built: counts are
/// clamped into range, and a negative or non-finite duration falls back to
/// its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockConfig {
    /// Samples kept in the sliding window (default 32: with
    /// [`poll_interval_ms`](Self::poll_interval_ms) of 2 s, about a minute;
    /// the skew is fitted over a longer baseline, see
    /// [`skew_blocks`](Self::skew_blocks)).
    pub window: usize,
    /// How many of the lowest-RTT samples of the window the estimate is fitted
    /// to (default 6: enough points to fit a slope, few enough that all of
    /// them are near the best RTT).
    pub best_count: usize,
    /// Samples needed before the estimate counts as warm (default 3).
    pub warm_samples: usize,
    /// A sample with a longer round trip than this is rejected (default
    /// 10 000 ms): it is a stalled connection, not a measurement.
    pub max_rtt_ms: f64,
    /// Once warm, the estimate moves at most this much per sample (default
    /// 5 ms, half the drift controller's dead zone), unless the move persists
    /// for [`step_confirm`](Self::step_confirm) samples.
    pub max_step_ms: f64,
    /// Consecutive samples that must agree before a large move is taken at
    /// once: a clock step (default 3).
    pub step_confirm: usize,
    /// Slack added to the consistency bound of a sample (its RTT / 2 plus the
    /// estimate's uncertainty) before it counts as disagreeing with the
    /// estimate (default 10 ms: covers skew error between pings).
    pub step_margin_ms: f64,
    /// Skew is fitted to the lowest-RTT sample of each block of this much
    /// local time (default 30 000 ms: three polls).
    pub skew_block_ms: f64,
    /// Blocks kept for the skew fit (default 20: ten minutes, so that 2 ms
    /// of noise make about 1 ppm).
    pub skew_blocks: usize,
    /// The blocks must span at least this much local time before a slope is
    /// fitted through them (default 60 000 ms); until then the previous skew
    /// (initially zero) is kept.
    pub min_skew_span_ms: f64,
    /// Fitted skew is clamped to this many parts per million either way
    /// (default 500: quartz is within ±100 ppm, so a real pair of clocks is
    /// within ±200).
    pub max_skew_ppm: f64,
    /// Pings sent quickly on join (default 5).
    pub warmup_pings: u32,
    /// Interval of the quick pings (default 200 ms: warm within a second).
    pub warmup_interval_ms: f64,
    /// Interval of the slow pings once warm (default 2000 ms: on a path
    /// with 30 % jitter the best of a minute of pings at 2 s halves the
    /// clock error of the best of 2.5 minutes at 10 s in the simulator, for
    /// one small message every 2 s).
    pub poll_interval_ms: f64,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            window: 32,
            best_count: 6,
            warm_samples: 3,
            max_rtt_ms: 10_000.0,
            max_step_ms: 5.0,
            step_confirm: 3,
            step_margin_ms: 10.0,
            skew_block_ms: 30_000.0,
            skew_blocks: 20,
            min_skew_span_ms: 60_000.0,
            max_skew_ppm: 500.0,
            warmup_pings: 5,
            warmup_interval_ms: 200.0,
            poll_interval_ms: 2000.0,
        }
    }
}

impl ClockConfig {
    /// The same configuration with every value brought into range.
    fn sanitized(&self) -> Self {
        let d = ClockConfig::default();
        let window = self.window.max(1);
        ClockConfig {
            window,
            best_count: self.best_count.clamp(1, window),
            warm_samples: self.warm_samples.clamp(1, window),
            max_rtt_ms: non_negative_or(self.max_rtt_ms, d.max_rtt_ms),
            max_step_ms: non_negative_or(self.max_step_ms, d.max_step_ms),
            step_confirm: self.step_confirm.clamp(1, window),
            step_margin_ms: non_negative_or(self.step_margin_ms, d.step_margin_ms),
            skew_block_ms: non_negative_or(self.skew_block_ms, d.skew_block_ms),
            skew_blocks: self.skew_blocks.max(1),
            min_skew_span_ms: non_negative_or(self.min_skew_span_ms, d.min_skew_span_ms),
            max_skew_ppm: non_negative_or(self.max_skew_ppm, d.max_skew_ppm),
            warmup_pings: self.warmup_pings,
            warmup_interval_ms: non_negative_or(self.warmup_interval_ms, d.warmup_interval_ms),
            poll_interval_ms: non_negative_or(self.poll_interval_ms, d.poll_interval_ms),
        }
    }
}

fn non_negative_or(value: f64, default: f64) -> f64 {
    if value.is_finite() && value >= 0.0 {
        value
    } else {
        default
    }
}

/// What [`OffsetEstimator::add_sample`] did with a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleOutcome {
    /// Not a possible measurement (non-finite, negative or overlong round
    /// trip, time running backwards); nothing changed.
    Rejected,
    /// Consistent with the estimate; added to the window.
    Accepted,
    /// Disagrees with the estimate beyond its error bound; held aside until
    /// more samples say whether the clock stepped.
    Suspect,
    /// Confirmed a clock step: the window now holds only the samples taken
    /// since the step, and the estimate jumped to them.
    Step,
}

/// One measurement: the offset seen around local time `local_ms`.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Midpoint of the round trip on the local clock.
    local_ms: f64,
    offset_ms: f64,
    rtt_ms: f64,
    /// Arrival order, to break RTT ties towards the newer sample.
    seq: u64,
}

/// Estimates a server clock from four-timestamp pings: offset, skew and
/// their uncertainty, and when to ping next.
///
/// The estimate is a line: at local time `t`, the server's clock reads
/// `t + offset_ms() + skew * (t - anchor)`, where the anchor is the local
/// time of the latest accepted sample. See the [module docs](self) for the
/// algorithm.
#[derive(Debug, Clone)]
pub struct OffsetEstimator {
    config: ClockConfig,
    samples: VecDeque<Sample>,
    /// Samples that disagree with the estimate, oldest first.
    suspects: Vec<Sample>,
    has_estimate: bool,
    offset_ms: f64,
    anchor_ms: f64,
    /// Skew as a ratio (server ms gained per local ms).
    skew: f64,
    /// Whether a skew was ever fitted. Until then the skew is taken as
    /// zero, and an old sample may be off by up to `max_skew_ppm` times
    /// its age.
    skew_known: bool,
    /// Until the skew is known, the largest error bound of the samples the
    /// offset was fitted to (RTT / 2 plus `max_skew_ppm` times their age at
    /// the fit); zero once it is known (or when no skew is allowed).
    fit_bound_ms: f64,
    /// How far the offset was held back from the fit by `max_step_ms`.
    held_back_ms: f64,
    /// Lowest-RTT sample of each closed skew block, oldest first.
    blocks: VecDeque<Sample>,
    /// Lowest-RTT sample of the open skew block.
    block: Option<Sample>,
    block_start_ms: f64,
    /// Consecutive samples whose fit wanted a larger move than `max_step_ms`.
    lagging: usize,
    next_seq: u64,
    pings_sent: u32,
    last_ping_ms: Option<f64>,
}

impl OffsetEstimator {
    /// An estimator with no samples yet: offset zero, uncertainty infinite.
    pub fn new(config: ClockConfig) -> Self {
        OffsetEstimator {
            config: config.sanitized(),
            samples: VecDeque::new(),
            suspects: Vec::new(),
            has_estimate: false,
            offset_ms: 0.0,
            anchor_ms: 0.0,
            skew: 0.0,
            skew_known: false,
            fit_bound_ms: 0.0,
            held_back_ms: 0.0,
            blocks: VecDeque::new(),
            block: None,
            block_start_ms: 0.0,
            lagging: 0,
            next_seq: 0,
            pings_sent: 0,
            last_ping_ms: None,
        }
    }

    /// The configuration in force (after out-of-range values were replaced).
    pub fn config(&self) -> &ClockConfig {
        &self.config
    }

    /// Feeds one round trip: `t0` client send and `t3` client receive on the
    /// local clock, `t1` server receive and `t2` server send on the server's.
    ///
    /// A sample that cannot be a measurement is [`SampleOutcome::Rejected`]
    /// and changes nothing.
    pub fn add_sample(&mut self, t0: f64, t1: f64, t2: f64, t3: f64) -> SampleOutcome {
        let rtt_ms = (t3 - t0) - (t2 - t1);
        let offset_ms = ((t1 - t0) + (t2 - t3)) / 2.0;
        let local_ms = (t0 + t3) / 2.0;
        let sane = rtt_ms.is_finite()
            && offset_ms.is_finite()
            && local_ms.is_finite()
            && t3 >= t0
            && t2 >= t1
            && rtt_ms >= 0.0
            && rtt_ms <= self.config.max_rtt_ms;
        if !sane {
            return SampleOutcome::Rejected;
        }
        let sample = Sample {
            local_ms,
            offset_ms,
            rtt_ms,
            seq: self.next_seq,
        };
        self.next_seq += 1;

        if !self.has_estimate {
            self.samples.push_back(sample);
            self.note_block(sample);
            self.offset_ms = self.refit(local_ms);
            self.anchor_ms = local_ms;
            self.has_estimate = true;
            return SampleOutcome::Accepted;
        }

        let predicted = self.offset_ms + self.skew * (local_ms - self.anchor_ms);
        let bound = rtt_ms / 2.0 + self.uncertainty_ms() + self.config.step_margin_ms;
        if (offset_ms - predicted).abs() > bound {
            return self.suspect(sample);
        }
        // A consistent sample: whatever the suspects were, they were noise.
        self.suspects.clear();

        let was_warm = self.is_warm();
        self.samples.push_back(sample);
        while self.samples.len() > self.config.window {
            self.samples.pop_front();
        }
        self.note_block(sample);
        let raw = self.refit(local_ms);
        let delta = raw - predicted;
        let max_step = self.config.max_step_ms;
        self.held_back_ms = 0.0;
        if !was_warm || delta.abs() <= max_step {
            self.offset_ms = raw;
            self.lagging = 0;
        } else {
            self.lagging += 1;
            if self.lagging >= self.config.step_confirm {
                // The fit has wanted this move for several samples: take it.
                self.offset_ms = raw;
                self.lagging = 0;
            } else if delta > 0.0 {
                self.offset_ms = predicted + max_step;
            } else {
                self.offset_ms = predicted - max_step;
            }
            // The fit is the better estimate: the bound must cover the gap.
            self.held_back_ms = (raw - self.offset_ms).abs();
        }
        self.anchor_ms = local_ms;
        SampleOutcome::Accepted
    }

    /// Holds a disagreeing sample aside; enough agreeing ones are a step.
    fn suspect(&mut self, sample: Sample) -> SampleOutcome {
        if let Some(first) = self.suspects.first() {
            let agree = sample.rtt_ms / 2.0 + first.rtt_ms / 2.0 + self.config.step_margin_ms;
            if (sample.offset_ms - first.offset_ms).abs() > agree {
                self.suspects.clear();
            }
        }
        self.suspects.push(sample);
        if self.suspects.len() < self.config.step_confirm {
            return SampleOutcome::Suspect;
        }
        // The clock stepped: what came before describes another clock.
        // The skew is a property of the oscillators and survives the step.
        let fresh: Vec<Sample> = self.suspects.drain(..).collect();
        self.blocks.clear();
        self.block = None;
        for s in &fresh {
            self.note_block(*s);
        }
        self.samples = fresh.into();
        self.offset_ms = self.refit(sample.local_ms);
        self.anchor_ms = sample.local_ms;
        self.lagging = 0;
        self.held_back_ms = 0.0;
        SampleOutcome::Step
    }

    /// Refits skew and offset after the window changed; returns the
    /// offset the fit gives at local time `at_ms` and stores the skew.
    fn refit(&mut self, at_ms: f64) -> f64 {
        if let Some(skew) = self.fit_skew() {
            self.skew = skew;
            self.skew_known = true;
        }
        self.fit_offset(at_ms)
    }

    /// Keeps the lowest-RTT sample of each `skew_block_ms` of local time:
    /// the points the skew is fitted to, spread over a longer time than the
    /// window so that a few ms of noise make a few ppm, not tens.
    fn note_block(&mut self, sample: Sample) {
        match self.block {
            None => {
                self.block = Some(sample);
                self.block_start_ms = sample.local_ms;
            }
            Some(best) => {
                if sample.local_ms - self.block_start_ms >= self.config.skew_block_ms {
                    self.blocks.push_back(best);
                    while self.blocks.len() > self.config.skew_blocks {
                        self.blocks.pop_front();
                    }
                    self.block = Some(sample);
                    self.block_start_ms = sample.local_ms;
                } else if sample.rtt_ms <= best.rtt_ms {
                    self.block = Some(sample);
                }
            }
        }
    }

    /// Least-squares slope of offset over local time through the block
    /// minima (the open block included); none where they span less than
    /// `min_skew_span_ms`.
    fn fit_skew(&self) -> Option<f64> {
        let points: Vec<Sample> = self.blocks.iter().copied().chain(self.block).collect();
        let points = without_queued(points);
        if points.len() < 2 {
            return None;
        }
        let n = points.len() as f64;
        let mut sum_x = 0.0;
        let mut sum_y = 0.0;
        let mut min_x = f64::INFINITY;
        let mut max_x = f64::NEG_INFINITY;
        for s in &points {
            sum_x += s.local_ms;
            sum_y += s.offset_ms;
            min_x = min_x.min(s.local_ms);
            max_x = max_x.max(s.local_ms);
        }
        if max_x - min_x < self.config.min_skew_span_ms {
            return None;
        }
        let mean_x = sum_x / n;
        let mean_y = sum_y / n;
        let mut sxx = 0.0;
        let mut sxy = 0.0;
        for s in &points {
            let dx = s.local_ms - mean_x;
            sxx += dx * dx;
            sxy += dx * (s.offset_ms - mean_y);
        }
        if sxx <= 0.0 {
            return None;
        }
        let limit = self.config.max_skew_ppm / 1e6;
        Some((sxy / sxx).max(-limit).min(limit))
    }

    /// The offset at local time `at_ms`: the mean of the `best_count`
    /// lowest-RTT samples of the window, each carried forward along the skew.
    ///
    /// Until the skew is known, a sample's error bound is its RTT / 2 plus
    /// `max_skew_ppm` times its age, and the samples are ranked by that
    /// instead: the join burst's low-RTT samples would otherwise hold the
    /// estimate back by skew times their age (a 190 ppm clock, 7 ms at
    /// 40 s). Those whose bound is over twice the best one's are left out,
    /// and the largest bound of those used widens
    /// [`uncertainty_ms`](Self::uncertainty_ms).
    fn fit_offset(&mut self, at_ms: f64) -> f64 {
        let max_skew = if self.skew_known {
            0.0
        } else {
            self.config.max_skew_ppm / 1e6
        };
        let bound = |s: &Sample| s.rtt_ms / 2.0 + max_skew * (at_ms - s.local_ms).abs();
        let mut best: Vec<Sample> = self.samples.iter().copied().collect();
        best.sort_by(|a, b| {
            bound(a)
                .partial_cmp(&bound(b))
                .unwrap_or(Ordering::Equal)
                .then(b.seq.cmp(&a.seq))
        });
        best.truncate(self.config.best_count);
        if max_skew > 0.0 {
            // Within half the best RTT of the best bound: on a LAN that is
            // the latest sample or two, on a long path most of the window.
            let least = best.first().map_or(f64::INFINITY, bound);
            let slack = self.best_rtt_ms() / 2.0;
            best.retain(|s| bound(s) <= least + slack);
        }
        let best = without_queued(best);
        if best.is_empty() {
            return self.offset_ms;
        }
        self.fit_bound_ms = if max_skew > 0.0 {
            best.iter().map(bound).fold(0.0, f64::max)
        } else {
            0.0
        };
        let mut sum = 0.0;
        for s in &best {
            sum += s.offset_ms + self.skew * (at_ms - s.local_ms);
        }
        sum / best.len() as f64
    }

    /// Records that a ping left at local time `local_ms`; drives
    /// [`next_ping_at`](Self::next_ping_at). Non-finite times are ignored.
    pub fn on_ping_sent(&mut self, local_ms: f64) {
        if local_ms.is_finite() {
            self.pings_sent = self.pings_sent.saturating_add(1);
            self.last_ping_ms = Some(local_ms);
        }
    }

    /// The local time the next ping is due: `local_ms` itself before the
    /// first ping; then quick pings ([`ClockConfig::warmup_interval_ms`])
    /// for the first [`ClockConfig::warmup_pings`], while not warm (replies
    /// lost) and while a suspected clock step awaits confirmation; slow
    /// polling ([`ClockConfig::poll_interval_ms`]) otherwise. A due time at
    /// or before now means "send now".
    pub fn next_ping_at(&self, local_ms: f64) -> f64 {
        match self.last_ping_ms {
            None => local_ms,
            Some(last) => {
                let quick = self.pings_sent < self.config.warmup_pings
                    || !self.is_warm()
                    || !self.suspects.is_empty();
                if quick {
                    last + self.config.warmup_interval_ms
                } else {
                    last + self.config.poll_interval_ms
                }
            }
        }
    }

    /// Server clock minus local clock at the latest accepted sample (zero
    /// before the first).
    pub fn offset_ms(&self) -> f64 {
        self.offset_ms
    }

    /// The server's clock at local time `local_ms`, extrapolated along the
    /// estimated skew.
    pub fn server_time(&self, local_ms: f64) -> f64 {
        local_ms + self.offset_ms + self.skew * (local_ms - self.anchor_ms)
    }

    /// How wrong [`offset_ms`](Self::offset_ms) can be: half the lowest RTT
    /// in the window (infinite before the first sample); until the skew is
    /// known, at least the largest bound of the samples used (their RTT / 2
    /// plus what a skew of up to [`ClockConfig::max_skew_ppm`] can have moved
    /// them since); plus how far a smoothed move
    /// ([`ClockConfig::max_step_ms`]) still lags the fit.
    pub fn uncertainty_ms(&self) -> f64 {
        (self.best_rtt_ms() / 2.0).max(self.fit_bound_ms) + self.held_back_ms
    }

    /// The client's one-way delay to the server: half the lowest RTT in the
    /// window (infinite before the first sample). The server schedules
    /// commands far enough ahead to cover its slowest member's.
    pub fn one_way_delay_ms(&self) -> f64 {
        self.best_rtt_ms() / 2.0
    }

    fn best_rtt_ms(&self) -> f64 {
        self.samples
            .iter()
            .map(|s| s.rtt_ms)
            .fold(f64::INFINITY, f64::min)
    }

    /// Rate of the server's clock relative to the local one, in parts per
    /// million (positive: the server's runs fast).
    pub fn skew_ppm(&self) -> f64 {
        self.skew * 1e6
    }

    /// Whether enough samples arrived to trust the estimate
    /// ([`ClockConfig::warm_samples`]).
    pub fn is_warm(&self) -> bool {
        self.samples.len() >= self.config.warm_samples
    }

    /// Samples in the window now.
    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }
}

/// Drops the samples whose round trip is over twice the best one's: they
/// were queued, and their error bound dwarfs the others'. Keeps the order.
fn without_queued(samples: Vec<Sample>) -> Vec<Sample> {
    let best = samples
        .iter()
        .map(|s| s.rtt_ms)
        .fold(f64::INFINITY, f64::min);
    samples
        .into_iter()
        .filter(|s| s.rtt_ms <= best * 2.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random numbers (xorshift64*), so a failing run
    /// replays exactly.
    struct Rng(u64);

    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
            (x >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Exponentially distributed with the given mean: queuing delay.
        fn exp(&mut self, mean: f64) -> f64 {
            -mean * (1.0 - self.uniform()).ln()
        }
    }

    /// A server clock `server = offset + local * (1 + skew_ppm / 1e6)` behind
    /// a link with base delay, exponential jitter and occasional one-sided
    /// spikes.
    struct Link {
        offset: f64,
        skew_ppm: f64,
        base_ms: f64,
        jitter_ms: f64,
        spike_every: f64,
        spike_ms: f64,
        rng: Rng,
    }

    impl Link {
        fn server(&self, local: f64) -> f64 {
            self.offset + local * (1.0 + self.skew_ppm / 1e6)
        }

        fn true_offset(&self, local: f64) -> f64 {
            self.server(local) - local
        }

        fn delay(&mut self) -> f64 {
            let mut d = self.base_ms + self.rng.exp(self.jitter_ms);
            if self.rng.uniform() < 1.0 / self.spike_every {
                d += self.spike_ms * self.rng.uniform();
            }
            d
        }

        /// One ping sent at local `t0`: the four timestamps.
        fn ping(&mut self, t0: f64) -> (f64, f64, f64, f64) {
            let up = self.delay();
            let down = self.delay();
            let t1 = self.server(t0 + up);
            let t2 = t1 + 0.5;
            let t3 = t0 + up + 0.5 + down;
            (t0, t1, t2, t3)
        }
    }

    fn jittery(offset: f64, skew_ppm: f64, seed: u64) -> Link {
        Link {
            offset,
            skew_ppm,
            base_ms: 25.0,
            jitter_ms: 8.0,
            spike_every: 6.0,
            spike_ms: 400.0,
            rng: Rng(seed),
        }
    }

    /// Runs the estimator's own schedule against `link` until `until_ms`,
    /// calling `check` after every sample.
    fn drive(
        est: &mut OffsetEstimator,
        link: &mut Link,
        until_ms: f64,
        mut check: impl FnMut(&OffsetEstimator, &Link, f64),
    ) {
        let mut now = 0.0;
        while now < until_ms {
            now = est.next_ping_at(now).max(now);
            est.on_ping_sent(now);
            let (t0, t1, t2, t3) = link.ping(now);
            est.add_sample(t0, t1, t2, t3);
            check(est, link, t3);
            now = t3;
        }
    }

    #[test]
    fn the_offset_converges_within_the_uncertainty_on_a_jittery_asymmetric_link() {
        for seed in 1..=20 {
            let mut est = OffsetEstimator::new(ClockConfig::default());
            let mut link = jittery(1_234_567.0, 0.0, seed);
            let mut naive_failures = 0;
            drive(&mut est, &mut link, 600_000.0, |est, link, t3| {
                if est.is_warm() {
                    // The latest sample alone would often be further off.
                    let last = est.samples.back().map_or(0.0, |s| s.offset_ms);
                    if (last - link.true_offset(t3)).abs() > est.uncertainty_ms() {
                        naive_failures += 1;
                    }
                    let error = est.server_time(t3) - link.server(t3);
                    assert!(
                        error.abs() <= est.uncertainty_ms() + 1e-9,
                        "seed {seed}: error {error} beyond {}",
                        est.uncertainty_ms()
                    );
                }
            });
            assert!(naive_failures > 0, "seed {seed}: the link is not hostile");
            // By now the best RTT is near twice the base delay.
            assert!(est.uncertainty_ms() < 30.0, "seed {seed}");
        }
    }

    #[test]
    fn a_skew_of_200_ppm_is_tracked_within_a_few_ppm() {
        for seed in 1..=10 {
            let mut est = OffsetEstimator::new(ClockConfig::default());
            let mut link = jittery(-50_000.0, 200.0, seed);
            let mut worst_late_error: f64 = 0.0;
            drive(&mut est, &mut link, 900_000.0, |est, link, t3| {
                if t3 > 300_000.0 {
                    // Between pings the estimate is extrapolated: check it
                    // just before the next one is due.
                    let later = t3 + 10_000.0;
                    let error = est.server_time(later) - link.server(later);
                    worst_late_error = worst_late_error.max(error.abs());
                }
            });
            let skew = est.skew_ppm();
            assert!((skew - 200.0).abs() < 8.0, "seed {seed}: skew {skew} ppm");
            assert!(
                worst_late_error < 8.0,
                "seed {seed}: extrapolated error {worst_late_error} ms"
            );
        }
    }

    #[test]
    fn a_skewed_clock_stays_within_its_uncertainty_before_the_skew_is_fitted() {
        // A LAN (RTT about 3 ms) to a server whose clock runs 190 ppm fast:
        // until the skew is fitted, the join burst's samples are 190 ppm x
        // their age off, 7 ms at 40 s, more than twice the RTT.
        for seed in 1..=10 {
            for skew_ppm in [190.0, -190.0] {
                let mut est = OffsetEstimator::new(ClockConfig::default());
                let mut link = Link {
                    offset: 42_000.0,
                    skew_ppm,
                    base_ms: 1.2,
                    jitter_ms: 0.3,
                    spike_every: 8.0,
                    spike_ms: 50.0,
                    rng: Rng(seed),
                };
                let mut before_fit = Vec::new();
                drive(&mut est, &mut link, 300_000.0, |est, link, t3| {
                    if est.is_warm() {
                        let error = est.server_time(t3) - link.server(t3);
                        assert!(
                            error.abs() <= est.uncertainty_ms() + 1e-9,
                            "seed {seed}, {skew_ppm} ppm at {t3}: error {error} beyond {}",
                            est.uncertainty_ms()
                        );
                        if (30_000.0..60_000.0).contains(&t3) {
                            before_fit.push(error.abs());
                        }
                    }
                });
                // Honest, and also close: recent samples are preferred, so
                // only a delay spike, not the skew, moves the estimate.
                before_fit.sort_by(f64::total_cmp);
                let median = before_fit[before_fit.len() / 2];
                assert!(median < 2.0, "seed {seed}, {skew_ppm} ppm: {before_fit:?}");
                assert!(est.uncertainty_ms() < 5.0, "seed {seed}: skew known");
            }
        }
    }

    #[test]
    fn without_skew_tracking_the_window_would_lag() {
        // The same link with skew pinned to zero: old low-RTT samples hold
        // the estimate back by up to skew * window span (a long one here,
        // 16 pings 10 s apart, so that the lag is plain).
        let config = ClockConfig {
            max_skew_ppm: 0.0,
            window: 16,
            poll_interval_ms: 10_000.0,
            ..ClockConfig::default()
        };
        let mut est = OffsetEstimator::new(config);
        let mut link = jittery(0.0, 200.0, 3);
        drive(&mut est, &mut link, 600_000.0, |_, _, _| {});
        let now = 600_000.0;
        let error = (est.server_time(now) - link.server(now)).abs();
        assert!(
            error > 5.0,
            "error {error} ms: the skew test would prove nothing"
        );
    }

    #[test]
    fn a_clock_step_is_taken_after_confirmation_and_a_single_outlier_is_not() {
        let mut est = OffsetEstimator::new(ClockConfig::default());
        let rtt = 40.0;
        let ping = |est: &mut OffsetEstimator, t0: f64, offset: f64| {
            est.add_sample(t0, t0 + 20.0 + offset, t0 + 20.0 + offset, t0 + rtt)
        };
        for i in 0..8 {
            est.on_ping_sent(i as f64 * 1000.0);
            assert_eq!(
                ping(&mut est, i as f64 * 1000.0, 500.0),
                SampleOutcome::Accepted
            );
        }
        assert_eq!(est.next_ping_at(7040.0), 9000.0, "polling");
        // One wild sample (a server hiccup) is held aside, then forgotten.
        assert_eq!(ping(&mut est, 8000.0, 2500.0), SampleOutcome::Suspect);
        assert_eq!(est.offset_ms(), 500.0);
        assert_eq!(est.next_ping_at(8040.0), 7200.0, "ping fast to confirm");
        assert_eq!(ping(&mut est, 9000.0, 500.0), SampleOutcome::Accepted);
        // Polling again, from the last ping sent (at 7000).
        assert_eq!(est.next_ping_at(9040.0), 9000.0, "back to polling");

        // A real step: the server clock jumps back by two seconds.
        assert_eq!(ping(&mut est, 10_000.0, -1500.0), SampleOutcome::Suspect);
        assert_eq!(ping(&mut est, 10_200.0, -1500.0), SampleOutcome::Suspect);
        assert_eq!(est.offset_ms(), 500.0, "not before it is confirmed");
        assert_eq!(ping(&mut est, 10_400.0, -1500.0), SampleOutcome::Step);
        assert_eq!(est.offset_ms(), -1500.0);
        assert_eq!(est.sample_count(), 3, "pre-step samples dropped");
        assert!(est.is_warm());
    }

    #[test]
    fn small_moves_are_bounded_per_sample_unless_they_persist() {
        let mut est = OffsetEstimator::new(ClockConfig {
            best_count: 1,
            ..ClockConfig::default()
        });
        for i in 0..5 {
            let t0 = i as f64 * 1000.0;
            est.add_sample(t0, t0 + 10.0, t0 + 10.0, t0 + 20.0);
        }
        assert_eq!(est.offset_ms(), 0.0);
        // The server clock moves by 25 ms: inside the consistency bound
        // (RTT / 2 + uncertainty + margin = 30 ms), so not a step, but more
        // than max_step_ms: 5 ms per sample, then all of it once the move
        // persisted for step_confirm samples.
        let mut seen = Vec::new();
        for i in 5..9 {
            let t0 = i as f64 * 1000.0;
            est.add_sample(t0, t0 + 35.0, t0 + 35.0, t0 + 20.0);
            seen.push(est.offset_ms());
        }
        assert_eq!(seen, vec![5.0, 10.0, 25.0, 25.0]);
    }

    #[test]
    fn the_lowest_rtt_samples_win() {
        let mut est = OffsetEstimator::new(ClockConfig {
            best_count: 1,
            ..ClockConfig::default()
        });
        // True offset 100. A queued sample (RTT 200, all of it on the way
        // up) reads 190; a clean one (RTT 10) reads 100.
        est.add_sample(0.0, 290.0, 290.0, 200.0);
        assert_eq!(est.offset_ms(), 190.0);
        est.add_sample(1000.0, 1105.0, 1105.0, 1010.0);
        assert_eq!(est.offset_ms(), 100.0);
        assert_eq!(est.uncertainty_ms(), 5.0);
        assert_eq!(est.one_way_delay_ms(), 5.0);
        // Later noisy samples do not move it.
        est.add_sample(2000.0, 2150.0, 2150.0, 2100.0);
        assert_eq!(est.offset_ms(), 100.0);
    }

    #[test]
    fn the_schedule_bursts_on_join_then_polls() {
        let mut est = OffsetEstimator::new(ClockConfig::default());
        let mut now = 0.0;
        let mut sent = Vec::new();
        while now < 30_000.0 {
            let due = est.next_ping_at(now);
            if due <= now {
                est.on_ping_sent(now);
                sent.push(now);
                est.add_sample(now, now + 10.0, now + 10.0, now + 20.0);
            }
            now += 50.0;
        }
        let mut want = vec![0.0, 200.0, 400.0, 600.0, 800.0];
        want.extend((0..14).map(|k| 2800.0 + 2000.0 * f64::from(k)));
        assert_eq!(sent, want);
    }

    #[test]
    fn lost_replies_keep_the_quick_schedule_until_warm() {
        let mut est = OffsetEstimator::new(ClockConfig::default());
        for i in 0..5 {
            est.on_ping_sent(i as f64 * 200.0);
        }
        assert!(!est.is_warm());
        assert_eq!(est.next_ping_at(800.0), 1000.0);
    }

    #[test]
    fn insane_samples_change_nothing() {
        let mut est = OffsetEstimator::new(ClockConfig::default());
        est.add_sample(0.0, 110.0, 110.0, 20.0);
        let before = format!("{est:?}");
        let insane = [
            (f64::NAN, 1.0, 1.0, 2.0),
            (0.0, f64::INFINITY, 1.0, 2.0),
            (0.0, 1.0, f64::NEG_INFINITY, 2.0),
            (0.0, 1.0, 1.0, f64::NAN),
            (10.0, 1.0, 1.0, 5.0),           // received before it was sent
            (0.0, 50.0, 10.0, 100.0),        // server replied before receiving
            (0.0, 10.0, 90.0, 20.0),         // negative round trip
            (0.0, 10.0, 10.0, 20_001.0),     // beyond max_rtt_ms
            (-f64::MAX, 0.0, 0.0, f64::MAX), // overflows
        ];
        for (t0, t1, t2, t3) in insane {
            assert_eq!(est.add_sample(t0, t1, t2, t3), SampleOutcome::Rejected);
        }
        assert_eq!(format!("{est:?}"), before);
        // Queries with any f64 do not panic either.
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let _ = est.server_time(x);
            let _ = est.next_ping_at(x);
            est.on_ping_sent(x);
        }
        assert_eq!(format!("{est:?}"), before);
    }

    #[test]
    fn an_empty_estimator_is_honest() {
        let est = OffsetEstimator::new(ClockConfig::default());
        assert!(!est.is_warm());
        assert_eq!(est.offset_ms(), 0.0);
        assert_eq!(est.uncertainty_ms(), f64::INFINITY);
        assert_eq!(est.server_time(42.0), 42.0);
    }

    #[test]
    fn nonsense_configuration_is_brought_into_range() {
        let est = OffsetEstimator::new(ClockConfig {
            window: 0,
            best_count: 99,
            warm_samples: 0,
            max_step_ms: f64::NAN,
            poll_interval_ms: -1.0,
            ..ClockConfig::default()
        });
        let c = est.config();
        assert_eq!((c.window, c.best_count, c.warm_samples), (1, 1, 1));
        assert_eq!(c.max_step_ms, 5.0);
        assert_eq!(c.poll_interval_ms, 2000.0);
    }
}
