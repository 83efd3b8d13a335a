// videosync-sync.js: the JavaScript twin of the Rust crate videosync-sync's
// client side: the clock estimator (OffsetEstimator), the drift controller
// (DriftController) and the client session (Session), for the web app. An ES
// module with no dependencies and no build step:
//
//   import { Session } from "./videosync-sync.js";
//   const session = new Session();
//   ws.send(JSON.stringify(session.hello(performance.now(), token, name)));
//   ws.onmessage = (e) => session.onMessage(performance.now(), JSON.parse(e.data));
//   video.addEventListener("seeking", () =>
//     session.onPlayerEvent(performance.now(), { event: "seeking", position_ms: video.currentTime * 1000 }));
//   // ... seeked, play, pause, ratechange, waiting, playing likewise; then, every 50 ms
//   // and at session.nextWakeMs():
//   session.onPlayer({ at_ms: performance.now(), position_ms: video.currentTime * 1000,
//     rate: video.playbackRate, playing: !video.paused, seeking: video.seeking,
//     waiting: video.readyState < 3 && !video.seeking });
//   session.tick(performance.now());
//   for (let o = session.poll(); o; o = session.poll()) { /* apply o.action or send o.frame */ }
//
// Same algorithms, same defaults, same arithmetic in the same order as the
// Rust code (src/clock.rs, src/drift.rs, src/client.rs): read the Rust docs
// for the why. Both are held to the shared vectors in ../vectors/*.json
// (clock, drift, and whole scripted sessions), by tests/vectors.rs and by
// vectors.test.mjs (`node --test`). A change to one is a change to both.
//
// Conventions: methods are camelCase; configuration keys and data (frames,
// Playback, player reads) keep the snake_case names of the Rust structs and
// the JSON protocol. Times are milliseconds; nothing here reads a clock or
// sets a timer: the caller passes `performance.now()`.

/** Defaults of OffsetEstimator, as ClockConfig::default() in Rust. */
export const CLOCK_DEFAULTS = Object.freeze({
  window_ms: 600000,
  block_ms: 1000,
  min_skew_span_ms: 60000,
  skew_refit_ms: 10000,
  max_skew_ppm: 200,
  bound_points: 24,
  warm_samples: 3,
  max_rtt_ms: 10000,
  step_confirm: 3,
  step_margin_ms: 1,
  join_pings: 10,
  join_interval_ms: 100,
  fast_interval_ms: 500,
  slow_interval_ms: 1000,
  stable_ms: 2,
  delay_samples: 256,
});

/** Defaults of DriftController, as DriftConfig::default() in Rust. */
export const DRIFT_DEFAULTS = Object.freeze({
  enabled: true,
  dead_zone_ms: 5,
  settle_ratio: 0.5,
  correction_time_ms: 1000,
  max_rate_deviation: 0.05,
  min_rate_deviation: 0.002,
  min_rate_step: 0.002,
  min_hold_ms: 1000,
  seek_threshold_ms: 300,
  cooldown_ms: 300,
  seek_latency_ms: 200,
  seek_latency_alpha: 0.3,
  max_seek_latency_ms: 5000,
  filter_len: 8,
  min_reports: 5,
  report_granularity_ms: 0,
  echo_window_ms: 2000,
  echo_seek_tolerance_ms: 100,
});

function nonNegativeOr(value, fallback) {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : fallback;
}

function countOr(value, fallback) {
  return Number.isInteger(value) && value >= 0 ? value : fallback;
}

function clampInt(value, lo, hi) {
  return Math.min(Math.max(value, lo), hi);
}

function unknownKeys(config, defaults, what) {
  for (const key of Object.keys(config)) {
    if (!Object.prototype.hasOwnProperty.call(defaults, key)) {
      throw new TypeError(`${what}: unknown option ${key}`);
    }
  }
}

function sanitizeClock(config) {
  unknownKeys(config, CLOCK_DEFAULTS, "OffsetEstimator");
  const c = { ...CLOCK_DEFAULTS, ...config };
  const d = CLOCK_DEFAULTS;
  const positive = (v, dflt) => (typeof v === "number" && Number.isFinite(v) && v > 0 ? v : dflt);
  return {
    window_ms: positive(c.window_ms, d.window_ms),
    block_ms: positive(c.block_ms, d.block_ms),
    min_skew_span_ms: nonNegativeOr(c.min_skew_span_ms, d.min_skew_span_ms),
    skew_refit_ms: nonNegativeOr(c.skew_refit_ms, d.skew_refit_ms),
    max_skew_ppm: Math.min(nonNegativeOr(c.max_skew_ppm, d.max_skew_ppm), 10000),
    bound_points: clampInt(countOr(c.bound_points, d.bound_points), 2, 256),
    warm_samples: clampInt(countOr(c.warm_samples, d.warm_samples), 1, 1000),
    max_rtt_ms: nonNegativeOr(c.max_rtt_ms, d.max_rtt_ms),
    step_confirm: clampInt(countOr(c.step_confirm, d.step_confirm), 1, 100),
    step_margin_ms: nonNegativeOr(c.step_margin_ms, d.step_margin_ms),
    join_pings: Math.min(countOr(c.join_pings, d.join_pings), 1000),
    join_interval_ms: nonNegativeOr(c.join_interval_ms, d.join_interval_ms),
    fast_interval_ms: nonNegativeOr(c.fast_interval_ms, d.fast_interval_ms),
    slow_interval_ms: nonNegativeOr(c.slow_interval_ms, d.slow_interval_ms),
    stable_ms: nonNegativeOr(c.stable_ms, d.stable_ms),
    delay_samples: clampInt(countOr(c.delay_samples, d.delay_samples), 1, 100000),
  };
}

const UP = "up";
const DOWN = "down";

/**
 * Estimate of the server clock from one-way samples: an envelope fit with
 * a certain error bound. See src/clock.rs (same algorithm, same order).
 *
 * addSample()/addDown()/addUp() return "rejected" | "accepted" | "suspect" | "step".
 */
export class OffsetEstimator {
  constructor(config = {}) {
    this.config = sanitizeClock(config);
    const m = this.config.max_skew_ppm / 1e6;
    this._up = [];
    this._down = [];
    this._suspects = [];
    this._skew = 0;
    this._skewMin = -m;
    this._skewMax = m;
    this._skewKnown = false;
    this._fittedAt = null;
    this._offset = 0;
    this._anchor = 0;
    this._hasEstimate = false;
    this._lastMove = Infinity;
    this._bestRtt = Infinity;
    this._pongs = 0;
    this._recentDown = [];
    this._pingsSent = 0;
    this._lastPing = null;
  }

  /** A ping (t0 local send, t1 server receive) and its pong (t2 server send, t3 local receive). */
  addSample(t0, t1, t2, t3) {
    const rtt = t3 - t0 - (t2 - t1);
    const sane =
      [t0, t1, t2, t3].every((v) => typeof v === "number" && Number.isFinite(v)) &&
      Number.isFinite(rtt) &&
      t3 >= t0 &&
      t2 >= t1 &&
      rtt >= 0 &&
      rtt <= this.config.max_rtt_ms;
    if (!sane) return "rejected";
    const up = { x: t0, y: t1 - t0 };
    const down = { x: t3, y: t2 - t3 };
    const outcome = this._take([[UP, up], [DOWN, down]], t3);
    if (outcome === "accepted" || outcome === "step") {
      this._bestRtt = Math.min(this._bestRtt, rtt);
      this._pongs += 1;
    }
    return outcome;
  }

  /** A server frame stamped serverSentMs arrived at local localMs. */
  addDown(serverSentMs, localMs) {
    if (!(Number.isFinite(serverSentMs) && Number.isFinite(localMs))) return "rejected";
    return this._take([[DOWN, { x: localMs, y: serverSentMs - localMs }]], localMs);
  }

  /** A client frame stamped localSentMs reached the server at serverMs. */
  addUp(localSentMs, serverMs) {
    if (!(Number.isFinite(serverMs) && Number.isFinite(localSentMs))) return "rejected";
    return this._take([[UP, { x: localSentMs, y: serverMs - localSentMs }]], localSentMs);
  }

  _take(points, now) {
    const latest = this._latestX();
    if (latest !== null) {
      if (points.some(([, p]) => p.x < latest - this.config.window_ms)) return "rejected";
    }
    if (this._hasEstimate) {
      const contradicts = points.some(([dir, p]) => {
        const [lo, hi] = this._boundsAt(p.x);
        return dir === UP ? p.y < lo - this.config.step_margin_ms : p.y > hi + this.config.step_margin_ms;
      });
      if (contradicts) {
        const margin = this.config.step_margin_ms;
        const disagree = points.some(([dir, p]) =>
          this._suspects.some(([d, q]) => {
            if (dir === UP && d === DOWN) return p.y < q.y - margin;
            if (dir === DOWN && d === UP) return p.y > q.y + margin;
            return false;
          }),
        );
        if (disagree) this._suspects = [];
        for (const pt of points) this._suspects.push(pt);
        const downs = this._suspects.filter(([d]) => d === DOWN).length;
        const ups = this._suspects.filter(([d]) => d === UP).length;
        if (Math.max(downs, ups) < this.config.step_confirm) return "suspect";
        const fresh = this._suspects;
        this._suspects = [];
        this._up = [];
        this._down = [];
        this._recentDown = [];
        this._skewKnown = false;
        this._skew = 0;
        const m = this.config.max_skew_ppm / 1e6;
        this._skewMin = -m;
        this._skewMax = m;
        this._fittedAt = null;
        this._bestRtt = Infinity;
        for (const [dir, p] of fresh) this._insert(dir, p);
        this._refit(now, true);
        return "step";
      }
    }
    this._suspects = [];
    for (const [dir, p] of points) this._insert(dir, p);
    const due =
      this._fittedAt === null || now - this._fittedAt >= this.config.skew_refit_ms || now < this._fittedAt;
    this._refit(now, due);
    return "accepted";
  }

  _latestX() {
    const a = this._up.length ? this._up[this._up.length - 1].x : null;
    const b = this._down.length ? this._down[this._down.length - 1].x : null;
    if (a !== null && b !== null) return Math.max(a, b);
    return a !== null ? a : b;
  }

  _insert(dir, p) {
    const block = this.config.block_ms;
    const list = dir === UP ? this._up : this._down;
    const index = Math.floor(p.x / block);
    let at = list.length;
    while (at > 0) {
      const prev = list[at - 1];
      if (prev.x <= p.x || Math.floor(prev.x / block) === index) break;
      at -= 1;
    }
    const same = at > 0 && Math.floor(list[at - 1].x / block) === index ? at - 1 : -1;
    if (same >= 0) {
      const q = list[same];
      const tighter = dir === UP ? p.y <= q.y : p.y >= q.y;
      if (tighter) list[same] = p;
    } else {
      list.splice(at, 0, p);
    }
    if (dir === DOWN) {
      this._recentDown.push(p);
      while (this._recentDown.length > this.config.delay_samples) this._recentDown.shift();
    }
    const newest = this._latestX() ?? p.x;
    const oldest = newest - this.config.window_ms;
    while (this._up.length && this._up[0].x < oldest) this._up.shift();
    while (this._down.length && this._down[0].x < oldest) this._down.shift();
  }

  _refit(now, fitSkew) {
    if (!this._up.length || !this._down.length) return;
    const before = this._hasEstimate ? this._offsetAt(now) : null;
    if (fitSkew) {
      this._fitSkew();
      this._fittedAt = now;
    }
    const [lo, hi] = this._skewKnown
      ? this._envelopeAt(now, this._skew, this._skew)
      : this._envelopeAt(now, this._skewMin, this._skewMax);
    this._offset = (lo + hi) / 2;
    this._anchor = now;
    this._hasEstimate = true;
    if (fitSkew) this._lastMove = before === null ? Infinity : Math.abs(this._offset - before);
  }

  _envelopeAt(x, bLo, bHi) {
    let hi = Infinity;
    for (const p of this._up) {
      const b = x >= p.x ? bHi : bLo;
      hi = Math.min(hi, p.y + b * (x - p.x));
    }
    let lo = -Infinity;
    for (const p of this._down) {
      const b = x >= p.x ? bLo : bHi;
      lo = Math.max(lo, p.y + b * (x - p.x));
    }
    return [lo, hi];
  }

  _boundsAt(x) {
    return this._envelopeAt(x, this._skewMin, this._skewMax);
  }

  _fitSkew() {
    const m = this.config.max_skew_ppm / 1e6;
    const first = Math.min(
      this._up.length ? this._up[0].x : Infinity,
      this._down.length ? this._down[0].x : Infinity,
    );
    const lx = this._latestX();
    const last = lx === null ? -Infinity : lx;
    if (!(last - first >= this.config.min_skew_span_ms && this._up.length >= 2) || this._down.length < 2) {
      this._skewKnown = false;
      this._skew = 0;
      this._skewMin = -m;
      this._skewMax = m;
      return;
    }
    const r = (Math.sqrt(5) - 1) / 2;
    let a = -m;
    let b = m;
    let c = b - r * (b - a);
    let d = a + r * (b - a);
    let fc = this._objective(c, last);
    let fd = this._objective(d, last);
    for (let i = 0; i < 60; i++) {
      if (fc <= fd) {
        b = d;
        d = c;
        fd = fc;
        c = b - r * (b - a);
        fc = this._objective(c, last);
      } else {
        a = c;
        c = d;
        fc = fd;
        d = a + r * (b - a);
        fd = this._objective(d, last);
      }
    }
    const fitted = (a + b) / 2;
    const [bMin, bMax] = this._feasibleSlopes(fitted, m);
    this._skewMin = bMin;
    this._skewMax = bMax;
    this._skew = Math.min(Math.max(fitted, bMin), bMax);
    this._skewKnown = true;
  }

  _objective(b, x0) {
    let sumUp = 0;
    let minUp = Infinity;
    for (const p of this._up) {
      const v = p.y - b * (p.x - x0);
      sumUp += v;
      minUp = Math.min(minUp, v);
    }
    let sumDown = 0;
    let maxDown = -Infinity;
    for (const p of this._down) {
      const v = p.y - b * (p.x - x0);
      sumDown += v;
      maxDown = Math.max(maxDown, v);
    }
    return sumUp - this._up.length * minUp + (this._down.length * maxDown - sumDown);
  }

  _feasibleSlopes(b, m) {
    const k = this.config.bound_points;
    const x0 = this._latestX() ?? 0;
    const ups = [...this._up].sort((p, q) => p.y - b * (p.x - x0) - (q.y - b * (q.x - x0))).slice(0, k);
    const downs = [...this._down].sort((p, q) => q.y - b * (q.x - x0) - (p.y - b * (p.x - x0))).slice(0, k);
    let lo = -m;
    let hi = m;
    for (const u of ups) {
      for (const d of downs) {
        const dx = u.x - d.x;
        if (dx === 0) continue;
        const limit = (u.y - d.y) / dx;
        if (dx > 0) hi = Math.min(hi, limit);
        else lo = Math.max(lo, limit);
      }
    }
    if (lo > hi) return [-m, m];
    return [lo, hi];
  }

  _offsetAt(localMs) {
    return this._offset + this._skew * (localMs - this._anchor);
  }

  onPingSent(localMs) {
    if (Number.isFinite(localMs)) {
      this._pingsSent += 1;
      this._lastPing = localMs;
    }
  }

  isStable() {
    return this._skewKnown && this._suspects.length === 0 && this._lastMove < this.config.stable_ms;
  }

  nextPingAt(localMs) {
    if (this._lastPing === null) return localMs;
    let interval;
    if (this._pingsSent < this.config.join_pings || !this.isWarm()) interval = this.config.join_interval_ms;
    else if (this.isStable()) interval = this.config.slow_interval_ms;
    else interval = this.config.fast_interval_ms;
    return this._lastPing + interval;
  }

  offsetMs() {
    return this._offset;
  }

  serverTime(localMs) {
    return localMs + this._offsetAt(localMs);
  }

  localTime(serverMs) {
    return (serverMs - this._offset + this._skew * this._anchor) / (1 + this._skew);
  }

  uncertaintyMs() {
    return this.uncertaintyAt(this._anchor);
  }

  uncertaintyAt(localMs) {
    if (!this._up.length || !this._down.length || !Number.isFinite(localMs)) return Infinity;
    const [lo, hi] = this._boundsAt(localMs);
    const est = this._offsetAt(localMs);
    return Math.max(Math.max(hi - est, est - lo), 0);
  }

  oneWayDelayMs() {
    return this._bestRtt / 2;
  }

  rttMs() {
    return this._bestRtt;
  }

  delayQuantileMs(p) {
    const floor = this.oneWayDelayMs();
    if (!Number.isFinite(floor) || this._recentDown.length === 0) return floor;
    const delays = this._recentDown.map((s) => this._offsetAt(s.x) - s.y).sort((a, b) => a - b);
    const q = Number.isFinite(p) ? Math.min(Math.max(p, 0), 1) : 1;
    const rank = clampInt(Math.ceil(q * delays.length), 1, delays.length);
    return Math.max(delays[rank - 1], floor);
  }

  skewPpm() {
    return this._skew * 1e6;
  }

  isWarm() {
    return this._pongs >= this.config.warm_samples;
  }

  sampleCount() {
    return this._pongs;
  }
}

export function positionAt(playback, serverMs) {
  if (playback.playing && serverMs > playback.at_ms) {
    return playback.position_ms + (serverMs - playback.at_ms) * playback.rate;
  }
  return playback.position_ms;
}

function sanitizeDrift(config) {
  unknownKeys(config, DRIFT_DEFAULTS, "DriftController");
  const c = { ...DRIFT_DEFAULTS, ...config };
  const d = DRIFT_DEFAULTS;
  const filterLen = Math.max(countOr(c.filter_len, d.filter_len), 1);
  const correctionTime =
    typeof c.correction_time_ms === "number" &&
    Number.isFinite(c.correction_time_ms) &&
    c.correction_time_ms > 0
      ? c.correction_time_ms
      : d.correction_time_ms;
  return {
    enabled: c.enabled !== false,
    dead_zone_ms: nonNegativeOr(c.dead_zone_ms, d.dead_zone_ms),
    settle_ratio: Math.min(nonNegativeOr(c.settle_ratio, d.settle_ratio), 1),
    correction_time_ms: correctionTime,
    max_rate_deviation: Math.min(nonNegativeOr(c.max_rate_deviation, d.max_rate_deviation), 0.5),
    min_rate_deviation: Math.min(
      nonNegativeOr(c.min_rate_deviation, d.min_rate_deviation),
      Math.min(nonNegativeOr(c.max_rate_deviation, d.max_rate_deviation), 0.5),
    ),
    min_rate_step: nonNegativeOr(c.min_rate_step, d.min_rate_step),
    min_hold_ms: nonNegativeOr(c.min_hold_ms, d.min_hold_ms),
    seek_threshold_ms: nonNegativeOr(c.seek_threshold_ms, d.seek_threshold_ms),
    cooldown_ms: nonNegativeOr(c.cooldown_ms, d.cooldown_ms),
    seek_latency_ms: nonNegativeOr(c.seek_latency_ms, d.seek_latency_ms),
    seek_latency_alpha: Math.min(nonNegativeOr(c.seek_latency_alpha, d.seek_latency_alpha), 1),
    max_seek_latency_ms: nonNegativeOr(c.max_seek_latency_ms, d.max_seek_latency_ms),
    filter_len: filterLen,
    min_reports: clampInt(countOr(c.min_reports, d.min_reports), 1, filterLen),
    report_granularity_ms: nonNegativeOr(c.report_granularity_ms, d.report_granularity_ms),
    echo_window_ms: nonNegativeOr(c.echo_window_ms, d.echo_window_ms),
    echo_seek_tolerance_ms: nonNegativeOr(c.echo_seek_tolerance_ms, d.echo_seek_tolerance_ms),
  };
}

const RATE_EPSILON = 1e-9;
/** Dead zone of positions read off the screen, and the least nudge there, in steps (drift.rs). */
const FRAME_DEAD_ZONE = 0.55;
const FRAME_STEP_NUDGE = 1.25;
const ECHO_RATE_TOLERANCE = 1e-6;
const NONE = Object.freeze({ type: "none" });

function trimmedMean(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const cut = Math.floor(sorted.length / 4);
  const kept = sorted.slice(cut, sorted.length - cut);
  let sum = 0;
  for (const v of kept) sum += v;
  return sum / kept.length;
}

/**
 * The client's drift controller. See src/drift.rs.
 *
 * tick() returns {type: "none"} | {type: "set_rate", rate} |
 * {type: "seek", position_ms}. Apply it to the local player only: it is
 * never a command to send. When the player then reports a rate change or a
 * seek, ask isOwnCorrection({rate}) or isOwnCorrection({seek}) and drop the
 * event if it is the controller's echo.
 */
export class DriftController {
  constructor(config = {}) {
    this.config = sanitizeDrift(config);
    this._errors = [];
    this._last = null;
    this._seq = null;
    this._error = null;
    this._correcting = false;
    this._lastRateSet = -Infinity;
    this._cooldownUntil = -Infinity;
    this._seekLatency = this.config.seek_latency_ms;
    this._latencyLearned = false;
    this._seekStarted = null;
    this._issuedRate = null;
    this._issuedSeek = null;
    this._seekStreak = 0;
    this._frameQuantum = 0;
  }

  /** Turns correction on or off for this viewer (off: every tick is "none"). */
  setEnabled(enabled) {
    const on = Boolean(enabled);
    if (on !== this.config.enabled) {
      this.config.enabled = on;
      this._resetFilter();
      this._correcting = false;
    }
  }

  /** The step (ms of media) of positions read off frames on screen; 0 when they are not. */
  setFrameQuantum(ms) {
    this._frameQuantum = Number.isFinite(ms) && ms > 0 ? ms : 0;
  }

  isEnabled() {
    return this.config.enabled;
  }

  /** The seek latency aimed ahead by (learned, or the configured guess). */
  seekLatencyMs() {
    return this._seekLatency;
  }

  /** The filtered error (room minus player, ms), or null before enough reports. */
  errorMs() {
    return this._error;
  }

  /**
   * One control step. playback: the room state in force ({media, playing,
   * position_ms, at_ms, rate, seq}); player: {position_ms, rate, playing, busy}.
   */
  tick(localMs, serverMs, playback, player) {
    const c = this.config;
    if (!c.enabled) return NONE;
    const finite = [
      localMs,
      serverMs,
      playback.position_ms,
      playback.at_ms,
      playback.rate,
      player.position_ms,
      player.rate,
    ].every((x) => typeof x === "number" && Number.isFinite(x));
    if (!finite || playback.rate <= 0 || player.rate < 0) return NONE;
    if (playback.playing && serverMs < playback.at_ms) return NONE;
    const g = c.report_granularity_ms;
    const expected = positionAt(playback, serverMs);
    const seekTarget = positionAt(playback, serverMs + this._seekLatency);
    const sample = expected - (player.position_ms + g / 2);
    if (!(Number.isFinite(sample) && Number.isFinite(seekTarget))) return NONE;
    if (this._seq !== playback.seq) {
      this._seq = playback.seq;
      this._resetFilter();
      // A new room state ends the seek backoff (see drift.rs).
      this._seekStreak = 0;
      this._cooldownUntil = Math.min(this._cooldownUntil, localMs + c.cooldown_ms);
    }
    const seeking = this._seekStarted !== null && localMs - this._seekStarted <= c.max_seek_latency_ms;
    const hasMedia = playback.media !== null && playback.media !== undefined;
    if (player.busy || seeking || !hasMedia || Boolean(playback.playing) !== Boolean(player.playing)) {
      this._resetFilter();
      return NONE;
    }

    this._observe(localMs, expected, player, sample);
    this._error = this._errors.length >= c.min_reports ? trimmedMean(this._errors) : null;

    const roomRate = playback.rate;
    const nudged = Math.abs(player.rate - roomRate) > RATE_EPSILON;
    const holdElapsed = localMs - this._lastRateSet >= c.min_hold_ms;
    if (localMs < this._cooldownUntil) {
      this._correcting = false;
      return nudged ? this._setRate(roomRate, localMs) : NONE;
    }
    const error = this._error;
    if (error === null) return this._restore(nudged, holdElapsed, roomRate, localMs);
    const q = this._frameQuantum;
    const deadZone = Math.max(Math.max(c.dead_zone_ms, g / 2), FRAME_DEAD_ZONE * q);

    if (!playback.playing) {
      this._correcting = false;
      if (Math.abs(error) > Math.max(deadZone, g)) return this._seek(playback.position_ms, localMs);
      this._seekStreak = 0;
      return this._restore(nudged, holdElapsed, roomRate, localMs);
    }
    if (Math.abs(error) >= c.seek_threshold_ms) {
      return this._seek(seekTarget, localMs);
    }
    this._seekStreak = 0;
    const settle = Math.max(deadZone * c.settle_ratio, FRAME_DEAD_ZONE * q);
    if (Math.abs(error) > deadZone || (this._correcting && Math.abs(error) > settle)) {
      this._correcting = true;
      const max = c.max_rate_deviation;
      let deviation = Math.min(Math.max(error / c.correction_time_ms, -max), max);
      const min = Math.min(
        Math.max(c.min_rate_deviation, (FRAME_STEP_NUDGE * q) / (roomRate * Math.max(c.min_hold_ms, 1))),
        max,
      );
      if (Math.abs(deviation) < min) deviation = deviation < 0 ? -min : min;
      const rate = roomRate * (1 + deviation);
      if (holdElapsed && Math.abs(rate - player.rate) >= c.min_rate_step) {
        return this._setRate(rate, localMs);
      }
      return NONE;
    }
    this._correcting = false;
    // On the screen a step, once crossed, is crossed (drift.rs).
    return this._restore(nudged, holdElapsed || q > 0, roomRate, localMs);
  }

  _observe(localMs, expected, player, error) {
    const last = this._last;
    if (last !== null) {
      if (localMs >= last.local_ms) {
        const roomMoved = expected - last.expected_ms;
        const playerMoved = last.playing ? last.rate * (localMs - last.local_ms) : 0;
        const shift = roomMoved - playerMoved;
        for (let i = 0; i < this._errors.length; i++) this._errors[i] += shift;
      } else {
        this._errors = [];
      }
    }
    this._errors.push(error);
    if (this._errors.length > this.config.filter_len) this._errors.shift();
    this._last = {
      local_ms: localMs,
      expected_ms: expected,
      rate: player.rate,
      playing: Boolean(player.playing),
    };
  }

  _restore(nudged, holdElapsed, roomRate, localMs) {
    if (nudged && holdElapsed) {
      this._correcting = false;
      return this._setRate(roomRate, localMs);
    }
    return NONE;
  }

  _setRate(rate, localMs) {
    if (this._last !== null) this._last.rate = rate;
    this._lastRateSet = localMs;
    this._issuedRate = { value: rate, at_ms: localMs };
    return { type: "set_rate", rate };
  }

  _seek(target, localMs) {
    const position = Math.max(target, 0);
    let backoff = 1;
    for (let i = 0; i < Math.min(this._seekStreak, 3); i++) backoff *= 4;
    this._seekStreak += 1;
    this._cooldownUntil = localMs + this.config.cooldown_ms * backoff;
    this._correcting = false;
    this._resetFilter();
    this._issuedSeek = { value: position, at_ms: localMs };
    return { type: "seek", position_ms: position };
  }

  _resetFilter() {
    this._errors = [];
    this._last = null;
    this._error = null;
  }

  /** The player started seeking at local time `localMs`. */
  onSeekStarted(localMs) {
    if (Number.isFinite(localMs)) this._seekStarted = localMs;
  }

  /** The player finished seeking at local time `localMs`: latency learned, cooldown runs. */
  onSeekFinished(localMs) {
    if (!Number.isFinite(localMs)) return;
    const c = this.config;
    if (this._seekStarted !== null) {
      const took = localMs - this._seekStarted;
      this._seekStarted = null;
      if (took >= 0 && took <= c.max_seek_latency_ms) {
        this._seekLatency = this._latencyLearned
          ? this._seekLatency + c.seek_latency_alpha * (took - this._seekLatency)
          : took;
        this._latencyLearned = true;
      }
    }
    this._cooldownUntil = Math.max(this._cooldownUntil, localMs + c.cooldown_ms);
    this._correcting = false;
    this._resetFilter();
  }

  /**
   * Whether a change the player reported at `localMs` is the echo of this
   * controller's own correction: change is {rate: r} or {seek: position_ms}.
   */
  isOwnCorrection(change, localMs) {
    const c = this.config;
    const recent = (issued) =>
      issued !== null && localMs >= issued.at_ms && localMs - issued.at_ms <= c.echo_window_ms
        ? issued
        : null;
    if (typeof localMs !== "number") return false;
    if (change !== null && typeof change === "object" && "rate" in change) {
      const i = recent(this._issuedRate);
      return i !== null && typeof change.rate === "number" && Math.abs(change.rate - i.value) <= ECHO_RATE_TOLERANCE;
    }
    if (change !== null && typeof change === "object" && "seek" in change) {
      const i = recent(this._issuedSeek);
      return (
        i !== null &&
        typeof change.seek === "number" &&
        Math.abs(change.seek - i.value) <= c.echo_seek_tolerance_ms + c.report_granularity_ms
      );
    }
    return false;
  }
}

// ---------------------------------------------------------------- Session

/** Defaults of Session, as SessionConfig::default() in Rust. */
export const SESSION_DEFAULTS = Object.freeze({
  report_granularity_ms: 0,
  read_noise_ms: 2,
  unknown_seek_allowance_ms: 2000,
  buffering_debounce_ms: 1000,
  report_interval_ms: 1000,
  echo_window_ms: 5000,
  output_latency_ms: 0,
  display_interval_ms: 0,
});

/** The protocol version this module speaks, and every one it speaks. */
export const PROTOCOL_VERSION = 2;
export const SUPPORTED_VERSIONS = Object.freeze([2]);

const MAX_POSITION_MS = 7 * 24 * 3600 * 1000;
const MAX_TIMESTAMP_MS = 1e14;
const MAX_DURATION_MS = 3600000;
const MIN_RATE = 0.25;
const MAX_RATE = 4;

const REAIM_MS = 20;
const CUE_LATENCY_FACTOR = 1.25;
const FAR_FACTOR = 1.15;
const FAR_KEPT = 8;
const NEAR_ALPHA = 0.3;
const NEAR_GUESS_MS = 150;
const BEHIND_KEPT_MS = 5000;
const MAX_SEEK_MS = 10000;
const CUE_MARGIN_MS = 30;
const PLAY_LEAD_GAIN = 1;
const MAX_PLAY_LEAD_MS = 300;
const RECUE_MS = 10;
const CUE_WAKE_SLACK_MS = 0.5;
const ECHO_SEEK_MS = 150;
const ECHO_RATE = 1e-6;
const FRAME_FRESH_MS = 250;
const FRAME_STEPS_KEPT = 15;
const MAX_FRAME_STEP_MS = 250;
const SHARP_PHASE_MS = 12;
const MAX_LEARN_LATE_MS = 50;
const AIM_AGAIN_MS = 40;
const RATE_LEAD_GAIN = 0.75;
const MAX_RATE_LEAD_MS = 300;
const MIN_LEARNED_RATE_STEP = 0.2;
const TICK_GAP_ALPHA = 0.3;
const THROTTLED_GAP_MS = 300;

function refuse(code, message) {
  return { code, message };
}

function finite(x) {
  return typeof x === "number" && Number.isFinite(x);
}

function validPlayback(p) {
  return (
    p !== null &&
    typeof p === "object" &&
    finite(p.position_ms) &&
    p.position_ms >= 0 &&
    p.position_ms <= MAX_POSITION_MS &&
    finite(p.at_ms) &&
    p.at_ms >= 0 &&
    p.at_ms < MAX_TIMESTAMP_MS &&
    finite(p.rate) &&
    p.rate >= MIN_RATE &&
    p.rate <= MAX_RATE &&
    Number.isInteger(p.seq)
  );
}

function samePlayback(a, b) {
  return (a.media ?? null) === (b.media ?? null);
}

/** Whether `next` moves the position rather than continuing `prev`. */
export function jumps(next, prev) {
  if (prev === null || prev === undefined) return true;
  return !samePlayback(prev, next) || Math.abs(next.position_ms - positionAt(prev, next.at_ms)) > 1;
}

function sanitizeSession(config) {
  const known = { ...SESSION_DEFAULTS, clock: null, drift: null };
  unknownKeys(config, known, "Session");
  const c = { ...SESSION_DEFAULTS, ...config };
  const d = SESSION_DEFAULTS;
  return {
    clock: { ...(config.clock ?? {}) },
    drift: { seek_threshold_ms: 120, ...(config.drift ?? {}), report_granularity_ms: 0 },
    report_granularity_ms: nonNegativeOr(c.report_granularity_ms, d.report_granularity_ms),
    read_noise_ms: nonNegativeOr(c.read_noise_ms, d.read_noise_ms),
    unknown_seek_allowance_ms: nonNegativeOr(c.unknown_seek_allowance_ms, d.unknown_seek_allowance_ms),
    buffering_debounce_ms: nonNegativeOr(c.buffering_debounce_ms, d.buffering_debounce_ms),
    report_interval_ms: nonNegativeOr(c.report_interval_ms, d.report_interval_ms),
    echo_window_ms: nonNegativeOr(c.echo_window_ms, d.echo_window_ms),
    output_latency_ms: nonNegativeOr(c.output_latency_ms, d.output_latency_ms),
    display_interval_ms: nonNegativeOr(c.display_interval_ms, d.display_interval_ms),
  };
}

/**
 * The client session of one room connection, sans-IO: server frames,
 * player reads and events and ticks in; player actions and frames out.
 * See src/client.rs (same logic, same arithmetic, same order).
 *
 * Inputs return null, or {code, message} when refused (nothing changed).
 * poll() returns the next output: {type: "player", at_ms, action: {action:
 * "play"|"pause"|"seek"|"set_rate", position_ms?, rate?}} or {type: "send",
 * frame: {type, ..., sent_ms}} (JSON.stringify it and send it).
 */
export class Session {
  constructor(config = {}) {
    this.config = sanitizeSession(config);
    this._est = new OffsetEstimator(this.config.clock);
    this._ctl = new DriftController(this.config.drift);
    this._pending = [];
    this._applied = null;
    this._seq = 0;
    this._member = null;
    this._policy = null;
    this._queue = [];
    this._waiting = [];
    this._provisional = null;
    this._buffering = { kind: "no", since: null };
    this._cue = null;
    this._inFlight = false;
    this._seekStarted = null;
    this._nearLatency = null;
    this._farLatencies = [];
    this._playLead = 0;
    this._learnPlayLead = null;
    this._cueLead = 0;
    this._playLeadKnown = false;
    this._rateLead = 0;
    this._learnRateLead = null;
    this._read = null;
    this._phase = null;
    this._frame = null;
    this._frameSensed = false;
    this._frameSteps = [];
    this._seekDone = null;
    this._stalled = false;
    this._issued = [];
    this._commandedPlaying = null;
    this._commandedRate = null;
    this._out = [];
    this._wakes = [];
    this._nextPingId = 1;
    this._nextCommandId = 1;
    this._pings = [];
    this._lastReport = null;
    this._lastServerStamp = null;
    this._behind = 0;
    this._reads = 0;
    this._lastTick = null;
    this._tickGap = 50;
  }

  // ---- queries

  seq() {
    return this._seq;
  }

  member() {
    return this._member;
  }

  playback() {
    return this._applied;
  }

  queue() {
    return this._queue;
  }

  waiting() {
    return this._waiting;
  }

  policy() {
    return this._policy;
  }

  clock() {
    return this._est;
  }

  drift() {
    return this._ctl;
  }

  serverTime(localMs) {
    return this._est.serverTime(localMs);
  }

  behindMs() {
    return this._behind;
  }

  /** The earliest local time the session wants a tick at, or null. */
  nextWakeMs() {
    if (this._wakes.length === 0) return null;
    return this._wakes.reduce((a, b) => Math.min(a, b));
  }

  /** The next output, or null. */
  poll() {
    return this._out.length ? this._out.shift() : null;
  }

  // ---- settings

  setCorrection(localMs, enabled) {
    this._ctl.setEnabled(enabled);
    if (!enabled && this._applied !== null) this._setRate(localMs, this._applied.rate);
  }

  setOutputLatency(ms) {
    return this._upToASecond("output latency", ms, "output_latency_ms");
  }

  /** The display's refresh interval, ms (0: unknown), which positions read off frames are quantized to. */
  setDisplayInterval(ms) {
    return this._upToASecond("display interval", ms, "display_interval_ms");
  }

  /** Sets config[key] to ms when it is a duration of 0 to 1000 ms; else the refusal naming `what`. */
  _upToASecond(what, ms, key) {
    if (!(finite(ms) && ms >= 0 && ms <= 1000)) {
      return refuse("invalid_value", `${what} ${ms} ms is not within 0..=1000`);
    }
    this.config[key] = ms;
    return null;
  }

  catchUp() {
    this._behind = 0;
  }

  // ---- inputs

  /** The first frame of a connection. */
  hello(localMs, token, name) {
    const frame = { type: "hello", versions: [...SUPPORTED_VERSIONS], token, name };
    if (this._member !== null) frame.resume = { member: this._member, last_seq: this._seq };
    frame.sent_ms = localMs;
    return frame;
  }

  _checkTime(localMs) {
    if (!finite(localMs) || localMs < 0 || localMs >= MAX_TIMESTAMP_MS) {
      return refuse("invalid_value", `local time ${localMs} is out of range`);
    }
    return null;
  }

  /** A decoded server frame (an object with type and sent_ms) arrived at localMs. */
  onMessage(localMs, frame) {
    const bad = this._checkTime(localMs);
    if (bad) return bad;
    if (frame === null || typeof frame !== "object") return refuse("malformed", "not an object");
    const sent = frame.sent_ms;
    if (!(finite(sent) && sent >= 0 && sent < MAX_TIMESTAMP_MS)) {
      return refuse("invalid_value", `server frame stamped ${sent}`);
    }
    if (this._lastServerStamp !== null && sent < this._lastServerStamp) {
      return refuse("invalid_value", `server frame stamped ${sent}, before the previous one`);
    }
    switch (frame.type) {
      case "state": {
        const p = frame.playback;
        if (!validPlayback(p)) return refuse("invalid_value", "state out of range");
        if (p.seq <= this._appliedSeq() || this._pending.some((q) => q.seq === p.seq)) {
          return refuse("stale", `state seq ${p.seq} is not new`);
        }
        break;
      }
      case "queue":
        if (!Number.isInteger(frame.seq)) return refuse("invalid_value", "queue seq");
        if (frame.seq < this._seq) return refuse("stale", `queue seq ${frame.seq} is older than ${this._seq}`);
        break;
      case "pong":
        if (!this._pings.some(([id]) => id === frame.id)) {
          return refuse("not_found", `pong ${frame.id} answers no ping`);
        }
        if (!(finite(frame.t0_ms) && finite(frame.t1_ms))) return refuse("invalid_value", "pong stamps");
        break;
      case "welcome":
        if (frame.v !== PROTOCOL_VERSION) return refuse("unsupported_version", `welcome of version ${frame.v}`);
        if (frame.room && !this._validRoom(frame.room)) return refuse("invalid_value", "snapshot out of range");
        break;
      case "snapshot":
        if (!this._validRoom(frame)) return refuse("invalid_value", "snapshot out of range");
        break;
      default:
        break;
    }
    this._lastServerStamp = sent;
    if (frame.type === "pong") {
      this._pings = this._pings.filter(([id]) => id !== frame.id);
      this._est.addSample(frame.t0_ms, frame.t1_ms, sent, localMs);
      if (this._lastReport === null) this._report(localMs);
    } else {
      this._est.addDown(sent, localMs);
      this._take(localMs, frame);
    }
    return null;
  }

  _validRoom(room) {
    return validPlayback(room.playback) && Array.isArray(room.pending) && room.pending.every(validPlayback);
  }

  _take(localMs, msg) {
    switch (msg.type) {
      case "welcome":
        this._member = msg.member;
        if (msg.room) this._take(localMs, { ...msg.room, type: "snapshot" });
        break;
      case "snapshot":
        this._add(msg.playback);
        for (const p of msg.pending) this._add(p);
        this._seq = Math.max(this._seq, msg.seq);
        this._policy = msg.policy;
        this._queue = [...(msg.queue ?? [])];
        this._waiting = [...(msg.waiting ?? [])];
        this._wakeForPending();
        break;
      case "state":
        this._add(msg.playback);
        this._seq = Math.max(this._seq, msg.playback.seq);
        this._wakeForPending();
        break;
      case "queue":
        if (msg.offset === 0) this._queue = [];
        this._queue.push(...(msg.items ?? []));
        this._queue.length = Math.min(this._queue.length, msg.total);
        this._seq = Math.max(this._seq, msg.seq);
        break;
      case "waiting":
        this._waiting = [...(msg.members ?? [])];
        break;
      default:
        break;
    }
  }

  _appliedSeq() {
    return this._applied === null ? 0 : this._applied.seq;
  }

  _add(p) {
    if (p.seq <= this._appliedSeq() || this._pending.some((q) => q.seq === p.seq)) return false;
    this._pending.push({ ...p });
    this._pending.sort((a, b) => a.seq - b.seq);
    return true;
  }

  _promote(serverMs) {
    let due = -1;
    for (let i = this._pending.length - 1; i >= 0; i--) {
      if (this._pending[i].at_ms <= serverMs) {
        due = i;
        break;
      }
    }
    if (due < 0) return null;
    const next = this._pending[due];
    this._pending.splice(0, due + 1);
    const prev = this._applied;
    this._applied = next;
    return [next, prev];
  }

  /**
   * A read of the player: {at_ms, position_ms, rate, playing, seeking,
   * waiting, buffered_ahead_ms?}.
   */
  onPlayer(read) {
    const ok =
      read !== null &&
      typeof read === "object" &&
      finite(read.at_ms) &&
      finite(read.position_ms) &&
      finite(read.rate) &&
      read.position_ms >= 0 &&
      read.position_ms <= MAX_POSITION_MS &&
      read.rate >= 0 &&
      read.rate <= 16 &&
      (read.buffered_ahead_ms === undefined ||
        read.buffered_ahead_ms === null ||
        (finite(read.buffered_ahead_ms) && read.buffered_ahead_ms >= 0 && read.buffered_ahead_ms <= MAX_POSITION_MS));
    if (!ok) return refuse("invalid_value", "player read out of range");
    if (this._read !== null && read.at_ms < this._read.at_ms) {
      return refuse("stale", "player read older than the last");
    }
    const r = {
      at_ms: read.at_ms,
      position_ms: read.position_ms,
      rate: read.rate,
      playing: Boolean(read.playing),
      seeking: Boolean(read.seeking),
      waiting: Boolean(read.waiting),
      buffered_ahead_ms: read.buffered_ahead_ms ?? null,
    };
    r.position_ms = this._sense(r);
    if (this._commandedPlaying === null) this._commandedPlaying = r.playing;
    if (this._commandedRate === null) this._commandedRate = r.rate;
    this._read = r;
    this._reads += 1;
    return null;
  }

  _sense(read) {
    this._frameSensed = false;
    if (this._frame !== null) {
      const [at, media] = this._frame;
      if (read.at_ms - at <= FRAME_FRESH_MS && read.playing && !read.seeking && !read.waiting) {
        this._frameSensed = true;
        return media + read.rate * (read.at_ms - at);
      }
    }
    const g = this.config.report_granularity_ms;
    if (g <= 0) return read.position_ms;
    if (!read.playing || read.seeking || read.waiting || read.rate <= 0) {
      this._phase = null;
      return read.position_ms + g / 2;
    }
    const noise = this.config.read_noise_ms;
    const lo = read.position_ms - noise - read.rate * read.at_ms;
    const hi = read.position_ms + g + noise - read.rate * read.at_ms;
    let phase;
    const ph = this._phase;
    const prev = this._read;
    if (ph !== null && prev !== null) {
      const d = ph.rate - read.rate;
      const a = d * prev.at_ms;
      const b = d * read.at_ms;
      const l = Math.max(ph.lo + Math.min(a, b), lo);
      const h = Math.min(ph.hi + Math.max(a, b), hi);
      phase = l <= h ? { lo: l, hi: h, rate: read.rate } : { lo, hi, rate: read.rate };
    } else {
      phase = { lo, hi, rate: read.rate };
    }
    this._phase = phase;
    return (phase.lo + phase.hi) / 2 + read.rate * read.at_ms;
  }

  /** The media time a frame on screen stands for: the median of the latest steps (client.rs). */
  _frameMs() {
    const steps = [...this._frameSteps].sort((a, b) => a - b);
    return steps.length ? steps[steps.length >> 1] : 0;
  }

  _readIsSharp() {
    if (this.config.report_granularity_ms <= 0) return true;
    if (this._read !== null && this._frame !== null && this._read.at_ms - this._frame[0] <= FRAME_FRESH_MS) return true;
    return this._phase !== null && this._phase.hi - this._phase.lo <= SHARP_PHASE_MS;
  }

  /** A requestVideoFrameCallback sample: mediaTime (ms) shown at expectedDisplayTime (local ms). */
  onFrame(mediaTimeMs, expectedDisplayMs) {
    if (!(finite(mediaTimeMs) && mediaTimeMs >= 0 && mediaTimeMs <= MAX_POSITION_MS) || !finite(expectedDisplayMs)) {
      return refuse("invalid_value", "frame out of range");
    }
    if (this._frame !== null) {
      const [display, media] = this._frame;
      const step = mediaTimeMs - media;
      if (expectedDisplayMs > display && step > 0 && step <= MAX_FRAME_STEP_MS) {
        if (this._frameSteps.length === FRAME_STEPS_KEPT) this._frameSteps.shift();
        this._frameSteps.push(step);
      }
    }
    this._frame = [expectedDisplayMs, mediaTimeMs];
    return null;
  }

  /**
   * The player reported event ({event: "play"|"pause"|"waiting"|"playing"}
   * or {event: "seeking"|"seeked", position_ms} or {event: "rate_change", rate}).
   * Returns {command} when it is the user's (the command is queued to send),
   * {command: null} when it is an echo or no command, or {code, message}.
   */
  onPlayerEvent(localMs, event) {
    const bad = this._checkTime(localMs);
    if (bad) return bad;
    const valued = event.event === "seeking" || event.event === "seeked";
    if (valued && !finite(event.position_ms)) return refuse("invalid_value", "event value is not finite");
    if (event.event === "rate_change" && !finite(event.rate)) return refuse("invalid_value", "event value is not finite");
    const window = this.config.echo_window_ms;
    this._issued = this._issued.filter((i) => localMs - i.at_ms <= window);
    const tolerance = ECHO_SEEK_MS + this.config.report_granularity_ms;
    if (event.event === "seeked") {
      this._seekDone = [localMs, event.position_ms];
      return { command: null };
    }
    if (event.event === "waiting") {
      this._stalled = true;
      return { command: null };
    }
    if (event.event === "playing") {
      this._stalled = false;
      return { command: null };
    }
    const own = this._issued.findIndex((i) => {
      const a = i.action;
      if (a.action === "play" && event.event === "play") return true;
      if (a.action === "pause" && event.event === "pause") return true;
      if (a.action === "seek" && event.event === "seeking") return Math.abs(a.position_ms - event.position_ms) <= tolerance;
      if (a.action === "set_rate" && event.event === "rate_change") return Math.abs(a.rate - event.rate) <= ECHO_RATE;
      return false;
    });
    if (own >= 0) {
      this._issued.splice(own, 1);
      return { command: null };
    }
    let command;
    switch (event.event) {
      case "play":
        command = { command: "play" };
        this._commandedPlaying = true;
        break;
      case "pause":
        command = { command: "pause" };
        this._commandedPlaying = false;
        break;
      case "seeking":
        command = { command: "seek", position_ms: Math.min(Math.max(event.position_ms, 0), MAX_POSITION_MS) };
        break;
      case "rate_change":
        if (this._applied !== null && Math.abs(this._applied.rate - event.rate) <= ECHO_RATE) return { command: null };
        command = { command: "set_rate", rate: event.rate };
        this._commandedRate = event.rate;
        break;
      default:
        return { command: null };
    }
    this.userCommand(localMs, command);
    return { command };
  }

  /** The user asked for command ({command: "play"} ...) through the UI; returns its request id. */
  userCommand(localMs, command) {
    const id = this._nextCommandId;
    this._nextCommandId += 1;
    this._send(localMs, { type: "command", id, based_on_seq: this._seq, ...command });
    return id;
  }

  // ---- outputs

  _send(localMs, msg) {
    this._out.push({ type: "send", frame: { ...msg, sent_ms: localMs } });
  }

  _act(localMs, action) {
    this._issued.push({ action, at_ms: localMs });
    this._out.push({ type: "player", at_ms: localMs, action });
  }

  _play(localMs) {
    if (this._commandedPlaying !== true) {
      this._commandedPlaying = true;
      this._act(localMs, { action: "play" });
    }
  }

  _pause(localMs) {
    if (this._commandedPlaying !== false) {
      this._commandedPlaying = false;
      this._act(localMs, { action: "pause" });
    }
  }

  _setRate(localMs, rate) {
    if (this._commandedRate === null || Math.abs(this._commandedRate - rate) > ECHO_RATE) {
      this._commandedRate = rate;
      this._act(localMs, { action: "set_rate", rate });
    }
  }

  _seek(localMs, targetMs) {
    const position = Math.min(Math.max(targetMs, 0), MAX_POSITION_MS);
    this._seekStarted = [localMs, this._isNear(position)];
    this._phase = null;
    this._frame = null;
    this._act(localMs, { action: "seek", position_ms: position });
    this._ctl.onSeekStarted(localMs);
    this._inFlight = true;
  }

  _wakeAt(localMs) {
    if (Number.isFinite(localMs)) this._wakes.push(localMs);
  }

  _report(localMs) {
    const rtt = this._est.rttMs();
    if (!Number.isFinite(rtt)) return;
    const read = this._read;
    if (read === null) return;
    this._lastReport = localMs;
    const clamp = (v) => (Number.isFinite(v) ? Math.min(Math.max(v, 0), MAX_DURATION_MS) : MAX_DURATION_MS);
    const seekLatency = this._seekAllowance();
    const msg = {
      type: "report",
      position_ms: Math.min(Math.max(read.position_ms, 0), MAX_POSITION_MS),
      sampled_at_ms: Math.max(Math.min(read.at_ms, localMs), 0),
      rate: read.rate,
      rtt_ms: clamp(rtt),
      delay_ms: clamp(this._est.delayQuantileMs(0.99)),
      offset_uncertainty_ms: clamp(this._est.uncertaintyAt(localMs)),
      seek_latency_ms: clamp(seekLatency),
    };
    if (read.buffered_ahead_ms !== null) msg.buffered_ahead_ms = read.buffered_ahead_ms;
    this._send(localMs, msg);
  }

  // ---- the tick

  tick(localMs) {
    const bad = this._checkTime(localMs);
    if (bad) return bad;
    const local = localMs;
    if (this._lastTick !== null) {
      const gap = local - this._lastTick;
      if (gap > 0) this._tickGap += TICK_GAP_ALPHA * (gap - this._tickGap);
    }
    this._lastTick = local;
    this._wakes = this._wakes.filter((w) => w > local + 1e-3);
    const seekDone = this._seekDone;
    this._seekDone = null;
    if (seekDone !== null) {
      const done = seekDone[0];
      this._ctl.onSeekFinished(done);
      this._inFlight = false;
      if (this._seekStarted !== null) {
        const [start, near] = this._seekStarted;
        this._seekStarted = null;
        const took = done - start;
        if (took >= 0 && took <= MAX_SEEK_MS) {
          if (near) {
            this._nearLatency = this._nearLatency === null ? took : this._nearLatency + NEAR_ALPHA * (took - this._nearLatency);
          } else {
            this._farLatencies.push(took);
            while (this._farLatencies.length > FAR_KEPT) this._farLatencies.shift();
          }
        }
      }
    }
    this._reportBuffering(local, seekDone !== null);
    if (this._est.nextPingAt(local) <= local) {
      this._est.onPingSent(local);
      const id = this._nextPingId;
      this._nextPingId += 1;
      this._pings.push([id, local]);
      while (this._pings.length > 64) this._pings.shift();
      this._send(local, { type: "ping", id });
    }
    if (this._lastReport === null || local - this._lastReport >= this.config.report_interval_ms) {
      this._report(local);
    }
    if (this.config.report_granularity_ms > 0 && !this._wakes.some((w) => w <= local + 50)) {
      const dither = 11 + (this._reads % 7) * 3.7;
      this._wakeAt(local + dither);
    }
    if (this._est.sampleCount() === 0) return null;
    const warm = this._est.isWarm();
    const server = this._est.serverTime(local);
    // A resume is applied the play lead early, as a cued play is played;
    // a rate change the rate lead early.
    const early = warm ? this._early() : 0;
    const promoted = warm || this._applied === null ? this._promote(server + early) : null;
    if (promoted !== null) {
      const [next, prev] = promoted;
      this._applyState(local, server, warm, next, prev);
      // Applied on time: the error that follows says how late the player really was.
      const late = Math.max(server + early - next.at_ms, 0);
      if (next.playing && late <= MAX_LEARN_LATE_MS && prev !== null && !jumps(next, prev)) {
        if (prev.playing) {
          const step = next.rate - prev.rate;
          if (Math.abs(step) >= MIN_LEARNED_RATE_STEP) this._learnRateLead = [late, step];
        } else {
          this._learnPlayLead = [late, false, false];
        }
      }
    }
    if (seekDone !== null) {
      this._afterSeek(local, server, seekDone[1]);
      this._checkThrottledLanding(local, server, seekDone[0], seekDone[1]);
    }
    if (warm) this._prepareNext(local, server);
    this._playWhenCued(local, server);
    if (!warm) return null;
    if (this._provisional !== null) {
      const offset = this._provisional;
      this._provisional = null;
      const state = this._applied;
      if (state !== null && state.playing && Math.abs(server - local - offset) > REAIM_MS) {
        this._cuedSeek(local, state, server);
        return null;
      }
    }
    this._correct(local, server);
    return null;
  }

  _applyState(local, server, warm, next, prev) {
    const prepared = this._cue !== null && this._cue.state.seq >= next.seq;
    if (next.playing && jumps(next, prev)) {
      this._behind = 0;
      if (!prepared) this._cuedSeek(local, next, server);
      this._setRate(local, next.rate);
      if (!warm) this._provisional = server - local;
    } else if (next.playing && this._inFlight && this._cue === null) {
      this._cuedSeek(local, next, server);
      this._setRate(local, next.rate);
    } else if (next.playing && this._cue !== null) {
      if (this._cue.state.seq < next.seq) {
        this._cue.state = next;
        this._setRate(local, next.rate);
      }
    } else {
      this._cue = null;
      if (jumps(next, prev)) {
        this._behind = 0;
        const target = next.playing ? positionAt(next, server + this._ctl.seekLatencyMs()) : next.position_ms;
        this._seek(local, target);
      }
      if (next.playing) this._play(local);
      else this._pause(local);
      this._setRate(local, next.rate);
    }
    this._wakeForPending();
  }

  _seekAllowance() {
    return this._farAllowance();
  }

  _farAllowance() {
    if (this._farLatencies.length === 0) return this.config.unknown_seek_allowance_ms;
    const longest = this._farLatencies.reduce((a, b) => Math.max(a, b));
    return longest * FAR_FACTOR + CUE_MARGIN_MS;
  }

  _typicalFar() {
    if (this._farLatencies.length === 0) return this.config.unknown_seek_allowance_ms;
    let sum = 0;
    for (const l of this._farLatencies) sum += l;
    return sum / this._farLatencies.length;
  }

  _isThrottled() {
    return this._tickGap > THROTTLED_GAP_MS;
  }

  _nearAllowance() {
    return (this._nearLatency === null ? NEAR_GUESS_MS : this._nearLatency) * CUE_LATENCY_FACTOR + CUE_MARGIN_MS;
  }

  _isNear(targetMs) {
    const read = this._read;
    if (read === null || this._inFlight) return false;
    const ahead = read.buffered_ahead_ms === null ? 0 : read.buffered_ahead_ms;
    return targetMs >= read.position_ms - BEHIND_KEPT_MS && targetMs <= read.position_ms + ahead;
  }

  _allowanceFor(targetMs) {
    return this._isNear(targetMs) ? this._nearAllowance() : this._farAllowance();
  }

  _cuedSeek(local, state, server) {
    const rough = positionAt(state, Math.max(server, state.at_ms));
    if (this._isThrottled()) {
      const typical = this._isNear(rough) ? this._nearAllowance() : this._typicalFar();
      const t = positionAt(state, Math.max(server + typical, state.at_ms));
      this._cue = null;
      this._seek(local, t);
      if (server >= state.at_ms) this._play(local);
      return;
    }
    let allowance = this._allowanceFor(rough);
    let target = positionAt(state, Math.max(server + allowance, state.at_ms));
    if (!this._isNear(target) && this._isNear(rough)) {
      allowance = this._farAllowance();
      target = positionAt(state, Math.max(server + allowance, state.at_ms));
    }
    if (this._inFlight) {
      const threshold = this._ctl.config.seek_threshold_ms;
      const cue = this._cue;
      if (cue !== null && cue.landed === null && Math.abs(cue.target - target) < threshold) {
        cue.state = state;
        return;
      }
    }
    this._pause(local);
    this._seek(local, target);
    this._cue = { state, target, landed: null, retried: false };
  }

  _afterSeek(local, server, landedAt) {
    const cue = this._cue;
    if (cue === null) return;
    const landed = this.config.report_granularity_ms > 0 ? cue.target : landedAt;
    cue.landed = landed;
    const state = cue.state;
    const retried = cue.retried;
    if (!state.playing || state.rate <= 0) return;
    if (positionAt(state, server) - landed > RECUE_MS && !retried) {
      this._cue = null;
      this._cuedSeek(local, state, server);
      if (this._cue !== null) this._cue.retried = true;
      return;
    }
    const at = state.at_ms + Math.max((landed - state.position_ms) / state.rate, 0);
    const atLocal = this._est.localTime(at) - this._lead();
    this._wakeAt(atLocal - this._cueLead + CUE_WAKE_SLACK_MS);
  }

  _checkThrottledLanding(local, server, done, landed) {
    if (!this._isThrottled() || this._cue !== null) return;
    const state = this._applied;
    if (state === null || !state.playing || server < state.at_ms) return;
    const nowAt = landed + state.rate * Math.max(local - done, 0);
    const error = positionAt(state, server) - nowAt;
    if (Math.abs(error) > this._ctl.config.seek_threshold_ms) this._cuedSeek(local, state, server);
  }

  _lead() {
    return this.config.output_latency_ms;
  }

  _playWhenCued(local, server) {
    const cue = this._cue;
    if (cue === null || this._applied === null) return;
    const ahead = CUE_WAKE_SLACK_MS + this._cueLead + this._lead();
    if (this._applied.seq < cue.state.seq && server + ahead < cue.state.at_ms) return;
    if (!cue.state.playing) {
      this._cue = null;
      return;
    }
    if (cue.landed !== null) {
      const past = positionAt(cue.state, server + ahead) - cue.landed;
      if (past >= 0) {
        const retried = cue.retried;
        this._cue = null;
        this._play(local);
        this._learnPlayLead = past <= MAX_LEARN_LATE_MS ? [past, true, !retried] : null;
      }
    }
  }

  _nextJump() {
    let prev = this._applied;
    for (const next of this._pending) {
      if (next.playing && jumps(next, prev)) return next;
      prev = next;
    }
    return null;
  }

  _prepareNext(local, server) {
    if (this._isThrottled()) return;
    const allowance = this._seekAllowance();
    let due = null;
    let prev = this._applied;
    for (const next of this._pending) {
      if (next.playing && jumps(next, prev) && server >= next.at_ms - allowance) due = next;
      prev = next;
    }
    if (due === null) return;
    if (this._cue !== null && this._cue.state.seq >= due.seq) return;
    this._cuedSeek(local, due, server);
  }

  _reportBuffering(local, seekDone) {
    const seeking = this._inFlight || (this._read !== null && this._read.seeking);
    const stalled = (this._stalled || (this._read !== null && this._read.waiting)) && !seeking;
    const position = Math.min(Math.max(this._read === null ? 0 : this._read.position_ms, 0), MAX_POSITION_MS);
    const b = this._buffering;
    if (b.kind === "no" && b.since === null && stalled) {
      this._buffering = { kind: "no", since: local };
    } else if (b.kind === "no" && b.since !== null && !stalled) {
      this._buffering = { kind: "no", since: null };
    } else if (b.kind === "no" && b.since !== null && stalled && local - b.since >= this.config.buffering_debounce_ms) {
      this._buffering = { kind: "stalled" };
      this._send(local, { type: "buffering", position_ms: position });
    } else if (b.kind === "stalled" && !stalled) {
      const a = this._applied;
      const pausedAt = a !== null && !a.playing && a.media !== null && a.media !== undefined ? a.position_ms : null;
      if (pausedAt !== null && Math.abs(position - pausedAt) > this._ctl.config.dead_zone_ms) {
        this._seek(local, pausedAt);
        this._buffering = { kind: "realigning" };
      } else {
        this._buffering = { kind: "no", since: null };
        if (this._policy !== null && this._policy.behind === "leave" && this._applied !== null) {
          const server = this._est.serverTime(local);
          this._behind = Math.max(positionAt(this._applied, server) - position, 0);
        }
        this._send(local, { type: "ready", position_ms: position });
      }
    } else if (b.kind === "realigning" && stalled) {
      this._buffering = { kind: "stalled" };
    } else if (b.kind === "realigning" && seekDone) {
      this._buffering = { kind: "no", since: null };
      this._send(local, { type: "ready", position_ms: position });
    }
  }

  /** How early the next pending state is applied: a resume by the play lead, a rate change by the rate lead (client.rs). */
  _early() {
    const applied = this._applied;
    const next = this._pending.length ? this._pending[0] : null;
    if (applied === null || next === null || !next.playing || jumps(next, applied)) return 0;
    if (!applied.playing) return (this._playLeadKnown ? this._playLead : this._cueLead) + this._lead();
    if (Math.abs(next.rate - applied.rate) > 1e-9) return this._rateLead;
    return 0;
  }

  _wakeForPending() {
    if (!this._est.isWarm()) return;
    if (this._pending.length) {
      const l = this._est.localTime(this._pending[0].at_ms) - Math.max(this._lead(), this._early());
      this._wakeAt(l + 0.01);
    }
    const next = this._nextJump();
    if (next !== null) {
      const l = this._est.localTime(next.at_ms);
      this._wakeAt(l - this._seekAllowance());
    }
  }

  _correct(local, server) {
    const state = this._applied;
    if (state === null) return;
    const quiet = Math.max(this._seekAllowance(), MAX_PLAY_LEAD_MS + CUE_WAKE_SLACK_MS);
    if (this._pending.length && this._pending[0].at_ms <= server + quiet) return;
    const read = this._read;
    if (read === null) return;
    const moving = read.playing && !read.seeking && !read.waiting && !this._stalled;
    const position = moving ? read.position_ms + read.rate * Math.max(local - read.at_ms, 0) : read.position_ms;
    const player = {
      position_ms: position,
      rate: read.rate,
      playing: read.playing,
      busy: read.seeking || read.waiting || this._stalled || !this._readIsSharp(),
    };
    const target = server + this._lead() - this._behind / Math.max(state.rate, 1e-9);
    this._ctl.setFrameQuantum(this._frameSensed ? Math.max(this.config.display_interval_ms * state.rate, this._frameMs()) : 0);
    const action = this._ctl.tick(local, target, state, player);
    if (this._learnPlayLead !== null && this._cue === null) {
      const error = this._ctl.errorMs();
      if (error !== null) {
        const [late, cued, aimAgain] = this._learnPlayLead;
        if (!cued && !this._playLeadKnown) {
          // The resume was given the cue lead.
          this._playLeadKnown = true;
          this._playLead = this._cueLead;
        }
        const lead = Math.min(Math.max((cued ? this._cueLead : this._playLead) + PLAY_LEAD_GAIN * (error - late), 0), MAX_PLAY_LEAD_MS);
        if (cued) this._cueLead = lead;
        else this._playLead = lead;
        this._learnPlayLead = null;
        // A cued play that started far from where the lead now says is aimed once more with it (client.rs).
        if (aimAgain && Math.abs(error - late) > AIM_AGAIN_MS && state.playing) {
          this._cuedSeek(local, state, server);
          if (this._cue !== null) this._cue.retried = true;
          return;
        }
      }
    }
    if (this._learnRateLead !== null && this._cue === null) {
      const error = this._ctl.errorMs();
      if (error !== null) {
        const [late, step] = this._learnRateLead;
        const lead = this._rateLead + RATE_LEAD_GAIN * (error / step - late);
        this._rateLead = Math.min(Math.max(lead, 0), MAX_RATE_LEAD_MS);
        this._learnRateLead = null;
      }
    }
    if (action.type === "set_rate") this._setRate(local, action.rate);
    else if (action.type === "seek") {
      if (state.playing) this._cuedSeek(local, state, server);
      else this._seek(local, action.position_ms);
    }
  }
}
