//! The policies the simulator compares, behind one trait, so that all of
//! them run on identical seeded sessions.
//!
//! A policy is a server configuration (the scheduling lead of the engine's
//! [`Room`](crate::room::Room), and whether the server broadcasts its
//! position periodically) and a client: how it estimates the server clock
//! or the latency, how it applies a state, and how it corrects drift.
//!
//! Every policy's client is given the same player and network and sends
//! every command through the room, including its own (it applies them when
//! the room's state comes back). The scenario sets the room's buffering
//! policy; only the videosync client reports buffering and ready, so in a
//! room that waits for buffering members the baselines' stalled members
//! still catch up on their own (Jellyfin's group wait is not modelled).

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

/// This engine: [`OffsetEstimator`] with its own ping schedule; one-way
/// delay and seek allowance reports to the room (which schedules every
/// change for `slowest one-way delay + 100 ms`, and a seek for the slowest
/// one-way delay plus seek allowance + 100 ms); every state applied at its
/// `at_ms` on the estimated server clock (the first as soon as one clock
/// sample is in, the rest once the estimate is warm); a jump while playing
/// is a *cued seek* (`VideosyncClient::cued_seek`), started a seek
/// allowance before `at_ms` when the state arrives in time; the
/// [`DriftController`] with default settings (told the player's report
/// granularity); buffering and ready reports to the room.
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
            buffering: Buffer::No,
            cue: None,
            in_flight: false,
            latency_known: false,
            play_lead_ms: 0.0,
            learn_play_lead: false,
            granularity_ms: player.granularity_ms,
        })
    }
}

/// Where a videosync client is with a stall it reported.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Buffer {
    /// Not buffering.
    No,
    /// Reported buffering; the player is still stalled.
    Stalled,
    /// The stall ended while the room was paused: seeking to the room's
    /// paused position before reporting ready, so that the group resumes
    /// with everyone at one position.
    Realigning,
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
    buffering: Buffer,
    /// A cued seek: see [`VideosyncClient::cued_seek`].
    cue: Option<Cue>,
    /// A seek is in flight.
    in_flight: bool,
    /// A seek has finished, so the controller's seek latency is learned.
    latency_known: bool,
    /// How long before the instant to play a cued player is told to play:
    /// learned from the error the controller first measures after each
    /// cued play (the player's play latency, and whatever else makes cued
    /// plays late on this client).
    play_lead_ms: f64,
    /// A cued play happened and its first measured error is not yet in.
    learn_play_lead: bool,
    granularity_ms: f64,
}

/// A cued seek: the player was paused and sent to `target_ms`, to play
/// `state` from where it lands.
#[derive(Debug, Clone)]
struct Cue {
    state: Playback,
    target_ms: f64,
    /// Where it landed, once it has.
    landed_ms: Option<f64>,
    /// It is the second aim of a cue that landed late.
    retried: bool,
}

/// A cued seek aims this many learned seek latencies ahead (a seek takes
/// 0.8 to 1.2 times a device's typical latency)...
const CUE_LATENCY_FACTOR: f64 = 1.25;
/// ...plus this margin, in ms.
const CUE_MARGIN_MS: f64 = 30.0;
/// Weight of each measured lateness of a cued play in the play lead.
const PLAY_LEAD_GAIN: f64 = 0.5;
/// Largest play lead, in ms.
const MAX_PLAY_LEAD_MS: f64 = 50.0;
/// The seek allowance until the client has seen its player seek once.
const UNKNOWN_SEEK_ALLOWANCE_MS: f64 = 500.0;
/// A cued seek that lands with the room more than this past its position
/// is aimed once more.
const RECUE_MS: f64 = 10.0;
/// A cued player is woken this long after the instant to play, and plays
/// when the timeline is within it of the landed position.
const CUE_WAKE_SLACK_MS: f64 = 0.5;

impl VideosyncClient {
    fn started_seek(&mut self, local: f64) {
        self.ctl.on_seek_started(local);
        self.in_flight = true;
    }

    /// How long before a jump's `at_ms` a cued seek starts, and what the
    /// client reports to the room as its seek latency: the learned seek
    /// latency with a margin.
    fn seek_allowance_ms(&self) -> f64 {
        if !self.latency_known {
            // Nothing learned yet: a generous aim (devices seek in 60 to
            // 480 ms) costs a wait, a short one a second seek.
            return UNKNOWN_SEEK_ALLOWANCE_MS;
        }
        self.ctl.seek_latency_ms() * CUE_LATENCY_FACTOR + CUE_MARGIN_MS
    }

    /// Moves the player onto `state` (playing) without the error a seek's
    /// unpredictable duration leaves: pause, seek to where the room will be
    /// a little after the seek is expected to land (a seek allowance from
    /// now, and not before `state.at_ms`: a cue started early aims at the
    /// position the jump starts from), and play when the timeline reaches
    /// the position the player landed on ([`Self::play_when_cued`]). What
    /// is left is the player's play actuation delay, not a fraction of its
    /// seek latency.
    ///
    /// A cued seek in flight whose target is within the seek threshold of
    /// the new one is not restarted (a player that restarts every seek
    /// shows the old position until the last one lands): its landing serves
    /// the new state, and is aimed again if it lands late. One farther away
    /// is restarted: its landing would be no use.
    fn cued_seek(
        &mut self,
        io: &mut ClientIo<'_>,
        state: &Playback,
        server: f64,
        local: f64,
        corrective: bool,
    ) {
        let target = state.position_at((server + self.seek_allowance_ms()).max(state.at_ms));
        if self.in_flight {
            let threshold = self.ctl.config().seek_threshold_ms;
            if let Some(cue) = &mut self.cue {
                if cue.landed_ms.is_none() && (cue.target_ms - target).abs() < threshold {
                    cue.state = state.clone();
                    return;
                }
            }
        }
        io.pause();
        io.seek(target, corrective);
        self.started_seek(local);
        self.cue = Some(Cue {
            state: state.clone(),
            target_ms: target,
            landed_ms: None,
            retried: false,
        });
    }

    /// A seek landed: note where (for a cue), aim again if it landed late,
    /// or wake up when the timeline reaches it.
    fn after_seek(&mut self, io: &mut ClientIo<'_>, server: f64, local: f64) {
        let Some(cue) = self.cue.as_mut() else {
            return;
        };
        // A player that reports exact positions says where it landed; a
        // coarse one is taken to have landed on the target.
        let landed = if self.granularity_ms > 0.0 {
            cue.target_ms
        } else {
            io.report().position_ms
        };
        cue.landed_ms = Some(landed);
        let state = cue.state.clone();
        let retried = cue.retried;
        if !state.playing || state.rate <= 0.0 {
            return;
        }
        if state.position_at(server) - landed > RECUE_MS && !retried {
            // It took longer than it was aimed for (the first seek of a
            // device, before its latency is learned): aim once more, with
            // the latency just learned, instead of nudging the lag away
            // for a second.
            self.cue = None;
            self.cued_seek(io, &state, server, local, true);
            if let Some(cue) = &mut self.cue {
                cue.retried = true;
            }
            return;
        }
        let at = state.at_ms + ((landed - state.position_ms) / state.rate).max(0.0);
        let at_local = local_for(io, |l| self.est.server_time(l), at);
        io.wake_at(at_local - self.play_lead_ms + CUE_WAKE_SLACK_MS);
    }

    /// Plays a cued player once its state is in force and the room's
    /// timeline reaches where it landed (at once if it is already past it:
    /// the controller removes the rest).
    fn play_when_cued(&mut self, io: &mut ClientIo<'_>, server: f64) {
        let Some(cue) = &self.cue else {
            return;
        };
        let Some(applied) = &self.tl.applied else {
            return;
        };
        let ahead = CUE_WAKE_SLACK_MS + self.play_lead_ms;
        if applied.seq < cue.state.seq && server + ahead < cue.state.at_ms {
            return;
        }
        if !cue.state.playing {
            self.cue = None;
            return;
        }
        if let Some(landed) = cue.landed_ms {
            if cue.state.position_at(server + ahead) >= landed {
                io.play();
                self.cue = None;
                // A coarse player's first errors say too little to learn
                // from.
                self.learn_play_lead = self.granularity_ms == 0.0;
            }
        }
    }

    /// The first pending state that jumps while playing (compared with the
    /// state before it), if any.
    fn next_jump(&self) -> Option<Playback> {
        let mut prev = self.tl.applied.as_ref();
        for next in &self.tl.pending {
            if next.playing && jumps(next, prev) {
                return Some(next.clone());
            }
            prev = Some(next);
        }
        None
    }

    /// Starts the cued seek of the next jump while playing early, a seek
    /// allowance before its `at_ms`.
    fn prepare_next(&mut self, io: &mut ClientIo<'_>, server: f64, local: f64) {
        let Some(next) = self.next_jump() else {
            return;
        };
        if self.cue.as_ref().is_some_and(|c| c.state.seq >= next.seq) {
            return;
        }
        if server >= next.at_ms - self.seek_allowance_ms() {
            self.cued_seek(io, &next, server, local, false);
        }
    }

    /// Tells the room when the player stalls and when it is ready again.
    /// Ready means ready to play from the room's position: a stall that
    /// ends while the room is paused (waiting for this member, or paused by
    /// anyone) first seeks to the paused position, and reports ready when
    /// the seek has landed.
    fn report_buffering(&mut self, io: &mut ClientIo<'_>, local: f64, seek_done: bool) {
        let stalled = io.is_buffering();
        match self.buffering {
            Buffer::No if stalled => {
                self.buffering = Buffer::Stalled;
                io.send(ClientMsg::Buffering);
            }
            Buffer::Stalled if !stalled => {
                let paused_at = self
                    .tl
                    .applied
                    .as_ref()
                    .filter(|s| !s.playing && s.media.is_some())
                    .map(|s| s.position_ms);
                match paused_at {
                    Some(position) => {
                        let dead_zone = self.ctl.config().dead_zone_ms;
                        if (io.report().position_ms - position).abs() > dead_zone {
                            io.seek(position, true);
                            self.started_seek(local);
                            self.buffering = Buffer::Realigning;
                        } else {
                            self.buffering = Buffer::No;
                            io.send(ClientMsg::Ready);
                        }
                    }
                    None => {
                        self.buffering = Buffer::No;
                        io.send(ClientMsg::Ready);
                    }
                }
            }
            Buffer::Realigning if stalled => self.buffering = Buffer::Stalled,
            Buffer::Realigning if seek_done => {
                self.buffering = Buffer::No;
                io.send(ClientMsg::Ready);
            }
            _ => {}
        }
    }

    fn wake_for_pending(&self, io: &mut ClientIo<'_>) {
        if let Some(p) = self.tl.pending.first() {
            if self.est.is_warm() {
                let at = local_for(io, |l| self.est.server_time(l), p.at_ms);
                io.wake_at(at + 0.01);
            }
        }
        if let Some(next) = self.next_jump() {
            if self.est.is_warm() {
                let at = local_for(io, |l| self.est.server_time(l), next.at_ms);
                io.wake_at(at - self.seek_allowance_ms());
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
                    io.send(ClientMsg::SeekLatency(self.seek_allowance_ms()));
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
        let mut seek_done = false;
        if let Some(done) = io.take_seek_finished() {
            self.ctl.on_seek_finished(done);
            self.in_flight = false;
            self.latency_known = true;
            seek_done = true;
        }
        self.report_buffering(io, local, seek_done);
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
        let server = self.est.server_time(local);
        let promoted = if warm || self.tl.applied.is_none() {
            self.tl.promote(server)
        } else {
            None
        };
        if let Some((new, prev)) = promoted {
            let prepared = self.cue.as_ref().is_some_and(|c| c.state.seq == new.seq);
            if new.playing && jumps(&new, prev.as_ref()) {
                if !prepared {
                    self.cued_seek(io, &new, server, local, false);
                }
                io.set_rate(new.rate);
                if !warm {
                    self.provisional = Some(server - local);
                }
            } else if new.playing && self.in_flight && self.cue.is_none() {
                // Playing from where a seek is still taking the player (a
                // resume right after a seek while paused): cue it, rather
                // than play a player that is not there yet.
                self.cued_seek(io, &new, server, local, false);
                io.set_rate(new.rate);
            } else if new.playing && self.cue.is_some() {
                // A change that does not move the position (a rate) while
                // a cue waits: the cue plays on the new timeline, unless it
                // was started early for a later jump, which supersedes it.
                if let Some(cue) = &mut self.cue {
                    if cue.state.seq < new.seq {
                        cue.state = new.clone();
                        io.set_rate(new.rate);
                    }
                }
            } else {
                self.cue = None;
                let ahead = self.ctl.seek_latency_ms();
                if apply(io, &new, prev.as_ref(), server, ahead) {
                    self.started_seek(local);
                }
            }
            self.wake_for_pending(io);
        }
        if seek_done {
            self.after_seek(io, server, local);
        }
        if warm {
            self.prepare_next(io, server, local);
        }
        self.play_when_cued(io, server);
        if !warm {
            return;
        }
        if let Some(offset) = self.provisional.take() {
            // Refine the provisional jump with the warm estimate.
            if let Some(state) = self.tl.applied.clone() {
                if state.playing && ((server - local) - offset).abs() > REAIM_MS {
                    self.cued_seek(io, &state, server, local, true);
                    return;
                }
            }
        }
        let Some(state) = self.tl.applied.clone() else {
            return;
        };
        let quiet = self
            .seek_allowance_ms()
            .max(MAX_PLAY_LEAD_MS + CUE_WAKE_SLACK_MS);
        if self
            .tl
            .pending
            .first()
            .is_some_and(|next| next.at_ms <= server + quiet)
        {
            // A change is due before a correction could finish (a seek
            // started now would still be in flight), and a cued player may
            // already play the next jump: leave the player alone until the
            // change is in force.
            return;
        }
        let report = io.report();
        let action = self.ctl.tick(local, server, &state, &report);
        if self.learn_play_lead && self.cue.is_none() {
            if let Some(error) = self.ctl.error_ms() {
                // Positive: the cued play was late. Half of it each time,
                // within bounds, so that one odd reading does little.
                self.play_lead_ms =
                    (self.play_lead_ms + PLAY_LEAD_GAIN * error).clamp(0.0, MAX_PLAY_LEAD_MS);
                self.learn_play_lead = false;
            }
        }
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
                if state.playing {
                    self.cued_seek(io, &state, server, local, true);
                } else {
                    io.seek(target, true);
                    self.started_seek(local);
                }
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
