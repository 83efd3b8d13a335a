// Two people in one channel, each in their own browser context: chat,
// typing and reactions cross over (also from full screen, where the chat
// floats over the video), controls follow the permission matrix, a mute
// shows in the member list and is lifted there, text stays text, and a
// private channel stays private.
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { apiCall, makeClip, newContext, registerUser, serverAndBrowser, shotsDir, signIn, signUp, uploadReady } from "./harness.mjs";

let ada;
let channel;
const env = serverAndBrowser(async () => {
  ada = await registerUser(env.server.url, "ada");
  await registerUser(env.server.url, "bob");
  channel = (await apiCall(env.server.url, "POST", "/channels", ada.token, { name: "Film club", visibility: "public" })).id;
  await uploadReady(env.server.url, ada.token, channel, makeClip("harbour.mp4", { seconds: 20 }), "Harbour at dawn");
});

async function open(username) {
  const context = await newContext(env.browser);
  const page = await context.newPage();
  await signIn(page, env.server.url, username);
  await page.goto(`${env.server.url}/c/${channel}`);
  await page.getByTestId("connection-state").filter({ hasText: "Live" }).waitFor();
  if (username !== "ada") {
    // A visitor joins the public channel to take part (a viewer: chat only).
    await page.getByRole("button", { name: "Join channel" }).click();
    await page.locator(".badge", { hasText: "viewer" }).waitFor();
  }
  return { context, page };
}

test("chat, typing and reactions reach the other browser; controls follow the matrix", async () => {
  const a = await open("ada");
  const b = await open("bob");

  // The owner starts the video for the room; both players run.
  await a.page.getByRole("tab", { name: /Queue/ }).click();
  await a.page.getByRole("button", { name: "Play now" }).click();
  for (const { page } of [a, b]) {
    await page.waitForFunction(() => {
      const v = document.querySelector("video");
      return v && !v.paused && v.currentTime > 0.5;
    }, null, { timeout: 30_000 });
  }
  // The seek bar previews the storyboard under the pointer.
  await a.page.getByLabel("Seek").hover({ position: { x: 60, y: 5 } });
  const thumb = a.page.locator(".preview .thumb");
  await thumb.waitFor();
  assert.match((await thumb.getAttribute("style")) ?? "", /url\(.*sheet_\d+\.jpg/);

  // A viewer may not control playback by default; the owner may.
  assert.equal(await a.page.getByRole("button", { name: "Pause", exact: true }).isEnabled(), true);
  assert.equal(await b.page.getByRole("button", { name: "Pause", exact: true }).isEnabled(), false);
  assert.equal(await b.page.getByLabel("Speed").isEnabled(), false);

  // Typing shows on the other side, then the message, with its mention.
  await a.page.getByRole("tab", { name: "Chat" }).click();
  await a.page.getByLabel("Message", { exact: true }).fill("hello @bob");
  await b.page.getByText("ada is typing…").waitFor();
  await a.page.getByLabel("Message", { exact: true }).press("Enter");
  const line = b.page.locator(".messages li", { hasText: "hello @bob" });
  await line.waitFor();
  assert.match((await line.getAttribute("class")) ?? "", /mention/);
  await b.page.getByText("ada is typing…").waitFor({ state: "detached" });

  // Text is text: markup in chat is shown, never run.
  const hostile = `<img src=x onerror="window.__pwned=1">`;
  await b.page.getByLabel("Message", { exact: true }).fill(hostile);
  await b.page.getByLabel("Message", { exact: true }).press("Enter");
  await a.page.locator(".messages li", { hasText: hostile }).waitFor();
  assert.equal(await a.page.evaluate(() => window.__pwned), undefined);

  // A reaction floats over the other player.
  await b.page.getByRole("button", { name: "React 🎉" }).click();
  await a.page.locator(".reactions .reaction", { hasText: "🎉" }).waitFor();

  // In full screen the chat floats over the video, and still works both ways.
  await a.page.getByRole("button", { name: "Full screen" }).click();
  await a.page.waitForFunction(() => document.fullscreenElement?.classList.contains("room"));
  const [stage, side] = await Promise.all([a.page.locator(".stage").boundingBox(), a.page.locator(".side").boundingBox()]);
  const viewport = a.page.viewportSize();
  assert.ok(stage && side && viewport, "the stage and the chat are on screen");
  assert.ok(stage.width >= viewport.width - 1 && stage.height >= viewport.height - 1, `the video fills the screen: ${JSON.stringify(stage)}`);
  assert.ok(side.x > stage.x && side.x + side.width <= stage.x + stage.width, `the chat lies over the video: ${JSON.stringify(side)}`);
  await a.page.getByLabel("Message", { exact: true }).fill("from full screen");
  await a.page.getByLabel("Message", { exact: true }).press("Enter");
  await b.page.locator(".messages li", { hasText: "from full screen" }).waitFor();
  await b.page.getByLabel("Message", { exact: true }).fill("seen it");
  await b.page.getByLabel("Message", { exact: true }).press("Enter");
  await a.page.locator(".messages li", { hasText: "seen it" }).waitFor();
  assert.ok(await a.page.locator(".messages li", { hasText: "seen it" }).isVisible());
  await a.page.screenshot({ path: join(shotsDir(), "room-fullscreen-chat.png") });
  await a.page.evaluate(() => document.exitFullscreen());
  await a.page.waitForFunction(() => document.fullscreenElement === null);

  // The owner lets viewers control playback: bob's controls come alive.
  await apiCall(env.server.url, "PATCH", `/channels/${channel}/permissions`, ada.token, {
    changes: [{ role: "viewer", permission: "control_playback", allowed: true }],
  });
  await b.page.reload();
  await b.page.getByTestId("connection-state").filter({ hasText: "Live" }).waitFor();
  await b.page.getByLabel("Speed").and(b.page.locator(":enabled")).waitFor();
  await b.page.getByLabel("Speed").selectOption("1.5");
  await a.page.waitForFunction(() => document.querySelector("video")?.playbackRate === 1.5, null, { timeout: 10_000 });

  // Everyone present shows in the people panel, where the owner mutes bob.
  await a.page.getByRole("tab", { name: /People/ }).click();
  const bobRow = a.page.locator(".people tr", { hasText: "bob" });
  await bobRow.waitFor();
  await bobRow.getByRole("button", { name: "Mute" }).click();
  await a.page.getByText("bob is muted for 10 minutes.").waitFor();
  await b.page.getByLabel("Message", { exact: true }).fill("can anyone hear me");
  await b.page.getByLabel("Message", { exact: true }).press("Enter");
  await b.page.getByRole("alert").filter({ hasText: /muted/ }).waitFor();
  // The list shows the mute and lifts it; bob chats again.
  await bobRow.getByText(/muted until/).waitFor();
  await bobRow.getByRole("button", { name: "Unmute" }).click();
  await a.page.getByText("bob may chat again.").waitFor();
  await bobRow.getByRole("button", { name: "Mute" }).waitFor();
  await b.page.getByLabel("Message", { exact: true }).fill("back again");
  await b.page.getByLabel("Message", { exact: true }).press("Enter");
  await a.page.getByRole("tab", { name: "Chat" }).click();
  await a.page.locator(".messages li", { hasText: "back again" }).waitFor();
  await a.context.close();
  await b.context.close();
});

test("a private channel is unreachable for an outsider", async () => {
  const secret = await apiCall(env.server.url, "POST", "/channels", ada.token, { name: "Secret society", visibility: "private" });
  const context = await newContext(env.browser);
  const page = await context.newPage();
  await signUp(page, env.server.url, "carol");
  await page.goto(`${env.server.url}/c/${secret.id}`);
  await page.getByRole("heading", { name: "Channel not found" }).waitFor();
  assert.equal(await page.getByText("Secret society").count(), 0);
  // Its videos' pages are no way in either.
  const r = await page.request.get(`${env.server.url}/api/v1/channels/${secret.id}/videos`);
  assert.equal(r.status(), 404);
  await context.close();
});
