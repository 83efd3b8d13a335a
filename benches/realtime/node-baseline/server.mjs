// Baseline for the realtime benchmark: "the platform's original design".
//
// A Node `ws` server whose rooms are fanned out through Redis pub/sub, so
// that several processes can serve members of one room. It speaks the
// subset of protocol v2 (docs/protocol.md) that the load tool uses: hello /
// welcome, ping / pong, command -> state, chat. It is deliberately naive:
// no authentication, no permission checks, no chat storage, no sync engine
// (a command becomes the next state at once, read-modify-write in Redis
// without locking). Each of these makes it cheaper than the real server.

import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { WebSocketServer } from 'ws';
import { createClient } from 'redis';

const PORT = Number(process.env.PORT ?? 9001);
const HOST = process.env.HOST ?? '127.0.0.1';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const NS = process.env.NAMESPACE ?? 'baseline';

const MAX_BUFFERED = 1 << 20; // skip a socket with more than 1 MiB unsent
const START_DELAY_MS = 100; // a state applies this long after the command
const LIVE_PATH = /^\/api\/v1\/channels\/([A-Za-z0-9_-]{1,64})\/live$/;
const POLICY = { behind: 'wait', wait_timeout_ms: 10000, start_ahead_ms: 0, start_timeout_ms: 5000 };

// Server clock: milliseconds since the epoch, fractional.
const now = () => performance.timeOrigin + performance.now();
const key = (room, what) => `${NS}:room:${room}:${what}`;
const channel = (room) => `${NS}:room:${room}`;
const send = (ws, msg) => ws.send(JSON.stringify({ ...msg, sent_ms: now() }));

// One command connection (INCR, GET, SET, PUBLISH) and one subscriber.
const redis = createClient({ url: REDIS_URL });
redis.on('error', (e) => console.error('redis:', e.message));
const sub = redis.duplicate();
sub.on('error', (e) => console.error('redis sub:', e.message));
await Promise.all([redis.connect(), sub.connect()]);

// room id -> { sockets, listener, subscribed }: the local members of a room,
// the pub/sub listener that feeds them, and a promise that resolves once the
// process receives the room's channel (a member is welcomed only after that).
const rooms = new Map();
let dropped = 0; // frames skipped because a socket had too much unsent

function deliver(local, text) {
  for (const ws of local.sockets) {
    if (ws.backlog) { ws.backlog.push(text); continue; } // not welcomed yet
    if (ws.readyState !== ws.OPEN) continue;
    if (ws.bufferedAmount > MAX_BUFFERED) { dropped++; continue; }
    ws.send(text); // the published payload, unchanged
  }
}

function join(room, ws) {
  let local = rooms.get(room);
  if (!local) {
    // First local member: subscribe to the room's channel.
    local = { sockets: new Set() };
    local.listener = (text) => deliver(local, text);
    local.subscribed = sub.subscribe(channel(room), local.listener);
    rooms.set(room, local);
  }
  local.sockets.add(ws);
  return local.subscribed;
}

function leave(room, ws) {
  const local = rooms.get(room);
  if (!local || !local.sockets.delete(ws) || local.sockets.size > 0) return;
  // Last local member gone: unsubscribe. Naming the listener matters: it
  // marks the channel as unsubscribing in node-redis, so a member joining
  // before the UNSUBSCRIBE is answered sends a fresh SUBSCRIBE (without it,
  // the new listener would be added to the old entry and then dropped).
  rooms.delete(room);
  sub.unsubscribe(channel(room), local.listener).catch((e) => console.error('unsubscribe:', e.message));
}

const defaultPlayback = (seq) =>
  ({ media: null, playing: false, position_ms: 0, at_ms: now(), rate: 1, seq });

async function loadPlayback(room) {
  const [seq, json] = await Promise.all([redis.get(key(room, 'seq')), redis.get(key(room, 'playback'))]);
  return { seq: Number(seq ?? 0), playback: json ? JSON.parse(json) : defaultPlayback(Number(seq ?? 0)) };
}

// A command becomes the room's next state: no checks, no based_on_seq
// conflict detection, no scheduling beyond "START_DELAY_MS from now".
async function command(room, member, msg) {
  const seq = await redis.incr(key(room, 'seq'));
  const { playback: old } = await loadPlayback(room);
  const at = now() + START_DELAY_MS;
  // Where the media will be at `at` if nothing changed.
  const position = old.playing ? old.position_ms + (at - old.at_ms) * old.rate : old.position_ms;
  const next = { media: old.media, playing: old.playing, position_ms: position, at_ms: at, rate: old.rate, seq };
  switch (msg.command) {
    case 'play': next.playing = true; break;
    case 'pause': next.playing = false; break;
    case 'seek': next.position_ms = Number(msg.position_ms) || 0; break;
    case 'set_rate': next.rate = Number(msg.rate) || 1; break;
    case 'load': Object.assign(next, { media: msg.media ?? null, position_ms: 0, playing: false }); break;
  }
  await redis.set(key(room, 'playback'), JSON.stringify(next));
  const state = { type: 'state', playback: next, cause: { by: member, request_id: msg.id }, sent_ms: now() };
  await redis.publish(channel(room), JSON.stringify(state));
}

async function chat(room, member, msg) {
  const id = await redis.incr(key(room, 'chat'));
  const text = { type: 'chat', from: member, text: String(msg.text ?? ''), id, sent_ms: now() };
  await redis.publish(channel(room), JSON.stringify(text));
}

const COMMANDS = new Set(['play', 'pause', 'seek', 'set_rate', 'load']);
const IGNORED = new Set(['typing', 'report', 'buffering', 'ready', 'reaction']);

function serve(ws, room) {
  let member = null; // the member id, once welcomed
  let welcomed = null; // a promise: the hello's answer, once a hello came
  const fail = (code, message, close) => {
    if (ws.readyState !== ws.OPEN) return;
    send(ws, { type: 'error', code, message });
    if (close) ws.close(4000, code);
  };

  async function hello(msg) {
    if (msg?.type !== 'hello') return fail('malformed', 'expected one JSON object, a hello, first', true);
    if (!Array.isArray(msg.versions) || !msg.versions.includes(2)) {
      return fail('unsupported_version', 'this server speaks version 2 only', true);
    }
    // The token is ignored: no authentication, no admission rules.
    // Until the welcome is out, what the room publishes waits in a backlog
    // (it may repeat states the welcome already holds: a client drops those
    // by seq).
    ws.backlog = [];
    const [id, , snap] = await Promise.all([redis.incr(key(room, 'members')), join(room, ws), loadPlayback(room)]);
    member = id;
    const r = { seq: snap.seq, playback: snap.playback, pending: [], queue_total: 0, queue: [], members: [], waiting: [], policy: POLICY };
    if (ws.readyState === ws.OPEN) send(ws, { type: 'welcome', v: 2, member, room: r });
    const backlog = ws.backlog;
    ws.backlog = null;
    for (const text of backlog) deliver({ sockets: [ws] }, text);
  }

  async function handle(msg, t1) {
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') {
      return fail('malformed', 'expected one JSON text object with a string "type"', false);
    }
    if (msg.type === 'ping') {
      // Answered here, not through Redis.
      send(ws, { type: 'pong', id: msg.id, t0_ms: msg.sent_ms, t1_ms: t1 });
    } else if (msg.type === 'command') {
      if (!COMMANDS.has(msg.command)) return fail('malformed', 'unknown command', false);
      await command(room, member, msg);
    } else if (msg.type === 'chat') {
      await chat(room, member, msg);
    } else if (!IGNORED.has(msg.type)) {
      fail('unknown_type', `unknown type ${msg.type}`, false);
    }
  }

  ws.on('message', async (data, isBinary) => {
    const t1 = now(); // the receive time, before any waiting
    let msg = null;
    try { if (!isBinary) msg = JSON.parse(data.toString()); } catch { /* malformed */ }
    try {
      if (!welcomed) {
        welcomed = hello(msg);
        await welcomed;
        return;
      }
      await welcomed; // frames sent right after the hello wait for the welcome
      if (member !== null) await handle(msg, t1);
    } catch (e) {
      console.error(`${msg?.type}:`, e.message);
      if (member === null) ws.close(1011, 'unavailable');
      else fail('unavailable', 'redis failed', false);
    }
  });

  ws.on('close', () => leave(room, ws)); // forget it
  ws.on('error', () => {});
}

// HTTP: /healthz, and the WebSocket upgrade on /api/v1/channels/<id>/live.
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 65536 });
const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url.split('?')[0] === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
  } else {
    res.writeHead(404).end();
  }
});
server.on('upgrade', (req, socket, head) => {
  const m = LIVE_PATH.exec(req.url.split('?')[0]);
  if (!m) {
    socket.write('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => serve(ws, m[1]));
});

server.listen(PORT, HOST, () => console.log(`listening on http://${HOST}:${PORT}`));

let stopping = false;
async function shutdown() {
  if (stopping) return;
  stopping = true;
  for (const ws of wss.clients) ws.close(1001, 'shutting down');
  server.close();
  wss.close();
  await Promise.allSettled([sub.close(), redis.close()]);
  if (dropped) console.error(`dropped ${dropped} frames to slow sockets`);
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
