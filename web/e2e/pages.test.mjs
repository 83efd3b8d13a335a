// Every main page: no serious or critical accessibility violation (axe-core),
// and screenshots in both themes at phone and desktop widths, saved under
// target/web-screenshots/ for review.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { join } from "node:path";
import { test } from "node:test";
import { apiCall, makeClip, registerUser, serverAndBrowser, shotsDir, signIn, uploadReady } from "./harness.mjs";

const require = createRequire(import.meta.url);
const AXE = require.resolve("axe-core/axe.min.js");

let channel;
const env = serverAndBrowser(async () => {
  const ada = await registerUser(env.server.url, "ada");
  channel = (await apiCall(env.server.url, "POST", "/channels", ada.token, { name: "Film club", visibility: "public", description: "Fridays at nine." }))
    .id;
  await uploadReady(env.server.url, ada.token, channel, makeClip("harbour.mp4"), "Harbour at dawn");
});

const SIZES = { phone: { width: 390, height: 844 }, desktop: { width: 1280, height: 800 } };

/** Each page: its name, its path, whether it needs a signed-in user, and what shows once it is ready. */
const PAGES = [
  ["home", "/", false, (p) => p.getByRole("heading", { name: "Public channels" })],
  ["login", "/login", false, (p) => p.getByRole("heading", { name: "Sign in" })],
  ["signup", "/signup", false, (p) => p.getByRole("heading", { name: "Create an account" })],
  ["home-signed-in", "/", true, (p) => p.getByRole("heading", { name: "My channels" })],
  ["channel", () => `/c/${channel}`, true, (p) => p.getByTestId("connection-state").filter({ hasText: "Live" })],
  ["upload", "/upload", true, (p) => p.getByText("Drop a video here, or choose a file")],
  ["new-channel", "/new", true, (p) => p.getByRole("heading", { name: "New channel" })],
  ["manage", () => `/c/${channel}/manage`, true, (p) => p.getByRole("heading", { name: "Permissions" })],
  ["admin", "/admin", true, (p) => p.getByRole("heading", { name: "Failed jobs" })],
  ["account", "/account", true, (p) => p.getByRole("heading", { name: "Your account" })],
  ["not-found", "/no/such/page", false, (p) => p.getByRole("heading", { name: "Nothing here" })],
];

for (const [size, viewport] of Object.entries(SIZES)) {
  for (const scheme of ["light", "dark"]) {
    test(`main pages at ${size} width in the ${scheme} theme: accessible, and shot`, async () => {
      // bypassCSP: axe is injected as an inline script.
      const context = await env.browser.newContext({ viewport, colorScheme: scheme, bypassCSP: true });
      context.setDefaultTimeout(20_000);
      const page = await context.newPage();
      const problems = [];
      for (const [name, path, signedIn, ready] of PAGES) {
        if (signedIn && !(await page.evaluate(() => !!localStorage.getItem("videosync.auth")))) {
          await signIn(page, env.server.url, "ada");
        }
        await page.goto(env.server.url + (typeof path === "function" ? path() : path));
        await ready(page).first().waitFor();
        await page.screenshot({ path: join(shotsDir(), `${name}-${size}-${scheme}.png`), fullPage: true });
        await page.addScriptTag({ path: AXE });
        const result = await page.evaluate(async () => {
          // eslint-disable-next-line no-undef
          const r = await axe.run(document, { resultTypes: ["violations"] });
          return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 3) }));
        });
        for (const v of result) {
          if (v.impact === "serious" || v.impact === "critical") problems.push(`${name}: ${v.id} (${v.impact}) ${v.help} at ${v.nodes.join(", ")}`);
        }
      }
      assert.deepEqual(problems, []);
      await context.close();
    });
  }
}
