//! The client side of a room, sans-IO: [`Session`] turns server messages,
//! player observations and timer ticks into player actions and protocol
//! messages. A browser, an app and the simulator drive the very same type
//! (the JavaScript twin in `js/videosync-sync.js` implements it again, held
//! to it by the whole-session vectors in `vectors/session.json`).
//!
//! What goes in (every call names the local monotonic time, ms):
//!
//! - [`Session::on_message`]: a decoded server frame ([`Stamped`]); every
//!   stamp is a clock sample.
//! - [`Session::on_player`]: a position read ([`PlayerRead`]: position,
//!   rate, playing, seeking, waiting, the local time it was taken).
//! - [`Session::on_frame`]: a `requestVideoFrameCallback` sample (media
//!   time and expected display time): frame-exact, preferred over reads.
//! - [`Session::on_player_event`]: what the player says happened (`play`,
//!   `pause`, `seeking`, `seeked`, `ratechange`, `waiting`, `playing`). Every action
//!   the session issued is recognised when its event comes back and
//!   swallowed; anything else is the user's, and becomes a command
//!   (returned, and sent). So a UI that maps player events to commands can
//!   never re-broadcast an engine correction: echo-proof by construction.
//! - [`Session::user_command`]: a control of the UI (not the player's).
//! - [`Session::tick`]: at least every 50 ms, and at
//!   [`Session::next_wake_ms`].
//!
//! What comes out ([`Session::poll`]): [`Output::Player`] actions (play,
//! pause, seek, set rate), each with the local instant it is meant for
//! (now, or a little ahead: apply at once or on a timer), and
//! [`Output::Send`] frames (pings, reports, buffering, ready, commands).
//!
//! # What it does
//!
//! - Clock: [`OffsetEstimator`] fed by pongs and by the `sent_ms` of every
//!   server frame; its ping schedule.
//! - Timeline: every state (from `state`, the snapshot's `playback` and
//!   `pending`) is kept and applied at its `at_ms` on the estimated server
//!   clock, in `seq` order. The first state is applied as soon as one pong
//!   is in; the others once the estimate is warm (a first jump aimed
//!   before is *provisional* and aimed again with the warm estimate if
//!   that moved by more than 20 ms).
//! - Cued seeks: a state that jumps while playing is applied by pausing,
//!   seeking to where the room will be once the seek has landed (the
//!   learned seek latency with a margin ahead), and playing when the
//!   timeline reaches where the player landed; started a seek allowance
//!   before `at_ms` when the state arrives in time. A cue that lands late
//!   is aimed once more. The play is given a *cue lead*, learned from the
//!   first error measured after each cued play.
//! - Leads: a player starts playing, and plays at a new rate, some time
//!   after it was asked (headless Chromium: 60 to 140 ms to start after a
//!   pause, longer after a seek, 100 to 150 ms to change rate). A resume
//!   where the room stands is applied the *play lead* early, a rate change
//!   the *rate lead* early; each lead is learned from the first error
//!   measured after a change applied on time.
//! - Drift: [`DriftController`] on the position, on the room's timeline
//!   (plus the output-latency trim, minus the member's own lag when the
//!   room leaves it behind). Positions read off frames on screen
//!   ([`Session::on_frame`]) move in steps of the longer of a display
//!   refresh ([`Session::set_display_interval`]) and a frame (learned from
//!   the frames' media times); the controller is told the step, so that it
//!   does not hunt across it.
//! - Coarse players: a player whose reads are truncated to a step
//!   ([`SessionConfig::report_granularity_ms`]) is read by phase: every
//!   read bounds where the true position is, the bounds of successive reads
//!   (at dithered instants, see [`Session::next_wake_ms`]) intersect to a
//!   few ms, and the controller gets that estimate, with no wider dead
//!   zone.
//! - Buffering: a stall is reported after
//!   [`SessionConfig::buffering_debounce_ms`]; ready is reported when it
//!   ends, after seeking to the room's paused position if the room is
//!   paused, so the group resumes at one position.
//! - Reports every [`SessionConfig::report_interval_ms`]: position with the
//!   time it was read, rate, RTT, the 99th percentile of the one-way delay,
//!   the clock bound, the seek allowance and what is buffered ahead.
//!
//! Bad input (NaN, stale or future stamps, out-of-order or duplicated
//! messages) is refused with an [`ErrorCode`] and changes nothing.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::clock::{ClockConfig, OffsetEstimator};
use crate::drift::{Action, DriftConfig, DriftController, PlayerState};
use crate::protocol::{
    Behind, ClientMessage, Resume, RoomPolicy, ServerMessage, Stamped, MAX_DURATION_MS,
    MAX_POSITION_MS, MAX_TIMESTAMP_MS, PROTOCOL_VERSION,
};
use crate::state::{Command, ErrorCode, MemberId, Playback, QueueItem, Waited};

/// Tuning of a [`Session`]. Field names are the same in the JavaScript
/// twin and in the JSON vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// The clock estimator's.
    pub clock: ClockConfig,
    /// The drift controller's (default: its defaults, but seeking from
    /// 120 ms of error). Its `report_granularity_ms` is ignored: the
    /// session reads coarse players by phase and hands the controller
    /// estimated exact positions.
    pub drift: DriftConfig,
    /// Reads are truncated to multiples of this (0: exact; 250: an HTML5
    /// player read only on `timeupdate`).
    pub report_granularity_ms: f64,
    /// Uniform noise of the reads either way, ms (default 2): how far a read
    /// may be off before truncation, for the phase bounds.
    pub read_noise_ms: f64,
    /// The allowance of a seek that fetches until one was seen (default
    /// 2000: an HLS segment fetch takes up to about two seconds).
    pub unknown_seek_allowance_ms: f64,
    /// A stall shorter than this is not reported (default 1000).
    pub buffering_debounce_ms: f64,
    /// Interval of reports (default 1000).
    pub report_interval_ms: f64,
    /// How long an issued action's event may take to come back (default
    /// 5000 ms; a seek outside the buffer takes seconds).
    pub echo_window_ms: f64,
    /// The device's output latency, ms (manual trim plus
    /// `AudioContext.outputLatency` where the browser gives it): the
    /// player runs this far ahead so that what is heard is in sync.
    pub output_latency_ms: f64,
    /// The display's refresh interval, ms (0, the default: unknown). A
    /// frame on screen shows at a refresh, so positions read off frames
    /// ([`Session::on_frame`]) move in steps of it, and the drift
    /// controller's dead zone is widened to match (see the drift module's
    /// Noise section). A page measures it and sets it with
    /// [`Session::set_display_interval`].
    pub display_interval_ms: f64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            clock: ClockConfig::default(),
            drift: DriftConfig {
                // A cued seek within the buffer costs a freeze of about a
                // tenth of a second; a 5 % nudge needs 2.4 s for 120 ms.
                seek_threshold_ms: 120.0,
                ..DriftConfig::default()
            },
            report_granularity_ms: 0.0,
            read_noise_ms: 2.0,
            unknown_seek_allowance_ms: 2000.0,
            buffering_debounce_ms: 1000.0,
            report_interval_ms: 1000.0,
            echo_window_ms: 5000.0,
            output_latency_ms: 0.0,
            display_interval_ms: 0.0,
        }
    }
}

/// One read of the player.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlayerRead {
    /// The local time the read was taken.
    pub at_ms: f64,
    /// `currentTime`, in ms (truncated for a coarse player).
    pub position_ms: f64,
    /// `playbackRate`.
    pub rate: f64,
    /// Not paused.
    pub playing: bool,
    /// Seeking.
    pub seeking: bool,
    /// Waiting for data (stalled), not seeking.
    pub waiting: bool,
    /// Media buffered ahead of the position, ms, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffered_ahead_ms: Option<f64>,
}

/// What the player says happened.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PlayerEvent {
    /// `play`.
    Play,
    /// `pause`.
    Pause,
    /// `seeking`: a seek to this position started (fired at once, whoever
    /// set `currentTime`).
    Seeking {
        /// Its target.
        position_ms: f64,
    },
    /// `seeked`: a seek finished at this position.
    Seeked {
        /// Where it landed.
        position_ms: f64,
    },
    /// `ratechange` to this rate.
    RateChange {
        /// The new `playbackRate`.
        rate: f64,
    },
    /// `waiting`: stalled for data.
    Waiting,
    /// `playing` (or `canplay`): data again.
    Playing,
}

/// What the session asks of the player.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum PlayerAction {
    /// `play()`.
    Play,
    /// `pause()`.
    Pause,
    /// Set `currentTime`.
    Seek {
        /// The target, ms.
        position_ms: f64,
    },
    /// Set `playbackRate`.
    SetRate {
        /// The rate.
        rate: f64,
    },
}

/// Something to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A player action, meant for local time `at_ms` (now, or a little
    /// ahead).
    Player {
        /// The local instant it is meant for.
        at_ms: f64,
        /// The action.
        action: PlayerAction,
    },
    /// A frame to send.
    Send(Stamped<ClientMessage>),
}

/// Why the session refused an input; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct SessionError {
    /// What went wrong.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> SessionError {
    SessionError {
        code,
        message: message.into(),
    }
}

/// The states a client knows, applied each at its `at_ms`.
#[derive(Debug, Clone, Default)]
struct Timeline {
    /// Known states not yet in force, by `seq`.
    pending: Vec<Playback>,
    /// The state applied last.
    applied: Option<Playback>,
}

impl Timeline {
    fn applied_seq(&self) -> u64 {
        self.applied.as_ref().map_or(0, |a| a.seq)
    }

    /// Adds `p` unless it is older than what is known; returns whether it
    /// was new.
    fn add(&mut self, p: &Playback) -> bool {
        if p.seq <= self.applied_seq() || self.pending.iter().any(|q| q.seq == p.seq) {
            return false;
        }
        self.pending.push(p.clone());
        self.pending.sort_by_key(|p| p.seq);
        true
    }

    /// The newest state in force at server time `server_ms`, if not yet
    /// applied; it becomes the applied one. Returns it with the one it
    /// replaces.
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
pub(crate) fn jumps(new: &Playback, prev: Option<&Playback>) -> bool {
    match prev {
        None => true,
        Some(prev) => {
            prev.media != new.media || (new.position_ms - prev.position_at(new.at_ms)).abs() > 1.0
        }
    }
}

/// `ms` when it is a duration of 0 to 1000 ms; else the refusal naming
/// `what`.
fn up_to_a_second(what: &str, ms: f64) -> Result<f64, SessionError> {
    if (0.0..=1000.0).contains(&ms) {
        Ok(ms)
    } else {
        Err(refuse(
            ErrorCode::InvalidValue,
            format!("{what} {ms} ms is not within 0..=1000"),
        ))
    }
}

/// Where the session is with a stall.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Buffer {
    /// Playing, or stalled for less than the debounce (since when).
    No(Option<f64>),
    /// Reported buffering; the player is still stalled.
    Stalled,
    /// The stall ended while the room was paused: seeking to the room's
    /// paused position before reporting ready.
    Realigning,
}

/// A cued seek: the player was paused and sent to `target_ms`, to play
/// `state` from where it lands.
#[derive(Debug, Clone)]
struct Cue {
    state: Playback,
    target_ms: f64,
    landed_ms: Option<f64>,
    retried: bool,
}

/// An action issued, awaiting its event.
#[derive(Debug, Clone, Copy)]
struct Issued {
    action: PlayerAction,
    at_ms: f64,
}

/// Bounds of the phase `position - rate * local` of a coarse player.
#[derive(Debug, Clone, Copy)]
struct Phase {
    lo: f64,
    hi: f64,
    rate: f64,
}

/// How far the warm estimate must move from a provisional jump's to aim it
/// again.
const REAIM_MS: f64 = 20.0;
/// A cued seek within the buffer aims this many learned seek latencies
/// ahead...
const CUE_LATENCY_FACTOR: f64 = 1.25;
/// ...and one that fetches this many times the longest recent fetch...
const FAR_FACTOR: f64 = 1.15;
/// Seeks that fetched kept to size the allowance.
const FAR_KEPT: usize = 8;
/// Weight of each new seek within the buffer in its average.
const NEAR_ALPHA: f64 = 0.3;
/// A seek within the buffer before one was seen, ms.
const NEAR_GUESS_MS: f64 = 150.0;
/// Media behind the position that players keep buffered, ms.
const BEHIND_KEPT_MS: f64 = 5_000.0;
/// Longer seeks are not learned from, ms.
const MAX_SEEK_MS: f64 = 10_000.0;
/// ...plus this margin, in ms.
const CUE_MARGIN_MS: f64 = 30.0;
/// Weight of each measured lateness of a play in its lead: all of it (the
/// error is read off frames, good to half a frame, and a lead learned at
/// once lets a cued play be aimed again right away).
const PLAY_LEAD_GAIN: f64 = 1.0;
/// Largest play lead, in ms: a browser decoding in software (headless
/// Chromium) shows the first new frame 80 to 120 ms after `play()`.
const MAX_PLAY_LEAD_MS: f64 = 300.0;
/// A cued seek that lands with the room more than this past its position
/// is aimed once more.
const RECUE_MS: f64 = 10.0;
/// A cued player is woken this long after the instant to play.
const CUE_WAKE_SLACK_MS: f64 = 0.5;
/// A reported seek landing within this (plus the granularity) of an
/// issued target is its echo.
const ECHO_SEEK_MS: f64 = 150.0;
/// A reported rate within this of an issued one is its echo.
const ECHO_RATE: f64 = 1e-6;
/// Weight of each tick interval in the average.
const TICK_GAP_ALPHA: f64 = 0.3;
/// Ticks further apart than this on average: a background tab.
const THROTTLED_GAP_MS: f64 = 300.0;
/// A coarse player's phase narrowed to this is good to correct by.
const SHARP_PHASE_MS: f64 = 12.0;
/// A cued play that started further than this from where its learned lead
/// says is aimed once more, ms.
const AIM_AGAIN_MS: f64 = 40.0;
/// Weight of each measured lateness of a rate change in the rate lead.
const RATE_LEAD_GAIN: f64 = 0.75;
/// Largest rate lead, in ms: headless Chromium plays at a new rate 100 to
/// 150 ms after it was set.
const MAX_RATE_LEAD_MS: f64 = 300.0;
/// Smaller rate changes say too little about their latency to learn from.
const MIN_LEARNED_RATE_STEP: f64 = 0.2;
/// A play issued later than this after its instant (a timer firing late,
/// a late landing) is not learned from.
const MAX_LEARN_LATE_MS: f64 = 50.0;
/// Frames newer than this make coarse reads unnecessary.
const FRAME_FRESH_MS: f64 = 250.0;
/// Steps between frames kept for the frame's duration.
const FRAME_STEPS_KEPT: usize = 15;
/// A longer step between frames is a seek or a stall, not a frame.
const MAX_FRAME_STEP_MS: f64 = 250.0;

/// The client session of one room connection. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Session {
    config: SessionConfig,
    est: OffsetEstimator,
    ctl: DriftController,
    tl: Timeline,
    seq: u64,
    member: Option<MemberId>,
    policy: Option<RoomPolicy>,
    queue: Vec<QueueItem>,
    waiting: Vec<Waited>,
    provisional: Option<f64>,
    buffering: Buffer,
    cue: Option<Cue>,
    in_flight: bool,
    /// The seek in flight: when it started and whether its target was
    /// buffered.
    seek_started: Option<(f64, bool)>,
    /// Learned duration of a seek within the buffer (exponential average).
    near_latency_ms: Option<f64>,
    /// The latest durations of seeks that fetched (HLS seeks outside the
    /// buffer take an RTT plus a download: 0.3 to 2 s, widely spread).
    far_latencies: VecDeque<f64>,
    play_lead_ms: f64,
    /// A play was issued this late (ms) after its instant: the next error
    /// says, less that, how late the player really started.
    /// (how late the play was issued, whether it was a cued play, whether
    /// a cued play may be aimed once more with what it teaches).
    learn_play_lead: Option<(f64, bool, bool)>,
    /// The play lead of a cued play, after a seek: a player starts later
    /// after a seek than after a pause (learned, ms).
    cue_lead_ms: f64,
    /// A resume has taught the play lead; until then a resume is given the
    /// cue lead, the nearest guess.
    play_lead_known: bool,
    /// How early a rate change is applied: how long the player takes to
    /// play at a new rate (learned, ms).
    rate_lead_ms: f64,
    /// A rate change was issued this late (ms) after its instant, changing
    /// the rate by this much: the next error says how long the player took.
    learn_rate_lead: Option<(f64, f64)>,
    /// The latest read, with the position estimated (coarse players).
    read: Option<PlayerRead>,
    phase: Option<Phase>,
    frame: Option<(f64, f64)>,
    /// The latest read's position came from a frame on screen.
    frame_sensed: bool,
    /// The media time between the latest frames shown one after another
    /// (ms, the last [`FRAME_STEPS_KEPT`]).
    frame_steps: VecDeque<f64>,
    /// The latest seek finished since the last tick: (local time, position).
    seek_done: Option<(f64, f64)>,
    stalled: bool,
    issued: VecDeque<Issued>,
    /// What the session last asked of the player.
    commanded_playing: Option<bool>,
    commanded_rate: Option<f64>,
    out: VecDeque<Output>,
    wakes: Vec<f64>,
    next_ping_id: u64,
    next_command_id: u64,
    pings: VecDeque<(u64, f64)>,
    last_report_ms: Option<f64>,
    last_local_ms: Option<f64>,
    last_server_stamp: Option<f64>,
    /// How far behind the room the member plays, when the room leaves it
    /// behind.
    behind_ms: f64,
    reads: u64,
    last_tick_ms: Option<f64>,
    /// Average interval between ticks: a background tab's timers fire at
    /// most once a second.
    tick_gap_ms: f64,
}

impl Session {
    /// A session with nothing known yet.
    pub fn new(config: SessionConfig) -> Self {
        let mut drift = config.drift.clone();
        drift.report_granularity_ms = 0.0;
        Session {
            est: OffsetEstimator::new(config.clock.clone()),
            ctl: DriftController::new(drift),
            config,
            tl: Timeline::default(),
            seq: 0,
            member: None,
            policy: None,
            queue: Vec::new(),
            waiting: Vec::new(),
            provisional: None,
            buffering: Buffer::No(None),
            cue: None,
            in_flight: false,
            seek_started: None,
            near_latency_ms: None,
            far_latencies: VecDeque::new(),
            play_lead_ms: 0.0,
            learn_play_lead: None,
            cue_lead_ms: 0.0,
            play_lead_known: false,
            rate_lead_ms: 0.0,
            learn_rate_lead: None,
            read: None,
            phase: None,
            frame: None,
            frame_sensed: false,
            frame_steps: VecDeque::new(),
            seek_done: None,
            stalled: false,
            issued: VecDeque::new(),
            commanded_playing: None,
            commanded_rate: None,
            out: VecDeque::new(),
            wakes: Vec::new(),
            next_ping_id: 1,
            next_command_id: 1,
            pings: VecDeque::new(),
            last_report_ms: None,
            last_local_ms: None,
            last_server_stamp: None,
            behind_ms: 0.0,
            reads: 0,
            last_tick_ms: None,
            tick_gap_ms: 50.0,
        }
    }

    // ---- queries ------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The newest room `seq` seen (what commands are based on and a resume
    /// starts from).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The member id the server gave, once welcomed.
    pub fn member(&self) -> Option<MemberId> {
        self.member
    }

    /// The state applied last.
    pub fn playback(&self) -> Option<&Playback> {
        self.tl.applied.as_ref()
    }

    /// The queue as known (pages merged).
    pub fn queue(&self) -> &[QueueItem] {
        &self.queue
    }

    /// Who the group waits for, with each one's deadline.
    pub fn waiting(&self) -> &[Waited] {
        &self.waiting
    }

    /// The room's policy, once known.
    pub fn policy(&self) -> Option<RoomPolicy> {
        self.policy
    }

    /// The clock estimator.
    pub fn clock(&self) -> &OffsetEstimator {
        &self.est
    }

    /// The drift controller.
    pub fn drift(&self) -> &DriftController {
        &self.ctl
    }

    /// The estimated server time at local `local_ms`.
    pub fn server_time(&self, local_ms: f64) -> f64 {
        self.est.server_time(local_ms)
    }

    /// How far behind the room this member plays (a room that leaves a
    /// member behind), ms.
    pub fn behind_ms(&self) -> f64 {
        self.behind_ms
    }

    /// The earliest local time the session wants a tick at, if any.
    pub fn next_wake_ms(&self) -> Option<f64> {
        self.wakes.iter().copied().reduce(f64::min)
    }

    /// The next output, oldest first.
    pub fn poll(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    // ---- settings -----------------------------------------------------

    /// Turns drift correction on or off for this viewer (states are still
    /// applied).
    pub fn set_correction(&mut self, local_ms: f64, enabled: bool) {
        self.ctl.set_enabled(enabled);
        if !enabled {
            if let Some(rate) = self.tl.applied.as_ref().map(|p| p.rate) {
                self.set_rate(local_ms, rate);
            }
        }
    }

    /// Sets the device's output latency (manual trim plus
    /// `AudioContext.outputLatency`), ms; refused unless finite and within
    /// 0..=1000.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`].
    pub fn set_output_latency(&mut self, ms: f64) -> Result<(), SessionError> {
        self.config.output_latency_ms = up_to_a_second("output latency", ms)?;
        Ok(())
    }

    /// Sets the display's refresh interval, ms (0: unknown), which positions
    /// read off frames are quantized to; refused unless finite and within
    /// 0..=1000.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`].
    pub fn set_display_interval(&mut self, ms: f64) -> Result<(), SessionError> {
        self.config.display_interval_ms = up_to_a_second("display interval", ms)?;
        Ok(())
    }

    /// A member left behind catches up: the drift controller brings it to
    /// the room's position.
    pub fn catch_up(&mut self) {
        self.behind_ms = 0.0;
    }

    // ---- inputs -------------------------------------------------------

    /// The first frame of a connection: `hello` offering every version
    /// this side speaks, resuming the earlier membership if there was one.
    pub fn hello(&mut self, local_ms: f64, token: &str, name: &str) -> Stamped<ClientMessage> {
        let resume = self.member.map(|member| Resume {
            member,
            last_seq: self.seq,
        });
        Stamped::new(
            local_ms,
            ClientMessage::Hello {
                versions: crate::protocol::SUPPORTED_VERSIONS.to_vec(),
                token: token.to_owned(),
                name: name.to_owned(),
                resume,
            },
        )
    }

    /// A server frame arrived at local `local_ms`.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] for a non-finite time or a stamp before
    /// the previous frame's (the server clock is monotonic);
    /// [`ErrorCode::Stale`] for a state or queue page older than what is
    /// known, or a duplicate; [`ErrorCode::NotFound`] for a pong that
    /// answers no ping; [`ErrorCode::UnsupportedVersion`] for a welcome of
    /// another version. Nothing changes.
    pub fn on_message(
        &mut self,
        local_ms: f64,
        frame: &Stamped<ServerMessage>,
    ) -> Result<(), SessionError> {
        self.check_time(local_ms)?;
        let sent = frame.sent_ms;
        if !(0.0..MAX_TIMESTAMP_MS).contains(&sent) {
            return Err(refuse(
                ErrorCode::InvalidValue,
                format!("server frame stamped {sent}"),
            ));
        }
        if self.last_server_stamp.is_some_and(|last| sent < last) {
            return Err(refuse(
                ErrorCode::InvalidValue,
                format!("server frame stamped {sent}, before the previous one"),
            ));
        }
        match &frame.msg {
            ServerMessage::State { playback, .. } => {
                if !valid_playback(playback) {
                    return Err(refuse(ErrorCode::InvalidValue, "state out of range"));
                }
                if playback.seq <= self.tl.applied_seq()
                    || self.tl.pending.iter().any(|p| p.seq == playback.seq)
                {
                    return Err(refuse(
                        ErrorCode::Stale,
                        format!("state seq {} is not new", playback.seq),
                    ));
                }
            }
            ServerMessage::Queue { seq, .. } if *seq < self.seq => {
                return Err(refuse(
                    ErrorCode::Stale,
                    format!("queue seq {seq} is older than {}", self.seq),
                ));
            }
            ServerMessage::Pong { id, .. } if !self.pings.iter().any(|(p, _)| p == id) => {
                return Err(refuse(
                    ErrorCode::NotFound,
                    format!("pong {id} answers no ping"),
                ));
            }
            ServerMessage::Welcome { v, .. } if *v != PROTOCOL_VERSION => {
                return Err(refuse(
                    ErrorCode::UnsupportedVersion,
                    format!("welcome of version {v}"),
                ));
            }
            ServerMessage::Snapshot(room)
            | ServerMessage::Welcome {
                room: Some(room), ..
            } if !valid_playback(&room.playback) || !room.pending.iter().all(valid_playback) => {
                return Err(refuse(ErrorCode::InvalidValue, "snapshot out of range"));
            }
            _ => {}
        }
        // Checked: from here on nothing fails.
        self.last_local_ms = Some(local_ms);
        self.last_server_stamp = Some(sent);
        match &frame.msg {
            ServerMessage::Pong { id, t0_ms, t1_ms } => {
                self.pings.retain(|(p, _)| p != id);
                self.est.add_sample(*t0_ms, *t1_ms, sent, local_ms);
                if self.last_report_ms.is_none() {
                    // The room schedules by it: tell it at once.
                    self.report(local_ms);
                }
            }
            msg => {
                self.est.add_down(sent, local_ms);
                self.take(local_ms, msg);
            }
        }
        Ok(())
    }

    fn take(&mut self, local_ms: f64, msg: &ServerMessage) {
        match msg {
            ServerMessage::Welcome { member, room, .. } => {
                self.member = Some(*member);
                if let Some(room) = room {
                    self.take(local_ms, &ServerMessage::Snapshot(room.clone()));
                }
            }
            ServerMessage::Snapshot(room) => {
                self.tl.add(&room.playback);
                for p in &room.pending {
                    self.tl.add(p);
                }
                self.seq = self.seq.max(room.seq);
                self.policy = Some(room.policy);
                self.queue = room.queue.clone();
                self.waiting = room.waiting.clone();
                self.wake_for_pending(local_ms);
            }
            ServerMessage::State { playback, .. } => {
                self.tl.add(playback);
                self.seq = self.seq.max(playback.seq);
                self.wake_for_pending(local_ms);
            }
            ServerMessage::Queue {
                seq,
                offset,
                items,
                total,
            } => {
                if *offset == 0 {
                    self.queue.clear();
                }
                self.queue.extend(items.iter().cloned());
                self.queue
                    .truncate(usize::try_from(*total).unwrap_or(usize::MAX));
                self.seq = self.seq.max(*seq);
            }
            ServerMessage::Waiting { members } => self.waiting = members.clone(),
            _ => {}
        }
    }

    /// A read of the player.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] for non-finite or out-of-range values or
    /// a read older than the previous one. Nothing changes.
    pub fn on_player(&mut self, read: PlayerRead) -> Result<(), SessionError> {
        let finite = [read.at_ms, read.position_ms, read.rate]
            .iter()
            .all(|v| v.is_finite());
        if !finite
            || !(0.0..=MAX_POSITION_MS).contains(&read.position_ms)
            || !(0.0..=16.0).contains(&read.rate)
            || read
                .buffered_ahead_ms
                .is_some_and(|b| !(0.0..=MAX_POSITION_MS).contains(&b))
        {
            return Err(refuse(ErrorCode::InvalidValue, "player read out of range"));
        }
        if self.read.is_some_and(|r| read.at_ms < r.at_ms) {
            return Err(refuse(ErrorCode::Stale, "player read older than the last"));
        }
        let mut read = read;
        read.position_ms = self.sense(&read);
        if self.commanded_playing.is_none() {
            self.commanded_playing = Some(read.playing);
        }
        if self.commanded_rate.is_none() {
            self.commanded_rate = Some(read.rate);
        }
        self.read = Some(read);
        self.reads += 1;
        Ok(())
    }

    /// The best estimate of the true position at the read: a fresh frame
    /// callback, or the phase of a coarse player, or the read itself.
    fn sense(&mut self, read: &PlayerRead) -> f64 {
        self.frame_sensed = false;
        if let Some((at, media)) = self.frame {
            if read.at_ms - at <= FRAME_FRESH_MS && read.playing && !read.seeking && !read.waiting {
                self.frame_sensed = true;
                return media + read.rate * (read.at_ms - at);
            }
        }
        let g = self.config.report_granularity_ms;
        if g <= 0.0 {
            return read.position_ms;
        }
        if !read.playing || read.seeking || read.waiting || read.rate <= 0.0 {
            self.phase = None;
            return read.position_ms + g / 2.0;
        }
        let noise = self.config.read_noise_ms;
        // The true position p at the read satisfies
        // read <= p + noise and p - noise < read + g.
        let lo = read.position_ms - noise - read.rate * read.at_ms;
        let hi = read.position_ms + g + noise - read.rate * read.at_ms;
        let phase = match (self.phase, self.read) {
            (Some(ph), Some(prev)) => {
                // A rate change moves the phase by (old - new) times the
                // instant it took effect, somewhere since the last read.
                let d = ph.rate - read.rate;
                let (a, b) = (d * prev.at_ms, d * read.at_ms);
                let (l, h) = (ph.lo + a.min(b), ph.hi + a.max(b));
                let (l, h) = (l.max(lo), h.min(hi));
                if l <= h {
                    Phase {
                        lo: l,
                        hi: h,
                        rate: read.rate,
                    }
                } else {
                    Phase {
                        lo,
                        hi,
                        rate: read.rate,
                    }
                }
            }
            _ => Phase {
                lo,
                hi,
                rate: read.rate,
            },
        };
        self.phase = Some(phase);
        (phase.lo + phase.hi) / 2.0 + read.rate * read.at_ms
    }

    /// The media time a frame on screen stands for: the median step between
    /// the latest frames (a dropped frame makes one step two frames long).
    /// 0 before any.
    fn frame_ms(&self) -> f64 {
        let mut steps: Vec<f64> = self.frame_steps.iter().copied().collect();
        steps.sort_by(f64::total_cmp);
        steps.get(steps.len() / 2).copied().unwrap_or(0.0)
    }

    /// Whether the latest read's position is known well enough to correct
    /// by: exact, from a frame, or a coarse player's phase narrowed to a
    /// few ms.
    fn read_is_sharp(&self) -> bool {
        if self.config.report_granularity_ms <= 0.0 {
            return true;
        }
        match (self.read, self.frame) {
            (Some(r), Some((at, _))) if r.at_ms - at <= FRAME_FRESH_MS => true,
            _ => self.phase.is_some_and(|ph| ph.hi - ph.lo <= SHARP_PHASE_MS),
        }
    }

    /// A `requestVideoFrameCallback` sample: the frame of media time
    /// `media_time_ms` is shown at local `expected_display_ms`.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] for non-finite or out-of-range values.
    pub fn on_frame(
        &mut self,
        media_time_ms: f64,
        expected_display_ms: f64,
    ) -> Result<(), SessionError> {
        if !(0.0..=MAX_POSITION_MS).contains(&media_time_ms) || !expected_display_ms.is_finite() {
            return Err(refuse(ErrorCode::InvalidValue, "frame out of range"));
        }
        if let Some((display, media)) = self.frame {
            let step = media_time_ms - media;
            if expected_display_ms > display && step > 0.0 && step <= MAX_FRAME_STEP_MS {
                if self.frame_steps.len() == FRAME_STEPS_KEPT {
                    self.frame_steps.pop_front();
                }
                self.frame_steps.push_back(step);
            }
        }
        self.frame = Some((expected_display_ms, media_time_ms));
        Ok(())
    }

    /// The player reported `event` at local `local_ms`. Returns the
    /// command it stands for when it is the user's (and queues it to
    /// send); `None` when it is the echo of an action the session issued,
    /// or no command.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] for a time out of range or a non-finite
    /// value.
    pub fn on_player_event(
        &mut self,
        local_ms: f64,
        event: PlayerEvent,
    ) -> Result<Option<Command>, SessionError> {
        self.check_time(local_ms)?;
        match event {
            PlayerEvent::Seeking { position_ms }
            | PlayerEvent::Seeked { position_ms }
            | PlayerEvent::RateChange { rate: position_ms }
                if !position_ms.is_finite() =>
            {
                return Err(refuse(ErrorCode::InvalidValue, "event value is not finite"));
            }
            _ => {}
        }
        let window = self.config.echo_window_ms;
        self.issued.retain(|i| local_ms - i.at_ms <= window);
        let tolerance = ECHO_SEEK_MS + self.config.report_granularity_ms;
        match event {
            // A seek's end times it (whoever started it); its start, below,
            // says whose it was.
            PlayerEvent::Seeked { position_ms } => {
                self.seek_done = Some((local_ms, position_ms));
                return Ok(None);
            }
            PlayerEvent::Waiting => {
                self.stalled = true;
                return Ok(None);
            }
            PlayerEvent::Playing => {
                self.stalled = false;
                return Ok(None);
            }
            _ => {}
        }
        let own = self.issued.iter().position(|i| match (i.action, event) {
            (PlayerAction::Play, PlayerEvent::Play) | (PlayerAction::Pause, PlayerEvent::Pause) => {
                true
            }
            (PlayerAction::Seek { position_ms: t }, PlayerEvent::Seeking { position_ms: p }) => {
                (t - p).abs() <= tolerance
            }
            (PlayerAction::SetRate { rate: a }, PlayerEvent::RateChange { rate: b }) => {
                (a - b).abs() <= ECHO_RATE
            }
            _ => false,
        });
        if let Some(i) = own {
            self.issued.remove(i);
            return Ok(None);
        }
        let command = match event {
            PlayerEvent::Play => Command::Play,
            PlayerEvent::Pause => Command::Pause,
            PlayerEvent::Seeking { position_ms } => Command::Seek {
                position_ms: position_ms.clamp(0.0, MAX_POSITION_MS),
            },
            PlayerEvent::RateChange { rate } => {
                if self
                    .tl
                    .applied
                    .as_ref()
                    .is_some_and(|p| (p.rate - rate).abs() <= ECHO_RATE)
                {
                    return Ok(None);
                }
                Command::SetRate { rate }
            }
            PlayerEvent::Seeked { .. } | PlayerEvent::Waiting | PlayerEvent::Playing => {
                return Ok(None)
            }
        };
        match event {
            PlayerEvent::Play => self.commanded_playing = Some(true),
            PlayerEvent::Pause => self.commanded_playing = Some(false),
            PlayerEvent::RateChange { rate } => self.commanded_rate = Some(rate),
            _ => {}
        }
        self.user_command(local_ms, command.clone());
        Ok(Some(command))
    }

    /// The user asked for `command` through the UI: it is sent, based on
    /// the newest `seq` seen; returns its request id.
    pub fn user_command(&mut self, local_ms: f64, command: Command) -> u64 {
        let id = self.next_command_id;
        self.next_command_id += 1;
        self.send(
            local_ms,
            ClientMessage::Command {
                id,
                based_on_seq: self.seq,
                command,
            },
        );
        id
    }

    fn check_time(&self, local_ms: f64) -> Result<(), SessionError> {
        if !local_ms.is_finite() || !(0.0..MAX_TIMESTAMP_MS).contains(&local_ms) {
            return Err(refuse(
                ErrorCode::InvalidValue,
                format!("local time {local_ms} is out of range"),
            ));
        }
        Ok(())
    }

    // ---- outputs ------------------------------------------------------

    fn send(&mut self, local_ms: f64, msg: ClientMessage) {
        self.out
            .push_back(Output::Send(Stamped::new(local_ms, msg)));
    }

    fn act(&mut self, local_ms: f64, action: PlayerAction) {
        self.issued.push_back(Issued {
            action,
            at_ms: local_ms,
        });
        self.out.push_back(Output::Player {
            at_ms: local_ms,
            action,
        });
    }

    fn play(&mut self, local_ms: f64) {
        if self.commanded_playing != Some(true) {
            self.commanded_playing = Some(true);
            self.act(local_ms, PlayerAction::Play);
        }
    }

    fn pause(&mut self, local_ms: f64) {
        if self.commanded_playing != Some(false) {
            self.commanded_playing = Some(false);
            self.act(local_ms, PlayerAction::Pause);
        }
    }

    fn set_rate(&mut self, local_ms: f64, rate: f64) {
        if self
            .commanded_rate
            .is_none_or(|r| (r - rate).abs() > ECHO_RATE)
        {
            self.commanded_rate = Some(rate);
            self.act(local_ms, PlayerAction::SetRate { rate });
        }
    }

    fn seek(&mut self, local_ms: f64, target_ms: f64) {
        let position_ms = target_ms.clamp(0.0, MAX_POSITION_MS);
        self.seek_started = Some((local_ms, self.is_near(position_ms)));
        self.phase = None;
        self.frame = None;
        self.act(local_ms, PlayerAction::Seek { position_ms });
        self.ctl.on_seek_started(local_ms);
        self.in_flight = true;
    }

    fn wake_at(&mut self, local_ms: f64) {
        if local_ms.is_finite() {
            self.wakes.push(local_ms);
        }
    }

    fn report(&mut self, local_ms: f64) {
        let rtt = self.est.rtt_ms();
        if !rtt.is_finite() {
            return;
        }
        let Some(read) = self.read else {
            return;
        };
        self.last_report_ms = Some(local_ms);
        let clamp = |v: f64| {
            if v.is_finite() {
                v.clamp(0.0, MAX_DURATION_MS)
            } else {
                MAX_DURATION_MS
            }
        };
        let seek_latency = self.seek_allowance_ms();
        self.send(
            local_ms,
            ClientMessage::Report {
                position_ms: read.position_ms.clamp(0.0, MAX_POSITION_MS),
                sampled_at_ms: read.at_ms.min(local_ms).max(0.0),
                rate: read.rate,
                rtt_ms: clamp(rtt),
                delay_ms: clamp(self.est.delay_quantile_ms(0.99)),
                offset_uncertainty_ms: clamp(self.est.uncertainty_at(local_ms)),
                seek_latency_ms: Some(clamp(seek_latency)),
                buffered_ahead_ms: read.buffered_ahead_ms,
            },
        );
    }

    // ---- the tick -----------------------------------------------------

    /// A tick at local `local_ms`: pings, reports, states that came due,
    /// cues, buffering and drift.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidValue`] for a non-finite time. Nothing changes.
    pub fn tick(&mut self, local_ms: f64) -> Result<(), SessionError> {
        self.check_time(local_ms)?;
        let local = local_ms;
        if let Some(last) = self.last_tick_ms {
            let gap = local - last;
            if gap > 0.0 {
                self.tick_gap_ms += TICK_GAP_ALPHA * (gap - self.tick_gap_ms);
            }
        }
        self.last_tick_ms = Some(local);
        self.wakes.retain(|w| *w > local + 1e-3);
        let seek_done = self.seek_done.take();
        if let Some((done, _)) = seek_done {
            self.ctl.on_seek_finished(done);
            self.in_flight = false;
            if let Some((start, near)) = self.seek_started.take() {
                let took = done - start;
                if (0.0..=MAX_SEEK_MS).contains(&took) {
                    if near {
                        self.near_latency_ms = Some(match self.near_latency_ms {
                            Some(l) => l + NEAR_ALPHA * (took - l),
                            None => took,
                        });
                    } else {
                        self.far_latencies.push_back(took);
                        while self.far_latencies.len() > FAR_KEPT {
                            self.far_latencies.pop_front();
                        }
                    }
                }
            }
        }
        self.report_buffering(local, seek_done.is_some());
        if self.est.next_ping_at(local) <= local {
            self.est.on_ping_sent(local);
            let id = self.next_ping_id;
            self.next_ping_id += 1;
            self.pings.push_back((id, local));
            while self.pings.len() > 64 {
                self.pings.pop_front();
            }
            self.send(local, ClientMessage::Ping { id });
        }
        if self
            .last_report_ms
            .is_none_or(|last| local - last >= self.config.report_interval_ms)
        {
            self.report(local);
        }
        if self.config.report_granularity_ms > 0.0 && !self.wakes.iter().any(|w| *w <= local + 50.0)
        {
            // Dithered reads: a wake at an offset that does not divide the
            // report step, so that successive reads fall at different
            // phases of it (one such wake pending at a time).
            let dither = 11.0 + ((self.reads % 7) as f64) * 3.7;
            self.wake_at(local + dither);
        }
        // One pong is enough to aim a first seek; see the module docs.
        if self.est.sample_count() == 0 {
            return Ok(());
        }
        let warm = self.est.is_warm();
        let server = self.est.server_time(local);
        // A resume is applied the play lead early, as a cued play is
        // played; a rate change the rate lead early.
        let early = if warm { self.early_ms() } else { 0.0 };
        let promoted = if warm || self.tl.applied.is_none() {
            self.tl.promote(server + early)
        } else {
            None
        };
        if let Some((new, prev)) = promoted {
            self.apply_state(local, server, warm, &new, prev.as_ref());
            // Applied on time (at its instant less the lead, give or take a
            // timer's lateness): the error that follows says how late the
            // player really was.
            let late = (server + early - new.at_ms).max(0.0);
            if new.playing && late <= MAX_LEARN_LATE_MS {
                match prev {
                    Some(p) if jumps(&new, Some(&p)) => {}
                    Some(p) if p.playing => {
                        let step = new.rate - p.rate;
                        if step.abs() >= MIN_LEARNED_RATE_STEP {
                            self.learn_rate_lead = Some((late, step));
                        }
                    }
                    Some(_) => self.learn_play_lead = Some((late, false, false)),
                    None => {}
                }
            }
        }
        if let Some((done, landed)) = seek_done {
            self.after_seek(local, server, landed);
            self.check_throttled_landing(local, server, done, landed);
        }
        if warm {
            self.prepare_next(local, server);
        }
        self.play_when_cued(local, server);
        if !warm {
            return Ok(());
        }
        if let Some(offset) = self.provisional.take() {
            if let Some(state) = self.tl.applied.clone() {
                if state.playing && ((server - local) - offset).abs() > REAIM_MS {
                    self.cued_seek(local, &state, server);
                    return Ok(());
                }
            }
        }
        self.correct(local, server);
        Ok(())
    }

    fn apply_state(
        &mut self,
        local: f64,
        server: f64,
        warm: bool,
        new: &Playback,
        prev: Option<&Playback>,
    ) {
        // A cue for this state, or for a later one that supersedes it.
        let prepared = self.cue.as_ref().is_some_and(|c| c.state.seq >= new.seq);
        if new.playing && jumps(new, prev) {
            self.behind_ms = 0.0;
            if !prepared {
                self.cued_seek(local, new, server);
            }
            self.set_rate(local, new.rate);
            if !warm {
                self.provisional = Some(server - local);
            }
        } else if new.playing && self.in_flight && self.cue.is_none() {
            // Playing from where a seek is still taking the player: cue it.
            self.cued_seek(local, new, server);
            self.set_rate(local, new.rate);
        } else if new.playing && self.cue.is_some() {
            // A change that does not move the position while a cue waits:
            // the cue plays on the new timeline, unless it was started
            // early for a later jump.
            if let Some(cue) = &mut self.cue {
                if cue.state.seq < new.seq {
                    cue.state = new.clone();
                    self.set_rate(local, new.rate);
                }
            }
        } else {
            self.cue = None;
            if jumps(new, prev) {
                self.behind_ms = 0.0;
                let target = if new.playing {
                    new.position_at(server + self.ctl.seek_latency_ms())
                } else {
                    new.position_ms
                };
                self.seek(local, target);
            }
            if new.playing {
                self.play(local);
            } else {
                self.pause(local);
            }
            self.set_rate(local, new.rate);
        }
        self.wake_for_pending(local);
    }

    /// How long before a jump's `at_ms` a cued seek starts, and the seek
    /// latency reported to the room: the allowance of a seek that fetches
    /// (a jump's target is rarely buffered).
    fn seek_allowance_ms(&self) -> f64 {
        self.far_allowance_ms()
    }

    /// The longest of the latest seeks that fetched, with a margin (or the
    /// configured guess before the first).
    fn far_allowance_ms(&self) -> f64 {
        match self.far_latencies.iter().copied().reduce(f64::max) {
            Some(longest) => longest * FAR_FACTOR + CUE_MARGIN_MS,
            None => self.config.unknown_seek_allowance_ms,
        }
    }

    /// The average of the latest seeks that fetched (or the guess).
    fn typical_far_ms(&self) -> f64 {
        if self.far_latencies.is_empty() {
            return self.config.unknown_seek_allowance_ms;
        }
        let mut sum = 0.0;
        for l in &self.far_latencies {
            sum += l;
        }
        sum / self.far_latencies.len() as f64
    }

    /// Whether the timers are throttled (a background tab).
    fn is_throttled(&self) -> bool {
        self.tick_gap_ms > THROTTLED_GAP_MS
    }

    /// The learned seek latency within the buffer with a margin.
    fn near_allowance_ms(&self) -> f64 {
        self.near_latency_ms.unwrap_or(NEAR_GUESS_MS) * CUE_LATENCY_FACTOR + CUE_MARGIN_MS
    }

    /// Whether a seek to `target_ms` stays within what the player holds.
    fn is_near(&self, target_ms: f64) -> bool {
        let Some(read) = self.read else {
            return false;
        };
        if self.in_flight {
            return false;
        }
        let ahead = read.buffered_ahead_ms.unwrap_or(0.0);
        target_ms >= read.position_ms - BEHIND_KEPT_MS && target_ms <= read.position_ms + ahead
    }

    /// The allowance of a seek to around `target_ms`.
    fn allowance_for(&self, target_ms: f64) -> f64 {
        if self.is_near(target_ms) {
            self.near_allowance_ms()
        } else {
            self.far_allowance_ms()
        }
    }

    /// Pause, seek to where the room will be a seek allowance from now
    /// (not before `state.at_ms`), and play when the timeline reaches the
    /// landing (see the module docs). A cue in flight whose target is within
    /// the seek threshold of the new one is kept.
    fn cued_seek(&mut self, local: f64, state: &Playback, server: f64) {
        let rough = state.position_at(server.max(state.at_ms));
        if self.is_throttled() {
            // Timers fire once a second: a cued play would start up to a
            // second late. Seek ahead by the typical latency and keep
            // playing; the drift controller removes the rest.
            let typical = if self.is_near(rough) {
                self.near_allowance_ms()
            } else {
                self.typical_far_ms()
            };
            let target = state.position_at((server + typical).max(state.at_ms));
            self.cue = None;
            self.seek(local, target);
            if server >= state.at_ms {
                self.play(local);
            }
            return;
        }
        let mut allowance = self.allowance_for(rough);
        let mut target = state.position_at((server + allowance).max(state.at_ms));
        if !self.is_near(target) && self.is_near(rough) {
            // Aimed past the buffer: that is a fetch.
            allowance = self.far_allowance_ms();
            target = state.position_at((server + allowance).max(state.at_ms));
        }
        if self.in_flight {
            let threshold = self.ctl.config().seek_threshold_ms;
            if let Some(cue) = &mut self.cue {
                if cue.landed_ms.is_none() && (cue.target_ms - target).abs() < threshold {
                    cue.state = state.clone();
                    return;
                }
            }
        }
        self.pause(local);
        self.seek(local, target);
        self.cue = Some(Cue {
            state: state.clone(),
            target_ms: target,
            landed_ms: None,
            retried: false,
        });
    }

    /// A seek landed at `landed`: note it for a cue, aim again if late, or
    /// wake up when the timeline reaches it.
    fn after_seek(&mut self, local: f64, server: f64, landed: f64) {
        let Some(cue) = self.cue.as_mut() else {
            return;
        };
        // A coarse player is taken to have landed on the target.
        let landed = if self.config.report_granularity_ms > 0.0 {
            cue.target_ms
        } else {
            landed
        };
        cue.landed_ms = Some(landed);
        let state = cue.state.clone();
        let retried = cue.retried;
        if !state.playing || state.rate <= 0.0 {
            return;
        }
        if state.position_at(server) - landed > RECUE_MS && !retried {
            self.cue = None;
            self.cued_seek(local, &state, server);
            if let Some(cue) = &mut self.cue {
                cue.retried = true;
            }
            return;
        }
        let at = state.at_ms + ((landed - state.position_ms) / state.rate).max(0.0);
        let at_local = self.est.local_time(at) - self.lead_ms();
        self.wake_at(at_local - self.cue_lead_ms + CUE_WAKE_SLACK_MS);
    }

    /// In a background tab, where reads come once a second, a seek's
    /// landing says at once how far off it is: one off by more than the
    /// seek threshold is aimed again (within the buffer, so it lands
    /// close), without waiting for five reads.
    fn check_throttled_landing(&mut self, local: f64, server: f64, done: f64, landed: f64) {
        if !self.is_throttled() || self.cue.is_some() {
            return;
        }
        let Some(state) = self.tl.applied.clone() else {
            return;
        };
        if !state.playing || server < state.at_ms {
            return;
        }
        let now_at = landed + state.rate * (local - done).max(0.0);
        let error = state.position_at(server) - now_at;
        if error.abs() > self.ctl.config().seek_threshold_ms {
            self.cued_seek(local, &state, server);
        }
    }

    /// How early the next pending state is applied, so that the player's
    /// own latency does not leave it behind: a resume of the room where it
    /// stands (paused to playing, no jump) by the play lead (and the output
    /// latency), as a cued play is played; a rate change while playing by
    /// the rate lead. 0 for anything else.
    fn early_ms(&self) -> f64 {
        match (self.tl.applied.as_ref(), self.tl.pending.first()) {
            (Some(applied), Some(next)) if next.playing && !jumps(next, Some(applied)) => {
                if !applied.playing {
                    let lead = if self.play_lead_known {
                        self.play_lead_ms
                    } else {
                        self.cue_lead_ms
                    };
                    lead + self.lead_ms()
                } else if (next.rate - applied.rate).abs() > 1e-9 {
                    self.rate_lead_ms
                } else {
                    0.0
                }
            }
            _ => 0.0,
        }
    }

    /// How much earlier than the timeline says the player must act: the
    /// output latency.
    fn lead_ms(&self) -> f64 {
        self.config.output_latency_ms
    }

    /// Plays a cued player once its state is in force and the timeline
    /// reaches where it landed.
    fn play_when_cued(&mut self, local: f64, server: f64) {
        let Some(cue) = &self.cue else {
            return;
        };
        let Some(applied) = &self.tl.applied else {
            return;
        };
        let ahead = CUE_WAKE_SLACK_MS + self.cue_lead_ms + self.lead_ms();
        if applied.seq < cue.state.seq && server + ahead < cue.state.at_ms {
            return;
        }
        if !cue.state.playing {
            self.cue = None;
            return;
        }
        if let Some(landed) = cue.landed_ms {
            let past = cue.state.position_at(server + ahead) - landed;
            if past >= 0.0 {
                let retried = cue.retried;
                self.cue = None;
                self.play(local);
                // A play long after its instant (a late landing) says how
                // late the landing was, not the play.
                self.learn_play_lead =
                    (past <= MAX_LEARN_LATE_MS).then_some((past, true, !retried));
            }
        }
    }

    /// The first pending state that jumps while playing, if any.
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

    /// Starts the cued seek of the next jump a seek allowance before its
    /// `at_ms`.
    fn prepare_next(&mut self, local: f64, server: f64) {
        if self.is_throttled() {
            // No early cue without timers to play it on time.
            return;
        }
        // The latest jump whose cue is due: in a burst of seeks, the ones
        // before it will be superseded before they could be shown.
        let allowance = self.seek_allowance_ms();
        let mut due = None;
        let mut prev = self.tl.applied.as_ref();
        for next in &self.tl.pending {
            if next.playing && jumps(next, prev) && server >= next.at_ms - allowance {
                due = Some(next.clone());
            }
            prev = Some(next);
        }
        let Some(next) = due else {
            return;
        };
        if self.cue.as_ref().is_some_and(|c| c.state.seq >= next.seq) {
            return;
        }
        self.cued_seek(local, &next, server);
    }

    /// Reports a stall after the debounce, and ready when it ends (after
    /// re-aligning to the room's paused position).
    fn report_buffering(&mut self, local: f64, seek_done: bool) {
        // A seek that fetches raises `waiting` too: that is not a stall.
        let seeking = self.in_flight || self.read.is_some_and(|r| r.seeking);
        let stalled = (self.stalled || self.read.is_some_and(|r| r.waiting)) && !seeking;
        let position = self
            .read
            .map_or(0.0, |r| r.position_ms)
            .clamp(0.0, MAX_POSITION_MS);
        match self.buffering {
            Buffer::No(None) if stalled => self.buffering = Buffer::No(Some(local)),
            Buffer::No(Some(_)) if !stalled => self.buffering = Buffer::No(None),
            Buffer::No(Some(since))
                if stalled && local - since >= self.config.buffering_debounce_ms =>
            {
                self.buffering = Buffer::Stalled;
                self.send(
                    local,
                    ClientMessage::Buffering {
                        position_ms: position,
                    },
                );
            }
            Buffer::Stalled if !stalled => {
                let paused_at = self
                    .tl
                    .applied
                    .as_ref()
                    .filter(|s| !s.playing && s.media.is_some())
                    .map(|s| s.position_ms);
                match paused_at {
                    Some(target) if (position - target).abs() > self.ctl.config().dead_zone_ms => {
                        self.seek(local, target);
                        self.buffering = Buffer::Realigning;
                    }
                    _ => {
                        self.buffering = Buffer::No(None);
                        if self.policy.is_some_and(|p| p.behind == Behind::Leave) {
                            if let Some(state) = &self.tl.applied {
                                let server = self.est.server_time(local);
                                self.behind_ms = (state.position_at(server) - position).max(0.0);
                            }
                        }
                        self.send(
                            local,
                            ClientMessage::Ready {
                                position_ms: position,
                            },
                        );
                    }
                }
            }
            Buffer::Realigning if stalled => self.buffering = Buffer::Stalled,
            Buffer::Realigning if seek_done => {
                self.buffering = Buffer::No(None);
                self.send(
                    local,
                    ClientMessage::Ready {
                        position_ms: position,
                    },
                );
            }
            _ => {}
        }
    }

    fn wake_for_pending(&mut self, _local: f64) {
        if !self.est.is_warm() {
            return;
        }
        if let Some(at) = self.tl.pending.first().map(|p| p.at_ms) {
            let l = self.est.local_time(at) - self.lead_ms().max(self.early_ms());
            self.wake_at(l + 0.01);
        }
        if let Some(next) = self.next_jump() {
            let l = self.est.local_time(next.at_ms);
            self.wake_at(l - self.seek_allowance_ms());
        }
    }

    /// The drift controller's turn.
    fn correct(&mut self, local: f64, server: f64) {
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
            // A change is due before a correction could finish.
            return;
        }
        let Some(read) = self.read else {
            return;
        };
        // The read is carried to now at the rate it reported.
        let moving = read.playing && !read.seeking && !read.waiting && !self.stalled;
        let position = if moving {
            read.position_ms + read.rate * (local - read.at_ms).max(0.0)
        } else {
            read.position_ms
        };
        let player = PlayerState {
            position_ms: position,
            rate: read.rate,
            playing: read.playing,
            busy: read.seeking || read.waiting || self.stalled || !self.read_is_sharp(),
        };
        // The timeline the player must follow: the output latency ahead,
        // the member's own lag behind.
        let target = server + self.lead_ms() - self.behind_ms / state.rate.max(1e-9);
        self.ctl.set_frame_quantum(if self.frame_sensed {
            (self.config.display_interval_ms * state.rate).max(self.frame_ms())
        } else {
            0.0
        });
        let action = self.ctl.tick(local, target, &state, &player);
        if let Some((late, cued, aim_again)) = self.learn_play_lead.filter(|_| self.cue.is_none()) {
            if let Some(error) = self.ctl.error_ms() {
                let lead = if cued {
                    &mut self.cue_lead_ms
                } else if self.play_lead_known {
                    &mut self.play_lead_ms
                } else {
                    // The resume was given the cue lead.
                    self.play_lead_known = true;
                    self.play_lead_ms = self.cue_lead_ms;
                    &mut self.play_lead_ms
                };
                *lead = (*lead + PLAY_LEAD_GAIN * (error - late)).clamp(0.0, MAX_PLAY_LEAD_MS);
                self.learn_play_lead = None;
                // A cued play that started far from where the lead now
                // says is aimed once more with it: a tenth of a second's
                // freeze right after a jump (the seek is within the
                // buffer) instead of seconds of nudging.
                if aim_again && (error - late).abs() > AIM_AGAIN_MS && state.playing {
                    self.cued_seek(local, &state, server);
                    if let Some(cue) = &mut self.cue {
                        cue.retried = true;
                    }
                    return;
                }
            }
        }
        if let Some((late, step)) = self.learn_rate_lead.filter(|_| self.cue.is_none()) {
            if let Some(error) = self.ctl.error_ms() {
                // Behind by the step times how late the new rate took hold.
                self.rate_lead_ms = (self.rate_lead_ms + RATE_LEAD_GAIN * (error / step - late))
                    .clamp(0.0, MAX_RATE_LEAD_MS);
                self.learn_rate_lead = None;
            }
        }
        match action {
            Action::None => {}
            Action::SetRate(rate) => self.set_rate(local, rate),
            Action::Seek(target_ms) => {
                if state.playing {
                    self.cued_seek(local, &state, server);
                } else {
                    self.seek(local, target_ms);
                }
            }
        }
    }
}

fn valid_playback(p: &Playback) -> bool {
    (0.0..=MAX_POSITION_MS).contains(&p.position_ms)
        && (0.0..MAX_TIMESTAMP_MS).contains(&p.at_ms)
        && (crate::state::MIN_RATE..=crate::state::MAX_RATE).contains(&p.rate)
}
