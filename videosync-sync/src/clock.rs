//! Estimation of the server clock, seen from a client: an envelope fit of
//! one-way samples, in the spirit of Moon, Skelly and Towsley (1999).
//!
//! Every stamped message is a one-way sample of the offset
//! `off(x) = server - local` at local time `x`:
//!
//! - *up* (client to server): sent at local `x`, received at server time
//!   `s`. Queuing only adds delay, so `off(x) <= s - x`: an upper bound.
//! - *down* (server to client): sent at server time `s` (every server
//!   frame's `sent_ms`), received at local `x`: `off(x) >= s - x`, a lower
//!   bound.
//!
//! A ping and its pong give one of each ([`OffsetEstimator::add_sample`]);
//! every other server frame gives a down sample
//! ([`OffsetEstimator::add_down`]). The offset drifts linearly (the skew
//! of one oscillator against the other), so the truth is a line below every
//! up sample and above every down sample. [`OffsetEstimator`]:
//!
//! - keeps, per direction, the tightest sample of each
//!   [`ClockConfig::block_ms`] of local time over the last
//!   [`ClockConfig::window_ms`] (the "lucky" packets: queuing is one-sided,
//!   so the extreme of N samples converges like 1/N, unlike a mean);
//! - fits the skew as the slope that keeps both envelopes tightest (the
//!   linear-programming objective of Moon et al.: the sum of the gaps of
//!   every sample to its envelope line, a convex function of the slope,
//!   minimised by golden-section search), once the samples span
//!   [`ClockConfig::min_skew_span_ms`]; refitted every
//!   [`ClockConfig::skew_refit_ms`];
//! - takes the offset as the midpoint between the two envelope lines;
//! - bounds the error *for certain*: every slope for which no up sample lies
//!   below a down sample is possible (a finite interval, intersected with
//!   ±[`ClockConfig::max_skew_ppm`]), and the truth lies between the lowest
//!   up bound and the highest down bound carried to now along the worst of
//!   those slopes. [`OffsetEstimator::uncertainty_ms`] is that bound: it
//!   holds whatever the queuing and the asymmetry of the path, as long as
//!   the skew is constant over the window and no clock steps;
//! - detects clock steps: a sample that contradicts the bound (an up sample
//!   below the lower bound, a down sample above the upper one) is held
//!   aside; [`ClockConfig::step_confirm`] in a row restart the fit from
//!   them.
//!
//! It also tells the client when to ping: a burst on join, then every
//! [`ClockConfig::fast_interval_ms`] while the estimate is uncertain (skew
//! not yet fitted, the last refit moved the estimate, a step suspected) and
//! every [`ClockConfig::slow_interval_ms`] once it is stable.
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
//! assert!((est.offset_ms() - 1000.0).abs() < 0.01);
//! // Only known to lie between the two one-way bounds, 980..=1020 (and
//! // what an unknown skew may have moved them since).
//! assert!((est.uncertainty_ms() - 20.0).abs() < 0.01);
//! assert!((est.server_time(41.0) - 1041.0).abs() < 0.01);
//! assert_eq!(est.next_ping_at(41.0), 100.0, "join burst");
//! ```

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
    /// How long samples are kept, ms of local time (default 600 000: ten
    /// minutes, so that a few ms at the ends make a few ppm of skew).
    pub window_ms: f64,
    /// Per direction, only the tightest sample of each block of this much
    /// local time is kept (default 1000).
    pub block_ms: f64,
    /// The skew is fitted once the samples span this long (default
    /// 60 000); before, the estimate prefers recent samples and the bound
    /// allows any skew up to [`max_skew_ppm`](Self::max_skew_ppm).
    pub min_skew_span_ms: f64,
    /// The skew is refitted at most this often (default 10 000 ms).
    pub skew_refit_ms: f64,
    /// The largest skew either way, in parts per million (default 200:
    /// quartz is within ±100 ppm, so two clocks are within ±200).
    pub max_skew_ppm: f64,
    /// Samples of the steepest envelope points used to bound the skew, per
    /// direction (default 24).
    pub bound_points: usize,
    /// Pongs needed before the estimate counts as warm (default 3).
    pub warm_samples: usize,
    /// A ping with a longer round trip than this is rejected (default
    /// 10 000 ms): a stalled connection, not a measurement.
    pub max_rtt_ms: f64,
    /// Contradicting samples in a row that make a clock step (default 3).
    pub step_confirm: usize,
    /// Slack before a sample counts as contradicting the bound (default
    /// 1 ms: rounding of the stamps).
    pub step_margin_ms: f64,
    /// Pings sent quickly on join (default 10).
    pub join_pings: u32,
    /// Interval of the join pings (default 100 ms).
    pub join_interval_ms: f64,
    /// Interval of pings while the estimate is uncertain (default 500 ms).
    pub fast_interval_ms: f64,
    /// Interval of pings once it is stable (default 1000 ms).
    pub slow_interval_ms: f64,
    /// The estimate is stable when the last skew refit moved it by less
    /// than this (default 2 ms).
    pub stable_ms: f64,
    /// Down samples kept for the delay percentile (default 256).
    pub delay_samples: usize,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            window_ms: 600_000.0,
            block_ms: 1000.0,
            min_skew_span_ms: 60_000.0,
            skew_refit_ms: 10_000.0,
            max_skew_ppm: 200.0,
            bound_points: 24,
            warm_samples: 3,
            max_rtt_ms: 10_000.0,
            step_confirm: 3,
            step_margin_ms: 1.0,
            join_pings: 10,
            join_interval_ms: 100.0,
            fast_interval_ms: 500.0,
            slow_interval_ms: 1000.0,
            stable_ms: 2.0,
            delay_samples: 256,
        }
    }
}

impl ClockConfig {
    /// The same configuration with every value brought into range.
    fn sanitized(&self) -> Self {
        let d = ClockConfig::default();
        let positive = |v: f64, dflt: f64| if v.is_finite() && v > 0.0 { v } else { dflt };
        ClockConfig {
            window_ms: positive(self.window_ms, d.window_ms),
            block_ms: positive(self.block_ms, d.block_ms),
            min_skew_span_ms: non_negative_or(self.min_skew_span_ms, d.min_skew_span_ms),
            skew_refit_ms: non_negative_or(self.skew_refit_ms, d.skew_refit_ms),
            max_skew_ppm: non_negative_or(self.max_skew_ppm, d.max_skew_ppm).min(10_000.0),
            bound_points: self.bound_points.clamp(2, 256),
            warm_samples: self.warm_samples.clamp(1, 1000),
            max_rtt_ms: non_negative_or(self.max_rtt_ms, d.max_rtt_ms),
            step_confirm: self.step_confirm.clamp(1, 100),
            step_margin_ms: non_negative_or(self.step_margin_ms, d.step_margin_ms),
            join_pings: self.join_pings.min(1000),
            join_interval_ms: non_negative_or(self.join_interval_ms, d.join_interval_ms),
            fast_interval_ms: non_negative_or(self.fast_interval_ms, d.fast_interval_ms),
            slow_interval_ms: non_negative_or(self.slow_interval_ms, d.slow_interval_ms),
            stable_ms: non_negative_or(self.stable_ms, d.stable_ms),
            delay_samples: self.delay_samples.clamp(1, 100_000),
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

/// What the estimator did with a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleOutcome {
    /// Not a possible measurement (non-finite, negative or overlong round
    /// trip, time running backwards); nothing changed.
    Rejected,
    /// Consistent with the bound; taken in.
    Accepted,
    /// Contradicts the bound; held aside until more samples say whether
    /// the clock stepped.
    Suspect,
    /// Confirmed a clock step: the fit restarted from the samples taken
    /// since the step.
    Step,
}

/// A one-way sample: at local time `x`, the offset is at most (up) or at
/// least (down) `y`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    x: f64,
    y: f64,
}

/// Up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Up,
    Down,
}

/// Estimates a server clock from one-way samples: offset, skew, a bound on
/// the error, a percentile of the delay, and when to ping next. See the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct OffsetEstimator {
    config: ClockConfig,
    /// Tightest up sample (least `y`) per block, by `x`.
    up: VecDeque<Point>,
    /// Tightest down sample (greatest `y`) per block, by `x`.
    down: VecDeque<Point>,
    /// Samples that contradicted the bound, in a row.
    suspects: Vec<(Dir, Point)>,
    skew: f64,
    skew_min: f64,
    skew_max: f64,
    skew_known: bool,
    /// Local time of the latest skew fit.
    fitted_at: Option<f64>,
    /// The estimate: `off(x) = offset + skew * (x - anchor)`.
    offset: f64,
    anchor: f64,
    has_estimate: bool,
    /// How far the latest refit moved the estimate.
    last_move: f64,
    best_rtt: f64,
    pongs: usize,
    /// Latest down samples, for the delay percentile.
    recent_down: VecDeque<Point>,
    pings_sent: u32,
    last_ping: Option<f64>,
}

impl OffsetEstimator {
    /// An estimator with no samples: offset zero, uncertainty infinite.
    pub fn new(config: ClockConfig) -> Self {
        let config = config.sanitized();
        let m = config.max_skew_ppm / 1e6;
        OffsetEstimator {
            config,
            up: VecDeque::new(),
            down: VecDeque::new(),
            suspects: Vec::new(),
            skew: 0.0,
            skew_min: -m,
            skew_max: m,
            skew_known: false,
            fitted_at: None,
            offset: 0.0,
            anchor: 0.0,
            has_estimate: false,
            last_move: f64::INFINITY,
            best_rtt: f64::INFINITY,
            pongs: 0,
            recent_down: VecDeque::new(),
            pings_sent: 0,
            last_ping: None,
        }
    }

    /// The configuration in force (after out-of-range values were replaced).
    pub fn config(&self) -> &ClockConfig {
        &self.config
    }

    /// Feeds one ping and its pong: `t0` client send and `t3` client receive
    /// on the local clock, `t1` server receive and `t2` server send on the
    /// server's. An up sample at `t0` and a down sample at `t3`.
    pub fn add_sample(&mut self, t0: f64, t1: f64, t2: f64, t3: f64) -> SampleOutcome {
        let rtt = (t3 - t0) - (t2 - t1);
        let sane = [t0, t1, t2, t3].iter().all(|v| v.is_finite())
            && rtt.is_finite()
            && t3 >= t0
            && t2 >= t1
            && rtt >= 0.0
            && rtt <= self.config.max_rtt_ms;
        if !sane {
            return SampleOutcome::Rejected;
        }
        let up = Point { x: t0, y: t1 - t0 };
        let down = Point { x: t3, y: t2 - t3 };
        let outcome = self.take(&[(Dir::Up, up), (Dir::Down, down)], t3);
        if matches!(outcome, SampleOutcome::Accepted | SampleOutcome::Step) {
            self.best_rtt = self.best_rtt.min(rtt);
            self.pongs += 1;
        }
        outcome
    }

    /// Feeds a down sample: a server frame stamped `server_sent_ms` arrived
    /// at local time `local_ms`.
    pub fn add_down(&mut self, server_sent_ms: f64, local_ms: f64) -> SampleOutcome {
        if !(server_sent_ms.is_finite() && local_ms.is_finite()) {
            return SampleOutcome::Rejected;
        }
        let p = Point {
            x: local_ms,
            y: server_sent_ms - local_ms,
        };
        self.take(&[(Dir::Down, p)], local_ms)
    }

    /// Feeds an up sample: a client frame stamped `local_sent_ms` reached
    /// the server at `server_ms` (a server estimating its clients' clocks
    /// uses this; a client learns it from a pong).
    pub fn add_up(&mut self, local_sent_ms: f64, server_ms: f64) -> SampleOutcome {
        if !(server_ms.is_finite() && local_sent_ms.is_finite()) {
            return SampleOutcome::Rejected;
        }
        let p = Point {
            x: local_sent_ms,
            y: server_ms - local_sent_ms,
        };
        self.take(&[(Dir::Up, p)], local_sent_ms)
    }

    /// Checks samples against the bound; takes them in, holds them aside
    /// or confirms a step.
    fn take(&mut self, points: &[(Dir, Point)], now: f64) -> SampleOutcome {
        if let Some(latest) = self.latest_x() {
            if points
                .iter()
                .any(|(_, p)| p.x < latest - self.config.window_ms)
            {
                return SampleOutcome::Rejected;
            }
        }
        if self.has_estimate {
            let contradicts = points.iter().any(|(dir, p)| {
                let (lo, hi) = self.bounds_at(p.x);
                match dir {
                    Dir::Up => p.y < lo - self.config.step_margin_ms,
                    Dir::Down => p.y > hi + self.config.step_margin_ms,
                }
            });
            if contradicts {
                // Suspects must agree with each other (no up below a down)
                // to describe one new clock; a lone outlier is dropped.
                let margin = self.config.step_margin_ms;
                let disagree = points.iter().any(|(dir, p)| {
                    self.suspects.iter().any(|(d, q)| match (dir, d) {
                        (Dir::Up, Dir::Down) => p.y < q.y - margin,
                        (Dir::Down, Dir::Up) => p.y > q.y + margin,
                        _ => false,
                    })
                });
                if disagree {
                    self.suspects.clear();
                }
                self.suspects.extend(points.iter().copied());
                let rows = self
                    .suspects
                    .iter()
                    .filter(|(d, _)| *d == Dir::Down)
                    .count()
                    .max(self.suspects.iter().filter(|(d, _)| *d == Dir::Up).count());
                if rows < self.config.step_confirm {
                    return SampleOutcome::Suspect;
                }
                // The clock stepped: what came before describes another
                // clock.
                let fresh: Vec<(Dir, Point)> = self.suspects.drain(..).collect();
                self.up.clear();
                self.down.clear();
                self.recent_down.clear();
                self.skew_known = false;
                self.skew = 0.0;
                let m = self.config.max_skew_ppm / 1e6;
                self.skew_min = -m;
                self.skew_max = m;
                self.fitted_at = None;
                self.best_rtt = f64::INFINITY;
                for (dir, p) in fresh {
                    self.insert(dir, p);
                }
                self.refit(now, true);
                return SampleOutcome::Step;
            }
        }
        self.suspects.clear();
        for (dir, p) in points {
            self.insert(*dir, *p);
        }
        let due = self
            .fitted_at
            .is_none_or(|at| now - at >= self.config.skew_refit_ms || now < at);
        self.refit(now, due);
        SampleOutcome::Accepted
    }

    fn latest_x(&self) -> Option<f64> {
        let a = self.up.back().map(|p| p.x);
        let b = self.down.back().map(|p| p.x);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Keeps `p` if it is the tightest of its block; drops what left the
    /// window.
    fn insert(&mut self, dir: Dir, p: Point) {
        let block = self.config.block_ms;
        let list = match dir {
            Dir::Up => &mut self.up,
            Dir::Down => &mut self.down,
        };
        let index = (p.x / block).floor();
        // Usually the newest block; a late sample goes in its place.
        let mut at = list.len();
        while at > 0 {
            let Some(prev) = list.get(at - 1) else {
                break;
            };
            if prev.x <= p.x || (prev.x / block).floor() == index {
                break;
            }
            at -= 1;
        }
        let same = at
            .checked_sub(1)
            .and_then(|i| list.get(i).map(|q| (i, *q)))
            .filter(|(_, q)| (q.x / block).floor() == index);
        match same {
            Some((i, q)) => {
                let tighter = match dir {
                    Dir::Up => p.y <= q.y,
                    Dir::Down => p.y >= q.y,
                };
                if tighter {
                    if let Some(slot) = list.get_mut(i) {
                        *slot = p;
                    }
                }
            }
            None => list.insert(at, p),
        }
        if dir == Dir::Down {
            self.recent_down.push_back(p);
            while self.recent_down.len() > self.config.delay_samples {
                self.recent_down.pop_front();
            }
        }
        let newest = self.latest_x().unwrap_or(p.x);
        let oldest = newest - self.config.window_ms;
        while self.up.front().is_some_and(|q| q.x < oldest) {
            self.up.pop_front();
        }
        while self.down.front().is_some_and(|q| q.x < oldest) {
            self.down.pop_front();
        }
    }

    /// Recomputes the estimate at `now`, and the skew when `fit_skew`.
    fn refit(&mut self, now: f64, fit_skew: bool) {
        if self.up.is_empty() || self.down.is_empty() {
            return;
        }
        let before = self.has_estimate.then(|| self.offset_at(now));
        if fit_skew {
            self.fit_skew();
            self.fitted_at = Some(now);
        }
        let (lo, hi) = if self.skew_known {
            self.envelope_at(now, self.skew, self.skew)
        } else {
            self.envelope_at(now, self.skew_min, self.skew_max)
        };
        self.offset = (lo + hi) / 2.0;
        self.anchor = now;
        self.has_estimate = true;
        if fit_skew {
            self.last_move = before.map_or(f64::INFINITY, |b| (self.offset - b).abs());
        }
    }

    /// The offset interval at local `x` for slopes within `[b_lo, b_hi]`:
    /// each sample carried to `x` along the slope that loosens it most.
    fn envelope_at(&self, x: f64, b_lo: f64, b_hi: f64) -> (f64, f64) {
        let mut hi = f64::INFINITY;
        for p in &self.up {
            let b = if x >= p.x { b_hi } else { b_lo };
            hi = hi.min(p.y + b * (x - p.x));
        }
        let mut lo = f64::NEG_INFINITY;
        for p in &self.down {
            let b = if x >= p.x { b_lo } else { b_hi };
            lo = lo.max(p.y + b * (x - p.x));
        }
        (lo, hi)
    }

    /// The certain interval of the offset at local `x`.
    fn bounds_at(&self, x: f64) -> (f64, f64) {
        self.envelope_at(x, self.skew_min, self.skew_max)
    }

    /// Fits the skew (when the samples span long enough) and bounds it.
    fn fit_skew(&mut self) {
        let m = self.config.max_skew_ppm / 1e6;
        let first = self
            .up
            .front()
            .map(|p| p.x)
            .unwrap_or(f64::INFINITY)
            .min(self.down.front().map(|p| p.x).unwrap_or(f64::INFINITY));
        let last = self.latest_x().unwrap_or(f64::NEG_INFINITY);
        if !(last - first >= self.config.min_skew_span_ms && self.up.len() >= 2)
            || self.down.len() < 2
        {
            self.skew_known = false;
            self.skew = 0.0;
            self.skew_min = -m;
            self.skew_max = m;
            return;
        }
        // Golden-section search of the convex objective over [-m, m].
        let r = (5.0_f64.sqrt() - 1.0) / 2.0;
        let (mut a, mut b) = (-m, m);
        let mut c = b - r * (b - a);
        let mut d = a + r * (b - a);
        let mut fc = self.objective(c, last);
        let mut fd = self.objective(d, last);
        for _ in 0..60 {
            if fc <= fd {
                b = d;
                d = c;
                fd = fc;
                c = b - r * (b - a);
                fc = self.objective(c, last);
            } else {
                a = c;
                c = d;
                fc = fd;
                d = a + r * (b - a);
                fd = self.objective(d, last);
            }
        }
        let fitted = (a + b) / 2.0;
        let (b_min, b_max) = self.feasible_slopes(fitted, m);
        self.skew_min = b_min;
        self.skew_max = b_max;
        self.skew = fitted.max(b_min).min(b_max);
        self.skew_known = true;
    }

    /// The sum of every sample's gap to its envelope line of slope `b`
    /// (Moon, Skelly and Towsley's objective), with `x` taken from `x0`.
    fn objective(&self, b: f64, x0: f64) -> f64 {
        let mut sum_up = 0.0;
        let mut min_up = f64::INFINITY;
        for p in &self.up {
            let v = p.y - b * (p.x - x0);
            sum_up += v;
            min_up = min_up.min(v);
        }
        let mut sum_down = 0.0;
        let mut max_down = f64::NEG_INFINITY;
        for p in &self.down {
            let v = p.y - b * (p.x - x0);
            sum_down += v;
            max_down = max_down.max(v);
        }
        (sum_up - self.up.len() as f64 * min_up) + (self.down.len() as f64 * max_down - sum_down)
    }

    /// The slopes for which no up sample lies below a down sample, from the
    /// samples nearest the envelopes of slope `b`, within ±`m`.
    fn feasible_slopes(&self, b: f64, m: f64) -> (f64, f64) {
        let k = self.config.bound_points;
        let x0 = self.latest_x().unwrap_or(0.0);
        let mut ups: Vec<Point> = self.up.iter().copied().collect();
        ups.sort_by(|p, q| (p.y - b * (p.x - x0)).total_cmp(&(q.y - b * (q.x - x0))));
        ups.truncate(k);
        let mut downs: Vec<Point> = self.down.iter().copied().collect();
        downs.sort_by(|p, q| (q.y - b * (q.x - x0)).total_cmp(&(p.y - b * (p.x - x0))));
        downs.truncate(k);
        let mut lo = -m;
        let mut hi = m;
        for u in &ups {
            for d in &downs {
                let dx = u.x - d.x;
                if dx == 0.0 {
                    continue;
                }
                let limit = (u.y - d.y) / dx;
                if dx > 0.0 {
                    hi = hi.min(limit);
                } else {
                    lo = lo.max(limit);
                }
            }
        }
        if lo > hi {
            // Contradictory samples (a step not yet confirmed): no slope is
            // certain; keep the widest.
            return (-m, m);
        }
        (lo, hi)
    }

    fn offset_at(&self, local_ms: f64) -> f64 {
        self.offset + self.skew * (local_ms - self.anchor)
    }

    /// Records that a ping left at local time `local_ms`; drives
    /// [`next_ping_at`](Self::next_ping_at). Non-finite times are ignored.
    pub fn on_ping_sent(&mut self, local_ms: f64) {
        if local_ms.is_finite() {
            self.pings_sent = self.pings_sent.saturating_add(1);
            self.last_ping = Some(local_ms);
        }
    }

    /// Whether the estimate is stable: the skew is fitted, no step is
    /// suspected and the latest refit moved the estimate by less than
    /// [`ClockConfig::stable_ms`].
    pub fn is_stable(&self) -> bool {
        self.skew_known && self.suspects.is_empty() && self.last_move < self.config.stable_ms
    }

    /// The local time the next ping is due: `local_ms` itself before the
    /// first; then the join burst, then the fast or the slow interval (see
    /// the module docs). A due time at or before now means "send now".
    pub fn next_ping_at(&self, local_ms: f64) -> f64 {
        match self.last_ping {
            None => local_ms,
            Some(last) => {
                let interval = if self.pings_sent < self.config.join_pings || !self.is_warm() {
                    self.config.join_interval_ms
                } else if self.is_stable() {
                    self.config.slow_interval_ms
                } else {
                    self.config.fast_interval_ms
                };
                last + interval
            }
        }
    }

    /// Server clock minus local clock at the latest sample (zero before the
    /// first).
    pub fn offset_ms(&self) -> f64 {
        self.offset
    }

    /// The server's clock at local time `local_ms`, along the fitted skew.
    pub fn server_time(&self, local_ms: f64) -> f64 {
        local_ms + self.offset_at(local_ms)
    }

    /// The local time at which the server's clock reads `server_ms`.
    pub fn local_time(&self, server_ms: f64) -> f64 {
        // server = l + offset + skew (l - anchor), solved for l.
        (server_ms - self.offset + self.skew * self.anchor) / (1.0 + self.skew)
    }

    /// A bound on the error of [`server_time`](Self::server_time) at the
    /// latest sample (infinite before the first pong): see
    /// [`uncertainty_at`](Self::uncertainty_at).
    pub fn uncertainty_ms(&self) -> f64 {
        self.uncertainty_at(self.anchor)
    }

    /// A bound on the error of [`server_time`](Self::server_time) at local
    /// `local_ms`: the distance from the estimate to the farther end of the
    /// certain interval (module docs). Infinite until both directions have
    /// a sample.
    pub fn uncertainty_at(&self, local_ms: f64) -> f64 {
        if self.up.is_empty() || self.down.is_empty() || !local_ms.is_finite() {
            return f64::INFINITY;
        }
        let (lo, hi) = self.bounds_at(local_ms);
        let est = self.offset_at(local_ms);
        (hi - est).max(est - lo).max(0.0)
    }

    /// The lowest round trip seen, halved: the one-way delay without
    /// queuing (infinite before the first pong).
    pub fn one_way_delay_ms(&self) -> f64 {
        self.best_rtt / 2.0
    }

    /// The lowest round trip seen (infinite before the first pong).
    pub fn rtt_ms(&self) -> f64 {
        self.best_rtt
    }

    /// The `p` quantile (0..=1) of the one-way delay from the server over
    /// the latest down samples (each sample's delay taken against the
    /// estimate), never below [`one_way_delay_ms`](Self::one_way_delay_ms);
    /// infinite before the first pong.
    pub fn delay_quantile_ms(&self, p: f64) -> f64 {
        let floor = self.one_way_delay_ms();
        if !floor.is_finite() || self.recent_down.is_empty() {
            return floor;
        }
        let mut delays: Vec<f64> = self
            .recent_down
            .iter()
            .map(|s| self.offset_at(s.x) - s.y)
            .collect();
        delays.sort_by(f64::total_cmp);
        let p = if p.is_finite() {
            p.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let rank = ((p * delays.len() as f64).ceil() as usize).clamp(1, delays.len());
        delays.get(rank - 1).copied().unwrap_or(floor).max(floor)
    }

    /// Rate of the server's clock relative to the local one, in ppm
    /// (positive: the server's runs fast); zero until fitted.
    pub fn skew_ppm(&self) -> f64 {
        self.skew * 1e6
    }

    /// Whether enough pongs arrived to trust the estimate
    /// ([`ClockConfig::warm_samples`]).
    pub fn is_warm(&self) -> bool {
        self.pongs >= self.config.warm_samples
    }

    /// Pongs taken in since the start or the latest step.
    pub fn sample_count(&self) -> usize {
        self.pongs
    }
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

        fn exp(&mut self, mean: f64) -> f64 {
            -mean * (1.0 - self.uniform()).ln()
        }
    }

    /// A server clock `server = offset + local * (1 + skew_ppm / 1e6)` behind
    /// a link with base delays per direction and exponential jitter.
    struct Link {
        offset: f64,
        skew_ppm: f64,
        up_ms: f64,
        down_ms: f64,
        jitter: f64,
        rng: Rng,
    }

    impl Link {
        fn server(&self, local: f64) -> f64 {
            self.offset + local * (1.0 + self.skew_ppm / 1e6)
        }

        fn true_offset(&self, local: f64) -> f64 {
            self.server(local) - local
        }

        fn ping(&mut self, t0: f64) -> (f64, f64, f64, f64) {
            let up = self.up_ms + self.rng.exp(self.up_ms * self.jitter);
            let down = self.down_ms + self.rng.exp(self.down_ms * self.jitter);
            let t1 = self.server(t0 + up);
            let t2 = t1 + 0.05;
            let t3 = t0 + up + 0.05 + down;
            (t0, t1, t2, t3)
        }
    }

    fn drive(
        est: &mut OffsetEstimator,
        link: &mut Link,
        until: f64,
        mut check: impl FnMut(&OffsetEstimator, &Link, f64),
    ) {
        let mut now = 0.0;
        while now < until {
            now = est.next_ping_at(now).max(now);
            est.on_ping_sent(now);
            let (t0, t1, t2, t3) = link.ping(now);
            est.add_sample(t0, t1, t2, t3);
            check(est, link, t3);
            now = t3;
        }
    }

    #[test]
    fn the_bound_holds_and_the_error_is_small_at_300_ms_rtt_and_30_percent_jitter() {
        let mut errors = Vec::new();
        let mut outside = 0usize;
        let mut checks = 0usize;
        for seed in 1..=10u64 {
            let skew = (seed as f64 - 5.5) * 18.0;
            let mut link = Link {
                offset: 5_000.0 * seed as f64,
                skew_ppm: skew,
                up_ms: 150.0,
                down_ms: 150.0,
                jitter: 0.3,
                rng: Rng(seed * 7919),
            };
            let mut est = OffsetEstimator::new(ClockConfig::default());
            drive(&mut est, &mut link, 600_000.0, |est, link, t3| {
                if !est.is_warm() {
                    return;
                }
                let err = (est.server_time(t3) - link.server(t3)).abs();
                checks += 1;
                if err > est.uncertainty_at(t3) {
                    outside += 1;
                }
                if t3 > 30_000.0 {
                    errors.push(err);
                }
            });
        }
        errors.sort_by(f64::total_cmp);
        let p99 = errors[errors.len() * 99 / 100];
        assert_eq!(
            outside,
            0,
            "the bound held {} of {checks}",
            checks - outside
        );
        assert!(p99 < 10.0, "p99 error {p99} ms");
    }

    #[test]
    fn a_skew_is_tracked_within_a_few_ppm() {
        let mut link = Link {
            offset: -3_000.0,
            skew_ppm: 48.0,
            up_ms: 25.0,
            down_ms: 25.0,
            jitter: 0.2,
            rng: Rng(3),
        };
        let mut est = OffsetEstimator::new(ClockConfig::default());
        drive(&mut est, &mut link, 300_000.0, |_, _, _| {});
        assert!((est.skew_ppm() - 48.0).abs() < 3.0, "{}", est.skew_ppm());
        // Between pings the estimate extrapolates along the skew.
        let later = 330_000.0;
        assert!((est.server_time(later) - link.server(later)).abs() < 2.0);
    }

    #[test]
    fn asymmetry_is_inside_the_bound_but_not_observable() {
        let mut link = Link {
            offset: 100.0,
            skew_ppm: 0.0,
            up_ms: 70.0,
            down_ms: 30.0,
            jitter: 0.1,
            rng: Rng(5),
        };
        let mut est = OffsetEstimator::new(ClockConfig::default());
        drive(&mut est, &mut link, 60_000.0, |est, link, t3| {
            let err = (est.offset_ms() - link.true_offset(t3)).abs();
            assert!(
                err <= est.uncertainty_ms() + 1e-9,
                "{err} > {}",
                est.uncertainty_ms()
            );
        });
        // Half the 40 ms asymmetry shows as error; the bound covers it.
        let err = est.offset_ms() - link.true_offset(60_000.0);
        assert!((err - 20.0).abs() < 3.0, "{err}");
    }

    #[test]
    fn one_way_samples_tighten_the_estimate() {
        let mut est = OffsetEstimator::new(ClockConfig::default());
        est.on_ping_sent(0.0);
        est.add_sample(0.0, 1100.0, 1100.0, 200.0);
        assert!((est.uncertainty_ms() - 100.0).abs() < 0.1);
        // A server frame that took only 60 ms down.
        assert_eq!(est.add_down(1500.0, 440.0), SampleOutcome::Accepted);
        assert!(est.uncertainty_at(440.0) < 100.0);
        assert!(
            (est.offset_ms() - 1080.0).abs() < 0.1,
            "{}",
            est.offset_ms()
        );
    }

    #[test]
    fn a_clock_step_is_taken_after_confirmation_and_a_single_outlier_is_not() {
        let mut est = OffsetEstimator::new(ClockConfig::default());
        for i in 0..10 {
            let t = i as f64 * 500.0;
            est.on_ping_sent(t);
            est.add_sample(t, t + 1020.0, t + 1020.0, t + 40.0);
        }
        // A single down sample claiming the server jumped 5 s: held aside.
        assert_eq!(est.add_down(20_000.0, 5_000.0), SampleOutcome::Suspect);
        assert!((est.offset_ms() - 1000.0).abs() < 1.0);
        // Pongs that agree with the old clock clear it.
        est.add_sample(5_100.0, 6_120.0, 6_120.0, 5_140.0);
        // Three in a row that agree on a new clock are a step.
        let mut last = SampleOutcome::Accepted;
        for i in 0..3 {
            let t = 6_000.0 + i as f64 * 500.0;
            last = est.add_sample(t, t + 6_020.0, t + 6_020.0, t + 40.0);
        }
        assert_eq!(last, SampleOutcome::Step);
        assert!((est.offset_ms() - 6_000.0).abs() < 1.0);
    }

    #[test]
    fn the_schedule_bursts_on_join_then_slows_when_stable() {
        let mut link = Link {
            offset: 0.0,
            skew_ppm: 10.0,
            up_ms: 10.0,
            down_ms: 10.0,
            jitter: 0.1,
            rng: Rng(9),
        };
        let mut est = OffsetEstimator::new(ClockConfig::default());
        let mut sent = Vec::new();
        let mut now = 0.0;
        while now < 200_000.0 {
            now = est.next_ping_at(now).max(now);
            est.on_ping_sent(now);
            sent.push(now);
            let (t0, t1, t2, t3) = link.ping(now);
            est.add_sample(t0, t1, t2, t3);
            now = t3;
        }
        let gap = |i: usize| sent[i + 1] - sent[i];
        assert!((gap(0) - 100.0).abs() < 1e-9, "join burst");
        assert!(
            (gap(20) - 500.0).abs() < 1e-9,
            "fast until the skew is fitted"
        );
        assert!(est.is_stable());
        assert!(
            (gap(sent.len() - 2) - 1000.0).abs() < 1e-9,
            "slow once stable"
        );
    }

    #[test]
    fn insane_samples_change_nothing() {
        let mut est = OffsetEstimator::new(ClockConfig::default());
        est.add_sample(0.0, 1020.0, 1021.0, 41.0);
        let before = (est.offset_ms(), est.uncertainty_ms(), est.sample_count());
        for (t0, t1, t2, t3) in [
            (f64::NAN, 0.0, 0.0, 0.0),
            (100.0, 0.0, 0.0, 50.0),
            (0.0, 10.0, 5.0, 20.0),
            (0.0, 0.0, 0.0, 1e9),
            (f64::INFINITY, 0.0, 0.0, f64::INFINITY),
        ] {
            assert_eq!(est.add_sample(t0, t1, t2, t3), SampleOutcome::Rejected);
        }
        assert_eq!(est.add_down(f64::NAN, 1.0), SampleOutcome::Rejected);
        assert_eq!(
            before,
            (est.offset_ms(), est.uncertainty_ms(), est.sample_count())
        );
    }

    #[test]
    fn an_empty_estimator_is_honest() {
        let est = OffsetEstimator::new(ClockConfig::default());
        assert_eq!(est.offset_ms(), 0.0);
        assert!(est.uncertainty_ms().is_infinite());
        assert!(est.one_way_delay_ms().is_infinite());
        assert!(!est.is_warm());
    }

    #[test]
    fn nonsense_configuration_is_brought_into_range() {
        let est = OffsetEstimator::new(ClockConfig {
            window_ms: -1.0,
            block_ms: f64::NAN,
            bound_points: 0,
            max_skew_ppm: f64::INFINITY,
            ..ClockConfig::default()
        });
        let c = est.config();
        assert_eq!(c.window_ms, 600_000.0);
        assert_eq!(c.block_ms, 1000.0);
        assert_eq!(c.bound_points, 2);
        assert_eq!(c.max_skew_ppm, 200.0);
    }
}
