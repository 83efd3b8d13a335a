// Types for the parts of the sync engine's JavaScript module the app uses
// (videosync-sync/js/videosync-sync.js; the Rust twin is videosync_sync::client).
declare module "videosync-sync" {
  export const PROTOCOL_VERSION: number;

  export interface Playback {
    media: string | null;
    playing: boolean;
    position_ms: number;
    at_ms: number;
    rate: number;
    seq: number;
  }

  export interface Policy {
    behind: "wait" | "leave" | "skip";
    wait_timeout_ms: number;
    start_ahead_ms: number;
    start_timeout_ms: number;
  }

  export interface QueueItem {
    id: number;
    media: string;
  }

  export interface Waiting {
    member: number;
    deadline_ms: number;
  }

  export type PlayerAction =
    | { action: "play" }
    | { action: "pause" }
    | { action: "seek"; position_ms: number }
    | { action: "set_rate"; rate: number };

  export type Output =
    | { type: "player"; at_ms: number; action: PlayerAction }
    | { type: "send"; frame: Record<string, unknown> };

  export interface Refusal {
    code: string;
    message: string;
  }

  export type Command =
    | { command: "play" }
    | { command: "pause" }
    | { command: "seek"; position_ms: number }
    | { command: "set_rate"; rate: number }
    | { command: "load"; media: string }
    | { command: "queue_add"; media: string }
    | { command: "queue_remove"; item: number }
    | { command: "queue_reorder"; item: number; to: number };

  export interface PlayerRead {
    at_ms: number;
    position_ms: number;
    rate: number;
    playing: boolean;
    seeking: boolean;
    waiting: boolean;
    buffered_ahead_ms?: number | null;
  }

  export type PlayerEvent =
    | { event: "play" | "pause" | "waiting" | "playing" }
    | { event: "seeking" | "seeked"; position_ms: number }
    | { event: "rate_change"; rate: number };

  export interface OffsetEstimator {
    rttMs(): number;
    uncertaintyAt(localMs: number): number;
  }

  export class Session {
    constructor(config?: Record<string, unknown>);
    seq(): number;
    member(): number | null;
    playback(): Playback | null;
    queue(): QueueItem[];
    waiting(): Waiting[];
    policy(): Policy | null;
    clock(): OffsetEstimator;
    serverTime(localMs: number): number;
    behindMs(): number;
    nextWakeMs(): number | null;
    poll(): Output | null;
    setCorrection(localMs: number, enabled: boolean): void;
    catchUp(): void;
    setDisplayInterval(ms: number): Refusal | null;
    hello(localMs: number, token: string, name: string): Record<string, unknown>;
    onMessage(localMs: number, frame: unknown): Refusal | null;
    onPlayer(read: PlayerRead): Refusal | null;
    onFrame(mediaTimeMs: number, expectedDisplayMs: number): Refusal | null;
    onPlayerEvent(localMs: number, event: PlayerEvent): { command: Command | null } | Refusal;
    userCommand(localMs: number, command: Command): number;
    tick(localMs: number): Refusal | null;
  }

  export function positionAt(playback: Playback, serverMs: number): number;
}
