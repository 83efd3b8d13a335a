//! What the simulator simulates: client clocks, network links and media
//! players. All of it runs on the true (server) time `t`, in ms.

use super::rng::{hash_unit, Rng};

/// A client's local clock: `local = offset_ms + t * (1 + skew_ppm / 1e6)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientClock {
    /// Local minus server clock at `t = 0`.
    pub offset_ms: f64,
    /// How fast the local clock runs against the server's, in ppm.
    pub skew_ppm: f64,
}

impl ClientClock {
    /// The local clock's reading at true time `t`.
    pub fn local(&self, t: f64) -> f64 {
        self.offset_ms + t * (1.0 + self.skew_ppm / 1e6)
    }

    /// The true time at which the local clock reads `local`.
    pub fn true_time(&self, local: f64) -> f64 {
        (local - self.offset_ms) / (1.0 + self.skew_ppm / 1e6)
    }
}

/// A link's characteristics (one client to the server and back).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkParams {
    /// Base round trip, both directions together, in ms.
    pub rtt_ms: f64,
    /// Upstream minus downstream base delay, in ms: a constant asymmetry
    /// no ping can see.
    pub asymmetry_ms: f64,
    /// Mean of the exponential queuing delay added to each message, as a
    /// fraction of the base one-way delay (0.3: "jitter 30 %").
    pub jitter: f64,
    /// Mean time between 1 s spikes (the link freezes for a second and
    /// then delivers what queued); `None`: no spikes.
    pub spike_every_ms: Option<f64>,
    /// Probability that a message is lost once: WebSocket runs over TCP,
    /// so a loss is a retransmission after `200 ms + RTT`, not a gap.
    pub loss: f64,
}

/// An HLS segment: what a seek outside the buffer fetches before it lands.
pub const SEGMENT_MS: f64 = 4000.0;

/// Length of a spike.
pub const SPIKE_MS: f64 = 1000.0;

/// Direction of a message on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// One client's link: per-message delays are a pure function of (seed,
/// link, direction, send time), so every policy sees the same network.
#[derive(Debug, Clone)]
pub struct Link {
    params: LinkParams,
    seed: u64,
    id: u64,
    /// Spike episodes, `[start, start + SPIKE_MS)`, drawn up front.
    spikes: Vec<f64>,
    /// In-order delivery (a WebSocket): the last arrival per direction.
    last_up: f64,
    last_down: f64,
}

impl Link {
    /// A link for the session `[0, duration_ms)`.
    pub fn new(params: LinkParams, seed: u64, id: u64, duration_ms: f64) -> Self {
        let mut spikes = Vec::new();
        if let Some(every) = params.spike_every_ms.filter(|e| *e > 0.0) {
            let mut rng = Rng::stream(seed, id, 0x5_91CE);
            let mut t = rng.exp(every);
            while t < duration_ms {
                spikes.push(t);
                t += SPIKE_MS + rng.exp(every);
            }
        }
        Link {
            params,
            seed,
            id,
            spikes,
            last_up: 0.0,
            last_down: 0.0,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &LinkParams {
        &self.params
    }

    /// Base one-way delay in `dir`.
    pub fn base_ms(&self, dir: Dir) -> f64 {
        let half = self.params.rtt_ms / 2.0;
        let a = self.params.asymmetry_ms / 2.0;
        match dir {
            Dir::Up => (half + a).max(0.0),
            Dir::Down => (half - a).max(0.0),
        }
    }

    /// When a message sent at `t` in `dir` arrives.
    pub fn arrival(&mut self, dir: Dir, t: f64) -> f64 {
        let d = match dir {
            Dir::Up => 1,
            Dir::Down => 2,
        };
        let key = t.to_bits();
        let base = self.base_ms(dir);
        let u = hash_unit(self.seed, self.id, d, key);
        let mut arrival = t + base - self.params.jitter * base * (1.0 - u).ln();
        if hash_unit(self.seed, self.id, d + 8, key) < self.params.loss {
            arrival += 200.0 + self.params.rtt_ms;
        }
        if let Some(start) = self.spikes.iter().rev().find(|s| **s <= t) {
            if t < start + SPIKE_MS {
                arrival += start + SPIKE_MS - t;
            }
        }
        let last = match dir {
            Dir::Up => &mut self.last_up,
            Dir::Down => &mut self.last_down,
        };
        arrival = arrival.max(*last);
        *last = arrival;
        arrival
    }
}

/// A player's characteristics.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayerParams {
    /// Reported positions are truncated to multiples of this (250: an
    /// HTML5 `timeupdate`; 0: exact).
    pub granularity_ms: f64,
    /// Reported positions carry uniform noise of up to this either way.
    pub noise_ms: f64,
    /// This device's typical seek duration within the buffer (each such
    /// seek takes 0.8 to 1.2 times it).
    pub seek_latency_ms: f64,
    /// A seek outside the buffer fetches a segment ([`SEGMENT_MS`]): the
    /// link's RTT plus a download of 300 to 2000 ms, `waiting` meanwhile
    /// (HLS seeks are bimodal).
    pub fetch_rtt_ms: f64,
    /// Media the player buffers ahead of its position at most, ms (what
    /// lies behind, up to the same, stays buffered).
    pub buffer_ms: f64,
    /// A seek lands up to this far from its target, either way.
    pub seek_land_error_ms: f64,
    /// Play, pause and rate changes take effect after a delay drawn
    /// uniformly from this range, in the order they were given.
    pub actuation_ms: (f64, f64),
    /// Stalls, `(start, end)` in true time: the position freezes.
    pub stalls: Vec<(f64, f64)>,
}

/// What the player says happened, as an HTML5 media element's events.
pub use crate::client::PlayerEvent;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Play,
    Pause,
    Rate { rate: f64, correction: Option<f64> },
    SeekDone(f64),
    StallStart,
    StallEnd,
}

/// What a player reports (see [`crate::drift::PlayerState`]).
pub use crate::drift::PlayerState as PlayerReport;

/// A media player: its true position advances at its applied rate times
/// the device's clock ratio (the audio clock has the device's skew).
#[derive(Debug, Clone)]
pub struct Player {
    params: PlayerParams,
    ratio: f64,
    rng: Rng,
    t: f64,
    pos: f64,
    playing: bool,
    rate: f64,
    /// The factor of the running correction (rate over the room's rate
    /// when a policy set it as a correction).
    correction: Option<f64>,
    seek_target: Option<f64>,
    stalled: bool,
    ops: Vec<(f64, u64, Op)>,
    op_seq: u64,
    /// When the latest play, pause or rate command takes effect.
    last_command_at: f64,
    seek_finished: Option<f64>,
    /// The current seek fetches a segment (`waiting`).
    fetching: bool,
    /// Buffered media ahead of the position, ms, and when it was.
    buffered_ahead: f64,
    events: Vec<(f64, PlayerEvent)>,
    /// Rate changes that took effect.
    rate_changes: u64,
}

impl Player {
    /// A paused player at 0 whose media clock runs `1 + skew_ppm / 1e6`
    /// times true time.
    pub fn new(params: PlayerParams, skew_ppm: f64, rng: Rng) -> Self {
        let mut p = Player {
            ratio: 1.0 + skew_ppm / 1e6,
            rng,
            t: 0.0,
            pos: 0.0,
            playing: false,
            rate: 1.0,
            correction: None,
            seek_target: None,
            stalled: false,
            ops: Vec::new(),
            op_seq: 0,
            last_command_at: f64::NEG_INFINITY,
            seek_finished: None,
            fetching: false,
            buffered_ahead: 0.0,
            events: Vec::new(),
            rate_changes: 0,
            params,
        };
        for (a, b) in p.params.stalls.clone() {
            p.push(a, Op::StallStart);
            p.push(b, Op::StallEnd);
        }
        p
    }

    fn push(&mut self, at: f64, op: Op) {
        self.op_seq += 1;
        self.ops.push((at, self.op_seq, op));
        self.ops
            .sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    }

    fn moving(&self) -> bool {
        self.playing && self.seek_target.is_none() && !self.stalled
    }

    fn move_to(&mut self, t: f64) {
        if t > self.t {
            let dt = t - self.t;
            if self.moving() {
                self.pos += self.rate * self.ratio * dt;
            }
            if self.seek_target.is_none() && !self.stalled {
                // Downloads outpace playback three to one.
                let grow = if self.moving() { 2.0 } else { 3.0 };
                self.buffered_ahead = (self.buffered_ahead + grow * dt).min(self.params.buffer_ms);
            }
            self.t = t;
        }
    }

    /// Moves the player to true time `t`, applying what fell due.
    pub fn advance_to(&mut self, t: f64) {
        while let Some(&(at, _, op)) = self.ops.first() {
            if at > t {
                break;
            }
            self.ops.remove(0);
            self.move_to(at);
            match op {
                Op::Play => {
                    if !self.playing {
                        self.events.push((at, PlayerEvent::Play));
                    }
                    self.playing = true;
                }
                Op::Pause => {
                    if self.playing {
                        self.events.push((at, PlayerEvent::Pause));
                    }
                    self.playing = false;
                }
                Op::Rate { rate, correction } => {
                    if rate != self.rate {
                        self.events.push((at, PlayerEvent::RateChange { rate }));
                        // Chromium ignores changes under 0.2 % on media
                        // with audio: the attribute changes, the media
                        // clock does not.
                        if (rate / self.rate - 1.0).abs() >= 0.002 - 1e-12 {
                            self.rate = rate;
                            self.correction = correction;
                            self.rate_changes += 1;
                        }
                    }
                }
                Op::SeekDone(land) => {
                    self.pos = land;
                    self.seek_target = None;
                    self.seek_finished = Some(at);
                    self.events
                        .push((at, PlayerEvent::Seeked { position_ms: land }));
                    if self.fetching {
                        // A fetch brings a whole segment.
                        self.fetching = false;
                        self.buffered_ahead = SEGMENT_MS.min(self.params.buffer_ms);
                        self.events.push((at, PlayerEvent::Playing));
                    }
                }
                Op::StallStart => {
                    self.stalled = true;
                    self.buffered_ahead = 0.0;
                    self.events.push((at, PlayerEvent::Waiting));
                }
                Op::StallEnd => {
                    self.stalled = false;
                    self.events.push((at, PlayerEvent::Playing));
                }
            }
        }
        self.move_to(t);
    }

    /// When a command given at `t` takes effect: after the actuation
    /// delay, and never before a command given earlier (a player applies
    /// its commands in order).
    fn actuation(&mut self, t: f64) -> f64 {
        let (lo, hi) = self.params.actuation_ms;
        let at = (t + self.rng.range(lo, hi.max(lo))).max(self.last_command_at);
        self.last_command_at = at;
        at
    }

    /// Asks the player to play (takes effect after the actuation delay).
    pub fn play(&mut self, t: f64) {
        let at = self.actuation(t);
        self.push(at, Op::Play);
    }

    /// Asks the player to pause.
    pub fn pause(&mut self, t: f64) {
        let at = self.actuation(t);
        self.push(at, Op::Pause);
    }

    /// Asks the player for a rate; `correction` is the factor over the
    /// room's rate when this is a correction rather than the room's rate.
    pub fn set_rate(&mut self, t: f64, rate: f64, correction: Option<f64>) {
        let at = self.actuation(t);
        self.push(at, Op::Rate { rate, correction });
    }

    /// Starts a seek: the picture freezes, the player reports the target
    /// and is busy until it lands, slightly off.
    pub fn seek(&mut self, t: f64, target: f64) {
        self.advance_to(t);
        self.ops.retain(|(_, _, op)| !matches!(op, Op::SeekDone(_)));
        self.events.push((
            t,
            PlayerEvent::Seeking {
                position_ms: target,
            },
        ));
        let from = self.seek_target.unwrap_or(self.pos);
        let buffered = self.seek_target.is_none()
            && target >= from - self.params.buffer_ms
            && target <= from + self.buffered_ahead;
        let took = if buffered {
            self.params.seek_latency_ms * self.rng.range(0.8, 1.2)
        } else {
            // A segment fetch: `waiting` until it lands.
            if !self.fetching {
                self.events.push((t, PlayerEvent::Waiting));
            }
            self.fetching = true;
            self.buffered_ahead = 0.0;
            self.params.fetch_rtt_ms + self.rng.range(300.0, 2000.0)
        };
        let e = self.params.seek_land_error_ms;
        let land = (target + self.rng.range(-e, e)).max(0.0);
        self.seek_target = Some(target);
        self.push(t + took, Op::SeekDone(land));
    }

    /// The true position at `t` (what is on screen).
    pub fn position(&mut self, t: f64) -> f64 {
        self.advance_to(t);
        self.pos
    }

    /// The applied rate and its correction factor, if it is a correction.
    pub fn rate(&self) -> (f64, Option<f64>) {
        (self.rate, self.correction)
    }

    /// Whether the player is stalled now.
    pub fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// Whether the player waits for data now (a stall, or a seek fetching
    /// a segment).
    pub fn is_waiting(&self) -> bool {
        self.stalled || self.fetching
    }

    /// Whether a seek is in flight.
    pub fn is_seeking(&self) -> bool {
        self.seek_target.is_some()
    }

    /// Media buffered ahead of the position, ms.
    pub fn buffered_ahead_ms(&self) -> f64 {
        self.buffered_ahead
    }

    /// The events since the last call, with their true times.
    pub fn take_events(&mut self) -> Vec<(f64, PlayerEvent)> {
        std::mem::take(&mut self.events)
    }

    /// Rate changes that took effect so far.
    pub fn rate_changes(&self) -> u64 {
        self.rate_changes
    }

    /// What the player reports at `t`: the position with noise, truncated
    /// to the granularity; the target while seeking.
    pub fn report(&mut self, t: f64) -> PlayerReport {
        self.advance_to(t);
        let raw = self.seek_target.unwrap_or(self.pos);
        let n = self.params.noise_ms;
        let mut position_ms = (raw + self.rng.range(-n, n)).max(0.0);
        let g = self.params.granularity_ms;
        if g > 0.0 {
            position_ms = (position_ms / g).floor() * g;
        }
        PlayerReport {
            position_ms,
            rate: self.rate,
            playing: self.playing,
            busy: self.seek_target.is_some() || self.stalled,
        }
    }

    /// The true time the latest seek finished, once (for the client to
    /// tell its controller).
    pub fn take_seek_finished(&mut self) -> Option<f64> {
        self.seek_finished.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> PlayerParams {
        PlayerParams {
            granularity_ms: 0.0,
            noise_ms: 0.0,
            seek_latency_ms: 100.0,
            fetch_rtt_ms: 50.0,
            buffer_ms: 30_000.0,
            seek_land_error_ms: 0.0,
            actuation_ms: (10.0, 10.0),
            stalls: vec![(2000.0, 3000.0)],
        }
    }

    #[test]
    fn the_player_plays_stalls_and_seeks() {
        let mut p = Player::new(params(), 0.0, Rng::new(1));
        p.play(0.0);
        assert_eq!(p.position(1010.0), 1000.0);
        assert_eq!(p.position(2500.0), 1990.0, "stalled since 2000");
        assert!(p.report(2500.0).busy);
        assert_eq!(p.position(4000.0), 2990.0);
        // Within the buffer (2 s grew since the stall): fast.
        p.seek(4000.0, 4_500.0);
        assert_eq!(p.report(4050.0).position_ms, 4_500.0);
        assert_eq!(p.position(4050.0), 2990.0, "frozen while seeking");
        let pos = p.position(4200.0);
        let done = p.take_seek_finished().unwrap_or(f64::NAN);
        assert!(
            (4080.0..=4120.0).contains(&done),
            "took 0.8 to 1.2 x 100 ms: {done}"
        );
        assert!(
            (pos - (4_500.0 + 4200.0 - done)).abs() < 1e-9,
            "plays on from the target"
        );
        // Outside it: a segment fetch, `waiting` meanwhile.
        p.take_events();
        p.seek(5000.0, 100_000.0);
        assert!(p.is_waiting());
        p.position(8000.0);
        let done = p.take_seek_finished().unwrap_or(f64::NAN);
        assert!((5350.0..=7050.0).contains(&done), "RTT + 0.3..2 s: {done}");
        let events: Vec<PlayerEvent> = p.take_events().into_iter().map(|e| e.1).collect();
        assert!(
            matches!(
                events[..],
                [
                    PlayerEvent::Seeking { .. },
                    PlayerEvent::Waiting,
                    PlayerEvent::Seeked { .. },
                    PlayerEvent::Playing
                ]
            ),
            "{events:?}"
        );
    }

    #[test]
    fn rate_changes_under_two_tenths_of_a_percent_are_ignored() {
        let mut p = Player::new(params(), 0.0, Rng::new(1));
        p.play(0.0);
        p.set_rate(100.0, 1.001, Some(1.001));
        p.position(200.0);
        assert_eq!(p.rate().0, 1.0);
        assert_eq!(p.rate_changes(), 0);
        p.set_rate(300.0, 1.01, Some(1.01));
        p.position(400.0);
        assert_eq!(p.rate().0, 1.01);
        assert_eq!(p.rate_changes(), 1);
    }

    #[test]
    fn a_link_delivers_in_order_and_spikes() {
        let params = LinkParams {
            rtt_ms: 100.0,
            asymmetry_ms: 20.0,
            jitter: 0.0,
            spike_every_ms: None,
            loss: 0.0,
        };
        let mut link = Link::new(params, 1, 1, 10_000.0);
        assert_eq!(link.arrival(Dir::Up, 0.0), 60.0);
        assert_eq!(link.arrival(Dir::Down, 0.0), 40.0);
        link.spikes = vec![100.0];
        assert_eq!(link.arrival(Dir::Up, 500.0), 1160.0);
        assert_eq!(link.arrival(Dir::Up, 1200.0), 1260.0);
    }
}
