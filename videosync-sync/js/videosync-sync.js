// videosync-sync.js: the JavaScript twin of the Rust crate videosync-sync's
// clock (OffsetEstimator) and drift (DriftController) modules, for the web
// client. An ES module with no dependencies and no build step.
//
// Same algorithms, same defaults, same arithmetic in the same order as the
// Rust code (src/clock.rs, src/drift.rs): read the Rust docs for the why.
// Both are held to the shared vectors in ../vectors/*.json, by
// tests/vectors.rs and by vectors.test.mjs (`node --test`). A change to one
// is a change to both.
//
// Conventions: methods are camelCase; configuration keys and data (Playback
// from the server, player state) keep the snake_case names of the Rust
// structs and the JSON protocol. Times are milliseconds; nothing here reads a
// clock or sets a timer: the caller passes `performance.now()` and its own
// estimate of the server time.

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
    const deadZone = Math.max(c.dead_zone_ms, g / 2);

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
    const settle = deadZone * c.settle_ratio;
    if (Math.abs(error) > deadZone || (this._correcting && Math.abs(error) > settle)) {
      this._correcting = true;
      const max = c.max_rate_deviation;
      let deviation = Math.min(Math.max(error / c.correction_time_ms, -max), max);
      const min = c.min_rate_deviation;
      if (Math.abs(deviation) < min) deviation = deviation < 0 ? -min : min;
      const rate = roomRate * (1 + deviation);
      if (holdElapsed && Math.abs(rate - player.rate) >= c.min_rate_step) {
        return this._setRate(rate, localMs);
      }
      return NONE;
    }
    this._correcting = false;
    return this._restore(nudged, holdElapsed, roomRate, localMs);
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
