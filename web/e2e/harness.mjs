// What the browser tests share: a `videosync serve` of their own (embedded
// backends, a fresh data folder, its own port), media generated with the
// ffmpeg CLI, and Debian's Chromium driven by playwright-core.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before } from "node:test";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "../..");

/** The server binary: $VIDEOSYNC_BIN, else the debug build in the cargo target folder. */
export function binary() {
  if (process.env.VIDEOSYNC_BIN) return process.env.VIDEOSYNC_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? join(repo, "target");
  const bin = join(target, "debug", "videosync");
  if (!existsSync(bin)) throw new Error(`no server binary at ${bin}: build it (cargo build -p videosync-server) or set VIDEOSYNC_BIN`);
  return bin;
}

/** Starts `videosync serve`; resolves once it logs its address. */
export async function startServer() {
  const dir = mkdtempSync(join(tmpdir(), "videosync-e2e-"));
  // The server refuses VIDEOSYNC_* variables it does not know (the test
  // runner's own, such as VIDEOSYNC_BIN): it gets only its settings.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("VIDEOSYNC_")));
  const child = spawn(binary(), ["serve", "--addr", "127.0.0.1:0", "--workers", "1"], {
    env: {
      ...inherited,
      VIDEOSYNC_DATA_DIR: join(dir, "data"),
      VIDEOSYNC_ARGON2_MEMORY_KIB: "64",
      VIDEOSYNC_ARGON2_ITERATIONS: "1",
      RUST_LOG: "info",
      NO_COLOR: "1",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log = [];
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`videosync serve logged no address in 30 s:\n${log.join("\n")}`)), 30_000);
    const onLine = (chunk) => {
      for (const line of String(chunk).split("\n")) {
        if (!line) continue;
        log.push(line);
        if (log.length > 2000) log.shift();
        const m = /listening on (http:\/\/[^\s]+)/.exec(line);
        if (m) {
          clearTimeout(timer);
          ok(m[1]);
        }
      }
    };
    child.stdout.on("data", onLine);
    child.stderr.on("data", onLine);
    child.on("exit", (code) => fail(new Error(`videosync serve exited (${code}):\n${log.join("\n")}`)));
  });
  return {
    url,
    log,
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await new Promise((r) => {
          const t = setTimeout(() => {
            child.kill("SIGKILL");
            r();
          }, 10_000);
          child.on("exit", () => {
            clearTimeout(t);
            r();
          });
        });
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A server and a browser for the tests of one file: started before the
 * first, stopped after the last; `setup(env)` runs once both are up. The
 * fields are set once the hook ran.
 */
export function serverAndBrowser(setup = async () => {}) {
  const env = { server: null, browser: null };
  // One hook: node's test runner does not order separate root hooks.
  before(async () => {
    env.server = await startServer();
    env.browser = await launch();
    await setup(env);
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.stop();
  });
  return env;
}

/** A clip made by the ffmpeg CLI: `seconds` of test pattern and tone. */
export function makeClip(name, { seconds = 6, size = "320x180", bitrate = null } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "videosync-clip-"));
  const path = join(dir, name);
  const rate = bitrate ? ["-b:v", bitrate, "-maxrate", bitrate, "-bufsize", bitrate] : [];
  execFileSync("ffmpeg", [
    "-v", "error", "-nostdin", "-y",
    "-f", "lavfi", "-i", `testsrc2=size=${size}:rate=30`,
    "-f", "lavfi", "-i", "sine=frequency=440",
    "-t", String(seconds),
    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", ...rate,
    "-c:a", "aac", "-movflags", "+faststart",
    path,
  ]);
  return path;
}

/** Debian's Chromium, headless, with flags for this closed network. */
export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-audio-output",
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
}

/** A context whose console errors and failed pages are collected for the test's report. */
export async function newContext(browser, opts = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...opts });
  context.setDefaultTimeout(20_000);
  return context;
}

/** Signs up `username` through the app's form; ends on the home page. */
export async function signUp(page, base, username, password = "correct horse battery") {
  await page.goto(`${base}/signup`);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel(/^Password/).fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByRole("heading", { name: "Watch together, in sync" }).waitFor();
}

/** Makes a channel through the app's form; resolves to its id. */
export async function createChannel(page, base, name, visibility = "public") {
  await page.goto(`${base}/new`);
  await page.getByLabel("Name").fill(name);
  await page.getByRole("radio", { name: new RegExp(`^${visibility}`, "i") }).check();
  await page.getByRole("button", { name: "Create channel" }).click();
  await page.getByRole("heading", { name, level: 1 }).waitFor();
  const m = /\/c\/([^/?]+)/.exec(page.url());
  if (!m) throw new Error(`not on a channel page: ${page.url()}`);
  return m[1];
}

/** Where screenshots go for review: target/web-screenshots/ of the repository. */
export function shotsDir() {
  const dir = join(repo, "target", "web-screenshots");
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Calls the API as `token` (or nobody); the parsed answer, or throws with the server's message. */
export async function apiCall(base, method, path, token, body) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(`${base}/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Registers `username` over the API; its access token and user. */
export async function registerUser(base, username, password = "correct horse battery") {
  const r = await apiCall(base, "POST", "/auth/register", null, { username, password });
  return { token: r.access_token, user: r.user, password };
}

/** Uploads `file` to `channel` with one tus request (creation-with-upload); resolves once the video is ready. */
export async function uploadReady(base, token, channel, file, title) {
  const { readFileSync } = await import("node:fs");
  const body = readFileSync(file);
  const meta = [`channel ${Buffer.from(channel).toString("base64")}`, `title ${Buffer.from(title).toString("base64")}`].join(",");
  const r = await fetch(`${base}/api/v1/uploads`, {
    method: "POST",
    headers: {
      Authorization: `Bearer ${token}`,
      "Tus-Resumable": "1.0.0",
      "Upload-Length": String(body.length),
      "Upload-Metadata": meta,
      "Content-Type": "application/offset+octet-stream",
    },
    body,
  });
  if (r.status !== 201) throw new Error(`tus creation: ${r.status} ${await r.text()}`);
  const id = r.headers.get("videosync-video-id");
  for (let i = 0; i < 240; i++) {
    const v = await apiCall(base, "GET", `/videos/${id}`, token);
    if (v.status === "ready") return id;
    if (v.status === "failed") throw new Error(`processing failed: ${v.failure_reason}`);
    await new Promise((ok) => setTimeout(ok, 500));
  }
  throw new Error("the video was not ready within 2 minutes");
}

/** Signs in through the app's form. */
export async function signIn(page, base, username, password = "correct horse battery") {
  await page.goto(`${base}/login`);
  await page.getByLabel("Username or e-mail").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Watch together, in sync" }).waitFor();
}

/** Runs `step`; when it fails, saves a screenshot and the player's state beside the error. */
export async function explained(page, name, step) {
  try {
    return await step();
  } catch (e) {
    const dir = join(shotsDir(), "failures");
    mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: join(dir, `${name}.png`) }).catch(() => undefined);
    const state = await page
      .evaluate(() => {
        const v = document.querySelector("video");
        return {
          url: location.href,
          video: v && { src: v.currentSrc, paused: v.paused, time: v.currentTime, ready: v.readyState, error: v.error?.message },
          connection: document.querySelector("[data-testid=connection-state]")?.textContent,
          sync: document.querySelector("[data-testid=sync-indicator]")?.textContent,
          alerts: [...document.querySelectorAll("[role=alert]")].map((a) => a.textContent),
        };
      })
      .catch((err) => String(err));
    e.message += `\npage state: ${JSON.stringify(state)} (screenshot: ${join(dir, `${name}.png`)})`;
    throw e;
  }
}
