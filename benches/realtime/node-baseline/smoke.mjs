// Smoke check of the baseline across two processes. It starts nothing: run
// two servers (same REDIS_URL and NAMESPACE) first, then
//   node smoke.mjs ws://127.0.0.1:9101 ws://127.0.0.1:9102
// A client on each process joins one fresh room; A sends a ping, a command
// and a chat; both must see the same state and the same chat. Then a bad
// first frame must be closed with 4000, and a wrong path refused with 404.
// Exits 0 when every check passes, 1 otherwise.

import assert from 'node:assert/strict';
import { WebSocket } from 'ws';

const [urlA, urlB] = process.argv.slice(2);
if (!urlA || !urlB) {
  console.error('usage: node smoke.mjs ws://HOST:PORT ws://HOST:PORT');
  process.exit(2);
}
const room = `smoke-${process.pid}-${Date.now()}`;
const path = `/api/v1/channels/${room}/live`;
const now = () => performance.timeOrigin + performance.now();

// A client that queues what it receives, so a test can wait for a type.
function connect(base, p = path) {
  const ws = new WebSocket(base + p);
  const inbox = [];
  const seen = []; // every type received, in order
  const waiters = [];
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString());
    inbox.push(msg);
    seen.push(msg.type);
    for (const w of waiters.splice(0)) w();
  });
  const next = async (type, ms = 2000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = inbox.findIndex((m) => m.type === type);
      if (i >= 0) return inbox.splice(i, 1)[0];
      if (Date.now() > deadline) throw new Error(`${base}: no ${type} within ${ms} ms`);
      await new Promise((r) => { waiters.push(r); setTimeout(r, 50); });
    }
  };
  const send = (msg) => ws.send(JSON.stringify({ ...msg, sent_ms: now() }));
  const opened = new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
  return { ws, inbox, seen, next, send, opened, closed };
}

const check = (name, fn) => fn().then(
  () => console.log(`ok   ${name}`),
  (e) => { console.log(`FAIL ${name}: ${e.message}`); process.exitCode = 1; },
);

const hello = (c, name) => c.send({ type: 'hello', versions: [2], token: 'ignored', name });
const a = connect(urlA);
const b = connect(urlB);
let wa;

await check('hello -> welcome on both processes, distinct member ids', async () => {
  await Promise.all([a.opened, b.opened]);
  hello(a, 'A');
  hello(b, 'B');
  let wb;
  [wa, wb] = await Promise.all([a.next('welcome'), b.next('welcome')]);
  assert.equal(wa.v, 2);
  assert.notEqual(wa.member, wb.member);
  assert.equal(wa.room.playback.media, null);
  assert.deepEqual(wa.room.policy, { behind: 'wait', wait_timeout_ms: 10000, start_ahead_ms: 0, start_timeout_ms: 5000 });
  console.log(`     A is member ${wa.member} on ${urlA}, B is member ${wb.member} on ${urlB}, room seq ${wa.room.seq}`);
});

await check('ping -> pong (answered locally)', async () => {
  const t0 = now();
  a.ws.send(JSON.stringify({ type: 'ping', id: 7, sent_ms: t0 }));
  const pong = await a.next('pong');
  assert.equal(pong.id, 7);
  assert.equal(pong.t0_ms, t0);
  assert.ok(pong.t1_ms <= pong.sent_ms, 't1 after t2');
  console.log(`     rtt ${(now() - t0).toFixed(2)} ms`);
  assert.equal(b.inbox.some((m) => m.type === 'pong'), false, 'B got a pong');
});

await check('command (load, then play) -> same state on both processes', async () => {
  a.send({ type: 'command', id: 1, based_on_seq: 0, command: 'load', media: 'vid_smoke' });
  const [la, lb] = await Promise.all([a.next('state'), b.next('state')]);
  assert.deepEqual(la, lb, 'A and B got different payloads');
  assert.equal(la.playback.media, 'vid_smoke');
  assert.equal(la.playback.playing, false);
  a.send({ type: 'command', id: 2, based_on_seq: la.playback.seq, command: 'play' });
  const [sa, sb] = await Promise.all([a.next('state'), b.next('state')]);
  assert.deepEqual(sa, sb, 'A and B got different payloads');
  assert.equal(sa.playback.seq, la.playback.seq + 1);
  assert.equal(sa.playback.playing, true);
  assert.deepEqual(sa.cause, { by: wa.member, request_id: 2 });
  assert.ok(sa.playback.at_ms > sa.sent_ms, 'at_ms not after sent_ms');
  console.log(`     state seq ${sa.playback.seq}: ${JSON.stringify(sa.playback)}`);
});

await check('chat -> same chat on both processes', async () => {
  a.send({ type: 'chat', text: 'hello from A' });
  const [ca, cb] = await Promise.all([a.next('chat'), b.next('chat')]);
  assert.deepEqual(ca, cb, 'A and B got different payloads');
  assert.equal(ca.from, wa.member);
  assert.equal(ca.text, 'hello from A');
  assert.equal(typeof ca.id, 'number');
  console.log(`     chat id ${ca.id}`);
});

await check('ignored types get no answer; unknown types get unknown_type', async () => {
  for (const type of ['typing', 'report', 'buffering', 'ready', 'reaction']) a.send({ type });
  a.send({ type: 'bogus' });
  const err = await a.next('error');
  assert.equal(err.code, 'unknown_type');
  assert.deepEqual(a.inbox, [], `unexpected: ${JSON.stringify(a.inbox)}`);
});

await check('A leaves, C joins on the same process right away (hello+ping back to back): welcome, then pong; C gets B\'s chat', async () => {
  a.ws.close();
  const c = connect(urlA);
  await c.opened;
  hello(c, 'C');
  c.send({ type: 'ping', id: 1 }); // right behind the hello: answered after the welcome
  const wc = await c.next('welcome');
  await c.next('pong');
  assert.deepEqual(c.seen, ['welcome', 'pong']);
  assert.equal(wc.room.seq, 2);
  assert.equal(wc.room.playback.playing, true);
  await a.closed;
  await new Promise((r) => setTimeout(r, 50)); // A's UNSUBSCRIBE has been answered
  b.send({ type: 'chat', text: 'hello from B' });
  const [cc, cb] = await Promise.all([c.next('chat'), b.next('chat')]);
  assert.deepEqual(cc, cb);
  c.ws.close();
  await c.closed;
});

b.ws.close();
await b.closed;

for (const [name, frame] of [['a chat', JSON.stringify({ type: 'chat', text: 'x', sent_ms: now() })], ['invalid JSON', '{nope']]) {
  await check(`${name} as first frame -> error malformed, close 4000`, async () => {
    const c = connect(urlB);
    await c.opened;
    c.ws.send(frame);
    const err = await c.next('error');
    assert.equal(err.code, 'malformed');
    assert.equal(await c.closed, 4000);
  });
}

await check('upgrade on another path -> 404', async () => {
  const c = connect(urlA, '/api/v1/channels/has.dot/live');
  const res = await new Promise((resolve, reject) => {
    c.ws.once('unexpected-response', (_req, r) => resolve(r));
    c.ws.once('error', reject);
  });
  assert.equal(res.statusCode, 404);
  c.ws.on('error', () => {}); // ws reports the aborted upgrade too
});

console.log(process.exitCode ? 'smoke: FAILED' : 'smoke: all checks passed');
process.exit(process.exitCode ?? 0); // a failed check may leave sockets open
