// A channel's room over WebSocket, driven by the sync engine's client
// session (videosync-sync's JavaScript module): server frames and player
// observations go in, player actions and frames come out. The room's people,
// chat and reactions are kept here as signals for the page.
import { batch, signal } from "@preact/signals";
import { Session, positionAt } from "videosync-sync";
import type { Command, Playback, Policy, QueueItem, Waiting, PlayerEvent } from "videosync-sync";
import { measureDisplayInterval, type Player } from "./player";

export interface RoomMember {
  id: number;
  name: string;
  role: string;
  buffering: boolean;
  sync_error_ms?: number;
  rtt_ms?: number;
  /** The server's id of the member's account (absent: a guest). */
  account?: string;
}

export interface ChatLine {
  /** The message's number in the channel's history (absent: not stored). */
  id?: number;
  from: number | null;
  name: string;
  text: string;
  at: number;
  mentionsMe: boolean;
  deleted?: boolean;
  edited?: boolean;
  /** Written by the signed-in user (from history, where `from` is unknown). */
  mine?: boolean;
}

export interface Reaction {
  key: number;
  name: string;
  emoji: string;
}

export type ConnState = "connecting" | "open" | "reconnecting" | "closed";

/** Codes after which reconnecting cannot help (docs/realtime.md). */
const FINAL: Record<number, string> = {
  4000: "the server refused this client (protocol error); reload the page",
  4003: "you are not allowed in this room (banned, removed, or guests are not admitted)",
  4004: "this channel does not exist, or it is private",
  4009: "you joined this room from another tab or device",
};

const MAX_CHAT_LINES = 500;
const TICK_MS = 50;
const TYPING_RENEW_MS = 3000;

interface Frame {
  type: string;
  [k: string]: unknown;
}

export class RoomConnection {
  readonly state = signal<ConnState>("connecting");
  readonly closedReason = signal<string | null>(null);
  readonly notice = signal<string | null>(null);
  readonly me = signal<number | null>(null);
  readonly members = signal<Map<number, RoomMember>>(new Map());
  readonly chat = signal<ChatLine[]>([]);
  readonly typing = signal<number[]>([]);
  readonly reactions = signal<Reaction[]>([]);
  readonly playback = signal<Playback | null>(null);
  readonly queue = signal<QueueItem[]>([]);
  readonly waiting = signal<Waiting[]>([]);
  readonly policy = signal<Policy | null>(null);
  readonly rtt = signal<number | null>(null);
  /** The player's distance from the room's timeline, from the frame on screen (ms; positive: ahead). */
  readonly syncError = signal<number | null>(null);
  readonly behindMs = signal(0);
  readonly correcting = signal(true);

  private session = new Session();
  private ws: WebSocket | null = null;
  private player: Player | null = null;
  private timer: number | null = null;
  private attempts = 0;
  private stopped = false;
  private typingSentAt: number | null = null;
  private reactionKey = 0;
  private lastStamp = 0;
  private onVisible: (() => void) | null = null;

  constructor(
    readonly channelId: string,
    private readonly credential: (fresh: boolean) => Promise<string | null>,
    private readonly name: () => string,
  ) {
    this.connect(false);
  }

  // ------------------------------------------------------------ the socket

  private connect(freshToken: boolean): void {
    if (this.stopped) return;
    this.state.value = this.attempts === 0 ? "connecting" : "reconnecting";
    void this.credential(freshToken).then(
      (token) => {
        if (this.stopped) return;
        if (!token) {
          this.finish("sign in to join this room");
          return;
        }
        this.open(token);
      },
      () => this.retry(),
    );
  }

  private open(token: string): void {
    const url = new URL(`/api/v1/channels/${encodeURIComponent(this.channelId)}/live`, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.send(this.session.hello(performance.now(), token, this.name()));
    };
    ws.onmessage = (e: MessageEvent) => {
      if (typeof e.data !== "string") return;
      let frame: Frame;
      try {
        frame = JSON.parse(e.data) as Frame;
      } catch {
        return;
      }
      this.receive(frame);
    };
    ws.onclose = (e: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      const final = FINAL[e.code];
      if (final) return this.finish(e.reason ? `${final}: ${e.reason}` : final);
      if (e.code === 4001) {
        // The token expired during the connection: a fresh one, then resume.
        this.attempts += 1;
        return this.connect(true);
      }
      this.retry();
    };
  }

  private retry(): void {
    if (this.stopped) return;
    this.state.value = "reconnecting";
    this.attempts += 1;
    // 0.5 s, 1 s, 2 s ... up to 15 s, with jitter so a restarted server is
    // not met by every client at once.
    const base = Math.min(500 * 2 ** (this.attempts - 1), 15000);
    window.setTimeout(() => this.connect(false), base / 2 + Math.random() * base);
  }

  private finish(reason: string): void {
    this.state.value = "closed";
    this.closedReason.value = reason;
    this.stopTimer();
  }

  /** Reconnects after a final close, when the person asks. */
  reconnect(): void {
    if (this.state.value !== "closed" || this.stopped) return;
    this.closedReason.value = null;
    this.attempts = 0;
    this.connect(false);
  }

  close(): void {
    this.stopped = true;
    if (this.onVisible) document.removeEventListener("visibilitychange", this.onVisible);
    this.stopTimer();
    this.sendTyping(false);
    this.ws?.close(1000, "left the page");
    this.ws = null;
  }

  private send(frame: Record<string, unknown>): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  // ------------------------------------------------------------ the engine

  attach(player: Player | null): void {
    this.player = player;
    if (player) this.measureDisplay();
  }

  /**
   * Tells the session the display's refresh interval, which the frames on
   * screen are quantized to (the drift correction's dead zone follows it);
   * again whenever the page comes back into view, perhaps on another display.
   */
  private measureDisplay(): void {
    const measure = () =>
      void measureDisplayInterval().then((ms) => {
        if (ms !== null && !this.stopped) this.session.setDisplayInterval(ms);
      });
    if (!this.onVisible) {
      this.onVisible = () => {
        if (document.visibilityState === "visible") measure();
      };
      document.addEventListener("visibilitychange", this.onVisible);
    }
    measure();
  }

  private startTimer(): void {
    if (this.timer === null) this.timer = window.setTimeout(() => this.tick(), 0);
  }

  private stopTimer(): void {
    if (this.timer !== null) window.clearTimeout(this.timer);
    this.timer = null;
  }

  private tick(): void {
    this.timer = null;
    const now = performance.now();
    if (this.player) this.session.onPlayer(this.player.read(now));
    this.session.tick(now);
    this.drain();
    // A scheduled state applies on a tick, not when its message came.
    const applied = this.session.playback();
    if (applied !== this.playback.value) this.playback.value = applied;
    this.rtt.value = Number.isFinite(this.session.clock().rttMs()) ? this.session.clock().rttMs() : null;
    this.behindMs.value = this.session.behindMs();
    const wake = this.session.nextWakeMs();
    const delay = wake === null ? TICK_MS : Math.min(Math.max(wake - performance.now(), 0), TICK_MS);
    if (!this.stopped && this.state.value !== "closed") this.timer = window.setTimeout(() => this.tick(), delay);
  }

  private drain(): void {
    for (let out = this.session.poll(); out !== null; out = this.session.poll()) {
      if (out.type === "send") this.send(out.frame);
      else this.player?.apply(out.action);
    }
  }

  /** An event of the player: an echo of the session's own action, or the viewer's. */
  playerEvent(e: PlayerEvent): void {
    const r = this.session.onPlayerEvent(performance.now(), e);
    if ("code" in r) return;
    this.drain();
  }

  /** A frame on screen: the sync error against the room's timeline. */
  frameShown(mediaMs: number, displayLocalMs: number): void {
    this.session.onFrame(mediaMs, displayLocalMs);
    const p = this.session.playback();
    if (!p || p.media === null) {
      this.syncError.value = null;
      return;
    }
    const server = this.session.serverTime(displayLocalMs);
    if (!Number.isFinite(server) || server < p.at_ms) return;
    const err = mediaMs - positionAt(p, server);
    // A smoothed figure, readable at a glance; a jump shows at once.
    const prev = this.syncError.value;
    this.syncError.value = prev === null || Math.abs(err - prev) > 100 ? err : prev + 0.2 * (err - prev);
  }

  command(c: Command): void {
    this.session.userCommand(performance.now(), c);
    this.drain();
  }

  /** Loads `media` for the room and starts it once the room has loaded it. */
  playNow(media: string): void {
    this.command({ command: "load", media });
    const started = performance.now();
    const stop = this.playback.subscribe((p) => {
      if (performance.now() - started > 10_000) return queueMicrotask(stop);
      if (p?.media === media) {
        queueMicrotask(stop);
        if (!p.playing) this.command({ command: "play" });
      }
    });
  }

  setCorrection(on: boolean): void {
    this.correcting.value = on;
    this.session.setCorrection(performance.now(), on);
    this.drain();
  }

  catchUp(): void {
    this.session.catchUp();
  }

  /** Tells the group not to wait for this member (it catches up on its own). */
  dontWait(): void {
    const pos = this.player ? this.player.video.currentTime * 1000 : 0;
    this.send({ type: "ready", position_ms: Math.max(pos, 0), sent_ms: this.stamp() });
  }

  // ------------------------------------------------------------ chat

  sendChat(text: string): void {
    this.typingSentAt = null;
    this.send({ type: "chat", text, sent_ms: this.stamp() });
  }

  /** Call on every keystroke (true) and when the box empties or loses focus (false). */
  sendTyping(active: boolean): void {
    const now = performance.now();
    if (active) {
      if (this.typingSentAt !== null && now - this.typingSentAt < TYPING_RENEW_MS) return;
      this.typingSentAt = now;
    } else {
      if (this.typingSentAt === null) return;
      this.typingSentAt = null;
    }
    this.send({ type: "typing", active, sent_ms: this.stamp() });
  }

  react(emoji: string): void {
    const frame: Record<string, unknown> = { type: "reaction", emoji, sent_ms: this.stamp() };
    const pos = this.player?.video.currentTime;
    if (pos !== undefined && Number.isFinite(pos) && pos > 0) frame.at_position_ms = pos * 1000;
    this.send(frame);
  }

  /** Chat history from the REST API (newest first), merged with what came live. */
  addHistory(lines: ChatLine[]): void {
    const have = new Set(this.chat.value.map((l) => l.id).filter((id) => id !== undefined));
    const older = lines.filter((l) => l.id === undefined || !have.has(l.id)).reverse();
    this.chat.value = [...older, ...this.chat.value].slice(-MAX_CHAT_LINES);
  }

  nameOf(id: number | null): string {
    if (id === null) return "someone";
    return this.members.value.get(id)?.name ?? `member ${id}`;
  }

  private stamp(): number {
    // Client stamps are the same monotonic clock the session uses, never decreasing.
    this.lastStamp = Math.max(performance.now(), this.lastStamp);
    return this.lastStamp;
  }

  // ------------------------------------------------------------ from the server

  private receive(frame: Frame): void {
    const now = performance.now();
    const refused = this.session.onMessage(now, frame);
    batch(() => {
      if (!refused) this.mirror();
      switch (frame.type) {
        case "welcome":
          this.attempts = 0;
          this.state.value = "open";
          this.closedReason.value = null;
          this.me.value = frame.member as number;
          if (frame.room) this.setMembers((frame.room as { members: RoomMember[] }).members, true);
          this.startTimer();
          break;
        case "snapshot":
          this.setMembers(frame.members as RoomMember[], true);
          break;
        case "members":
          this.setMembers(frame.members as RoomMember[], false);
          break;
        case "presence":
          this.presence(frame.event as string, frame.member as RoomMember);
          break;
        case "chat":
          this.chatLine(frame);
          break;
        case "chat_edited":
          this.chat.value = this.chat.value.map((l) =>
            l.id === frame.id ? { ...l, text: frame.text as string, edited: true } : l,
          );
          break;
        case "chat_deleted":
          this.chat.value = this.chat.value.map((l) => (l.id === frame.id ? { ...l, text: "", deleted: true } : l));
          break;
        case "typing": {
          const id = frame.member as number;
          const rest = this.typing.value.filter((m) => m !== id);
          this.typing.value = frame.active ? [...rest, id] : rest;
          break;
        }
        case "reaction":
          this.reaction(frame.member as number, frame.emoji as string);
          break;
        case "error":
          if (frame.code !== "stale") this.notice.value = frame.message as string;
          break;
      }
    });
    this.drain();
  }

  /** The session's view of the room, for the page. */
  private mirror(): void {
    this.playback.value = this.session.playback();
    this.queue.value = [...this.session.queue()];
    this.waiting.value = [...this.session.waiting()];
    this.policy.value = this.session.policy();
  }

  private setMembers(list: RoomMember[] | undefined, replace: boolean): void {
    const next = replace ? new Map<number, RoomMember>() : new Map(this.members.value);
    for (const m of list ?? []) next.set(m.id, m);
    this.members.value = next;
  }

  private presence(event: string, m: RoomMember): void {
    const next = new Map(this.members.value);
    if (event === "left") {
      next.delete(m.id);
      this.typing.value = this.typing.value.filter((id) => id !== m.id);
    } else next.set(m.id, m);
    this.members.value = next;
  }

  private chatLine(frame: Frame): void {
    const from = frame.from as number;
    const mentions = (frame.mentions as number[] | undefined) ?? [];
    const line: ChatLine = {
      id: frame.id as number | undefined,
      from,
      name: this.nameOf(from),
      text: frame.text as string,
      at: Date.now(),
      mentionsMe: this.me.value !== null && mentions.includes(this.me.value),
    };
    if (line.id !== undefined && this.chat.value.some((l) => l.id === line.id)) return;
    this.chat.value = [...this.chat.value, line].slice(-MAX_CHAT_LINES);
    this.typing.value = this.typing.value.filter((id) => id !== from);
  }

  private reaction(member: number, emoji: string): void {
    const key = ++this.reactionKey;
    this.reactions.value = [...this.reactions.value.slice(-19), { key, name: this.nameOf(member), emoji }];
    window.setTimeout(() => {
      this.reactions.value = this.reactions.value.filter((r) => r.key !== key);
    }, 4000);
  }
}
