// Runs the shared vectors (../vectors/*.json) against the JavaScript twin;
// tests/vectors.rs runs the same files against the Rust crate. The format is
// documented there. Run with `node --test videosync-sync/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import {
  CLOCK_DEFAULTS,
  DRIFT_DEFAULTS,
  DriftController,
  OffsetEstimator,
  Session,
} from "./videosync-sync.js";

function load(file) {
  const url = new URL(`../vectors/${file}`, import.meta.url);
  return JSON.parse(readFileSync(url, "utf8"));
}

// JSON has no Infinity: a non-finite output is observed as null, as
// serde_json writes it.
function finiteOrNull(x) {
  return Number.isFinite(x) ? x : null;
}

function runClock(c) {
  const est = new OffsetEstimator(c.config ?? {});
  return c.steps.map((step, i) => {
    const obs = {};
    let now;
    if ("sample" in step) {
      const [t0, t1, t2, t3] = step.sample;
      obs.outcome = est.addSample(t0, t1, t2, t3);
      now = t3;
    } else if ("down" in step) {
      const [server, local] = step.down;
      obs.outcome = est.addDown(server, local);
      now = local;
    } else if ("sent" in step) {
      est.onPingSent(step.sent);
      now = step.sent;
    } else if ("at" in step) {
      now = step.at;
    } else {
      throw new Error(`step ${i}: unknown step ${JSON.stringify(step)}`);
    }
    obs.offset_ms = finiteOrNull(est.offsetMs());
    obs.skew_ppm = finiteOrNull(est.skewPpm());
    obs.uncertainty_ms = finiteOrNull(est.uncertaintyMs());
    obs.one_way_delay_ms = finiteOrNull(est.oneWayDelayMs());
    obs.is_warm = est.isWarm();
    obs.samples = est.sampleCount();
    obs.next_ping_at = finiteOrNull(est.nextPingAt(now));
    obs.server_time = finiteOrNull(est.serverTime(now));
    obs.delay_p99_ms = finiteOrNull(est.delayQuantileMs(0.99));
    obs.is_stable = est.isStable();
    return obs;
  });
}

function runDrift(c) {
  const ctl = new DriftController(c.config ?? {});
  let playback = null;
  return c.steps.map((step, i) => {
    const obs = {};
    if ("tick" in step) {
      const t = step.tick;
      if (t.playback !== undefined) playback = t.playback;
      if (playback === null) throw new Error(`step ${i}: no playback yet`);
      const action = ctl.tick(t.local_ms, t.server_ms, playback, t.player);
      obs.action = action.type;
      if (action.type === "set_rate") obs.rate = action.rate;
      if (action.type === "seek") obs.position_ms = action.position_ms;
      obs.error_ms = ctl.errorMs();
    } else if ("seek_started" in step) {
      ctl.onSeekStarted(step.seek_started);
    } else if ("seek_finished" in step) {
      ctl.onSeekFinished(step.seek_finished);
    } else if ("own" in step) {
      obs.is_own = ctl.isOwnCorrection(step.own, step.local_ms);
    } else if ("enabled" in step) {
      ctl.setEnabled(step.enabled);
    } else if ("frame_quantum" in step) {
      ctl.setFrameQuantum(step.frame_quantum);
    } else {
      throw new Error(`step ${i}: unknown step ${JSON.stringify(step)}`);
    }
    obs.seek_latency_ms = ctl.seekLatencyMs();
    obs.enabled = ctl.isEnabled();
    return obs;
  });
}

function runSession(c) {
  const session = new Session(c.config ?? {});
  return c.steps.map((step, i) => {
    const obs = {};
    const at = step.at ?? 0;
    let result;
    if ("message" in step) result = session.onMessage(at, step.message);
    else if ("read" in step) result = session.onPlayer(step.read);
    else if ("event" in step) {
      const r = session.onPlayerEvent(at, step.event);
      if (r && "command" in r) {
        obs.command = r.command;
        result = null;
      } else result = r;
    } else if ("user" in step) {
      session.userCommand(at, step.user);
      result = null;
    } else if ("tick" in step) result = session.tick(step.tick);
    else if ("frame" in step) result = session.onFrame(step.frame[0], step.frame[1]);
    else if ("display_interval" in step) result = session.setDisplayInterval(step.display_interval);
    else throw new Error(`step ${i}: unknown step ${JSON.stringify(step)}`);
    obs.error = result ? result.code : null;
    const outputs = [];
    for (let o = session.poll(); o !== null; o = session.poll()) outputs.push(o);
    obs.outputs = outputs;
    obs.seq = session.seq();
    obs.next_wake_ms = session.nextWakeMs();
    obs.applied_seq = session.playback() === null ? null : session.playback().seq;
    obs.server_time = finiteOrNull(session.serverTime(at));
    obs.error_ms = session.drift().errorMs();
    return obs;
  });
}

/** Deep equality, numbers within 1e-6 (absent and null are the same). */
function same(got, want) {
  if (typeof want === "number") return typeof got === "number" && Math.abs(got - want) <= 1e-6;
  if (want === null || want === undefined) return got === null || got === undefined;
  if (Array.isArray(want)) {
    return Array.isArray(got) && got.length === want.length && want.every((w, i) => same(got[i], w));
  }
  if (typeof want === "object") {
    if (got === null || typeof got !== "object") return false;
    const keys = new Set([...Object.keys(want), ...Object.keys(got)]);
    for (const k of keys) if (!same(got[k], want[k])) return false;
    return true;
  }
  return got === want;
}

function within(got, want, tol) {
  return typeof got === "number" && typeof want === "number" && Math.abs(got - want) <= tol;
}

function check(c, observed) {
  const failures = [];
  if (c.expect.length !== observed.length) {
    failures.push(`${c.name}: ${c.expect.length} expect entries for ${observed.length} steps`);
  }
  c.expect.forEach((exp, i) => {
    const obs = observed[i] ?? {};
    for (const [key, want] of Object.entries(exp)) {
      const got = obs[key] === undefined ? null : obs[key];
      let ok;
      if (typeof want === "number") ok = within(got, want, 1e-6);
      else if (want !== null && typeof want === "object" && "tol" in want) {
        ok = within(got, want.value, want.tol);
      } else ok = same(got, want);
      if (!ok) {
        failures.push(`${c.name} step ${i}: ${key}: want ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
      }
    }
  });
  return failures;
}

for (const [file, run, minimum] of [
  ["clock.json", runClock, 5],
  ["drift.json", runDrift, 10],
  ["session.json", runSession, 5],
]) {
  const doc = load(file);
  test(`${file} has its cases`, () => {
    assert.ok(doc.cases.length >= minimum, `${doc.cases.length} cases`);
  });
  for (const c of doc.cases) {
    test(`${file}: ${c.name}`, () => {
      const failures = check(c, run(c));
      assert.deepEqual(failures, []);
    });
  }
}

test("defaults are the Rust defaults the vectors were made with", () => {
  // The vectors run mostly on defaults; these are the values documented in
  // src/clock.rs and src/drift.rs.
  assert.equal(CLOCK_DEFAULTS.window_ms, 600000);
  assert.equal(CLOCK_DEFAULTS.slow_interval_ms, 1000);
  assert.equal(DRIFT_DEFAULTS.dead_zone_ms, 5);
  assert.equal(DRIFT_DEFAULTS.correction_time_ms, 1000);
  assert.equal(DRIFT_DEFAULTS.max_rate_deviation, 0.05);
  assert.equal(DRIFT_DEFAULTS.min_rate_deviation, 0.002);
  assert.equal(DRIFT_DEFAULTS.min_hold_ms, 1000);
  assert.equal(DRIFT_DEFAULTS.seek_threshold_ms, 300);
  assert.equal(DRIFT_DEFAULTS.cooldown_ms, 300);
});

test("an unknown option is refused, as serde's deny_unknown_fields does", () => {
  assert.throws(() => new OffsetEstimator({ windw: 8 }), /unknown option windw/);
  assert.throws(() => new Session({ granularity: 8 }), /unknown option granularity/);
  assert.throws(() => new DriftController({ deadzone_ms: 8 }), /unknown option deadzone_ms/);
});

test("no input makes either throw", () => {
  const est = new OffsetEstimator();
  const ctl = new DriftController();
  const room = { media: "v", playing: true, position_ms: 0, at_ms: 0, rate: 1, seq: 1 };
  for (const x of [NaN, Infinity, -Infinity, undefined, null, "12"]) {
    assert.equal(est.addSample(x, 1, 1, 2), "rejected");
    est.onPingSent(x);
    est.nextPingAt(x);
    est.serverTime(x);
    const action = ctl.tick(x, 0, room, { position_ms: x, rate: 1, playing: true, busy: false });
    assert.deepEqual(action, { type: "none" });
    ctl.onSeekStarted(x);
    ctl.onSeekFinished(x);
    assert.equal(ctl.isOwnCorrection({ rate: x }, x), false);
  }
  assert.equal(est.sampleCount(), 0);
});

test("no input makes the session throw, and a refusal changes nothing", () => {
  const s = new Session();
  for (const x of [NaN, Infinity, -1, undefined, null, "12"]) {
    assert.ok(s.tick(x) !== null);
    assert.ok(s.onPlayer({ at_ms: 0, position_ms: x, rate: 1, playing: true, seeking: false, waiting: false }) !== null);
    assert.ok(s.onMessage(x, { type: "waiting", members: [], sent_ms: 1 }) !== null);
    assert.ok(s.onPlayerEvent(x, { event: "play" }) !== null);
  }
  assert.equal(s.poll(), null);
  assert.equal(s.seq(), 0);
});
