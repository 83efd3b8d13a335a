// The player adapter: a <video> element played by hls.js (or natively in
// Safari, and wherever a browser plays HLS but has no Media Source Extensions),
// read and driven by the room connection. hls.js loads only here, on the
// channel page.
import { signal } from "@preact/signals";
import type Hls from "hls.js";
import type { PlayerAction, PlayerEvent, PlayerRead } from "videosync-sync";

export interface Level {
  index: number;
  height: number;
  bitrate: number;
}

/** One frame callback: the media time shown at a local time (both ms). */
export type FrameSample = (mediaMs: number, displayLocalMs: number) => void;

export class Player {
  readonly levels = signal<Level[]>([]);
  /** -1: automatic. */
  readonly level = signal(-1);
  /** The browser refused to start playback with sound: it plays muted until a click. */
  readonly mutedByPolicy = signal(false);
  readonly error = signal<string | null>(null);
  readonly loading = signal(false);

  private hls: Hls | null = null;
  private source: string | null = null;
  private pendingSeekMs: number | null = null;
  private frameHandle: number | null = null;
  private listeners: [string, EventListener][] = [];
  /** The session asked to play; kept until it asks to pause. */
  private wantPlaying = false;
  /** `play` events of the adapter's own retries, not to be reported. */
  private ownPlays = 0;
  private frames = new FrameFit();

  constructor(
    readonly video: HTMLVideoElement,
    private readonly onEvent: (e: PlayerEvent) => void,
    private readonly onFrame: FrameSample,
  ) {
    const on = (name: string, f: () => void) => {
      video.addEventListener(name, f);
      this.listeners.push([name, f]);
    };
    on("play", () => {
      if (this.ownPlays > 0) this.ownPlays -= 1;
      else this.onEvent({ event: "play" });
    });
    // The media's own stop at its end is nobody's pause: the server stops
    // the room there (or plays the queue on) for everyone.
    on("pause", () => {
      if (!video.ended) this.onEvent({ event: "pause" });
    });
    on("waiting", () => this.onEvent({ event: "waiting" }));
    on("playing", () => this.onEvent({ event: "playing" }));
    on("seeking", () => this.onEvent({ event: "seeking", position_ms: video.currentTime * 1000 }));
    on("seeked", () => this.onEvent({ event: "seeked", position_ms: video.currentTime * 1000 }));
    on("ratechange", () => this.onEvent({ event: "rate_change", rate: video.playbackRate }));
    on("loadedmetadata", () => {
      this.loading.value = false;
      if (this.pendingSeekMs !== null) {
        video.currentTime = this.pendingSeekMs / 1000;
        this.pendingSeekMs = null;
      }
    });
    // A play asked for before the media could play (a new source resets
    // the element to paused, silently): play once it can.
    on("canplay", () => {
      if (this.wantPlaying && video.paused && !video.ended) {
        this.ownPlays += 1;
        this.play();
      }
    });
    on("error", () => {
      if (video.error) this.error.value = `the video could not be played (${video.error.message || "code " + video.error.code})`;
    });
    this.watchFrames();
  }

  /** Plays `url` (a master playlist); the same URL again does nothing. */
  async load(url: string | null): Promise<void> {
    if (url === this.source) return;
    this.source = url;
    this.error.value = null;
    this.levels.value = [];
    this.level.value = -1;
    this.hls?.destroy();
    this.hls = null;
    if (url === null) {
      this.video.removeAttribute("src");
      this.video.load();
      return;
    }
    this.loading.value = true;
    // Safari plays HLS itself (AirPlay, picture in picture, less power):
    // native there; hls.js elsewhere, for its quality menu, even where a
    // browser could play HLS too.
    const native = this.video.canPlayType("application/vnd.apple.mpegurl") !== "";
    if (native && /Apple/.test(navigator.vendor)) {
      this.video.src = url;
      return;
    }
    const { default: HlsClass } = await import("hls.js");
    if (this.source !== url) return;
    if (HlsClass.isSupported()) {
      const hls = new HlsClass({ capLevelToPlayerSize: true, backBufferLength: 30 });
      this.hls = hls;
      hls.on(HlsClass.Events.MANIFEST_PARSED, (_e, data) => {
        this.levels.value = data.levels
          .map((l, index) => ({ index, height: l.height, bitrate: l.bitrate }))
          .sort((a, b) => b.height - a.height);
      });
      hls.on(HlsClass.Events.ERROR, (_e, data) => {
        if (!data.fatal) return;
        if (data.type === HlsClass.ErrorTypes.NETWORK_ERROR) {
          this.error.value = "the video stream is not reachable; retrying";
          hls.startLoad();
        } else if (data.type === HlsClass.ErrorTypes.MEDIA_ERROR) {
          hls.recoverMediaError();
        } else {
          this.error.value = `the video could not be played (${data.details})`;
        }
      });
      hls.loadSource(url);
      hls.attachMedia(this.video);
    } else if (native) {
      this.video.src = url;
    } else {
      this.loading.value = false;
      this.error.value = "this browser cannot play HLS video";
    }
  }

  setLevel(index: number): void {
    this.level.value = index;
    if (this.hls) this.hls.currentLevel = index;
  }

  /** A read for the sync session. */
  read(atMs: number): PlayerRead {
    const v = this.video;
    const position = v.currentTime * 1000;
    let ahead: number | null = null;
    for (let i = 0; i < v.buffered.length; i++) {
      if (v.buffered.start(i) <= v.currentTime + 0.05 && v.currentTime <= v.buffered.end(i)) {
        ahead = (v.buffered.end(i) - v.currentTime) * 1000;
      }
    }
    return {
      at_ms: atMs,
      position_ms: Number.isFinite(position) ? Math.max(position, 0) : 0,
      rate: v.paused ? 0 : v.playbackRate,
      playing: !v.paused,
      seeking: v.seeking,
      waiting: this.source !== null && (v.readyState < 3 || this.loading.value) && !v.paused,
      buffered_ahead_ms: ahead,
    };
  }

  /** Does what the sync session asked. */
  apply(a: PlayerAction): void {
    const v = this.video;
    switch (a.action) {
      case "play":
        this.wantPlaying = true;
        // A play at the end would start the media over (and report that as
        // a seek to 0): the room's stop at the end is on its way.
        if (!v.ended) this.play();
        break;
      case "pause":
        this.wantPlaying = false;
        v.pause();
        break;
      case "seek":
        if (v.readyState === 0) this.pendingSeekMs = a.position_ms;
        else v.currentTime = a.position_ms / 1000;
        break;
      case "set_rate":
        v.playbackRate = a.rate;
        break;
    }
  }

  private play(): void {
    const v = this.video;
    v.play().catch((e: unknown) => {
      if (e instanceof DOMException && e.name === "NotAllowedError" && !v.muted) {
        // Autoplay with sound is refused until the person interacts with
        // the page: play muted, and offer to unmute.
        v.muted = true;
        this.mutedByPolicy.value = true;
        this.ownPlays += 1;
        v.play().catch(() => undefined);
      }
      // Otherwise (a new source interrupted it): `canplay` plays again.
    });
  }

  unmute(): void {
    this.video.muted = false;
    this.mutedByPolicy.value = false;
  }

  private watchFrames(): void {
    const v = this.video;
    if (!("requestVideoFrameCallback" in v)) return;
    const step = (_now: number, meta: VideoFrameCallbackMetadata) => {
      const fitted = this.frames.add(meta.expectedDisplayTime, meta.mediaTime * 1000, v.paused ? 0 : v.playbackRate);
      this.onFrame(fitted, meta.expectedDisplayTime);
      this.frameHandle = v.requestVideoFrameCallback(step);
    };
    this.frameHandle = v.requestVideoFrameCallback(step);
  }

  destroy(): void {
    if (this.frameHandle !== null) this.video.cancelVideoFrameCallback(this.frameHandle);
    for (const [name, f] of this.listeners) this.video.removeEventListener(name, f);
    this.hls?.destroy();
    this.hls = null;
  }
}

/**
 * The display's refresh interval (ms), from the animation frames of about
 * half a second: the median interval, so a dropped frame does not count.
 * Null when the page is hidden (no animation frames) or the figure is not
 * a display's (4 to 100 ms: 250 Hz to 10 Hz).
 */
export function measureDisplayInterval(frames = 30): Promise<number | null> {
  return new Promise((resolve) => {
    if (document.visibilityState !== "visible") return resolve(null);
    const stamps: number[] = [];
    const give = () => {
      const gaps = stamps.slice(1).map((t, i) => t - stamps[i]).sort((a, b) => a - b);
      const median = gaps.length ? gaps[gaps.length >> 1] : NaN;
      resolve(median >= 4 && median <= 100 ? median : null);
    };
    // A page that turns hidden meanwhile gets no more frames: give up then.
    const timeout = window.setTimeout(give, 2000);
    const step = (t: number) => {
      stamps.push(t);
      if (stamps.length > frames) {
        window.clearTimeout(timeout);
        give();
      } else requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  });
}

/**
 * The media position at a displayed frame, from the frames shown lately.
 *
 * A frame's media time says where the player's clock was only to within a
 * frame (33 ms at 30 fps): the frame stays on screen until the next one is
 * due, and each shows at a display refresh. Fed raw, that quantization
 * reads as drift and the session keeps nudging the rate. While the rate
 * holds, the player's clock is `media = rate × display time + offset`;
 * the offset averaged over the last second of frames is good to a few ms.
 * A seek, a stall or a rate change (any frame off the line by more than a
 * frame) starts the average again.
 */
class FrameFit {
  private offsets: number[] = [];
  private sum = 0;
  private rate = 0;
  private last: number | null = null;

  add(displayMs: number, mediaMs: number, rate: number): number {
    const offset = mediaMs - rate * displayMs;
    const frame = this.last === null ? 0 : Math.abs(mediaMs - this.last);
    const n = this.offsets.length;
    const off = n ? Math.abs(offset - this.sum / n) : 0;
    if (rate !== this.rate || rate === 0 || off > Math.max(frame * 1.5, 50)) {
      this.offsets = [];
      this.sum = 0;
      this.rate = rate;
    }
    this.last = mediaMs;
    this.offsets.push(offset);
    this.sum += offset;
    if (this.offsets.length > 60) this.sum -= this.offsets.shift() ?? 0;
    if (this.offsets.length < 4) return mediaMs;
    return this.sum / this.offsets.length + rate * displayMs;
  }
}
