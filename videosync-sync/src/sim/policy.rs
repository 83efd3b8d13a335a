//! The policies the simulator compares, behind one trait, so that all of
//! them run on identical seeded sessions.
//!
//! A policy is a server configuration (the scheduling lead of the engine's
//! [`Room`](crate::room::Room), and whether the server broadcasts its
//! position periodically) and a client: how it estimates the server clock
//! or the latency, how it applies a state, and how it corrects drift.
//!
//! Every policy's client is given the same player and network, reports no
//! buffering (the rooms use [`BufferingPolicy::Ignore`], so a stalled member
//! catches up on its own under every policy) and sends every command
//! through the room, including its own (it applies them when the room's
//! state comes back).

use std::collections::VecDeque;

use crate::clock::{ClockConfig, OffsetEstimator};
use crate::drift::{Action, DriftConfig, DriftController};
use crate::room::{BufferingPolicy, RoomConfig};
use crate::state::Playback;

use super::model::PlayerParams;
use super::{ClientIo, ClientMsg, Envelope, ServerMsg};

/// A synchronisation policy: its server's configuration and a factory of
/// its clients.
///
/// # Contract
///
/// - Deterministic: the clients read time only from [`ClientIo`] and draw
///   no random numbers.
/// - [`ClientPolicy`] methods never panic on any message.
///
/// # Implementing
///
/// Object safe; add the new policy to [`PolicyKind`] so the bench runs it.
pub trait Policy {
    /// Its name in reports.
    fn name(&self) -> &'static str;
    /// How its server schedules changes.
    fn room_config(&self) -> RoomConfig;
    /// How often its server broadcasts the position, if it does.
    fn heartbeat_ms(&self) -> Option<f64>;
    /// A client driving a player with `player`'s characteristics (a client
    /// knows its player's report granularity, nothing else).
    fn client(&self, player: &PlayerParams) -> Box<dyn ClientPolicy>;
}

/// One client of a [`Policy`].
pub trait ClientPolicy {
    /// The newest room `seq` the client saw (what its commands are based
    /// on).
    fn seq(&self) -> u64;
    /// A message from the server arrived.
    fn on_message(&mut self, io: &mut ClientIo<'_>, env: &Envelope);
    /// A tick: every [`super::TICK_MS`], and at times the client asked for.
    fn on_tick(&mut self, io: &mut ClientIo<'_>);
}

/// The policies the bench compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// This engine.
    Videosync,
    /// Jellyfin SyncPlay with its correction switched on.
    Jellyfin,
    /// Syncplay.
    Syncplay,
    /// CyTube.
    Cytube,
}

impl PolicyKind {
    /// Every policy, this engine first.
    pub const ALL: [PolicyKind; 4] = [
        PolicyKind::Videosync,
        PolicyKind::Jellyfin,
        PolicyKind::Syncplay,
        PolicyKind::Cytube,
    ];

    /// The policy.
    pub fn policy(self) -> Box<dyn Policy> {
        match self {
            PolicyKind::Videosync => Box::new(Videosync),
            PolicyKind::Jellyfin => Box::new(Jellyfin),
            PolicyKind::Syncplay => Box::new(Syncplay),
            PolicyKind::Cytube => Box::new(Cytube),
        }
    }
}

/// The states a scheduling client knows, applied each at its `at_ms`.
#[derive(Debug, Default)]
struct Timeline {
    /// Known states not yet in force, by `seq`.
    pending: Vec<Playback>,
    /// The state the client applied last.
    applied: Option<Playback>,
    seq: u64,
}

impl Timeline {
    fn add(&mut self, p: &Playback) {
        if p.seq > self.applied.as_ref().map_or(0, |a| a.seq) {
            self.pending.push(p.clone());
            self.pending.sort_by_key(|p| p.seq);
        }
        self.seq = self.seq.max(p.seq);
    }

    /// The newest state in force at server time `server_ms`, if the client
    /// has not applied it yet; it becomes the applied one. Returns it with
    /// the one it replaces.
    fn promote(&mut self, server_ms: f64) -> Option<(Playback, Option<Playback>)> {
        let due = self.pending.iter().rposition(|p| p.at_ms <= server_ms)?;
        let new = self.pending.get(due)?.clone();
        self.pending.drain(..=due);
        let prev = self.applied.replace(new.clone());
        Some((new, prev))
    }
}

/// Whether `new` moves the position (a seek, a load, a first state)
/// rather than continuing `prev`.
fn jumps(new: &Playback, prev: Option<&Playback>) -> bool {
    match prev {
        None => true,
        Some(prev) => {
            prev.media != new.media || (new.position_ms - prev.position_at(new.at_ms)).abs() > 1.0
        }
    }
}

/// [`jumps`] for the metrics: whether a scheduled state moves the position.
pub(crate) fn jumps_for_metrics(new: &Playback, prev: &Playback) -> bool {
    jumps(new, Some(prev))
}

/// Applies a state that is now in force: seek if it jumps (to where the
/// room will be `ahead_ms` after `server_ms`), then play or pause, and the
/// room's rate. Returns whether it seeked.
fn apply(
    io: &mut ClientIo<'_>,
    new: &Playback,
    prev: Option<&Playback>,
    server_ms: f64,
    ahead_ms: f64,
) -> bool {
    let mut seeked = false;
    if jumps(new, prev) {
        let target = if new.playing {
            new.position_at(server_ms + ahead_ms)
        } else {
            new.position_ms
        };
        io.seek(target, false);
        seeked = true;
    }
    if new.playing {
        io.play();
    } else {
        io.pause();
    }
    io.set_rate(new.rate);
    seeked
}

/// The local time at which the estimate `server_time` reads `server_ms`.
fn local_for(io: &ClientIo<'_>, server_time: impl Fn(f64) -> f64, server_ms: f64) -> f64 {
    let l = io.local_ms();
    server_ms - (server_time(l) - l)
}

// ---- videosync ----------------------------------------------------------

/// This engine: [`OffsetEstimator`] with its own ping schedule, one-way
/// delay reports to the room (which schedules every change for
/// `slowest one-way delay + 100 ms`), every state applied at its `at_ms`
/// on the estimated server clock (a jump aimed ahead by the controller's
/// learned seek latency; the first state as soon as one clock sample is in,
/// the rest once the estimate is warm), and the [`DriftController`] with default
/// settings (told the player's report granularity).
#[derive(Debug, Clone, Copy)]
pub struct Videosync;

impl Policy for Videosync {
    fn name(&self) -> &'static str {
        "videosync"
    }

    fn room_config(&self) -> RoomConfig {
        RoomConfig {
            buffering: BufferingPolicy::Ignore,
            ..RoomConfig::default()
        }
    }

    fn heartbeat_ms(&self) -> Option<f64> {
        None
    }

    fn client(&self, player: &PlayerParams) -> Box<dyn ClientPolicy> {
        Box::new(VideosyncClient {
            est: OffsetEstimator::new(ClockConfig::default()),
            ctl: DriftController::new(DriftConfig {
                report_granularity_ms: player.granularity_ms,
                ..DriftConfig::default()
            }),
            tl: Timeline::default(),
            provisional: None,
        })
    }
}

/// How far the warm estimate must move from a provisional jump's to aim it
/// again.
const REAIM_MS: f64 = 20.0;

struct VideosyncClient {
    est: OffsetEstimator,
    ctl: DriftController,
    tl: Timeline,
    /// The offset a first jump was aimed with before the estimate was warm.
    provisional: Option<f64>,
}

impl VideosyncClient {
    fn wake_for_pending(&self, io: &mut ClientIo<'_>) {
        if let Some(p) = self.tl.pending.first() {
            if self.est.is_warm() {
                let at = local_for(io, |l| self.est.server_time(l), p.at_ms);
                io.wake_at(at + 0.01);
            }
        }
    }
}

impl ClientPolicy for VideosyncClient {
    fn seq(&self) -> u64 {
        self.tl.seq
    }

    fn on_message(&mut self, io: &mut ClientIo<'_>, env: &Envelope) {
        match &env.msg {
            ServerMsg::Pong { t0, t1, t2 } => {
                self.est.add_sample(*t0, *t1, *t2, io.local_ms());
                let d = self.est.one_way_delay_ms();
                if d.is_finite() {
                    io.send(ClientMsg::Delay(d));
                }
            }
            ServerMsg::Snapshot(s) => {
                self.tl.add(&s.playback);
                for p in &s.pending {
                    self.tl.add(p);
                }
                self.tl.seq = self.tl.seq.max(s.seq);
            }
            ServerMsg::Scheduled(p) => {
                self.tl.add(p);
                self.wake_for_pending(io);
            }
            ServerMsg::Heartbeat(_) => {}
        }
    }

    fn on_tick(&mut self, io: &mut ClientIo<'_>) {
        let local = io.local_ms();
        if let Some(done) = io.take_seek_finished() {
            self.ctl.on_seek_finished(done);
        }
        if self.est.next_ping_at(local) <= local {
            self.est.on_ping_sent(local);
            io.send(ClientMsg::Ping { t0: local });
        }
        // One sample (offset from half its RTT) is enough to aim a first
        // seek: a late joiner goes to the room's position at once instead
        // of sitting at 0 through the warm-up burst, and aims it again
        // (a corrective seek) if the warm estimate moved by more than
        // `REAIM_MS`; the drift controller takes over from there.
        if self.est.sample_count() == 0 {
            return;
        }
        let warm = self.est.is_warm();
        if !warm && self.tl.applied.is_some() {
            return;
        }
        let server = self.est.server_time(local);
        if let Some((new, prev)) = self.tl.promote(server) {
            let ahead = self.ctl.seek_latency_ms();
            if apply(io, &new, prev.as_ref(), server, ahead) {
                self.ctl.on_seek_started(local);
                if !warm {
                    self.provisional = Some(server - local);
                }
            }
            self.wake_for_pending(io);
        }
        if !warm {
            return;
        }
        if let Some(offset) = self.provisional.take() {
            // Refine the provisional jump with the warm estimate.
            if let Some(state) = self.tl.applied.clone() {
                if state.playing && ((server - local) - offset).abs() > REAIM_MS {
                    let target = state.position_at(server + self.ctl.seek_latency_ms());
                    io.seek(target, true);
                    self.ctl.on_seek_started(local);
                    return;
                }
            }
        }
        let Some(state) = self.tl.applied.clone() else {
            return;
        };
        let report = io.report();
        let action = self.ctl.tick(local, server, &state, &report);
        match action {
            Action::None => {}
            Action::SetRate(rate) => {
                let factor = rate / state.rate;
                if (factor - 1.0).abs() < 1e-12 {
                    io.set_rate(state.rate);
                } else {
                    io.nudge_rate(state.rate, factor);
                }
            }
            Action::Seek(target) => {
                io.seek(target, true);
                self.ctl.on_seek_started(local);
            }
        }
    }
}

// ---- Jellyfin SyncPlay --------------------------------------------------

/// Jellyfin SyncPlay with its correction switched on, from the parameters
/// quoted in issue 4 (Jellyfin's web client `TimeSyncCore` and
/// `PlaybackCore`, server `GroupStates`):
///
/// - clock: the offset of the minimum-RTT sample among the last 8 pings;
///   4 pings 1 s apart on join, then one every 60 s;
/// - scheduling: unpause (and, in this model, every change) at
///   `now + max(2 x highest ping, 500 ms)`; the client reports twice its
///   best RTT as its "delay", and the room adds no margin and a 500 ms
///   floor, so the lead is `max(2 x highest RTT, 500 ms)`;
/// - correction, checked at most every 1.5 s while playing: speed-to-sync
///   for `60 ms <= |diff| < 3000 ms` at rate `1 + diff / 1000 ms` for 1 s
///   (never below 0.2x), then back to the room's rate; skip-to-sync (seek)
///   for `|diff| >= 3000 ms`.
///
/// Assumptions: pause and seek are scheduled like unpause (Jellyfin pauses
/// at once and then seeks to the server's position; scheduling is the
/// kinder model); a seek is aimed at the position at the moment it is
/// issued (no seek-latency compensation, as Jellyfin has none); the
/// "ping" Jellyfin reports is the RTT of its best sample; the 400 ms
/// skip threshold (no rate control) does not apply, as the player has
/// rate control.
#[derive(Debug, Clone, Copy)]
pub struct Jellyfin;

impl Policy for Jellyfin {
    fn name(&self) -> &'static str {
        "jellyfin"
    }

    fn room_config(&self) -> RoomConfig {
        RoomConfig {
            margin_ms: 0.0,
            min_lead_ms: 500.0,
            max_lead_ms: 60_000.0,
            buffering: BufferingPolicy::Ignore,
            ..RoomConfig::default()
        }
    }

    fn heartbeat_ms(&self) -> Option<f64> {
        None
    }

    fn client(&self, _player: &PlayerParams) -> Box<dyn ClientPolicy> {
        Box::new(JellyfinClient {
            samples: VecDeque::new(),
            pings_sent: 0,
            last_ping: None,
            tl: Timeline::default(),
            last_check: f64::NEG_INFINITY,
            speed_until: None,
        })
    }
}

/// Jellyfin's constants.
const JF_SAMPLES: usize = 8;
const JF_GREEDY_PINGS: u32 = 4;
const JF_GREEDY_MS: f64 = 1000.0;
const JF_POLL_MS: f64 = 60_000.0;
const JF_CHECK_MS: f64 = 1500.0;
const JF_MIN_SPEED_DIFF_MS: f64 = 60.0;
const JF_SKIP_DIFF_MS: f64 = 3000.0;
const JF_SPEED_MS: f64 = 1000.0;
const JF_MIN_SPEED: f64 = 0.2;

struct JellyfinClient {
    /// (offset, rtt) of the latest pings.
    samples: VecDeque<(f64, f64)>,
    pings_sent: u32,
    last_ping: Option<f64>,
    tl: Timeline,
    last_check: f64,
    speed_until: Option<f64>,
}

impl JellyfinClient {
    fn best(&self) -> Option<(f64, f64)> {
        self.samples
            .iter()
            .copied()
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    fn offset(&self) -> Option<f64> {
        self.best().map(|b| b.0)
    }
}

impl ClientPolicy for JellyfinClient {
    fn seq(&self) -> u64 {
        self.tl.seq
    }

    fn on_message(&mut self, io: &mut ClientIo<'_>, env: &Envelope) {
        match &env.msg {
            ServerMsg::Pong { t0, t1, t2 } => {
                let t3 = io.local_ms();
                let rtt = (t3 - t0) - (t2 - t1);
                let offset = ((t1 - t0) + (t2 - t3)) / 2.0;
                self.samples.push_back((offset, rtt));
                while self.samples.len() > JF_SAMPLES {
                    self.samples.pop_front();
                }
                if let Some((_, rtt)) = self.best() {
                    io.send(ClientMsg::Delay(2.0 * rtt));
                }
            }
            ServerMsg::Snapshot(s) => {
                self.tl.add(&s.playback);
                for p in &s.pending {
                    self.tl.add(p);
                }
                self.tl.seq = self.tl.seq.max(s.seq);
            }
            ServerMsg::Scheduled(p) => {
                self.tl.add(p);
                if let Some(off) = self.offset() {
                    io.wake_at(p.at_ms - off + 0.01);
                }
            }
            ServerMsg::Heartbeat(_) => {}
        }
    }

    fn on_tick(&mut self, io: &mut ClientIo<'_>) {
        let local = io.local_ms();
        let _ = io.take_seek_finished();
        let interval = if self.pings_sent < JF_GREEDY_PINGS {
            JF_GREEDY_MS
        } else {
            JF_POLL_MS
        };
        if self.last_ping.is_none_or(|last| local - last >= interval) {
            self.pings_sent += 1;
            self.last_ping = Some(local);
            io.send(ClientMsg::Ping { t0: local });
        }
        let Some(offset) = self.offset() else {
            return;
        };
        let server = local + offset;
        if let Some((new, prev)) = self.tl.promote(server) {
            apply(io, &new, prev.as_ref(), server, 0.0);
            self.speed_until = None;
            self.last_check = local;
        }
        let Some(state) = self.tl.applied.clone() else {
            return;
        };
        if let Some(until) = self.speed_until {
            if local >= until {
                io.set_rate(state.rate);
                self.speed_until = None;
            }
            return;
        }
        if !state.playing || local - self.last_check < JF_CHECK_MS {
            return;
        }
        let report = io.report();
        if report.busy || !report.playing {
            return;
        }
        self.last_check = local;
        let expected = state.position_at(server);
        let diff = expected - report.position_ms;
        if diff.abs() >= JF_SKIP_DIFF_MS {
            io.seek(expected, true);
        } else if diff.abs() >= JF_MIN_SPEED_DIFF_MS {
            let factor = (1.0 + diff / JF_SPEED_MS).max(JF_MIN_SPEED);
            io.nudge_rate(state.rate, factor);
            self.speed_until = Some(local + JF_SPEED_MS);
        }
    }
}

// ---- Syncplay and CyTube -------------------------------------------------

/// The shared client of the two policies whose server relays changes at
/// once and broadcasts its position: a state is applied on receipt, at the
/// position it was sent with plus half the smoothed RTT (Syncplay) or
/// nothing (CyTube).
struct RelayClient {
    /// Syncplay's slow-down (threshold, rate, reset threshold), ms.
    slowdown: Option<(f64, f64, f64)>,
    /// Seek when further off than this, either way.
    seek_ms: f64,
    /// Compensate half the smoothed RTT.
    compensate: bool,
    /// Ping interval, if the client pings.
    ping_ms: Option<f64>,
    srtt: Option<f64>,
    last_ping: Option<f64>,
    room: Option<Playback>,
    seq: u64,
    slowing: bool,
}

/// Weight of the old value in Syncplay's RTT moving average.
const SP_RTT_WEIGHT: f64 = 0.85;

impl RelayClient {
    /// A client with these parameters (see the fields) and no state yet.
    fn new(
        slowdown: Option<(f64, f64, f64)>,
        seek_ms: f64,
        compensate: bool,
        ping_ms: Option<f64>,
    ) -> Self {
        RelayClient {
            slowdown,
            seek_ms,
            compensate,
            ping_ms,
            srtt: None,
            last_ping: None,
            room: None,
            seq: 0,
            slowing: false,
        }
    }

    /// Where the room is now, by the message's stamp.
    fn expected(&self, p: &Playback, sent_ms: f64) -> f64 {
        let mut pos = p.position_at(sent_ms.max(p.at_ms));
        if self.compensate && p.playing {
            pos += self.srtt.unwrap_or(0.0) / 2.0 * p.rate;
        }
        pos
    }

    fn check(&mut self, io: &mut ClientIo<'_>, p: &Playback, sent_ms: f64) {
        let report = io.report();
        if report.busy {
            return;
        }
        let expected = self.expected(p, sent_ms);
        if p.playing != report.playing {
            if p.playing {
                io.play();
            } else {
                io.pause();
            }
        }
        let ahead = report.position_ms - expected;
        if ahead.abs() > self.seek_ms {
            io.seek(expected, true);
            if self.slowing {
                self.slowing = false;
                io.set_rate(p.rate);
            }
            return;
        }
        if let (Some((threshold, rate, reset)), true) = (self.slowdown, p.playing) {
            if !self.slowing && ahead > threshold {
                self.slowing = true;
                io.nudge_rate(p.rate, rate);
            } else if self.slowing && ahead < reset {
                self.slowing = false;
                io.set_rate(p.rate);
            }
        }
    }
}

impl ClientPolicy for RelayClient {
    fn seq(&self) -> u64 {
        self.seq
    }

    fn on_message(&mut self, io: &mut ClientIo<'_>, env: &Envelope) {
        match &env.msg {
            ServerMsg::Pong { t0, t1, t2 } => {
                let rtt = (io.local_ms() - t0) - (t2 - t1);
                self.srtt = Some(match self.srtt {
                    None => rtt,
                    Some(s) => SP_RTT_WEIGHT * s + (1.0 - SP_RTT_WEIGHT) * rtt,
                });
            }
            ServerMsg::Snapshot(s) => {
                self.seq = self.seq.max(s.seq);
                let p = s.pending.last().unwrap_or(&s.playback).clone();
                let target = self.expected(&p, env.sent_ms);
                io.seek(target, false);
                if p.playing {
                    io.play();
                }
                io.set_rate(p.rate);
                self.room = Some(p);
            }
            ServerMsg::Scheduled(p) => {
                self.seq = self.seq.max(p.seq);
                if jumps(p, self.room.as_ref()) {
                    io.seek(self.expected(p, env.sent_ms), false);
                }
                if p.playing {
                    io.play();
                } else {
                    io.pause();
                }
                io.set_rate(p.rate);
                self.slowing = false;
                self.room = Some(p.clone());
            }
            ServerMsg::Heartbeat(p) => {
                if self.room.as_ref().is_some_and(|r| r.media.is_some()) {
                    self.check(io, p, env.sent_ms);
                }
            }
        }
    }

    fn on_tick(&mut self, io: &mut ClientIo<'_>) {
        let _ = io.take_seek_finished();
        let local = io.local_ms();
        if let Some(every) = self.ping_ms {
            if self.last_ping.is_none_or(|last| local - last >= every) {
                self.last_ping = Some(local);
                io.send(ClientMsg::Ping { t0: local });
            }
        }
    }
}

/// Syncplay, from the parameters quoted in issue 4 (and Syncplay's
/// `constants.py`): slow down to 0.95x when more than 1.5 s ahead of the
/// room (back to normal speed within 0.1 s of it), seek when more than
/// 4 s off, positions advanced by half the smoothed RTT (moving average,
/// weight 0.85 on the old value).
///
/// Assumptions: the server relays a change at once and sends its position
/// every second (Syncplay's client and server exchange state every
/// second; the model sends the server's side); the client pings once a
/// second (Syncplay piggybacks its RTT measurement on that exchange); the
/// 4 s seek applies both ways (Syncplay rewinds when ahead and
/// fast-forwards when behind; the issue gives one threshold).
#[derive(Debug, Clone, Copy)]
pub struct Syncplay;

impl Policy for Syncplay {
    fn name(&self) -> &'static str {
        "syncplay"
    }

    fn room_config(&self) -> RoomConfig {
        relay_room()
    }

    fn heartbeat_ms(&self) -> Option<f64> {
        Some(1000.0)
    }

    fn client(&self, _player: &PlayerParams) -> Box<dyn ClientPolicy> {
        Box::new(RelayClient::new(
            Some((1500.0, 0.95, 100.0)),
            4000.0,
            true,
            Some(1000.0),
        ))
    }
}

/// CyTube, from the parameters quoted in issue 4 (CyTube's `sync` module:
/// the server broadcasts `mediaUpdate` with its current time every 5 s, a
/// client seeks when more than 2 s off, its default `synchThreshold`).
///
/// Assumptions: changes are relayed at once and applied on receipt with no
/// latency compensation (CyTube has no clock sync and no ping); no rate
/// nudge (CyTube has none).
#[derive(Debug, Clone, Copy)]
pub struct Cytube;

impl Policy for Cytube {
    fn name(&self) -> &'static str {
        "cytube"
    }

    fn room_config(&self) -> RoomConfig {
        relay_room()
    }

    fn heartbeat_ms(&self) -> Option<f64> {
        Some(5000.0)
    }

    fn client(&self, _player: &PlayerParams) -> Box<dyn ClientPolicy> {
        Box::new(RelayClient::new(None, 2000.0, false, None))
    }
}

/// A room that relays every change at once: a lead of zero.
fn relay_room() -> RoomConfig {
    RoomConfig {
        margin_ms: 0.0,
        min_lead_ms: 0.0,
        max_lead_ms: 0.0,
        buffering: BufferingPolicy::Ignore,
        ..RoomConfig::default()
    }
}
