//! The client's drift controller: keeps the local player on the room's
//! timeline without anyone hearing it.
//!
//! Every tick the client passes the local time, its estimate of the server
//! time (from [`crate::clock::OffsetEstimator::server_time`]), the room's
//! [`Playback`] in force and what the player reports. The controller answers
//! with one [`Action`]:
//!
//! 1. within the dead zone (default 5 ms): nothing;
//! 2. beyond it: a playback-rate nudge proportional to the error (the error
//!    over one second), never more than ±5 % of the room's rate, held for
//!    at least 200 ms, and back to the room's rate once the error is within
//!    half the dead zone;
//! 3. beyond the hard threshold (default 300 ms): a seek, aimed ahead by the
//!    player's seek latency, which the controller learns from the seeks the
//!    client reports ([`DriftController::on_seek_started`],
//!    [`DriftController::on_seek_finished`]); then a cooldown.
//!
//! # Noise
//!
//! Players report positions coarsely and at uneven times. The controller
//! keeps the last few errors, carries each forward to now with what it knows
//! (the room's timeline and the rate the player was playing at), and uses
//! their trimmed mean: an odd report is dropped, quantisation averages out,
//! and a nudge shows in the estimate at once instead of a filter's length
//! later (which would overshoot). This assumes the client applies each
//! action as soon as it gets it.
//! A player that truncates positions to a known step
//! ([`DriftConfig::report_granularity_ms`]) is read at the middle of the
//! step, and the dead zone is at least half a step.
//!
//! A position read off the frame on screen is quantized too: a frame shows
//! at a display refresh, and a player that keeps a steady cadence
//! (Chromium shows 30 fps on a 60 Hz display as two refreshes per frame,
//! and corrects its drift by whole frames) moves by whole frames. So a
//! player's error moves in steps of the longer of a refresh (16.7 ms of
//! media at 60 Hz and rate 1, 25 ms at rate 1.5) and a frame (33.3 ms at
//! 30 fps) however finely its rate is nudged, and a dead zone narrower than
//! a step never holds still (the player hunts between the steps around
//! zero). Given that step ([`DriftController::set_frame_quantum`]), the
//! controller leaves an error within 0.55 of a step alone: each player
//! rests on the step nearest the room, and any two show frames at most a
//! step apart, which is as close as their screens can show. A nudge there
//! is at least large enough to cross a step and a quarter within its hold:
//! a smaller one ends before anything on screen moved (Chromium shows a
//! 2 % nudge held for a second as no change at all), the error reads the
//! same, and the controller would nudge again forever; and it ends as soon
//! as the error is back within the dead zone, hold or not, since the rest
//! of the hold would carry the player a step too far.
//!
//! # Echo suppression
//!
//! A correction is local: the client applies it to its own player and never
//! sends it to the server as a [`crate::state::Command`]. But players report
//! rate changes and seeks as events, the same events a user's click causes,
//! and a client that turned those into commands would broadcast every nudge
//! to the room (which would answer with a new state, which would cause a new
//! correction...). So the controller remembers what it asked for: when the
//! player reports a rate change or a seek, the client asks
//! [`DriftController::is_own_correction`] and drops the event if it matches a
//! correction issued within [`DriftConfig::echo_window_ms`].
//!
//! The controller reads no clock and keeps no timer: the same inputs give the
//! same actions. The JavaScript twin (`js/videosync-sync.js`) implements the
//! same arithmetic in the same order, held to it by `vectors/drift.json`.
//!
//! # Examples
//!
//! ```
//! use videosync_sync::drift::{Action, DriftConfig, DriftController, PlayerChange, PlayerState};
//! use videosync_sync::state::Playback;
//!
//! let room = Playback {
//!     media: Some("v1".into()),
//!     playing: true,
//!     position_ms: 0.0,
//!     at_ms: 0.0,
//!     rate: 1.0,
//!     seq: 1,
//! };
//! let mut ctl = DriftController::new(DriftConfig::default());
//! // The player runs 150 ms behind the room.
//! let mut action = Action::None;
//! for i in 0..5 {
//!     let t = 10_000.0 + i as f64 * 250.0;
//!     let player = PlayerState { position_ms: t - 150.0, rate: 1.0, playing: true, busy: false };
//!     action = ctl.tick(t, t, &room, &player);
//! }
//! assert_eq!(action, Action::SetRate(1.05));
//! // The player then reports the rate change: it is ours, not the user's.
//! assert!(ctl.is_own_correction(PlayerChange::Rate(1.05), 11_050.0));
//! ```

use serde::{Deserialize, Serialize};

use crate::state::Playback;

/// Tuning of a [`DriftController`]. Field names are the same in the
/// JavaScript twin and in the JSON vectors.
///
/// Out-of-range values are replaced when the controller is built: a
/// negative or non-finite value falls back to its default, and ratios and
/// counts are clamped into range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftConfig {
    /// Whether the controller corrects at all (default true). A viewer who
    /// turns correction off gets [`Action::None`] from every tick.
    pub enabled: bool,
    /// Errors up to this are left alone (default 5 ms: two clients each
    /// within it are within a frame of each other at 60 fps, and it is over
    /// twice the ±2 ms jitter of a typical player's position reports).
    pub dead_zone_ms: f64,
    /// A running correction stops when the error is within this fraction of
    /// the dead zone (default 0.5): hysteresis, so the rate does not flap at
    /// the edge.
    pub settle_ratio: f64,
    /// Proportional gain as a time: a nudge aims to remove the error over
    /// this long (default 1000 ms: 10 ms of error is a 1 % nudge, a lag of
    /// 50 ms or more gets the full 5 %; tuned in the simulator, where 3000
    /// ms left lags for seconds and 600 ms overshot through the players'
    /// rate actuation delay).
    pub correction_time_ms: f64,
    /// Largest nudge, as a fraction of the room's rate (default 0.05: with
    /// pitch preserved, ±5 % is not heard). At most 0.5.
    pub max_rate_deviation: f64,
    /// Smallest nudge, as a fraction of the room's rate (default 0.002:
    /// Chromium ignores playback-rate changes smaller than 0.2 % on media
    /// with an audio track, so a smaller nudge would do nothing there).
    pub min_rate_deviation: f64,
    /// A nudge is only changed when the new rate differs by at least this
    /// (default 0.002), to spare the player needless rate changes.
    pub min_rate_step: f64,
    /// A rate, once set, is held at least this long (default 1000 ms:
    /// rapid `playbackRate` writes crackle on iOS Safari, so a nudge lasts
    /// whole seconds and the rate changes at most once a second), except
    /// that a seek's cooldown restores the room's rate at once.
    pub min_hold_ms: f64,
    /// Errors of this size or more are fixed by seeking (default 300 ms: a
    /// 5 % nudge would need 6 s, while a seek aimed by the learned latency
    /// lands within a few tens of ms, which the nudge then removes in about
    /// a second).
    pub seek_threshold_ms: f64,
    /// After a seek (the controller's or anyone's), no correction for this
    /// long (default 300 ms) while the player settles and reports afresh.
    /// Seeks in a row that do not bring the error under the threshold
    /// multiply it by 4 each time, up to 64 times (19.2 s by default), so a
    /// player that never lands near its target is not seeked every second;
    /// a new room state (`seq`) ends the streak and cuts a longer cooldown
    /// back to this.
    pub cooldown_ms: f64,
    /// Seek latency assumed until one is observed (default 200 ms).
    pub seek_latency_ms: f64,
    /// Weight of each new observation in the learned seek latency (default
    /// 0.3), in 0..=1.
    pub seek_latency_alpha: f64,
    /// Observed seeks longer than this are not learned from (default
    /// 5000 ms); a seek still unfinished after this no longer blocks
    /// corrections.
    pub max_seek_latency_ms: f64,
    /// Position reports kept for the filter (default 8).
    pub filter_len: usize,
    /// Reports needed before acting (default 5, at most `filter_len`).
    pub min_reports: usize,
    /// The player reports positions truncated to multiples of this (default
    /// 0: exact).
    pub report_granularity_ms: f64,
    /// How long after a correction a matching player event counts as its
    /// echo (default 2000 ms).
    pub echo_window_ms: f64,
    /// How close a reported seek must land to the controller's target to be
    /// its echo (default 100 ms, plus the report granularity).
    pub echo_seek_tolerance_ms: f64,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig {
            enabled: true,
            dead_zone_ms: 5.0,
            settle_ratio: 0.5,
            correction_time_ms: 1000.0,
            max_rate_deviation: 0.05,
            min_rate_deviation: 0.002,
            min_rate_step: 0.002,
            min_hold_ms: 1000.0,
            seek_threshold_ms: 300.0,
            cooldown_ms: 300.0,
            seek_latency_ms: 200.0,
            seek_latency_alpha: 0.3,
            max_seek_latency_ms: 5000.0,
            filter_len: 8,
            min_reports: 5,
            report_granularity_ms: 0.0,
            echo_window_ms: 2000.0,
            echo_seek_tolerance_ms: 100.0,
        }
    }
}

impl DriftConfig {
    /// The same configuration with every value brought into range.
    fn sanitized(&self) -> Self {
        let d = DriftConfig::default();
        let filter_len = self.filter_len.max(1);
        let correction_time_ms =
            if self.correction_time_ms.is_finite() && self.correction_time_ms > 0.0 {
                self.correction_time_ms
            } else {
                d.correction_time_ms
            };
        DriftConfig {
            enabled: self.enabled,
            dead_zone_ms: non_negative_or(self.dead_zone_ms, d.dead_zone_ms),
            settle_ratio: non_negative_or(self.settle_ratio, d.settle_ratio).min(1.0),
            correction_time_ms,
            max_rate_deviation: non_negative_or(self.max_rate_deviation, d.max_rate_deviation)
                .min(0.5),
            min_rate_deviation: non_negative_or(self.min_rate_deviation, d.min_rate_deviation)
                .min(non_negative_or(self.max_rate_deviation, d.max_rate_deviation).min(0.5)),
            min_rate_step: non_negative_or(self.min_rate_step, d.min_rate_step),
            min_hold_ms: non_negative_or(self.min_hold_ms, d.min_hold_ms),
            seek_threshold_ms: non_negative_or(self.seek_threshold_ms, d.seek_threshold_ms),
            cooldown_ms: non_negative_or(self.cooldown_ms, d.cooldown_ms),
            seek_latency_ms: non_negative_or(self.seek_latency_ms, d.seek_latency_ms),
            seek_latency_alpha: non_negative_or(self.seek_latency_alpha, d.seek_latency_alpha)
                .min(1.0),
            max_seek_latency_ms: non_negative_or(self.max_seek_latency_ms, d.max_seek_latency_ms),
            filter_len,
            min_reports: self.min_reports.clamp(1, filter_len),
            report_granularity_ms: non_negative_or(
                self.report_granularity_ms,
                d.report_granularity_ms,
            ),
            echo_window_ms: non_negative_or(self.echo_window_ms, d.echo_window_ms),
            echo_seek_tolerance_ms: non_negative_or(
                self.echo_seek_tolerance_ms,
                d.echo_seek_tolerance_ms,
            ),
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

/// What the local player reports on a tick.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlayerState {
    /// Current media position, in milliseconds.
    pub position_ms: f64,
    /// Current playback rate.
    pub rate: f64,
    /// Playing (true) or paused.
    pub playing: bool,
    /// Buffering or seeking: its position says nothing now.
    pub busy: bool,
}

/// What the client should do to its player; always local, never a command.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Nothing.
    None,
    /// Set the player's playback rate to this.
    SetRate(f64),
    /// Seek the player to this position, in milliseconds.
    Seek(f64),
}

/// A change the player reported, to ask whether it is the controller's echo
/// ([`DriftController::is_own_correction`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PlayerChange {
    /// The playback rate became this.
    Rate(f64),
    /// The player seeked to this position, in milliseconds.
    Seek(f64),
}

/// A correction the controller issued: its value and local time.
#[derive(Debug, Clone, Copy)]
struct Issued {
    value: f64,
    at_ms: f64,
}

/// The previous tick, to carry stored errors forward.
#[derive(Debug, Clone, Copy)]
struct LastTick {
    local_ms: f64,
    expected_ms: f64,
    rate: f64,
    playing: bool,
}

/// Keeps a player on the room's timeline with rate nudges and, for large
/// errors, seeks. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct DriftController {
    config: DriftConfig,
    /// Recent errors (room minus player, ms), each carried forward to the
    /// last tick; oldest first.
    errors: Vec<f64>,
    last: Option<LastTick>,
    seq: Option<u64>,
    error_ms: Option<f64>,
    correcting: bool,
    last_rate_set_ms: f64,
    cooldown_until_ms: f64,
    seek_latency_ms: f64,
    latency_learned: bool,
    seek_started_ms: Option<f64>,
    issued_rate: Option<Issued>,
    issued_seek: Option<Issued>,
    /// Seeks issued without the error coming back under the threshold in
    /// between: each doubles the cooldown of the next (a player that lands
    /// on keyframes far from the target must not be seeked every second).
    seek_streak: u32,
    /// The step, in ms of media, of positions read off frames on screen
    /// (0: positions are not quantized).
    frame_quantum_ms: f64,
}

/// The dead zone of positions read off the screen, in steps: a band of
/// 1.1 steps holds at least one step of every player, and two only where
/// both lie at its very edges.
const FRAME_DEAD_ZONE: f64 = 0.55;
/// The least nudge on the screen covers this many steps within the hold.
const FRAME_STEP_NUDGE: f64 = 1.25;

/// Rates closer than this are the same rate.
const RATE_EPSILON: f64 = 1e-9;
/// A reported rate this close to an issued one is its echo.
const ECHO_RATE_TOLERANCE: f64 = 1e-6;

impl DriftController {
    /// A controller with no history.
    pub fn new(config: DriftConfig) -> Self {
        let config = config.sanitized();
        DriftController {
            seek_latency_ms: config.seek_latency_ms,
            config,
            errors: Vec::new(),
            last: None,
            seq: None,
            error_ms: None,
            correcting: false,
            last_rate_set_ms: f64::NEG_INFINITY,
            cooldown_until_ms: f64::NEG_INFINITY,
            latency_learned: false,
            seek_started_ms: None,
            issued_rate: None,
            issued_seek: None,
            seek_streak: 0,
            frame_quantum_ms: 0.0,
        }
    }

    /// The configuration in force (after out-of-range values were replaced).
    pub fn config(&self) -> &DriftConfig {
        &self.config
    }

    /// Turns correction on or off for this viewer. Off, every tick answers
    /// [`Action::None`]; a nudge in progress is not undone by the
    /// controller, so the client sets the room's rate when it turns it off.
    pub fn set_enabled(&mut self, enabled: bool) {
        if enabled != self.config.enabled {
            self.config.enabled = enabled;
            self.reset_filter();
            self.correcting = false;
        }
    }

    /// The step, in ms of media, that the positions the next ticks report
    /// move in when they come from frames on screen, 0 when they do not
    /// (see [Noise](self#noise)); anything but a finite positive value
    /// means 0.
    pub fn set_frame_quantum(&mut self, ms: f64) {
        self.frame_quantum_ms = if ms.is_finite() && ms > 0.0 { ms } else { 0.0 };
    }

    /// Whether correction is on.
    pub fn is_enabled(&self) -> bool {
        self.config.enabled
    }

    /// The seek latency the controller aims ahead by: learned from the
    /// reported seeks, or the configured one until the first.
    pub fn seek_latency_ms(&self) -> f64 {
        self.seek_latency_ms
    }

    /// The filtered error of the last tick (room position minus player
    /// position, ms; positive: the player is behind), once enough reports
    /// arrived; for display and diagnostics.
    pub fn error_ms(&self) -> Option<f64> {
        self.error_ms
    }

    /// One control step. `local_ms` is the local clock, `server_ms` the
    /// estimated server clock at that instant, `playback` the room state in
    /// force, `player` what the player reports now.
    ///
    /// Non-finite inputs, a rate that is not positive, or a state not yet in
    /// force give [`Action::None`] and change nothing.
    pub fn tick(
        &mut self,
        local_ms: f64,
        server_ms: f64,
        playback: &Playback,
        player: &PlayerState,
    ) -> Action {
        if !self.config.enabled {
            return Action::None;
        }
        let finite = [
            local_ms,
            server_ms,
            playback.position_ms,
            playback.at_ms,
            playback.rate,
            player.position_ms,
            player.rate,
        ]
        .iter()
        .all(|x| x.is_finite());
        if !finite || playback.rate <= 0.0 || player.rate < 0.0 {
            return Action::None;
        }
        if playback.playing && server_ms < playback.at_ms {
            // Scheduled, not yet in force: the client applies it then.
            return Action::None;
        }
        let g = self.config.report_granularity_ms;
        let expected_ms = playback.position_at(server_ms);
        let seek_target_ms = playback.position_at(server_ms + self.seek_latency_ms);
        let sample = expected_ms - (player.position_ms + g / 2.0);
        if !(sample.is_finite() && seek_target_ms.is_finite()) {
            // Finite inputs so large that the arithmetic overflows.
            return Action::None;
        }
        if self.seq != Some(playback.seq) {
            self.seq = Some(playback.seq);
            self.reset_filter();
            // A new room state starts afresh: the backoff of seeks that
            // kept missing the previous state's position (a paused player
            // re-aligned over and over) must not hold back the correction
            // of this one for seconds. The settling after a seek stays.
            self.seek_streak = 0;
            self.cooldown_until_ms = self
                .cooldown_until_ms
                .min(local_ms + self.config.cooldown_ms);
        }
        let seeking = self
            .seek_started_ms
            .is_some_and(|start| local_ms - start <= self.config.max_seek_latency_ms);
        if player.busy || seeking || playback.media.is_none() || playback.playing != player.playing
        {
            // Nothing to compare: the player is busy, or has not applied
            // the room's state yet (the client's job, not a correction).
            self.reset_filter();
            return Action::None;
        }

        self.observe(local_ms, expected_ms, player, sample);
        self.error_ms = if self.errors.len() >= self.config.min_reports {
            Some(trimmed_mean(&self.errors))
        } else {
            None
        };

        let room_rate = playback.rate;
        let nudged = (player.rate - room_rate).abs() > RATE_EPSILON;
        let hold_elapsed = local_ms - self.last_rate_set_ms >= self.config.min_hold_ms;
        if local_ms < self.cooldown_until_ms {
            // A seek resets whatever nudge was running.
            self.correcting = false;
            return if nudged {
                self.set_rate(room_rate, local_ms)
            } else {
                Action::None
            };
        }
        let Some(error) = self.error_ms else {
            return self.restore(nudged, hold_elapsed, room_rate, local_ms);
        };
        let q = self.frame_quantum_ms;
        let dead_zone = self
            .config
            .dead_zone_ms
            .max(g / 2.0)
            .max(FRAME_DEAD_ZONE * q);

        if !playback.playing {
            // Paused: a rate means nothing, the position is exact.
            self.correcting = false;
            if error.abs() > dead_zone.max(g) {
                return self.seek(playback.position_ms, local_ms);
            }
            self.seek_streak = 0;
            return self.restore(nudged, hold_elapsed, room_rate, local_ms);
        }
        if error.abs() >= self.config.seek_threshold_ms {
            // Aim where the room will be when the player has finished.
            return self.seek(seek_target_ms, local_ms);
        }
        self.seek_streak = 0;
        let settle = (dead_zone * self.config.settle_ratio).max(FRAME_DEAD_ZONE * q);
        if error.abs() > dead_zone || (self.correcting && error.abs() > settle) {
            self.correcting = true;
            let max = self.config.max_rate_deviation;
            let mut deviation = (error / self.config.correction_time_ms).max(-max).min(max);
            // On the screen, a nudge that ends before the player crossed a
            // step moved nothing that shows: it must cover a step (and a
            // quarter) within the hold.
            let min = self
                .config
                .min_rate_deviation
                .max(FRAME_STEP_NUDGE * q / (room_rate * self.config.min_hold_ms.max(1.0)))
                .min(max);
            if deviation.abs() < min {
                deviation = if deviation < 0.0 { -min } else { min };
            }
            let rate = room_rate * (1.0 + deviation);
            if hold_elapsed && (rate - player.rate).abs() >= self.config.min_rate_step {
                return self.set_rate(rate, local_ms);
            }
            return Action::None;
        }
        self.correcting = false;
        // On the screen a step, once crossed, is crossed: holding the nudge
        // for the rest of its hold would carry the player a step too far.
        self.restore(nudged, hold_elapsed || q > 0.0, room_rate, local_ms)
    }

    /// Carries the stored errors forward to `local_ms` and adds `error`.
    fn observe(&mut self, local_ms: f64, expected_ms: f64, player: &PlayerState, error: f64) {
        if let Some(last) = self.last {
            if local_ms >= last.local_ms {
                // Since the last tick the room moved by this much and the
                // player, at the rate it reported, by that much.
                let room_moved = expected_ms - last.expected_ms;
                let player_moved = if last.playing {
                    last.rate * (local_ms - last.local_ms)
                } else {
                    0.0
                };
                let shift = room_moved - player_moved;
                for e in &mut self.errors {
                    *e += shift;
                }
            } else {
                // The local clock went back: the history means nothing.
                self.errors.clear();
            }
        }
        self.errors.push(error);
        if self.errors.len() > self.config.filter_len {
            self.errors.remove(0);
        }
        self.last = Some(LastTick {
            local_ms,
            expected_ms,
            rate: player.rate,
            playing: player.playing,
        });
    }

    /// Back to the room's rate, once the hold is over.
    fn restore(
        &mut self,
        nudged: bool,
        hold_elapsed: bool,
        room_rate: f64,
        local_ms: f64,
    ) -> Action {
        if nudged && hold_elapsed {
            self.correcting = false;
            return self.set_rate(room_rate, local_ms);
        }
        Action::None
    }

    fn set_rate(&mut self, rate: f64, local_ms: f64) -> Action {
        // The client applies it now: the player moves at this rate from
        // this tick on, which is what the filter carries errors forward by.
        if let Some(last) = &mut self.last {
            last.rate = rate;
        }
        self.last_rate_set_ms = local_ms;
        self.issued_rate = Some(Issued {
            value: rate,
            at_ms: local_ms,
        });
        Action::SetRate(rate)
    }

    fn seek(&mut self, target_ms: f64, local_ms: f64) -> Action {
        let target_ms = target_ms.max(0.0);
        let mut backoff = 1.0;
        for _ in 0..self.seek_streak.min(3) {
            backoff *= 4.0;
        }
        self.seek_streak = self.seek_streak.saturating_add(1);
        self.cooldown_until_ms = local_ms + self.config.cooldown_ms * backoff;
        self.correcting = false;
        self.reset_filter();
        self.issued_seek = Some(Issued {
            value: target_ms,
            at_ms: local_ms,
        });
        Action::Seek(target_ms)
    }

    fn reset_filter(&mut self) {
        self.errors.clear();
        self.last = None;
        self.error_ms = None;
    }

    /// The player started seeking at local time `local_ms` (a seek of the
    /// controller's, or one the room asked for). Until it finishes, or
    /// [`DriftConfig::max_seek_latency_ms`] passed, no correction is made.
    pub fn on_seek_started(&mut self, local_ms: f64) {
        if local_ms.is_finite() {
            self.seek_started_ms = Some(local_ms);
        }
    }

    /// The player finished seeking at local time `local_ms`: the duration is
    /// learned as the seek latency, and the cooldown runs from now.
    pub fn on_seek_finished(&mut self, local_ms: f64) {
        if !local_ms.is_finite() {
            return;
        }
        if let Some(start) = self.seek_started_ms.take() {
            let took = local_ms - start;
            if took >= 0.0 && took <= self.config.max_seek_latency_ms {
                self.seek_latency_ms = if self.latency_learned {
                    self.seek_latency_ms
                        + self.config.seek_latency_alpha * (took - self.seek_latency_ms)
                } else {
                    took
                };
                self.latency_learned = true;
            }
        }
        self.cooldown_until_ms = self
            .cooldown_until_ms
            .max(local_ms + self.config.cooldown_ms);
        self.correcting = false;
        self.reset_filter();
    }

    /// Whether a change the player reported at local time `local_ms` is the
    /// echo of this controller's own correction, issued within
    /// [`DriftConfig::echo_window_ms`]: the client must not send it to the
    /// server as a command.
    pub fn is_own_correction(&self, change: PlayerChange, local_ms: f64) -> bool {
        let recent = |issued: Option<Issued>| {
            issued
                .filter(|i| local_ms >= i.at_ms && local_ms - i.at_ms <= self.config.echo_window_ms)
        };
        match change {
            PlayerChange::Rate(rate) => recent(self.issued_rate)
                .is_some_and(|i| (rate - i.value).abs() <= ECHO_RATE_TOLERANCE),
            PlayerChange::Seek(position_ms) => recent(self.issued_seek).is_some_and(|i| {
                (position_ms - i.value).abs()
                    <= self.config.echo_seek_tolerance_ms + self.config.report_granularity_ms
            }),
        }
    }
}

/// Mean of the middle of the sorted values: a quarter dropped at each end.
fn trimmed_mean(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let cut = sorted.len() / 4;
    let kept = &sorted[cut..sorted.len() - cut];
    let mut sum = 0.0;
    for v in kept {
        sum += v;
    }
    sum / kept.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(seq: u64, playing: bool, position_ms: f64, at_ms: f64, rate: f64) -> Playback {
        Playback {
            media: Some("v".into()),
            playing,
            position_ms,
            at_ms,
            rate,
            seq,
        }
    }

    /// A player the way a browser's behaves: it plays at its rate, seeks
    /// take a while and may land off target, reports may be coarse. The
    /// client around it applies every action and reports seeks.
    struct Sim {
        ctl: DriftController,
        room: Playback,
        now: f64,
        position: f64,
        rate: f64,
        playing: bool,
        seek_latency: f64,
        /// Where a seek lands relative to its target (keyframes).
        seek_landing: f64,
        seeking_until: Option<(f64, f64)>,
        granularity: f64,
        tick_ms: f64,
        actions: Vec<(f64, Action)>,
        max_abs_deviation: f64,
    }

    impl Sim {
        fn new(config: DriftConfig, room: Playback, player_position: f64) -> Sim {
            Sim {
                ctl: DriftController::new(config),
                playing: room.playing,
                rate: room.rate,
                room,
                now: 0.0,
                position: player_position,
                seek_latency: 300.0,
                seek_landing: 0.0,
                seeking_until: None,
                granularity: 0.0,
                tick_ms: 250.0,
                actions: Vec::new(),
                max_abs_deviation: 0.0,
            }
        }

        /// The true error: where the room is minus where the player is.
        fn error(&self) -> f64 {
            self.room.position_at(self.now) - self.position
        }

        fn run(&mut self, until_ms: f64) {
            while self.now < until_ms {
                let step = self.tick_ms;
                self.now += step;
                if self.seeking_until.is_none() && self.playing {
                    self.position += self.rate * step;
                }
                if let Some((done, target)) = self.seeking_until {
                    if self.now >= done {
                        self.seeking_until = None;
                        // Playing again since `done`.
                        self.position = target + self.seek_landing;
                        if self.playing {
                            self.position += self.rate * (self.now - done);
                        }
                        self.ctl.on_seek_finished(done);
                    }
                }
                let g = self.granularity;
                let reported = if g > 0.0 {
                    (self.position / g).floor() * g
                } else {
                    self.position
                };
                let player = PlayerState {
                    position_ms: reported,
                    rate: self.rate,
                    playing: self.playing,
                    busy: self.seeking_until.is_some(),
                };
                let action = self.ctl.tick(self.now, self.now, &self.room, &player);
                match action {
                    Action::None => {}
                    Action::SetRate(r) => {
                        assert!(self.ctl.is_own_correction(PlayerChange::Rate(r), self.now));
                        self.rate = r;
                        self.actions.push((self.now, action));
                    }
                    Action::Seek(p) => {
                        assert!(self.ctl.is_own_correction(PlayerChange::Seek(p), self.now));
                        self.ctl.on_seek_started(self.now);
                        self.seeking_until = Some((self.now + self.seek_latency, p));
                        self.actions.push((self.now, action));
                    }
                }
                let deviation = (self.rate / self.room.rate - 1.0).abs();
                self.max_abs_deviation = self.max_abs_deviation.max(deviation);
            }
        }

        fn seeks(&self) -> usize {
            self.actions
                .iter()
                .filter(|(_, a)| matches!(a, Action::Seek(_)))
                .count()
        }
    }

    #[test]
    fn nudges_are_at_least_two_tenths_of_a_percent_and_held_a_second() {
        let room = room(1, true, 0.0, 0.0, 1.0);
        let mut ctl = DriftController::new(DriftConfig::default());
        let mut rates = Vec::new();
        // 7 ms behind: 0.7 %; then 1 ms past the dead zone's edge: the
        // proportional nudge would be 0.06 %, it is 0.2 %.
        for i in 0..40 {
            let t = 10_000.0 + i as f64 * 50.0;
            let behind = if i < 20 { 7.0 } else { 6.0 };
            let player = PlayerState {
                position_ms: t - behind,
                rate: 1.0,
                playing: true,
                busy: false,
            };
            if let Action::SetRate(r) = ctl.tick(t, t, &room, &player) {
                rates.push((t, r));
            }
        }
        assert!(!rates.is_empty());
        for (_, r) in &rates {
            assert!((r - 1.0).abs() >= 0.002 - 1e-12, "{rates:?}");
        }
        for w in rates.windows(2) {
            assert!(w[1].0 - w[0].0 >= 1000.0, "held a second: {rates:?}");
        }
    }

    #[test]
    fn a_200_ms_lag_converges_by_nudging_within_5_percent() {
        let mut sim = Sim::new(DriftConfig::default(), room(1, true, 0.0, 0.0, 1.0), -200.0);
        sim.run(30_000.0);
        assert_eq!(sim.seeks(), 0, "{:?}", sim.actions);
        assert!(
            sim.max_abs_deviation <= 0.05 + 1e-12,
            "{}",
            sim.max_abs_deviation
        );
        assert!(sim.error().abs() <= 10.0, "error {}", sim.error());
        assert_eq!(sim.rate, 1.0, "back at the room's rate");
        // Gentle: a handful of rate changes, each held for the hold time.
        assert!(sim.actions.len() <= 12, "{:?}", sim.actions);
        let hold = DriftConfig::default().min_hold_ms;
        for pair in sim.actions.windows(2) {
            assert!(pair[1].0 - pair[0].0 >= hold, "{:?}", sim.actions);
        }
    }

    #[test]
    fn a_player_ahead_is_slowed_down() {
        let mut sim = Sim::new(DriftConfig::default(), room(1, true, 0.0, 0.0, 1.5), 250.0);
        sim.run(2_000.0);
        assert_eq!(
            sim.actions.first().map(|a| a.1),
            Some(Action::SetRate(1.5 * 0.95))
        );
        sim.run(40_000.0);
        assert!(sim.error().abs() <= 10.0, "error {}", sim.error());
        assert_eq!(sim.rate, 1.5);
    }

    #[test]
    fn a_3_s_error_seeks_once_and_settles() {
        let mut sim = Sim::new(
            DriftConfig::default(),
            room(1, true, 0.0, 0.0, 1.0),
            -3000.0,
        );
        sim.run(30_000.0);
        assert_eq!(sim.seeks(), 1, "{:?}", sim.actions);
        // The seek took 300 ms against 200 assumed: 100 ms left, nudged.
        assert!(
            sim.error().abs() <= 10.0,
            "error {} {:?}",
            sim.error(),
            sim.actions
        );
        assert_eq!(sim.rate, 1.0);
        assert_eq!(sim.ctl.seek_latency_ms(), 300.0, "learned");

        // The next large error lands on target: the latency was learned.
        sim.position -= 5000.0;
        let before = sim.actions.len();
        sim.run(34_000.0);
        assert_eq!(sim.seeks(), 2);
        assert!(sim.error().abs() <= 1.0, "error {}", sim.error());
        assert_eq!(sim.actions.len(), before + 1, "no nudge needed");
    }

    #[test]
    fn seeks_that_keep_missing_back_off() {
        // A player that lands 1.5 s early whatever it is asked (keyframes).
        let mut sim = Sim::new(
            DriftConfig::default(),
            room(1, true, 0.0, 0.0, 1.0),
            -5000.0,
        );
        sim.seek_landing = -1500.0;
        sim.run(60_000.0);
        let seeks = sim.seeks();
        assert!((2..=6).contains(&seeks), "{seeks} seeks: {:?}", sim.actions);
    }

    #[test]
    fn errors_inside_the_dead_zone_are_left_alone() {
        let mut sim = Sim::new(DriftConfig::default(), room(1, true, 0.0, 0.0, 1.0), -4.0);
        sim.run(20_000.0);
        assert!(sim.actions.is_empty(), "{:?}", sim.actions);
        sim.position -= 3.0;
        sim.run(22_000.0);
        assert!(!sim.actions.is_empty(), "7 ms is outside");
    }

    #[test]
    fn coarse_reports_neither_cause_corrections_nor_hide_real_errors() {
        // Positions truncated to 250 ms: reported errors swing by a quarter
        // second while the player is exactly in sync.
        let config = DriftConfig {
            report_granularity_ms: 250.0,
            ..DriftConfig::default()
        };
        let mut sim = Sim::new(config.clone(), room(1, true, 0.0, 0.0, 1.0), 0.0);
        sim.tick_ms = 97.0;
        sim.granularity = 250.0;
        sim.run(30_000.0);
        assert!(sim.actions.is_empty(), "{:?}", sim.actions);

        let mut sim = Sim::new(config, room(1, true, 0.0, 0.0, 1.0), -250.0);
        sim.tick_ms = 97.0;
        sim.granularity = 250.0;
        sim.run(40_000.0);
        assert_eq!(sim.seeks(), 0);
        assert!(
            sim.error().abs() <= 125.0,
            "error {} {:?}",
            sim.error(),
            sim.actions
        );
        assert_eq!(sim.rate, 1.0);
    }

    #[test]
    fn a_wild_report_is_ignored() {
        let mut ctl = DriftController::new(DriftConfig::default());
        let room = room(1, true, 0.0, 0.0, 1.0);
        for i in 0..40 {
            let t = 1000.0 + i as f64 * 250.0;
            // Every ninth report is off by seconds.
            let glitch = if i % 9 == 4 { 3000.0 } else { 0.0 };
            let player = PlayerState {
                position_ms: t + glitch,
                rate: 1.0,
                playing: true,
                busy: false,
            };
            assert_eq!(ctl.tick(t, t, &room, &player), Action::None, "tick {i}");
        }
        assert_eq!(ctl.error_ms(), Some(0.0));
    }

    #[test]
    fn the_nudge_is_bounded_and_held() {
        let config = DriftConfig {
            seek_threshold_ms: 100_000.0,
            ..DriftConfig::default()
        };
        let mut sim = Sim::new(config, room(1, true, 0.0, 0.0, 1.0), -900.0);
        sim.run(3_000.0);
        assert_eq!(
            sim.actions.first().map(|a| a.1),
            Some(Action::SetRate(1.05))
        );
        assert_eq!(sim.actions.len(), 1, "held at the bound: {:?}", sim.actions);
    }

    #[test]
    fn cooldown_after_a_seek() {
        // A long cooldown, and a threshold above the 500 ms left after the
        // seek, so that only the cooldown holds the nudge back.
        let mut ctl = DriftController::new(DriftConfig {
            cooldown_ms: 1500.0,
            seek_threshold_ms: 1000.0,
            ..DriftConfig::default()
        });
        let room = room(1, true, 0.0, 0.0, 1.0);
        let tick = |ctl: &mut DriftController, t: f64, pos: f64, rate: f64| {
            let player = PlayerState {
                position_ms: pos,
                rate,
                playing: true,
                busy: false,
            };
            ctl.tick(t, t, &room, &player)
        };
        let mut last = Action::None;
        for i in 0..5 {
            let t = 1000.0 + i as f64 * 100.0;
            last = tick(&mut ctl, t, t - 2000.0, 1.03);
        }
        assert_eq!(last, Action::Seek(1400.0 + 200.0));
        // Still nudged from earlier: restored at once, despite the hold.
        assert_eq!(tick(&mut ctl, 1500.0, 1500.0, 1.03), Action::SetRate(1.0));
        // Still off, but cooling down.
        for i in 0..10 {
            let t = 1600.0 + i as f64 * 100.0;
            assert_eq!(tick(&mut ctl, t, t - 500.0, 1.0), Action::None, "{t}");
        }
        let t = 2900.0;
        assert_eq!(tick(&mut ctl, t, t - 500.0, 1.0), Action::SetRate(1.05));
    }

    #[test]
    fn a_paused_player_is_aligned_once() {
        let mut sim = Sim::new(
            DriftConfig::default(),
            room(1, false, 5000.0, 0.0, 1.0),
            5300.0,
        );
        sim.run(10_000.0);
        assert_eq!(
            sim.actions.iter().map(|a| a.1).collect::<Vec<_>>(),
            vec![Action::Seek(5000.0)]
        );
        assert_eq!(sim.error(), 0.0);
    }

    #[test]
    fn a_disabled_controller_never_acts() {
        let config = DriftConfig {
            enabled: false,
            ..DriftConfig::default()
        };
        let mut sim = Sim::new(config, room(1, true, 0.0, 0.0, 1.0), -3000.0);
        sim.run(10_000.0);
        assert!(sim.actions.is_empty());

        let mut sim = Sim::new(DriftConfig::default(), room(1, true, 0.0, 0.0, 1.0), -200.0);
        sim.ctl.set_enabled(false);
        assert!(!sim.ctl.is_enabled());
        sim.run(10_000.0);
        assert!(sim.actions.is_empty());
        sim.ctl.set_enabled(true);
        sim.run(12_000.0);
        assert!(!sim.actions.is_empty());
    }

    #[test]
    fn own_corrections_are_recognised_and_user_changes_are_not() {
        let mut sim = Sim::new(
            DriftConfig::default(),
            room(1, true, 0.0, 0.0, 1.0),
            -3000.0,
        );
        sim.run(1_500.0);
        let Some(&(at, Action::Seek(target))) = sim.actions.first() else {
            panic!("expected a seek: {:?}", sim.actions);
        };
        let ctl = &sim.ctl;
        assert!(ctl.is_own_correction(PlayerChange::Seek(target + 40.0), at + 300.0));
        assert!(!ctl.is_own_correction(PlayerChange::Seek(target + 5000.0), at + 300.0));
        assert!(
            !ctl.is_own_correction(PlayerChange::Seek(target), at + 2500.0),
            "too late"
        );
        assert!(!ctl.is_own_correction(PlayerChange::Rate(1.5), at + 300.0));
        assert!(!ctl.is_own_correction(PlayerChange::Seek(f64::NAN), at));
    }

    #[test]
    fn a_new_room_state_restarts_the_filter() {
        let mut ctl = DriftController::new(DriftConfig::default());
        let player = |pos: f64| PlayerState {
            position_ms: pos,
            rate: 1.0,
            playing: true,
            busy: false,
        };
        let first = room(1, true, 0.0, 0.0, 1.0);
        for i in 0..4 {
            let t = 1000.0 + i as f64 * 250.0;
            ctl.tick(t, t, &first, &player(t));
        }
        // The room seeked by 10 s: a new state, which the client applies.
        let second = room(2, true, 12_000.0, 2000.0, 1.0);
        let t = 2000.0;
        assert_eq!(ctl.tick(t, t, &second, &player(12_000.0)), Action::None);
        assert_eq!(ctl.error_ms(), None, "old errors forgotten");
        // A state scheduled for later is not in force yet.
        let third = room(3, true, 0.0, 9000.0, 1.0);
        assert_eq!(ctl.tick(2250.0, 2250.0, &third, &player(0.0)), Action::None);
    }

    #[test]
    fn non_finite_inputs_change_nothing() {
        let mut ctl = DriftController::new(DriftConfig::default());
        let room = room(1, true, 0.0, 0.0, 1.0);
        let ok = PlayerState {
            position_ms: 1000.0,
            rate: 1.0,
            playing: true,
            busy: false,
        };
        ctl.tick(1000.0, 1000.0, &room, &ok);
        let before = format!("{ctl:?}");
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(ctl.tick(x, 1000.0, &room, &ok), Action::None);
            assert_eq!(ctl.tick(1250.0, x, &room, &ok), Action::None);
            let bad = PlayerState {
                position_ms: x,
                ..ok
            };
            assert_eq!(ctl.tick(1250.0, 1250.0, &room, &bad), Action::None);
            let bad = PlayerState { rate: x, ..ok };
            assert_eq!(ctl.tick(1250.0, 1250.0, &room, &bad), Action::None);
            let mut odd = room.clone();
            odd.rate = x;
            assert_eq!(ctl.tick(1250.0, 1250.0, &odd, &ok), Action::None);
            odd.rate = 1.0;
            odd.position_ms = x;
            assert_eq!(ctl.tick(1250.0, 1250.0, &odd, &ok), Action::None);
            ctl.on_seek_started(x);
            ctl.on_seek_finished(x);
            let _ = ctl.is_own_correction(PlayerChange::Rate(x), x);
        }
        assert_eq!(format!("{ctl:?}"), before);
        // Finite, but overflowing: still nothing.
        let far = PlayerState {
            position_ms: -f64::MAX,
            ..ok
        };
        assert_eq!(ctl.tick(1250.0, f64::MAX, &room, &far), Action::None);
        assert_eq!(format!("{ctl:?}"), before);
    }

    #[test]
    fn seek_latency_is_learned_smoothly() {
        let mut ctl = DriftController::new(DriftConfig::default());
        assert_eq!(ctl.seek_latency_ms(), 200.0);
        ctl.on_seek_started(0.0);
        ctl.on_seek_finished(500.0);
        assert_eq!(
            ctl.seek_latency_ms(),
            500.0,
            "the first observation replaces the guess"
        );
        ctl.on_seek_started(10_000.0);
        ctl.on_seek_finished(10_300.0);
        assert!((ctl.seek_latency_ms() - 440.0).abs() < 1e-9);
        // A stall is not a seek latency.
        ctl.on_seek_started(20_000.0);
        ctl.on_seek_finished(40_000.0);
        assert!((ctl.seek_latency_ms() - 440.0).abs() < 1e-9);
    }
}
