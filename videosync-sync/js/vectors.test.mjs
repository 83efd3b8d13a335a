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
    } else {
      throw new Error(`step ${i}: unknown step ${JSON.stringify(step)}`);
    }
    obs.seek_latency_ms = ctl.seekLatencyMs();
    obs.enabled = ctl.isEnabled();
    return obs;
  });
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
      } else ok = got === want;
      if (!ok) {
        failures.push(`${c.name} step ${i}: ${key}: want ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
      }
    }
  });
  return failures;
}

for (const [file, run, minimum] of [
  ["clock.json", runClock, 8],
  ["drift.json", runDrift, 10],
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
  assert.equal(CLOCK_DEFAULTS.window, 32);
  assert.equal(CLOCK_DEFAULTS.poll_interval_ms, 2000);
  assert.equal(DRIFT_DEFAULTS.dead_zone_ms, 5);
  assert.equal(DRIFT_DEFAULTS.correction_time_ms, 1000);
  assert.equal(DRIFT_DEFAULTS.max_rate_deviation, 0.05);
  assert.equal(DRIFT_DEFAULTS.min_hold_ms, 200);
  assert.equal(DRIFT_DEFAULTS.seek_threshold_ms, 300);
  assert.equal(DRIFT_DEFAULTS.cooldown_ms, 300);
});

test("an unknown option is refused, as serde's deny_unknown_fields does", () => {
  assert.throws(() => new OffsetEstimator({ windw: 8 }), /unknown option windw/);
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
