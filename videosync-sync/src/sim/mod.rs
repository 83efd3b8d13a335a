//! A deterministic, seeded, virtual-time simulator of a room: the benchmark
//! of the sync engine, and the bench that compares it with the policies of
//! Jellyfin SyncPlay, Syncplay and CyTube on identical sessions.
//!
//! - [`rng`]: SplitMix64 and a counter-based hash; no clock, no `rand`.
//! - [`model`]: client clocks (offset, skew), links (asymmetric base delay,
//!   exponential jitter, 1 s spikes, loss as TCP retransmission, in-order
//!   delivery) and players (applied rate, actuation delay, slow and
//!   inexact seeks, stalls, noisy and coarse reports).
//! - [`policy`]: the [`policy::Policy`] trait and its four implementations.
//! - [`scenario`]: the networks and the scripted session.
//! - [`metrics`]: what is measured, and how "steady state" and
//!   "convergence" are defined.
//!
//! The server is the engine's [`Room`] for every policy (each policy
//! chooses its scheduling lead and whether the server broadcasts its
//! position periodically; the scenario chooses the buffering policy, and
//! the simulator calls [`Room::tick`] at [`Room::next_deadline`]); the
//! server clock is the simulation's true time.
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

use crate::drift::PlayerState;
use crate::room::{
    AllowAll, CommandRequest, Recipients, Role, Room, RoomConfig, RoomEvent, Snapshot,
};
use crate::state::{MemberId, Playback};

use metrics::{Metrics, Recorder};
use model::{ClientClock, Dir, Link, Player};
use policy::{ClientPolicy, PolicyKind};
use rng::Rng;
use scenario::{Scenario, ScriptAction, Setup};

/// A message from a client to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMsg {
    /// Join the room.
    Join,
    /// A clock ping, `t0` on the client's clock.
    Ping {
        /// Client send time.
        t0: f64,
    },
    /// A command.
    Command(CommandRequest),
    /// The client's one-way delay estimate (what the room schedules by).
    Delay(f64),
    /// How long the client needs to seek (what the room adds to a seek's
    /// lead).
    SeekLatency(f64),
    /// The client's player is buffering (a stall).
    Buffering,
    /// The client's player is ready again, at the room's position.
    Ready,
}

/// A message from the server to a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMsg {
    /// The answer to a ping: `t1` receive and `t2` send, server clock.
    Pong {
        /// Echoed client send time.
        t0: f64,
        /// Server receive time.
        t1: f64,
        /// Server send time.
        t2: f64,
    },
    /// The room, for a joiner.
    Snapshot(Snapshot),
    /// A new state.
    Scheduled(Playback),
    /// The state in force, sent periodically by the servers of the
    /// policies that broadcast their position (Syncplay, CyTube).
    Heartbeat(Playback),
}

/// A server message with the server time it was sent at: what the servers
/// of Syncplay and CyTube stamp their position with.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Server time of sending.
    pub sent_ms: f64,
    /// The message.
    pub msg: ServerMsg,
}

/// How often every client ticks, in ms of true time.
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

    /// Whether the player is buffering now (a stall, not a seek): what an
    /// HTML5 player's `waiting` event says.
    pub fn is_buffering(&mut self) -> bool {
        self.player.advance_to(self.now);
        self.player.is_stalled()
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

    /// Seeks the player; `corrective` counts it as a correction (as opposed
    /// to applying a state the room scheduled).
    pub fn seek(&mut self, target_ms: f64, corrective: bool) {
        if corrective {
            *self.seeks += 1;
        }
        self.player.seek(self.now, target_ms);
    }

    /// The local time the latest seek finished at, once.
    pub fn take_seek_finished(&mut self) -> Option<f64> {
        self.player
            .take_seek_finished()
            .map(|t| self.clock.local(t))
    }

    /// Sends a message to the server.
    pub fn send(&mut self, msg: ClientMsg) {
        self.outbox.push(msg);
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
}

struct Sim {
    now: f64,
    seq: u64,
    queue: BinaryHeap<Entry>,
    room: Room,
    heartbeat_ms: Option<f64>,
    clients: Vec<Client>,
    recorder: Recorder,
    /// The room deadline a [`Ev::RoomTick`] is queued for.
    room_tick_at: Option<f64>,
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

    fn send_to_client(&mut self, c: usize, msg: ServerMsg) {
        let Some(client) = self.clients.get_mut(c) else {
            return;
        };
        let at = client.link.arrival(Dir::Down, self.now);
        let env = Envelope {
            sent_ms: self.now,
            msg,
        };
        self.push(at, Ev::ToClient(c, env));
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
        let arrivals: Vec<f64> = outbox
            .iter()
            .map(|_| client.link.arrival(Dir::Up, now))
            .collect();
        for (msg, at) in outbox.into_iter().zip(arrivals) {
            self.push(at, Ev::ToServer(c, msg));
        }
        for w in wakeups {
            let t = clock.true_time(w).max(now);
            self.push(t, Ev::Wake(c));
        }
    }

    fn fan_out(&mut self, outgoing: Vec<crate::room::Outgoing>) {
        for o in outgoing {
            let msg = match o.event {
                RoomEvent::Scheduled(p) => {
                    self.recorder.on_state(&p, self.now);
                    ServerMsg::Scheduled(p)
                }
                RoomEvent::Snapshot(s) => ServerMsg::Snapshot(s),
                RoomEvent::Waiting { members } => {
                    self.recorder.on_waiting(&members);
                    continue;
                }
                // Presence and queue events change no position.
                _ => continue,
            };
            let to: Vec<usize> = match o.to {
                Recipients::All => self.members(),
                Recipients::Member(m) => vec![member_index(m)],
                Recipients::AllExcept(m) => self
                    .members()
                    .into_iter()
                    .filter(|c| *c != member_index(m))
                    .collect(),
            };
            for c in to {
                self.send_to_client(c, msg.clone());
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

    fn on_server(&mut self, c: usize, msg: ClientMsg) {
        let member = MemberId(c as u64);
        let now = self.now;
        match msg {
            ClientMsg::Join => {
                if let Ok(out) = self.room.join(member, Role::owner(), now) {
                    self.fan_out(out);
                }
            }
            ClientMsg::Ping { t0 } => {
                // 50 us in the server between receive and send.
                self.send_to_client(
                    c,
                    ServerMsg::Pong {
                        t0,
                        t1: now,
                        t2: now + 0.05,
                    },
                );
            }
            ClientMsg::Command(request) => {
                match self.room.command(&AllowAll, member, request, now) {
                    // A play may start a wait for buffering members.
                    Ok(out) => self.fan_out(out),
                    Err(_) => self.recorder.rejected += 1,
                }
            }
            ClientMsg::Delay(d) => {
                // A refused report (an out-of-range delay) changes nothing.
                let _ = self.room.report(member, d, now);
            }
            ClientMsg::SeekLatency(d) => {
                let _ = self.room.report_seek_latency(member, d, now);
            }
            ClientMsg::Buffering => {
                if let Ok(out) = self.room.buffering(member, now) {
                    self.fan_out(out);
                }
            }
            ClientMsg::Ready => {
                if let Ok(out) = self.room.ready(member, now) {
                    self.fan_out(out);
                }
            }
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

    /// The room's deadline came: members still buffering leave the wait.
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
                self.with_client(c, |p, io| {
                    let request = CommandRequest {
                        command,
                        based_on_seq: p.seq(),
                    };
                    io.send(ClientMsg::Command(request));
                });
            }
        }
    }

    fn sample(&mut self) {
        let now = self.now;
        let ideal = self.room.playback_at(now).clone();
        let positions: Vec<Option<(f64, bool, Option<f64>)>> = self
            .clients
            .iter_mut()
            .map(|c| {
                c.joined.then(|| {
                    let pos = c.player.position(now);
                    (pos, c.player.is_stalled(), c.player.rate().1)
                })
            })
            .collect();
        let waiting: Vec<usize> = self.room.waiting().into_iter().map(member_index).collect();
        self.recorder.sample(now, &ideal, &positions, &waiting);
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
                    self.push(self.now + TICK_MS, Ev::Tick(c));
                }
                Ev::Wake(c) => self.with_client(c, |p, io| p.on_tick(io)),
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
/// factor: no skew, exact seeks...) under `policy`; `seed` drives the
/// links and the players' draws.
pub fn run_setup(scenario: &Scenario, setup: Setup, policy: PolicyKind, seed: u64) -> Metrics {
    let p = policy.policy();
    let config = RoomConfig {
        buffering: scenario.buffering(),
        ..p.room_config()
    };
    let room = Room::new(config).unwrap_or_default();
    let clients = setup
        .clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| Client {
            clock: c.clock,
            link: Link::new(c.link, seed, i as u64, scenario.duration_ms),
            player: Player::new(
                c.player.clone(),
                c.clock.skew_ppm,
                Rng::stream(seed, i as u64, 0x91A7),
            ),
            policy: p.client(&c.player),
            joined: false,
            seeks: 0,
        })
        .collect();
    let mut sim = Sim {
        now: 0.0,
        seq: 0,
        queue: BinaryHeap::new(),
        room,
        heartbeat_ms: p.heartbeat_ms(),
        clients,
        recorder: Recorder::new(scenario.bound_ms(), setup.stalls),
        room_tick_at: None,
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
    sim.recorder
        .finish(&scenario.name, p.name(), seed, seeks, scenario.duration_ms)
}

/// Runs every policy on `scenario` with `seed`, in [`PolicyKind::ALL`]
/// order.
pub fn run_all(scenario: &Scenario, seed: u64) -> Vec<Metrics> {
    PolicyKind::ALL
        .iter()
        .map(|p| run(scenario, *p, seed))
        .collect()
}
