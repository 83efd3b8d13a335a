//! The policies the simulator compares, behind one trait, so that all of
//! them run on identical seeded sessions.
//!
//! A policy is a server (the engine's [`Room`](crate::room::Room) with the
//! policy's scheduling lead and buffering, and how the server treats seeks
//! and joins: [`Server`]), whether its clients read an NTP-disciplined wall
//! clock (a few ppm of skew) or a monotonic one (`performance.now`, up to
//! ±50 ppm), and a client: how it estimates the server clock or the
//! latency, how it applies a state, and how it corrects drift.
//!
//! Every client speaks protocol v2 ([`crate::protocol`]); every frame goes
//! through [`crate::protocol::encode`] and the decoders on its way. Every
//! client is given the same player and network and sends every command
//! through the room, including its own (it applies them when the room's
//! state comes back).
//!
//! The videosync client is a thin adapter around the engine's
//! [`Session`], driven exactly as a browser drives it: player events in
//! (and the commands they stand for out: a user's seek is made on the
//! player, and the session must turn its `seeking` into a command, while
//! its own actions must never come back as one), reads, ticks, actions
//! out.

use std::collections::VecDeque;

use crate::client::{Output, PlayerAction, Session, SessionConfig};
use crate::protocol::{ClientMessage, ServerMessage, Stamped};
use crate::room::{BufferingPolicy, RoomConfig};
use crate::state::{Command, Playback};

use super::model::PlayerParams;
use super::{ClientIo, ClientMsg, Envelope, ServerMsg};

/// How a policy's server treats changes, beyond the room's scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// The engine's room as it is.
    Engine,
    /// Jellyfin SyncPlay's group states: a seek while playing and a join
    /// while playing put the group in Waiting (every member pauses, seeks
    /// and reports ready; the group resumes together), as its
    /// `WaitingGroupState` does.
    JellyfinGroup,
}

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
    /// How its server schedules changes (the scenario sets the buffering
    /// policy of the engine's rooms).
    fn room_config(&self) -> RoomConfig;
    /// How its server treats seeks and joins.
    fn server(&self) -> Server {
        Server::Engine
    }
    /// How often its server broadcasts the position, if it does.
    fn heartbeat_ms(&self) -> Option<f64>;
    /// Whether its room takes the scenario's buffering policy (the
    /// baselines keep their own).
    fn scenario_buffering(&self) -> bool {
        false
    }
    /// Whether its clients read an NTP-disciplined wall clock (`Date`),
    /// whose skew against the server's is a few ppm, rather than the
    /// device's monotonic clock.
    fn wall_clock(&self) -> bool;
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
    /// A tick: every [`super::TICK_MS`] (or a throttled tab's second), and
    /// at times the client asked for.
    fn on_tick(&mut self, io: &mut ClientIo<'_>);
    /// The user asks for `command` (a click). By default, the client sends
    /// it as a command.
    fn user(&mut self, io: &mut ClientIo<'_>, command: Command) {
        let based_on_seq = self.seq();
        io.send_wire(ClientMessage::Command {
            id: 0,
            based_on_seq,
            command,
        });
    }
    /// Commands the client sent for player events it caused itself
    /// (echoes of its own corrections).
    fn echo_commands(&self) -> u64 {
        0
    }
}

/// The policies the bench compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// This engine.
    Videosync,
    /// Jellyfin SyncPlay as shipped: sync correction off.
    JellyfinDefault,
    /// Jellyfin SyncPlay with its sync correction switched on.
    JellyfinCorrection,
    /// Syncplay.
    Syncplay,
    /// CyTube.
    Cytube,
}

impl PolicyKind {
    /// Every policy, this engine first.
    pub const ALL: [PolicyKind; 5] = [
        PolicyKind::Videosync,
        PolicyKind::JellyfinDefault,
        PolicyKind::JellyfinCorrection,
        PolicyKind::Syncplay,
        PolicyKind::Cytube,
    ];

    /// The policy.
    pub fn policy(self) -> Box<dyn Policy> {
        match self {
            PolicyKind::Videosync => Box::new(Videosync),
            PolicyKind::JellyfinDefault => Box::new(Jellyfin { correction: false }),
            PolicyKind::JellyfinCorrection => Box::new(Jellyfin { correction: true }),
            PolicyKind::Syncplay => Box::new(Syncplay),
            PolicyKind::Cytube => Box::new(Cytube),
        }
    }
}

/// Whether a scheduled state moves the position, for the metrics.
pub(crate) fn jumps_for_metrics(new: &Playback, prev: &Playback) -> bool {
    crate::client::jumps(new, Some(prev))
}

// ---- videosync ----------------------------------------------------------

/// This engine: the client is [`Session`] with default settings (told the
/// player's report granularity), driven as a browser drives it; the room
/// schedules by the 99th percentile of each member's one-way delay plus
/// 100 ms, a seek by that plus the members' median seek allowance; the
/// scenario chooses the buffering policy.
#[derive(Debug, Clone, Copy)]
pub struct Videosync;

impl Policy for Videosync {
    fn name(&self) -> &'static str {
        "videosync"
    }

    fn room_config(&self) -> RoomConfig {
        RoomConfig::default()
    }

    fn heartbeat_ms(&self) -> Option<f64> {
        None
    }

    fn scenario_buffering(&self) -> bool {
        true
    }

    fn wall_clock(&self) -> bool {
        false
    }

    fn client(&self, player: &PlayerParams) -> Box<dyn ClientPolicy> {
        Box::new(VideosyncClient {
            session: Session::new(SessionConfig {
                report_granularity_ms: player.granularity_ms,
                ..SessionConfig::default()
            }),
            user_events: 0,
            echoes: 0,
        })
    }
}

/// The adapter: what a browser's glue code does around [`Session`].
struct VideosyncClient {
    session: Session,
    /// Player events the user caused that are still to come.
    user_events: u64,
    echoes: u64,
}

impl VideosyncClient {
    /// Applies the session's outputs: actions to the player, frames to the
    /// server, the wake-up it asks for.
    fn drain(&mut self, io: &mut ClientIo<'_>) {
        while let Some(out) = self.session.poll() {
            match out {
                Output::Player { action, .. } => match action {
                    PlayerAction::Play => io.play(),
                    PlayerAction::Pause => io.pause(),
                    PlayerAction::Seek { position_ms } => io.seek(position_ms, true),
                    PlayerAction::SetRate { rate } => {
                        let room = self.session.playback().map_or(1.0, |p| p.rate);
                        let factor = rate / room;
                        if (factor - 1.0).abs() < 1e-9 {
                            io.set_rate(rate);
                        } else {
                            io.nudge_rate(room, factor);
                        }
                    }
                },
                Output::Send(frame) => io.send(ClientMsg::Wire(frame)),
            }
        }
        if let Some(w) = self.session.next_wake_ms() {
            io.wake_at(w);
        }
    }

    fn feed_events(&mut self, io: &mut ClientIo<'_>) {
        for (t, event) in io.take_events() {
            if let Ok(Some(_)) = self.session.on_player_event(t, event) {
                if self.user_events > 0 {
                    self.user_events -= 1;
                } else {
                    self.echoes += 1;
                }
            }
        }
    }
}

impl ClientPolicy for VideosyncClient {
    fn seq(&self) -> u64 {
        self.session.seq()
    }

    fn on_message(&mut self, io: &mut ClientIo<'_>, env: &Envelope) {
        if let ServerMsg::Wire(msg) = &env.msg {
            let frame = Stamped::new(env.sent_ms, msg.clone());
            // A refused frame (stale, duplicate) changes nothing.
            let _ = self.session.on_message(io.local_ms(), &frame);
        }
        self.drain(io);
    }

    fn on_tick(&mut self, io: &mut ClientIo<'_>) {
        self.feed_events(io);
        let read = io.read();
        let _ = self.session.on_player(read);
        let _ = self.session.tick(io.local_ms());
        self.drain(io);
    }

    fn user(&mut self, io: &mut ClientIo<'_>, command: Command) {
        match command {
            Command::Seek { position_ms } => {
                // The user drags the seek bar: the player seeks, and the
                // session turns its `seeking` event into the command.
                self.user_events += 1;
                io.seek(position_ms, false);
            }
            command => {
                self.session.user_command(io.local_ms(), command);
                self.drain(io);
            }
        }
    }

    fn echo_commands(&self) -> u64 {
        self.echoes
    }
}

// ---- Jellyfin SyncPlay --------------------------------------------------

/// Jellyfin SyncPlay (jellyfin-web `TimeSyncCore`, `PlaybackCore`,
/// `HtmlVideoPlayer`; server `GroupStates`), with its sync correction off
/// (the default, `enableSyncCorrection` false) or on:
///
/// - clock: `Date` on both ends (a few ppm of skew); the offset of the
///   minimum-RTT sample among the last 8 pings; 4 pings 1 s apart on join,
///   then one every 60 s;
/// - scheduling: `max(2 x ping, 500 ms)` ahead, with ping = RTT / 2, so
///   `max(RTT, 500 ms)` (the client reports its best RTT as its delay; the
///   room adds no margin and a 500 ms floor);
/// - seek while playing and join while playing: the group goes Waiting:
///   every member pauses, seeks and reports ready; the group resumes
///   together ([`Server::JellyfinGroup`]); a seek is not aimed ahead (no
///   seek-latency compensation);
/// - pause: pause, then seek to the exact position;
/// - buffering: reported after 3 s of `waiting`; the group waits for it;
/// - correction (on only), checked at most every 1.5 s while playing:
///   speed-to-sync for `60 ms <= |diff| < 3000 ms` at `1 + diff / 1000 ms`
///   for 1 s (never below 0.2x), skip-to-sync at 3000 ms or more.
#[derive(Debug, Clone, Copy)]
pub struct Jellyfin {
    /// `enableSyncCorrection`.
    pub correction: bool,
}

impl Policy for Jellyfin {
    fn name(&self) -> &'static str {
        if self.correction {
            "jellyfin (correction on)"
        } else {
            "jellyfin (default: correction off)"
        }
    }

    fn room_config(&self) -> RoomConfig {
        RoomConfig {
            margin_ms: 0.0,
            min_lead_ms: 500.0,
            max_lead_ms: 60_000.0,
            max_seek_lead_ms: 60_000.0,
            buffering: BufferingPolicy::WaitForAll {
                timeout_ms: 30_000.0,
            },
            min_wait_gap_ms: 0.0,
            ..RoomConfig::default()
        }
    }

    fn server(&self) -> Server {
        Server::JellyfinGroup
    }

    fn heartbeat_ms(&self) -> Option<f64> {
        None
    }

    fn wall_clock(&self) -> bool {
        true
    }

    fn client(&self, _player: &PlayerParams) -> Box<dyn ClientPolicy> {
        Box::new(JellyfinClient {
            correction: self.correction,
            samples: VecDeque::new(),
            pings_sent: 0,
            last_ping: None,
            pending: Vec::new(),
            applied: None,
            seq: 0,
            last_check: f64::NEG_INFINITY,
            speed_until: None,
            stalled_since: None,
            buffering: false,
            ready_after_seek: false,
            next_ping_id: 1,
        })
    }
}

const JF_SAMPLES: usize = 8;
const JF_GREEDY_PINGS: u32 = 4;
const JF_GREEDY_MS: f64 = 1000.0;
const JF_POLL_MS: f64 = 60_000.0;
const JF_CHECK_MS: f64 = 1500.0;
const JF_MIN_SPEED_DIFF_MS: f64 = 60.0;
const JF_SKIP_DIFF_MS: f64 = 3000.0;
const JF_SPEED_MS: f64 = 1000.0;
const JF_MIN_SPEED: f64 = 0.2;
const JF_BUFFERING_MS: f64 = 3000.0;

struct JellyfinClient {
    correction: bool,
    /// (offset, rtt) of the latest pings.
    samples: VecDeque<(f64, f64)>,
    pings_sent: u32,
    last_ping: Option<f64>,
    pending: Vec<Playback>,
    applied: Option<Playback>,
    seq: u64,
    last_check: f64,
    speed_until: Option<f64>,
    stalled_since: Option<f64>,
    buffering: bool,
    /// Report ready when the current seek lands (a Waiting group).
    ready_after_seek: bool,
    next_ping_id: u64,
}

impl JellyfinClient {
    fn best(&self) -> Option<(f64, f64)> {
        self.samples
            .iter()
            .copied()
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    fn add(&mut self, p: &Playback) {
        let newest = self.applied.as_ref().map_or(0, |a| a.seq);
        if p.seq > newest && !self.pending.iter().any(|q| q.seq == p.seq) {
            self.pending.push(p.clone());
            self.pending.sort_by_key(|p| p.seq);
        }
        self.seq = self.seq.max(p.seq);
    }

    fn report(&self, io: &mut ClientIo<'_>, rtt: f64) {
        let read = io.read();
        io.send_wire(ClientMessage::Report {
            position_ms: read.position_ms,
            sampled_at_ms: read.at_ms,
            rate: read.rate,
            rtt_ms: rtt,
            delay_ms: rtt,
            offset_uncertainty_ms: rtt / 2.0,
            seek_latency_ms: None,
            buffered_ahead_ms: None,
        });
    }
}

impl ClientPolicy for JellyfinClient {
    fn seq(&self) -> u64 {
        self.seq
    }

    fn on_message(&mut self, io: &mut ClientIo<'_>, env: &Envelope) {
        let ServerMsg::Wire(msg) = &env.msg else {
            return;
        };
        match msg {
            ServerMessage::Pong { t0_ms, t1_ms, .. } => {
                let t3 = io.local_ms();
                let t2 = env.sent_ms;
                let rtt = (t3 - t0_ms) - (t2 - t1_ms);
                let offset = ((t1_ms - t0_ms) + (t2 - t3)) / 2.0;
                self.samples.push_back((offset, rtt));
                while self.samples.len() > JF_SAMPLES {
                    self.samples.pop_front();
                }
                if let Some((_, rtt)) = self.best() {
                    self.report(io, rtt);
                }
            }
            ServerMessage::Snapshot(s) => {
                self.add(&s.playback);
                for p in &s.pending {
                    self.add(p);
                }
                self.seq = self.seq.max(s.seq);
            }
            ServerMessage::State { playback, .. } => {
                self.add(playback);
                if let Some((off, _)) = self.best() {
                    io.wake_at(playback.at_ms - off + 0.01);
                }
            }
            _ => {}
        }
    }

    fn on_tick(&mut self, io: &mut ClientIo<'_>) {
        let local = io.local_ms();
        let mut seek_done = false;
        for (_, event) in io.take_events() {
            if matches!(event, crate::client::PlayerEvent::Seeked { .. }) {
                seek_done = true;
            }
        }
        let interval = if self.pings_sent < JF_GREEDY_PINGS {
            JF_GREEDY_MS
        } else {
            JF_POLL_MS
        };
        if self.last_ping.is_none_or(|last| local - last >= interval) {
            self.pings_sent += 1;
            self.last_ping = Some(local);
            let id = self.next_ping_id;
            self.next_ping_id += 1;
            io.send_wire(ClientMessage::Ping { id });
        }
        // Buffering after 3 s of `waiting` (HtmlVideoPlayer).
        let read = io.read();
        if read.waiting {
            let since = *self.stalled_since.get_or_insert(local);
            if !self.buffering && local - since >= JF_BUFFERING_MS {
                self.buffering = true;
                io.send_wire(ClientMessage::Buffering {
                    position_ms: read.position_ms,
                });
            }
        } else {
            self.stalled_since = None;
            if self.buffering {
                self.buffering = false;
                if let Some(p) = self.applied.clone().filter(|p| !p.playing) {
                    io.seek(p.position_ms, false);
                    self.ready_after_seek = true;
                } else {
                    io.send_wire(ClientMessage::Ready {
                        position_ms: read.position_ms,
                    });
                }
            }
        }
        if seek_done && self.ready_after_seek {
            self.ready_after_seek = false;
            let position_ms = io.read().position_ms;
            io.send_wire(ClientMessage::Ready { position_ms });
        }
        let Some((offset, _)) = self.best() else {
            return;
        };
        let server = local + offset;
        let due = self.pending.iter().rposition(|p| p.at_ms <= server);
        if let Some(due) = due {
            let new = self.pending[due].clone();
            self.pending.drain(..=due);
            let prev = self.applied.replace(new.clone());
            let jumped = crate::client::jumps(&new, prev.as_ref());
            if new.playing {
                if jumped {
                    io.seek(new.position_at(server), false);
                }
                io.play();
            } else {
                // Pause, then seek to the exact position; in a Waiting
                // group, report ready once there.
                io.pause();
                io.seek(new.position_ms, false);
                self.ready_after_seek = true;
            }
            io.set_rate(new.rate);
            self.speed_until = None;
            self.last_check = local;
        }
        let Some(state) = self.applied.clone() else {
            return;
        };
        if !self.correction {
            return;
        }
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
    next_ping_id: u64,
}

/// Weight of the old value in Syncplay's RTT moving average.
const SP_RTT_WEIGHT: f64 = 0.85;

impl RelayClient {
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
            next_ping_id: 1,
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

    fn apply(&mut self, io: &mut ClientIo<'_>, p: &Playback, sent_ms: f64, first: bool) {
        self.seq = self.seq.max(p.seq);
        if first || crate::client::jumps(p, self.room.as_ref()) {
            io.seek(self.expected(p, sent_ms), false);
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
}

impl ClientPolicy for RelayClient {
    fn seq(&self) -> u64 {
        self.seq
    }

    fn on_message(&mut self, io: &mut ClientIo<'_>, env: &Envelope) {
        match &env.msg {
            ServerMsg::Wire(ServerMessage::Pong { t0_ms, t1_ms, .. }) => {
                let rtt = (io.local_ms() - t0_ms) - (env.sent_ms - t1_ms);
                self.srtt = Some(match self.srtt {
                    None => rtt,
                    Some(s) => SP_RTT_WEIGHT * s + (1.0 - SP_RTT_WEIGHT) * rtt,
                });
            }
            ServerMsg::Wire(ServerMessage::Snapshot(s)) => {
                self.seq = self.seq.max(s.seq);
                let p = s.pending.last().unwrap_or(&s.playback).clone();
                self.apply(io, &p, env.sent_ms, true);
            }
            ServerMsg::Wire(ServerMessage::State { playback, .. }) => {
                self.apply(io, playback, env.sent_ms, false);
            }
            ServerMsg::Heartbeat(p) if self.room.as_ref().is_some_and(|r| r.media.is_some()) => {
                self.check(io, p, env.sent_ms);
            }
            _ => {}
        }
    }

    fn on_tick(&mut self, io: &mut ClientIo<'_>) {
        let _ = io.take_events();
        let local = io.local_ms();
        if let Some(every) = self.ping_ms {
            if self.last_ping.is_none_or(|last| local - last >= every) {
                self.last_ping = Some(local);
                let id = self.next_ping_id;
                self.next_ping_id += 1;
                io.send_wire(ClientMessage::Ping { id });
            }
        }
    }
}

/// Syncplay (`constants.py`): slow down to 0.95x when more than 1.5 s ahead
/// of the room (back to normal speed within 0.1 s of it), seek when more
/// than 4 s off, positions advanced by half the smoothed RTT (moving
/// average, weight 0.85 on the old value); wall clock.
///
/// Kinder than the real system, and said so: the model's server relays
/// the ideal timeline (the real one follows the slowest watcher) and the
/// model seeks both ways.
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

    fn wall_clock(&self) -> bool {
        true
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

/// CyTube (`sync` module): the server broadcasts its time every 5 s, a
/// client seeks when more than 2 s off; changes are applied on receipt
/// with no latency compensation and no rate nudge; wall clock.
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

    fn wall_clock(&self) -> bool {
        true
    }

    fn client(&self, _player: &PlayerParams) -> Box<dyn ClientPolicy> {
        Box::new(RelayClient::new(None, 2000.0, false, None))
    }
}

/// A room that relays every change at once: a lead of zero, buffering
/// ignored.
fn relay_room() -> RoomConfig {
    RoomConfig {
        margin_ms: 0.0,
        min_lead_ms: 0.0,
        max_lead_ms: 0.0,
        max_seek_lead_ms: 0.0,
        buffering: BufferingPolicy::Ignore,
        ..RoomConfig::default()
    }
}
