// A person signs up, makes a channel, uploads a clip through the page, sees
// it processed, and plays it in the channel; an upload cut off by a reload
// resumes where it stopped.
import assert from "node:assert/strict";
import { test } from "node:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  apiCall,
  createChannel,
  explained,
  makeClip,
  newContext,
  registerUser,
  serverAndBrowser,
  signIn,
  signUp,
  uploadReady,
} from "./harness.mjs";

const env = serverAndBrowser();

test("sign up, make a channel, upload, watch it processed, play it", async () => {
  const clip = makeClip("harbour.mp4", { seconds: 6 });
  const context = await newContext(env.browser);
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && console.error(`console: ${m.text()}`));

  await signUp(page, env.server.url, "ada");
  const channel = await createChannel(page, env.server.url, "Film club");

  await page.getByRole("link", { name: "Upload" }).first().click();
  await page.getByLabel(/^Title/).fill("Harbour at dawn");
  await page.locator("input[type=file]").setInputFiles(clip);
  // Upload, then processing with live progress, then ready.
  await page.getByText(/Processing:/).waitFor({ timeout: 30_000 });
  await page.getByText("“Harbour at dawn” is ready.").waitFor({ timeout: 120_000 });
  await page.getByRole("button", { name: "Play it in the channel" }).click();

  await page.waitForURL(new RegExp(`/c/${channel}$`));
  await page.getByTestId("connection-state").filter({ hasText: "Live" }).waitFor();
  // The owner's click loaded it for the room: the player runs.
  await explained(page, "flow-play", () =>
    page.waitForFunction(() => {
      const v = document.querySelector("video");
      return v && !v.paused && v.currentTime > 1;
    }, null, { timeout: 30_000 }),
  );
  await page.getByTestId("sync-indicator").filter({ hasText: /in sync|correcting/ }).waitFor({ timeout: 15_000 });
  await page.getByRole("tab", { name: /Queue/ }).click();
  await page.getByText("Harbour at dawn").first().waitFor();
  assert.deepEqual(errors, []);
  await context.close();
});

test("an upload cut off by a page reload resumes where it stopped", async () => {
  // About 20 MB: the page sends it in 8 MiB chunks.
  const clip = makeClip("long.mp4", { seconds: 10, size: "1280x720", bitrate: "16M" });
  const context = await newContext(env.browser);
  const page = await context.newPage();
  await signUp(page, env.server.url, "bob");
  await createChannel(page, env.server.url, "Bob's uploads");

  // The first chunk goes through; every later one is cut off.
  let patches = 0;
  let creations = 0;
  await page.route("**/api/v1/uploads**", async (route) => {
    const method = route.request().method();
    if (method === "POST") creations += 1;
    if (method === "PATCH" && ++patches > 1) return route.abort("connectionreset");
    return route.continue();
  });
  await page.goto(`${env.server.url}/upload`);
  const firstChunk = page.waitForResponse((r) => r.request().method() === "PATCH" && r.status() === 204);
  await page.locator("input[type=file]").setInputFiles(clip);
  await firstChunk;
  assert.equal(creations, 1);

  // A reload (the tab crashed, the laptop slept): the same file again.
  await page.unrouteAll({ behavior: "ignoreErrors" });
  await page.reload();
  let created = 0;
  let resumedFrom = null;
  page.on("request", (r) => {
    if (r.method() === "POST" && r.url().endsWith("/api/v1/uploads")) created += 1;
  });
  page.on("response", (r) => {
    if (r.request().method() === "HEAD" && r.url().includes("/api/v1/uploads/")) resumedFrom = Number(r.headers()["upload-offset"]);
  });
  await page.locator("input[type=file]").setInputFiles(clip);
  await page.getByText("Resuming your earlier upload of this file.").waitFor();
  await page.getByText(/Processing:|is ready/).first().waitFor({ timeout: 60_000 });
  assert.equal(created, 0, "the upload was not started again");
  assert.ok(resumedFrom >= 8 * 1024 * 1024, `resumed from byte ${resumedFrom}`);
  await context.close();
});

test("a file that is not a video is refused with the reason, and the page offers another try", async () => {
  const bogus = join(mkdtempSync(join(tmpdir(), "videosync-bogus-")), "holiday.mp4");
  writeFileSync(bogus, "these are not the frames you are looking for\n".repeat(2000));
  const context = await newContext(env.browser);
  const page = await context.newPage();
  await signUp(page, env.server.url, "carol");
  await createChannel(page, env.server.url, "Carol's");
  await page.goto(`${env.server.url}/upload`);
  await page.locator("input[type=file]").setInputFiles(bogus);
  const alert = page.getByRole("alert");
  await alert.waitFor();
  assert.match(await alert.innerText(), /media|container|format|recogni/i);
  await context.close();
});

test("an expired session asks to sign in again over the page, and the chat draft survives", async () => {
  const context = await newContext(env.browser);
  const page = await context.newPage();
  await signUp(page, env.server.url, "dora");
  const channel = await createChannel(page, env.server.url, "Dora's den");
  await page.getByTestId("connection-state").filter({ hasText: "Live" }).waitFor();
  await page.getByLabel("Message", { exact: true }).fill("half a thought, not sent yet");

  // The login ends elsewhere (signed out everywhere), and the access token runs out.
  const auth = JSON.parse(await page.evaluate(() => localStorage.getItem("videosync.auth")));
  const r = await fetch(`${env.server.url}/api/v1/auth/logout`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: auth.refresh_token, everywhere: true }),
  });
  assert.equal(r.status, 204);
  await page.evaluate(() => {
    const a = JSON.parse(localStorage.getItem("videosync.auth"));
    a.access_expires_at = 0;
    localStorage.setItem("videosync.auth", JSON.stringify(a));
  });

  // The next call needs a fresh token: the sign-in dialog opens over the page.
  await page.getByRole("link", { name: "videosync" }).click();
  const dialog = page.getByRole("dialog", { name: "Your session ended" });
  await dialog.waitFor();
  await dialog.getByLabel("Username or e-mail").fill("dora");
  await dialog.getByLabel("Password").fill("correct horse battery");
  await dialog.getByRole("button", { name: "Sign in" }).click();
  await dialog.waitFor({ state: "hidden" });

  // Back in the channel, the draft is where it was.
  await page.goBack();
  await page.waitForURL(new RegExp(`/c/${channel}$`));
  assert.equal(await page.getByLabel("Message", { exact: true }).inputValue(), "half a thought, not sent yet");
  await context.close();
});

test("a person renames themselves and changes their password on the account page", async () => {
  const context = await newContext(env.browser);
  const page = await context.newPage();
  await signUp(page, env.server.url, "erin");
  await page.getByRole("link", { name: "Account", exact: true }).click();
  await page.getByLabel("Display name").fill("Erin the Brave");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Your display name is saved.").waitFor();
  await page.locator(".who-am-i", { hasText: "Erin the Brave" }).waitFor();
  await page.getByLabel("Current password").fill("wrong password");
  await page.getByLabel(/^New password/).fill("a much better secret");
  await page.getByRole("button", { name: "Change password" }).click();
  await page.getByRole("alert").waitFor();
  await page.getByLabel("Current password").fill("correct horse battery");
  await page.getByRole("button", { name: "Change password" }).click();
  await page.getByText("Your password is changed.").waitFor();
  await context.close();
});

test("the quality menu switches the player to another rung of the ladder", async () => {
  const fay = await registerUser(env.server.url, "fay");
  const channel = (await apiCall(env.server.url, "POST", "/channels", fay.token, { name: "Fay's", visibility: "public" })).id;
  // 854x480: a ladder of two rungs, 480p and 360p.
  await uploadReady(env.server.url, fay.token, channel, makeClip("wide.mp4", { seconds: 12, size: "854x480" }), "Wide");
  const context = await newContext(env.browser);
  const page = await context.newPage();
  await signIn(page, env.server.url, "fay");
  await page.goto(`${env.server.url}/c/${channel}`);
  await page.getByTestId("connection-state").filter({ hasText: "Live" }).waitFor();
  await page.getByRole("tab", { name: /Queue/ }).click();
  await page.getByRole("button", { name: "Play now" }).click();
  const quality = page.getByLabel("Quality");
  await quality.waitFor();
  assert.deepEqual(await quality.locator("option").allTextContents(), ["Auto", "480p", "360p"]);
  await quality.selectOption({ label: "360p" });
  await explained(page, "quality-360p", () =>
    page.waitForFunction(() => document.querySelector("video")?.videoHeight === 360, null, { timeout: 20_000 }),
  );
  await context.close();
});
