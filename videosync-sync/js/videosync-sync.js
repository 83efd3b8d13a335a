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
  window: 32,
  best_count: 6,
  warm_samples: 3,
  max_rtt_ms: 10000,
  max_step_ms: 5,
  step_confirm: 3,
  step_margin_ms: 10,
  skew_block_ms: 30000,
  skew_blocks: 20,
  min_skew_span_ms: 60000,
  max_skew_ppm: 500,
  warmup_pings: 5,
  warmup_interval_ms: 200,
  poll_interval_ms: 2000,
});

/** Defaults of DriftController, as DriftConfig::default() in Rust. */
export const DRIFT_DEFAULTS = Object.freeze({
  enabled: true,
  dead_zone_ms: 5,
  settle_ratio: 0.5,
  correction_time_ms: 1000,
  max_rate_deviation: 0.05,
  min_rate_step: 0.002,
  min_hold_ms: 200,
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
  const window = Math.max(countOr(c.window, d.window), 1);
  return {
    window,
    best_count: clampInt(countOr(c.best_count, d.best_count), 1, window),
    warm_samples: clampInt(countOr(c.warm_samples, d.warm_samples), 1, window),
    max_rtt_ms: nonNegativeOr(c.max_rtt_ms, d.max_rtt_ms),
    max_step_ms: nonNegativeOr(c.max_step_ms, d.max_step_ms),
    step_confirm: clampInt(countOr(c.step_confirm, d.step_confirm), 1, window),
    step_margin_ms: nonNegativeOr(c.step_margin_ms, d.step_margin_ms),
    skew_block_ms: nonNegativeOr(c.skew_block_ms, d.skew_block_ms),
    skew_blocks: Math.max(countOr(c.skew_blocks, d.skew_blocks), 1),
    min_skew_span_ms: nonNegativeOr(c.min_skew_span_ms, d.min_skew_span_ms),
    max_skew_ppm: nonNegativeOr(c.max_skew_ppm, d.max_skew_ppm),
    warmup_pings: countOr(c.warmup_pings, d.warmup_pings),
    warmup_interval_ms: nonNegativeOr(c.warmup_interval_ms, d.warmup_interval_ms),
    poll_interval_ms: nonNegativeOr(c.poll_interval_ms, d.poll_interval_ms),
  };
}

/** Drops samples whose round trip is over twice the best one's; keeps order. */
function withoutQueued(samples) {
  let best = Infinity;
  for (const s of samples) best = Math.min(best, s.rtt_ms);
  return samples.filter((s) => s.rtt_ms <= best * 2);
}

/**
 * NTP-style estimate of the server clock from four-timestamp pings: offset,
 * skew, uncertainty and the ping schedule. See src/clock.rs.
 *
 * addSample() returns "rejected" | "accepted" | "suspect" | "step".
 */
export class OffsetEstimator {
  constructor(config = {}) {
    this.config = sanitizeClock(config);
    this._samples = [];
    this._suspects = [];
    this._hasEstimate = false;
    this._offset = 0;
    this._anchor = 0;
    this._skew = 0;
    this._skewKnown = false;
    this._fitBound = 0;
    this._heldBack = 0;
    this._blocks = [];
    this._block = null;
    this._blockStart = 0;
    this._lagging = 0;
    this._nextSeq = 0;
    this._pingsSent = 0;
    this._lastPing = null;
  }

  /** t0 client send, t1 server receive, t2 server send, t3 client receive. */
  addSample(t0, t1, t2, t3) {
    // Rust's f64 arguments cannot be anything else; here, refuse before
    // arithmetic coerces null or a string into a number.
    if (![t0, t1, t2, t3].every((t) => typeof t === "number")) return "rejected";
    const rtt = t3 - t0 - (t2 - t1);
    const offset = (t1 - t0 + (t2 - t3)) / 2;
    const local = (t0 + t3) / 2;
    const sane =
      Number.isFinite(rtt) &&
      Number.isFinite(offset) &&
      Number.isFinite(local) &&
      t3 >= t0 &&
      t2 >= t1 &&
      rtt >= 0 &&
      rtt <= this.config.max_rtt_ms;
    if (!sane) return "rejected";
    const sample = { local_ms: local, offset_ms: offset, rtt_ms: rtt, seq: this._nextSeq };
    this._nextSeq += 1;

    if (!this._hasEstimate) {
      this._samples.push(sample);
      this._noteBlock(sample);
      this._offset = this._refit(local);
      this._anchor = local;
      this._hasEstimate = true;
      return "accepted";
    }

    const predicted = this._offset + this._skew * (local - this._anchor);
    const bound = rtt / 2 + this.uncertaintyMs() + this.config.step_margin_ms;
    if (Math.abs(offset - predicted) > bound) return this._suspect(sample);
    this._suspects = [];

    const wasWarm = this.isWarm();
    this._samples.push(sample);
    while (this._samples.length > this.config.window) this._samples.shift();
    this._noteBlock(sample);
    const raw = this._refit(local);
    const delta = raw - predicted;
    const maxStep = this.config.max_step_ms;
    this._heldBack = 0;
    if (!wasWarm || Math.abs(delta) <= maxStep) {
      this._offset = raw;
      this._lagging = 0;
    } else {
      this._lagging += 1;
      if (this._lagging >= this.config.step_confirm) {
        this._offset = raw;
        this._lagging = 0;
      } else if (delta > 0) {
        this._offset = predicted + maxStep;
      } else {
        this._offset = predicted - maxStep;
      }
      this._heldBack = Math.abs(raw - this._offset);
    }
    this._anchor = local;
    return "accepted";
  }

  _suspect(sample) {
    if (this._suspects.length > 0) {
      const first = this._suspects[0];
      const agree = sample.rtt_ms / 2 + first.rtt_ms / 2 + this.config.step_margin_ms;
      if (Math.abs(sample.offset_ms - first.offset_ms) > agree) this._suspects = [];
    }
    this._suspects.push(sample);
    if (this._suspects.length < this.config.step_confirm) return "suspect";
    const fresh = this._suspects;
    this._suspects = [];
    this._blocks = [];
    this._block = null;
    for (const s of fresh) this._noteBlock(s);
    this._samples = fresh;
    this._offset = this._refit(sample.local_ms);
    this._anchor = sample.local_ms;
    this._lagging = 0;
    this._heldBack = 0;
    return "step";
  }

  _refit(at) {
    const skew = this._fitSkew();
    if (skew !== null) {
      this._skew = skew;
      this._skewKnown = true;
    }
    return this._fitOffset(at);
  }

  _noteBlock(sample) {
    const best = this._block;
    if (best === null) {
      this._block = sample;
      this._blockStart = sample.local_ms;
    } else if (sample.local_ms - this._blockStart >= this.config.skew_block_ms) {
      this._blocks.push(best);
      while (this._blocks.length > this.config.skew_blocks) this._blocks.shift();
      this._block = sample;
      this._blockStart = sample.local_ms;
    } else if (sample.rtt_ms <= best.rtt_ms) {
      this._block = sample;
    }
  }

  _fitSkew() {
    const all = this._block === null ? [...this._blocks] : [...this._blocks, this._block];
    const points = withoutQueued(all);
    if (points.length < 2) return null;
    const n = points.length;
    let sumX = 0;
    let sumY = 0;
    let minX = Infinity;
    let maxX = -Infinity;
    for (const s of points) {
      sumX += s.local_ms;
      sumY += s.offset_ms;
      minX = Math.min(minX, s.local_ms);
      maxX = Math.max(maxX, s.local_ms);
    }
    if (maxX - minX < this.config.min_skew_span_ms) return null;
    const meanX = sumX / n;
    const meanY = sumY / n;
    let sxx = 0;
    let sxy = 0;
    for (const s of points) {
      const dx = s.local_ms - meanX;
      sxx += dx * dx;
      sxy += dx * (s.offset_ms - meanY);
    }
    if (sxx <= 0) return null;
    const limit = this.config.max_skew_ppm / 1e6;
    return Math.min(Math.max(sxy / sxx, -limit), limit);
  }

  // Until the skew is known, samples are ranked by their error bound (RTT / 2
  // plus max_skew_ppm times their age), as in src/clock.rs.
  _fitOffset(at) {
    const maxSkew = this._skewKnown ? 0 : this.config.max_skew_ppm / 1e6;
    const bound = (s) => s.rtt_ms / 2 + maxSkew * Math.abs(at - s.local_ms);
    const sorted = [...this._samples].sort((a, b) => bound(a) - bound(b) || b.seq - a.seq);
    let ranked = sorted.slice(0, this.config.best_count);
    if (maxSkew > 0) {
      const least = ranked.length > 0 ? bound(ranked[0]) : Infinity;
      const slack = this._bestRtt() / 2;
      ranked = ranked.filter((s) => bound(s) <= least + slack);
    }
    const best = withoutQueued(ranked);
    if (best.length === 0) return this._offset;
    this._fitBound = maxSkew > 0 ? best.reduce((m, s) => Math.max(m, bound(s)), 0) : 0;
    let sum = 0;
    for (const s of best) sum += s.offset_ms + this._skew * (at - s.local_ms);
    return sum / best.length;
  }

  /** Records that a ping left at local time `localMs`. */
  onPingSent(localMs) {
    if (Number.isFinite(localMs)) {
      this._pingsSent += 1;
      this._lastPing = localMs;
    }
  }

  /** The local time the next ping is due; at or before now means "send now". */
  nextPingAt(localMs) {
    if (this._lastPing === null) return localMs;
    const quick =
      this._pingsSent < this.config.warmup_pings || !this.isWarm() || this._suspects.length > 0;
    return this._lastPing + (quick ? this.config.warmup_interval_ms : this.config.poll_interval_ms);
  }

  /** Server clock minus local clock at the latest accepted sample. */
  offsetMs() {
    return this._offset;
  }

  /** The server's clock at local time `localMs`, extrapolated along the skew. */
  serverTime(localMs) {
    return localMs + this._offset + this._skew * (localMs - this._anchor);
  }

  _bestRtt() {
    let best = Infinity;
    for (const s of this._samples) best = Math.min(best, s.rtt_ms);
    return best;
  }

  /**
   * Half the lowest RTT in the window (Infinity before the first sample); until
   * the skew is known, at least the largest bound of the samples used; plus
   * how far a smoothed move still lags the fit.
   */
  uncertaintyMs() {
    return Math.max(this._bestRtt() / 2, this._fitBound) + this._heldBack;
  }

  /** Half the lowest RTT in the window (Infinity before the first sample). */
  oneWayDelayMs() {
    return this._bestRtt() / 2;
  }

  /** Server clock rate relative to the local one, in ppm. */
  skewPpm() {
    return this._skew * 1e6;
  }

  /** Enough samples to trust the estimate. */
  isWarm() {
    return this._samples.length >= this.config.warm_samples;
  }

  /** Samples in the window now. */
  sampleCount() {
    return this._samples.length;
  }
}

/** Playback.position_at of the Rust crate, for a Playback object from the server. */
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
      const deviation = Math.min(Math.max(error / c.correction_time_ms, -max), max);
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
