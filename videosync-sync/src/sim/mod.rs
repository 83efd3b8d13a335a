//! A deterministic, seeded, virtual-time simulator of a room: the benchmark
//! of the sync engine, and the bench that compares it with the policies of
//! Jellyfin SyncPlay, Syncplay and CyTube on identical sessions.
//!
//! - [`rng`]: SplitMix64 and a counter-based hash; no clock, no `rand`.
//! - [`model`]: client clocks (offset, skew), links (asymmetric base delay,
//!   exponential jitter, 1 s spikes, loss as TCP retransmission, in-order
//!   delivery) and players (applied rate, changes under 0.2 % ignored as
//!   Chromium does, actuation delay, bimodal HLS seeks, stalls, noisy and
//!   coarse reads, the events an HTML5 media element fires).
//! - [`policy`]: the [`policy::Policy`] trait and its five rows: videosync
//!   (the engine's [`crate::client::Session`] behind a thin adapter),
//!   Jellyfin SyncPlay default and with correction, Syncplay, CyTube.
//! - [`scenario`]: the networks and the scripted session.
//! - [`metrics`]: what is measured, and how "steady state" and
//!   "convergence" are defined.
//!
//! The server is the engine's [`Room`] for every policy (each policy
//! chooses its scheduling lead, whether the server broadcasts its position
//! periodically, and, for Jellyfin, its group Waiting state; the scenario
//! chooses videosync's buffering policy; the simulator calls
//! [`Room::tick`] at [`Room::next_deadline`]); the server clock is the
//! simulation's true time. Every message is a protocol v2 frame that goes
//! through [`crate::protocol::encode`] and the decoders, so what the engine
//! uses is what the wire carries. Client timers fire up to 4 ms late (a
//! background tab's at most once a second).
//! Events are kept in a queue ordered by (time, sequence number), so equal
//! times run in the order they were scheduled and a seed replays exactly.
//!
//! # Examples
//!
//! ```
//! use videosync_sync::sim::{run, policy::PolicyKind, scenario::Scenario};
//!
//! let mut scenario = Scenario::lan();
//! scenario.duration_ms = 20_000.0;
//! let m = run(&scenario, PolicyKind::Videosync, 1);
//! assert!(m.pairwise_ms.p99 < 20.0, "{m:?}");
//! ```

pub mod metrics;
pub mod model;
pub mod policy;
pub mod rng;
pub mod scenario;

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::client::{PlayerEvent, PlayerRead};
use crate::drift::PlayerState;
use crate::protocol::{
    decode_client, decode_server, encode, server_messages, ClientMessage, RoomPolicy,
    ServerMessage, Stamped,
};
use crate::room::{AllowAll, CommandRequest, Recipients, Role, Room, RoomEvent};
use crate::state::{Command, MemberId, Playback};

use metrics::{ClientSample, Metrics, Recorder};
use model::{ClientClock, Dir, Link, Player};
use policy::{ClientPolicy, PolicyKind, Server};
use rng::Rng;
use scenario::{Scenario, ScriptAction, Setup};

/// A message from a client to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMsg {
    /// Join the room (the connection's `hello`, answered by a snapshot).
    Join,
    /// A protocol frame.
    Wire(Stamped<ClientMessage>),
}

/// A message from the server to a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMsg {
    /// A protocol message (stamped by the [`Envelope`]).
    Wire(ServerMessage),
    /// The state in force, sent periodically by the servers of the
    /// policies that broadcast their position (Syncplay, CyTube).
    Heartbeat(Playback),
}

/// A server message with the server time it was sent at (a protocol
/// frame's `sent_ms`).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Server time of sending.
    pub sent_ms: f64,
    /// The message.
    pub msg: ServerMsg,
}

/// How often every client ticks, in ms of true time (a background tab: once
/// a second).
pub const TICK_MS: f64 = 50.0;

/// What a client policy may see and do: its local clock, its player and
/// its connection. It never sees the true time.
#[derive(Debug)]
pub struct ClientIo<'a> {
    now: f64,
    clock: ClientClock,
    player: &'a mut Player,
    outbox: &'a mut Vec<ClientMsg>,
    wakeups: &'a mut Vec<f64>,
    seeks: &'a mut u64,
}

impl ClientIo<'_> {
    /// The local clock now.
    pub fn local_ms(&self) -> f64 {
        self.clock.local(self.now)
    }

    /// What the player reports now.
    pub fn report(&mut self) -> PlayerState {
        self.player.report(self.now)
    }

    /// A read of the player now, as the client session takes it.
    pub fn read(&mut self) -> PlayerRead {
        let r = self.player.report(self.now);
        PlayerRead {
            at_ms: self.local_ms(),
            position_ms: r.position_ms,
            rate: r.rate,
            playing: r.playing,
            seeking: self.player.is_seeking(),
            waiting: self.player.is_waiting(),
            buffered_ahead_ms: Some(self.player.buffered_ahead_ms()),
        }
    }

    /// The player's events since the last call, at local times.
    pub fn take_events(&mut self) -> Vec<(f64, PlayerEvent)> {
        self.player.advance_to(self.now);
        let clock = self.clock;
        // A browser dispatches an event on its next task: the client sees
        // it when it next runs, at the latest now.
        self.player
            .take_events()
            .into_iter()
            .map(|(t, e)| (clock.local(t.min(self.now)), e))
            .collect()
    }

    /// Asks the player to play.
    pub fn play(&mut self) {
        self.player.play(self.now);
    }

    /// Asks the player to pause.
    pub fn pause(&mut self) {
        self.player.pause(self.now);
    }

    /// Sets the room's rate (not a correction).
    pub fn set_rate(&mut self, rate: f64) {
        self.player.set_rate(self.now, rate, None);
    }

    /// Sets a corrective rate, `factor` times the room's rate.
    pub fn nudge_rate(&mut self, room_rate: f64, factor: f64) {
        self.player
            .set_rate(self.now, room_rate * factor, Some(factor));
    }

    /// Seeks the player; `counted` counts it among the client's seeks (a
    /// user's own seek is not).
    pub fn seek(&mut self, target_ms: f64, counted: bool) {
        if counted {
            *self.seeks += 1;
        }
        self.player.seek(self.now, target_ms);
    }

    /// Sends a message to the server.
    pub fn send(&mut self, msg: ClientMsg) {
        self.outbox.push(msg);
    }

    /// Sends a protocol message stamped with the local clock.
    pub fn send_wire(&mut self, msg: ClientMessage) {
        let frame = Stamped::new(self.local_ms(), msg);
        self.outbox.push(ClientMsg::Wire(frame));
    }

    /// Asks for a tick at local time `local_ms` (besides the regular ones).
    pub fn wake_at(&mut self, local_ms: f64) {
        if local_ms.is_finite() {
            self.wakeups.push(local_ms);
        }
    }
}

#[derive(Debug, Clone)]
enum Ev {
    Tick(usize),
    Wake(usize),
    ToServer(usize, ClientMsg),
    ToClient(usize, Envelope),
    Script(ScriptAction),
    RoomTick,
    Heartbeat,
    Sample,
}

#[derive(Debug)]
struct Entry {
    t: f64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed, so that the max-heap pops the earliest (time, seq).
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .t
            .total_cmp(&self.t)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

struct Client {
    clock: ClientClock,
    link: Link,
    player: Player,
    policy: Box<dyn ClientPolicy>,
    joined: bool,
    seeks: u64,
    /// Timer jitter.
    rng: Rng,
    /// A background tab: timers throttled to once a second.
    throttled: bool,
    /// Wake-ups queued, in true time.
    wakes: Vec<f64>,
}

struct Sim {
    now: f64,
    seq: u64,
    queue: BinaryHeap<Entry>,
    room: Room,
    server: Server,
    heartbeat_ms: Option<f64>,
    clients: Vec<Client>,
    recorder: Recorder,
    /// The room deadline a [`Ev::RoomTick`] is queued for.
    room_tick_at: Option<f64>,
    wire_errors: u64,
}

/// Member names on the wire.
fn name(m: MemberId) -> String {
    format!("viewer {}", m.0)
}

impl Sim {
    fn push(&mut self, t: f64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Entry {
            t,
            seq: self.seq,
            ev,
        });
    }

    /// Sends `msg` to client `c` through the wire: encoded, decoded.
    fn send_to_client(&mut self, c: usize, msg: ServerMsg) {
        let sent_ms = self.now;
        let msg = match msg {
            ServerMsg::Wire(m) => {
                let text = encode(&Stamped::new(sent_ms, m));
                match decode_server(&text) {
                    Ok(frame) => ServerMsg::Wire(frame.msg),
                    Err(_) => {
                        self.wire_errors += 1;
                        return;
                    }
                }
            }
            other => other,
        };
        let Some(client) = self.clients.get_mut(c) else {
            return;
        };
        let at = client.link.arrival(Dir::Down, self.now);
        self.push(at, Ev::ToClient(c, Envelope { sent_ms, msg }));
    }

    /// Runs `f` on client `c`'s policy, then sends what it queued.
    fn with_client(&mut self, c: usize, f: impl FnOnce(&mut dyn ClientPolicy, &mut ClientIo<'_>)) {
        let now = self.now;
        let mut outbox = Vec::new();
        let mut wakeups = Vec::new();
        let Some(client) = self.clients.get_mut(c) else {
            return;
        };
        let mut io = ClientIo {
            now,
            clock: client.clock,
            player: &mut client.player,
            outbox: &mut outbox,
            wakeups: &mut wakeups,
            seeks: &mut client.seeks,
        };
        f(client.policy.as_mut(), &mut io);
        let clock = client.clock;
        let mut sends = Vec::new();
        for msg in outbox {
            let msg = match msg {
                ClientMsg::Wire(frame) => match decode_client(&encode(&frame)) {
                    Ok(frame) => ClientMsg::Wire(frame),
                    Err(_) => {
                        self.wire_errors += 1;
                        continue;
                    }
                },
                other => other,
            };
            sends.push((client.link.arrival(Dir::Up, now), msg));
        }
        let mut wakes = Vec::new();
        for w in wakeups {
            let mut t = clock.true_time(w).max(now) + client.rng.range(0.0, 2.0);
            if client.throttled {
                t = (t / 1000.0).ceil() * 1000.0;
            }
            if !client.wakes.iter().any(|q| (q - t).abs() < 1e-3) {
                client.wakes.push(t);
                wakes.push(t);
            }
        }
        for (at, msg) in sends {
            self.push(at, Ev::ToServer(c, msg));
        }
        for t in wakes {
            self.push(t, Ev::Wake(c));
        }
    }

    fn fan_out(&mut self, outgoing: Vec<crate::room::Outgoing>) {
        let policy = RoomPolicy::of(self.room.config());
        for o in outgoing {
            match &o.event {
                RoomEvent::Scheduled(p) => self.recorder.on_state(p, self.now),
                RoomEvent::Waiting { members } => {
                    let ids: Vec<MemberId> = members.iter().map(|w| w.member).collect();
                    self.recorder.on_waiting(&ids);
                }
                _ => {}
            }
            let to: Vec<usize> = match o.to {
                Recipients::All => self.members(),
                Recipients::Member(m) => vec![member_index(m)],
                Recipients::AllExcept(m) => self
                    .members()
                    .into_iter()
                    .filter(|c| *c != member_index(m))
                    .collect(),
            };
            let messages = server_messages(&o.event, policy, &name);
            for c in to {
                for m in &messages {
                    self.send_to_client(c, ServerMsg::Wire(m.clone()));
                }
            }
        }
    }

    fn members(&self) -> Vec<usize> {
        self.room
            .members()
            .iter()
            .map(|m| member_index(m.id))
            .collect()
    }

    /// Jellyfin's Waiting group state: every member "buffers" until it has
    /// paused, seeked and reported ready.
    fn jellyfin_wait(&mut self, members: Vec<MemberId>, now: f64) {
        for m in members {
            if let Ok(out) = self.room.buffering(m, now) {
                self.fan_out(out);
            }
        }
    }

    fn on_server(&mut self, c: usize, msg: ClientMsg) {
        let member = MemberId(c as u64);
        let now = self.now;
        let frame = match msg {
            ClientMsg::Join => {
                let playing = self.room.latest().playing;
                if let Ok(out) = self.room.join(member, Role::owner(), now) {
                    self.fan_out(out);
                    if self.server == Server::JellyfinGroup && playing {
                        self.jellyfin_wait(vec![member], now);
                    }
                }
                self.schedule_room_tick();
                return;
            }
            ClientMsg::Wire(frame) => frame,
        };
        match frame.msg {
            ClientMessage::Ping { id } => {
                // Answered at once: t1 = t2 (the frame's stamp).
                self.send_to_client(
                    c,
                    ServerMsg::Wire(ServerMessage::Pong {
                        id,
                        t0_ms: frame.sent_ms,
                        t1_ms: now,
                    }),
                );
            }
            ClientMessage::Command {
                command,
                based_on_seq,
                ..
            } => {
                let seek = matches!(command, Command::Seek { .. });
                let click = matches!(command, Command::Play | Command::Pause) || seek;
                let request = CommandRequest {
                    command,
                    based_on_seq,
                };
                match self.room.command(&AllowAll, member, request, now) {
                    Ok(out) => {
                        if click {
                            let sent = self
                                .clients
                                .get(c)
                                .map_or(now, |cl| cl.clock.true_time(frame.sent_ms));
                            for o in &out {
                                if let RoomEvent::Scheduled(p) = &o.event {
                                    self.recorder.on_click(sent, p.at_ms, seek);
                                }
                            }
                        }
                        self.fan_out(out);
                        if seek && self.server == Server::JellyfinGroup && self.room.wants_to_play()
                        {
                            let all = self.room.members().iter().map(|m| m.id).collect();
                            self.jellyfin_wait(all, now);
                        }
                    }
                    Err(_) => self.recorder.rejected += 1,
                }
            }
            ClientMessage::Report {
                delay_ms,
                seek_latency_ms,
                buffered_ahead_ms,
                ..
            } => {
                // A refused report (an out-of-range value) changes nothing.
                let _ = self.room.report(member, delay_ms, now);
                if let Some(ms) = seek_latency_ms {
                    let _ = self.room.report_seek_latency(member, ms, now);
                }
                if let Some(ms) = buffered_ahead_ms {
                    if let Ok(out) = self.room.report_buffered_ahead(member, ms, now) {
                        self.fan_out(out);
                    }
                }
            }
            ClientMessage::Buffering { .. } => {
                if let Ok(out) = self.room.buffering(member, now) {
                    self.fan_out(out);
                }
            }
            ClientMessage::Ready { .. } => {
                if let Ok(out) = self.room.ready(member, now) {
                    self.fan_out(out);
                }
            }
            _ => {}
        }
        self.schedule_room_tick();
    }

    /// Queues a [`Ev::RoomTick`] at the room's next deadline, if it has one
    /// that is not queued yet.
    fn schedule_room_tick(&mut self) {
        if let Some(d) = self.room.next_deadline() {
            if self.room_tick_at != Some(d) {
                self.room_tick_at = Some(d);
                self.push(d.max(self.now), Ev::RoomTick);
            }
        }
    }

    /// The room's deadline came: members still waited for leave the wait.
    fn on_room_tick(&mut self) {
        let before = self.room.waiting();
        if let Ok(out) = self.room.tick(self.now) {
            let after = self.room.waiting();
            let dropped = before.iter().filter(|m| !after.contains(m)).count();
            self.recorder.wait_timeouts += dropped;
            self.fan_out(out);
        }
        self.room_tick_at = None;
        self.schedule_room_tick();
    }

    fn on_script(&mut self, action: ScriptAction) {
        match action {
            ScriptAction::Join(c) => {
                if let Some(client) = self.clients.get_mut(c) {
                    client.joined = true;
                }
                self.recorder.on_join(self.now);
                self.with_client(c, |_, io| io.send(ClientMsg::Join));
                self.push(self.now, Ev::Tick(c));
            }
            ScriptAction::Command(c, command) => {
                self.recorder.on_user(self.now);
                self.with_client(c, |p, io| p.user(io, command));
            }
        }
    }

    fn sample(&mut self) {
        let now = self.now;
        let ideal = self.room.playback_at(now).clone();
        let positions: Vec<Option<ClientSample>> = self
            .clients
            .iter_mut()
            .map(|c| {
                c.joined.then(|| {
                    let position_ms = c.player.position(now);
                    ClientSample {
                        position_ms,
                        stalled: c.player.is_stalled(),
                        factor: c.player.rate().1,
                        rate_changes: c.player.rate_changes(),
                    }
                })
            })
            .collect();
        let waiting: Vec<usize> = self.room.waiting().into_iter().map(member_index).collect();
        self.recorder.sample(now, &ideal, &positions, &waiting);
    }

    fn tick_interval(&mut self, c: usize) -> f64 {
        match self.clients.get_mut(c) {
            Some(client) if client.throttled => 1000.0,
            Some(client) => TICK_MS + client.rng.range(0.0, 4.0),
            None => TICK_MS,
        }
    }

    fn run(&mut self, until: f64) {
        while let Some(entry) = self.queue.pop() {
            if entry.t > until {
                break;
            }
            self.now = entry.t;
            match entry.ev {
                Ev::Tick(c) => {
                    self.with_client(c, |p, io| p.on_tick(io));
                    let next = self.tick_interval(c);
                    self.push(self.now + next, Ev::Tick(c));
                }
                Ev::Wake(c) => {
                    let now = self.now;
                    if let Some(client) = self.clients.get_mut(c) {
                        client.wakes.retain(|w| *w > now + 1e-6);
                    }
                    self.with_client(c, |p, io| p.on_tick(io));
                }
                Ev::ToServer(c, msg) => self.on_server(c, msg),
                Ev::ToClient(c, env) => self.with_client(c, |p, io| p.on_message(io, &env)),
                Ev::Script(action) => self.on_script(action),
                Ev::RoomTick => self.on_room_tick(),
                Ev::Heartbeat => {
                    let now = self.now;
                    let mut p = self.room.playback_at(now).clone();
                    p.position_ms = p.position_at(now);
                    p.at_ms = now;
                    for c in self.members() {
                        self.send_to_client(c, ServerMsg::Heartbeat(p.clone()));
                    }
                    if let Some(h) = self.heartbeat_ms {
                        self.push(now + h, Ev::Heartbeat);
                    }
                }
                Ev::Sample => {
                    self.sample();
                    self.push(self.now + metrics::SAMPLE_MS, Ev::Sample);
                }
            }
        }
    }
}

fn member_index(m: MemberId) -> usize {
    usize::try_from(m.0).unwrap_or(usize::MAX)
}

/// Runs `scenario` under `policy` with `seed` and measures it. The same
/// scenario and seed give every policy the same clients, links, players,
/// stalls and script, and the same result every time.
pub fn run(scenario: &Scenario, policy: PolicyKind, seed: u64) -> Metrics {
    run_setup(scenario, scenario.setup(seed), policy, seed)
}

/// Runs a setup drawn from `scenario` (and then changed, to isolate one
/// factor) under `policy`; `seed` drives the links and the players' draws.
pub fn run_setup(scenario: &Scenario, setup: Setup, policy: PolicyKind, seed: u64) -> Metrics {
    let p = policy.policy();
    let mut config = p.room_config();
    if p.scenario_buffering() {
        config.buffering = scenario.buffering();
    }
    let room = Room::new(config).unwrap_or_default();
    let wall = p.wall_clock();
    let clients = setup
        .clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            // The player's media clock runs on the device's crystal; the
            // clock the client reads is that one (performance.now) or an
            // NTP-disciplined wall clock (Date).
            let clock = ClientClock {
                offset_ms: c.clock.offset_ms,
                skew_ppm: if wall {
                    c.wall_skew_ppm
                } else {
                    c.clock.skew_ppm
                },
            };
            Client {
                clock,
                link: Link::new(c.link, seed, i as u64, scenario.duration_ms),
                player: Player::new(
                    c.player.clone(),
                    c.clock.skew_ppm,
                    Rng::stream(seed, i as u64, 0x91A7),
                ),
                policy: p.client(&c.player),
                joined: false,
                seeks: 0,
                rng: Rng::stream(seed, i as u64, 0x71AE),
                throttled: c.throttled,
                wakes: Vec::new(),
            }
        })
        .collect();
    let mut sim = Sim {
        now: 0.0,
        seq: 0,
        queue: BinaryHeap::new(),
        room,
        server: p.server(),
        heartbeat_ms: p.heartbeat_ms(),
        clients,
        recorder: Recorder::new(scenario.bound_ms(), setup.stalls),
        room_tick_at: None,
        wire_errors: 0,
    };
    for (t, action) in setup.script {
        sim.push(t, Ev::Script(action));
    }
    if let Some(h) = sim.heartbeat_ms {
        sim.push(h, Ev::Heartbeat);
    }
    sim.push(0.0, Ev::Sample);
    sim.run(scenario.duration_ms);
    let seeks = sim.clients.iter().map(|c| c.seeks).sum();
    let echoes = sim.clients.iter().map(|c| c.policy.echo_commands()).sum();
    let mut m = sim
        .recorder
        .finish(&scenario.name, p.name(), seed, seeks, scenario.duration_ms);
    m.echo_commands = echoes;
    m.wire_errors = sim.wire_errors;
    m
}

/// Runs every policy on `scenario` with `seed`, in [`PolicyKind::ALL`]
/// order.
pub fn run_all(scenario: &Scenario, seed: u64) -> Vec<Metrics> {
    PolicyKind::ALL
        .iter()
        .map(|p| run(scenario, *p, seed))
        .collect()
}
