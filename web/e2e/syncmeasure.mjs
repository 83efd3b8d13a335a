// The sync error between real players: several Chromium contexts in one
// channel, each with its own emulated network, a scripted session, and the
// frames each player put on screen (requestVideoFrameCallback media times
// stamped with performance.timeOrigin + expectedDisplayTime: one machine,
// one clock) compared at common wall-clock instants.
//
// Used by benches/browser-sync.mjs (the benchmark) and by
// web/e2e/sync.test.mjs (a short run with a loose bound, in make test).
import { apiCall, makeClip, registerUser, uploadReady } from "./harness.mjs";

/** Installed in every page: records [wall ms, media ms] per presented frame. */
function recorder() {
  const w = window;
  if (w.__frames) return;
  w.__frames = [];
  const watch = () => {
    const v = document.querySelector("video");
    if (!v || !("requestVideoFrameCallback" in v)) return setTimeout(watch, 100);
    const step = (_now, meta) => {
      w.__frames.push([performance.timeOrigin + meta.expectedDisplayTime, meta.mediaTime * 1000, v.playbackRate]);
      v.requestVideoFrameCallback(step);
    };
    v.requestVideoFrameCallback(step);
  };
  watch();
}

const wallNow = (page) => page.evaluate(() => performance.timeOrigin + performance.now());

/** Signs `who` in by storing its tokens where the app keeps them (faster than the form). */
async function enter(context, base, who) {
  await context.addInitScript(
    ([t]) => {
      if (!localStorage.getItem("videosync.auth")) localStorage.setItem("videosync.auth", t);
    },
    [
      JSON.stringify({
        access_token: who.token,
        refresh_token: who.refresh,
        access_expires_at: Date.now() + 10 * 60_000,
        user: who.user,
      }),
    ],
  );
}

async function shape(context, page, net) {
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  const apply = (latency) =>
    cdp.send("Network.emulateNetworkConditions", {
      offline: false,
      latency,
      downloadThroughput: net.downKbps ? (net.downKbps * 1000) / 8 : -1,
      uploadThroughput: net.upKbps ? (net.upKbps * 1000) / 8 : -1,
    });
  await apply(net.latency);
  let timer = null;
  if (net.jitter) {
    // CDP has no jitter: the added latency moves every 250 ms within ±jitter.
    timer = setInterval(() => {
      apply(Math.max(0, net.latency + (Math.random() * 2 - 1) * net.jitter)).catch(() => undefined);
    }, 250);
  }
  return { cdp, stop: () => timer && clearInterval(timer), apply: (n) => Object.assign(net, n) && apply(net.latency) };
}

async function join(browser, base, who, net, channel, correction, record = false) {
  const context = await browser.newContext({ viewport: { width: 960, height: 600 } });
  context.setDefaultTimeout(30_000);
  await enter(context, base, who);
  await context.addInitScript(recorder);
  const page = await context.newPage();
  // What the server sent the page (for `trace`, the host's only): each text
  // frame with the wall time it came.
  const received = [];
  if (record) {
    page.on("websocket", (ws) =>
      ws.on("framereceived", (f) => {
        if (typeof f.payload === "string") received.push([Date.now(), f.payload]);
      }),
    );
  }
  const network = await shape(context, page, { ...net });
  await page.goto(`${base}/c/${channel}`);
  await page.getByTestId("connection-state").filter({ hasText: "Live" }).waitFor();
  // The baseline: the same scheduled commands, no drift correction.
  if (!correction) await page.getByLabel("Follow the room").uncheck();
  return { context, page, network, name: who.user.username, net, received };
}

/** Position of one player at wall time t from its frames, or null when it showed none around t. */
function positionAt(frames, t) {
  // frames are in display-time order; binary search the last one at or before t.
  let lo = 0;
  let hi = frames.length - 1;
  let i = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (frames[mid][0] <= t) {
      i = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  if (i < 0 || i + 1 >= frames.length) return null;
  const [t0, m0] = frames[i];
  const [t1, m1] = frames[i + 1];
  // Both frames close to t: the player was rendering (playing) then.
  if (t - t0 > 100 || t1 - t > 100 || t1 <= t0) return null;
  return m0 + ((m1 - m0) * (t - t0)) / (t1 - t0);
}

function quantile(sorted, q) {
  if (sorted.length === 0) return null;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** The largest difference between any two players at t, over those showing frames then. */
function spread(all, t) {
  const ps = all.map((f) => positionAt(f, t)).filter((p) => p !== null);
  if (ps.length < 2) return null;
  return Math.max(...ps) - Math.min(...ps);
}

/**
 * Runs the scripted session; returns the pairwise differences in steady
 * state and the time to converge after each command.
 *
 * `networks`: one {latency, jitter, downKbps?, upKbps?} per player (the host
 * gets the first). `quick`: shorter phases (the test in make test).
 * `trace`: also return every player's frames, the commands' instants and
 * the frames the server sent the host.
 * `correction: false` is the baseline: every player applies the room's
 * scheduled commands but nobody corrects drift ("Follow the room" off).
 */
export async function measureSync({
  browser,
  base,
  networks,
  quick = false,
  // Long enough for the whole script (about 70 s of media by the end of the
  // throttled member's phase): a clip that ends early measures players
  // stopped at its end.
  clipSeconds = 90,
  correction = true,
  prefix = "",
  log = () => {},
  trace = false,
}) {
  const hold = quick ? 4000 : 8000;
  const host = await registerUser(base, `${prefix}host`);
  const people = [];
  for (let i = 1; i < networks.length; i++) people.push(await registerUser(base, `${prefix}viewer${i}`));
  // The refresh tokens are not returned by registerUser: sign in again for a full set.
  for (const p of [host, ...people]) {
    const r = await apiCall(base, "POST", "/auth/login", null, { login: p.user.username, password: p.password });
    Object.assign(p, { token: r.access_token, refresh: r.refresh_token, user: r.user });
  }
  const channel = (await apiCall(base, "POST", "/channels", host.token, { name: "Sync bench", visibility: "public" })).id;
  log(`uploading a ${clipSeconds} s clip`);
  const video = await uploadReady(base, host.token, channel, makeClip("bench.mp4", { seconds: clipSeconds, size: "640x360" }), "Bench clip");

  const members = [await join(browser, base, host, networks[0], channel, correction, trace)];
  for (let i = 1; i < networks.length; i++) members.push(await join(browser, base, people[i - 1], networks[i], channel, correction));
  const hostPage = members[0].page;
  const marks = [];
  const mark = async (name) => marks.push({ name, at: await wallNow(hostPage) });
  const wait = (ms) => new Promise((r) => setTimeout(r, ms));
  const command = async (name, act) => {
    log(name);
    await mark(name);
    await act();
    await wait(hold);
  };
  const allPlaying = async (ms) => {
    for (const m of members) {
      await m.page.waitForFunction(() => {
        const v = document.querySelector("video");
        return v && !v.paused && v.currentTime > 0.3;
      }, null, { timeout: ms });
    }
  };

  await hostPage.getByRole("tab", { name: /Queue/ }).click();
  await command("load and play", async () => {
    await hostPage.getByRole("button", { name: "Play now" }).click();
    await allPlaying(30_000);
  });
  await command("seek to 15 s", () =>
    hostPage.getByLabel("Seek").evaluate((el) => {
      el.value = "15";
      el.dispatchEvent(new Event("change", { bubbles: true }));
    }),
  );
  await command("pause", () => hostPage.getByRole("button", { name: "Pause", exact: true }).click());
  await command("play", () => hostPage.getByRole("button", { name: "Play", exact: true }).click());
  await command("rate 1.5", () => hostPage.getByLabel("Speed").selectOption("1.5"));
  await command("rate 1", () => hostPage.getByLabel("Speed").selectOption("1"));
  await command("late joiner", async () => {
    const late = await registerUser(base, `${prefix}latecomer`);
    const r = await apiCall(base, "POST", "/auth/login", null, { login: late.user.username, password: late.password });
    Object.assign(late, { token: r.access_token, refresh: r.refresh_token, user: r.user });
    members.push(await join(browser, base, late, { latency: 40, jitter: 10 }, channel, correction));
  });
  await command("throttled member", () => members[members.length - 1].network.apply({ latency: 150, downKbps: 4000 }));

  await mark("end");
  const frames = [];
  for (const m of members) {
    frames.push(await m.page.evaluate(() => window.__frames));
    m.network.stop();
  }
  for (const m of members) await m.context.close();

  // Steady state: from 1.5 s after a command to the next, while playing.
  const diffs = [];
  const converge = [];
  for (let k = 0; k < marks.length - 1; k++) {
    const { name, at } = marks[k];
    const until = marks[k + 1].at;
    if (name === "pause") {
      // Paused: the frames every player stopped on.
      const stops = frames.map((f) => {
        const before = f.filter((x) => x[0] < until - 500);
        return before.length ? before[before.length - 1][1] : null;
      });
      const held = stops.filter((s) => s !== null);
      converge.push({ command: name, paused_spread_ms: held.length > 1 ? Math.max(...held) - Math.min(...held) : null });
      continue;
    }
    let converged = null;
    for (let t = at; t < until - 1000; t += 20) {
      let ok = true;
      let seen = 0;
      for (let u = t; u < t + 1000; u += 20) {
        const s = spread(frames, u);
        if (s === null) continue;
        seen += 1;
        if (s > 40) {
          ok = false;
          break;
        }
      }
      if (ok && seen > 25) {
        converged = t - at;
        break;
      }
    }
    converge.push({ command: name, converge_ms: converged });
    for (let t = at + 1500; t < until; t += 20) {
      const ps = frames.map((f) => positionAt(f, t)).filter((p) => p !== null);
      for (let i = 0; i < ps.length; i++) for (let j = i + 1; j < ps.length; j++) diffs.push(Math.abs(ps[i] - ps[j]));
    }
  }
  diffs.sort((a, b) => a - b);
  return {
    video,
    players: members.length,
    networks: [...members.map((m) => m.net)],
    samples: diffs.length,
    p50_ms: quantile(diffs, 0.5),
    p95_ms: quantile(diffs, 0.95),
    p99_ms: quantile(diffs, 0.99),
    max_ms: diffs.length ? diffs[diffs.length - 1] : null,
    converge,
    // The raw material, for a closer look: every player's frames and the commands' instants.
    ...(trace ? { frames, marks, names: members.map((m) => m.name), received: members[0].received } : {}),
  };
}
