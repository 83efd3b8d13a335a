// The sync error on real players, short and with a loose bound (p95 within
// 100 ms) so it cannot flake on a loaded machine; `make bench BENCH=browser`
// runs the full session against the real targets.
import assert from "node:assert/strict";
import { test } from "node:test";
import { serverAndBrowser } from "./harness.mjs";
import { measureSync } from "./syncmeasure.mjs";

const env = serverAndBrowser();

test("three players on different networks stay within 100 ms (p95)", async () => {
  const r = await measureSync({
    browser: env.browser,
    base: env.server.url,
    quick: true,
    // The quick script plays about 45 s of media; it must not run off the end.
    clipSeconds: 50,
    networks: [
      { latency: 5, jitter: 0 },
      { latency: 40, jitter: 10 },
      { latency: 100, jitter: 30 },
    ],
  });
  console.log(JSON.stringify(r));
  assert.ok(r.samples > 500, `too few common instants: ${r.samples}`);
  assert.ok(r.p95_ms <= 100, `p95 ${r.p95_ms} ms`);
});
