// The shared player: the video, its controls (enabled by the member's
// permissions), the sync indicator and the room's banners.
import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "../api";
import type { Channel, PlaybackUrls } from "../api";
import { formatDuration } from "../ui/common";
import type { RoomConnection } from "./connection";
import { Player } from "./player";
import { parseStoryboard, thumbAt } from "./storyboard";
import type { Thumb } from "./storyboard";

const RATES = [0.5, 0.75, 1, 1.25, 1.5, 2];

/** The playback URLs of a room's `media`: a video id, or a playlist URL. */
async function resolve(media: string): Promise<PlaybackUrls> {
  if (/^(https?:)?\//.test(media)) return { master_url: media };
  return api<PlaybackUrls>("GET", `/videos/${encodeURIComponent(media)}/playback`);
}

function syncLabel(room: RoomConnection, err: number | null): [string, string] {
  if (!room.correcting.value) return ["off", "not following the room"];
  if (room.behindMs.value > 0) return ["warn", `${(room.behindMs.value / 1000).toFixed(1)} s behind`];
  const p = room.playback.value;
  if (!p?.media) return ["idle", "no video"];
  if (!p.playing) return ["idle", "paused"];
  if (err === null) return ["idle", "starting"];
  const a = Math.abs(err);
  if (a < 40) return ["good", "in sync"];
  if (a < 250) return ["warn", "correcting"];
  return ["bad", "out of sync"];
}

export function Watch({ room, channel, perms }: { room: RoomConnection; channel: Channel; perms: Set<string> }) {
  const videoRef = useRef<HTMLVideoElement>(null);
  const [player, setPlayer] = useState<Player | null>(null);
  const [mediaError, setMediaError] = useState<string | null>(null);
  const [thumbs, setThumbs] = useState<Thumb[]>([]);
  const [hover, setHover] = useState<{ x: number; s: number } | null>(null);
  const [now, setNow] = useState(0);
  const [duration, setDuration] = useState(0);
  const [poster, setPoster] = useState<string | undefined>(undefined);
  const control = perms.has("control_playback");
  const playback = room.playback.value;
  const media = playback?.media ?? null;

  useEffect(() => {
    const v = videoRef.current;
    if (!v) return;
    const p = new Player(
      v,
      (e) => room.playerEvent(e),
      (m, t) => room.frameShown(m, t),
    );
    room.attach(p);
    setPlayer(p);
    const time = () => setNow(v.currentTime);
    const dur = () => setDuration(Number.isFinite(v.duration) ? v.duration : 0);
    v.addEventListener("timeupdate", time);
    v.addEventListener("durationchange", dur);
    return () => {
      v.removeEventListener("timeupdate", time);
      v.removeEventListener("durationchange", dur);
      room.attach(null);
      p.destroy();
    };
  }, [room]);

  useEffect(() => {
    if (!player) return;
    setMediaError(null);
    setThumbs([]);
    setPoster(undefined);
    if (!media) {
      void player.load(null);
      return;
    }
    let live = true;
    resolve(media).then(
      async (urls) => {
        if (!live) return;
        setPoster(urls.poster_url ?? undefined);
        await player.load(urls.master_url);
        if (urls.storyboard_url) {
          const r = await fetch(urls.storyboard_url);
          if (r.ok && live) setThumbs(parseStoryboard(await r.text(), r.url));
        }
      },
      () => live && setMediaError("This video cannot be played here (it was removed, or is not ready)."),
    );
    return () => {
      live = false;
    };
  }, [player, media]);

  // Keyboard shortcuts, when no text field has the focus.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement | null;
      if (t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT", "BUTTON"].includes(t.tagName))) return;
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      const v = videoRef.current;
      if (!v) return;
      switch (e.key) {
        case " ":
        case "k":
          if (control) togglePlay();
          break;
        case "ArrowLeft":
        case "j":
          if (control) seekBy(e.key === "j" ? -10 : -5);
          break;
        case "ArrowRight":
        case "l":
          if (control) seekBy(e.key === "l" ? 10 : 5);
          break;
        case "m":
          v.muted = !v.muted;
          break;
        case "f":
          fullscreen();
          break;
        default:
          return;
      }
      e.preventDefault();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  });

  const togglePlay = () => room.command({ command: playback?.playing ? "pause" : "play" });
  const seekBy = (s: number) => {
    const v = videoRef.current;
    const at = v ? v.currentTime * 1000 : (playback?.position_ms ?? 0);
    room.command({ command: "seek", position_ms: Math.max(at + s * 1000, 0) });
  };
  const fullscreen = () => {
    const box = videoRef.current?.closest(".room");
    if (document.fullscreenElement) void document.exitFullscreen();
    else void box?.requestFullscreen?.();
  };

  const [cls, label] = syncLabel(room, room.syncError.value);
  const err = room.syncError.value;
  const thumb = hover ? thumbAt(thumbs, hover.s) : null;
  const waiting = room.waiting.value;
  const me = room.me.value;
  const waitedOn = waiting.some((w) => w.member === me);
  const policy = room.policy.value;

  return (
    <section class="watch" aria-label="Player">
      <ConnectionBar room={room} />
      {waiting.length > 0 && (
        <div class="banner" role="status">
          The room waits for {waiting.map((w) => room.nameOf(w.member)).join(", ")}.
          {waitedOn && (
            <button type="button" onClick={() => room.dontWait()}>
              I'll catch up
            </button>
          )}
        </div>
      )}
      {room.behindMs.value > 0 && (
        <div class="banner" role="status">
          You are {(room.behindMs.value / 1000).toFixed(1)} s behind the room.
          <button type="button" onClick={() => room.catchUp()}>
            Catch up
          </button>
        </div>
      )}
      <div class="stage">
        <video ref={videoRef} playsInline poster={poster} aria-label="Shared video" />
        {!media && <div class="stage-empty">Nothing is playing. {perms.has("control_playback") ? "Pick a video in the queue panel." : "Waiting for a host to start a video."}</div>}
        {(mediaError || player?.error.value) && <div class="stage-empty error">{mediaError ?? player?.error.value}</div>}
        <div class="reactions" aria-live="polite">
          {room.reactions.value.map((r) => (
            <span key={r.key} class="reaction" title={r.name}>
              {r.emoji}
            </span>
          ))}
        </div>
      </div>
      <div class="controls" role="group" aria-label="Playback controls">
        <button type="button" class="icon" onClick={togglePlay} disabled={!control || !media} aria-label={playback?.playing ? "Pause" : "Play"}>
          <Icon name={playback?.playing ? "pause" : "play"} />
        </button>
        <div class="seek">
          <input
            type="range"
            aria-label="Seek"
            min={0}
            max={Math.max(duration, 0.001)}
            step={0.1}
            value={now}
            disabled={!control || !media || duration === 0}
            onChange={(e) => room.command({ command: "seek", position_ms: Number(e.currentTarget.value) * 1000 })}
            onPointerMove={(e) => {
              const r = e.currentTarget.getBoundingClientRect();
              const x = Math.min(Math.max(e.clientX - r.left, 0), r.width);
              setHover({ x, s: (x / r.width) * duration });
            }}
            onPointerLeave={() => setHover(null)}
          />
          {hover && duration > 0 && (
            <div class="preview" style={{ left: `${hover.x}px` }} aria-hidden="true">
              {thumb && (
                <div
                  class="thumb"
                  style={{
                    width: `${thumb.w}px`,
                    height: `${thumb.h}px`,
                    backgroundImage: `url("${thumb.url}")`,
                    backgroundPosition: `-${thumb.x}px -${thumb.y}px`,
                  }}
                />
              )}
              <span>{formatDuration(hover.s * 1000)}</span>
            </div>
          )}
        </div>
        <span class="time">
          {formatDuration(now * 1000)} / {formatDuration(duration * 1000)}
        </span>
        <label class="compact">
          <span class="sr-only">Speed</span>
          <select
            aria-label="Speed"
            disabled={!control || !media}
            value={String(playback?.rate ?? 1)}
            onChange={(e) => room.command({ command: "set_rate", rate: Number(e.currentTarget.value) })}
          >
            {RATES.map((r) => (
              <option key={r} value={String(r)}>
                {r}×
              </option>
            ))}
          </select>
        </label>
        {player && player.levels.value.length > 1 && (
          <label class="compact">
            <span class="sr-only">Quality</span>
            <select aria-label="Quality" value={String(player.level.value)} onChange={(e) => player.setLevel(Number(e.currentTarget.value))}>
              <option value="-1">Auto</option>
              {player.levels.value.map((l) => (
                <option key={l.index} value={String(l.index)}>
                  {l.height}p
                </option>
              ))}
            </select>
          </label>
        )}
        {player?.mutedByPolicy.value && (
          <button type="button" onClick={() => player.unmute()}>
            Unmute
          </button>
        )}
        <button type="button" class="icon" onClick={fullscreen} aria-label="Full screen">
          <Icon name="fullscreen" />
        </button>
      </div>
      <div class="syncbar">
        <span class={`sync ${cls}`} data-testid="sync-indicator" title="Distance between the frame on screen and the room's timeline">
          <span class="dot" aria-hidden="true" />
          {label}
          {err !== null && room.correcting.value && playback?.playing ? ` · ${err >= 0 ? "+" : ""}${err.toFixed(0)} ms` : ""}
        </span>
        <label class="row compact">
          <input type="checkbox" checked={room.correcting.value} onChange={(e) => room.setCorrection(e.currentTarget.checked)} />
          Follow the room
        </label>
        {room.rtt.value !== null && <span class="muted">RTT {room.rtt.value.toFixed(0)} ms</span>}
        {policy && (
          <span class="muted">
            {policy.behind === "wait"
              ? `If someone falls behind, the room waits (up to ${Math.round(policy.wait_timeout_ms / 1000)} s).`
              : policy.behind === "leave"
                ? "If someone falls behind, they catch up on their own."
                : "If someone falls behind, they skip ahead."}
          </span>
        )}
        {!control && <span class="muted">Only members allowed to control playback can play, pause or seek in {channel.name}.</span>}
      </div>
    </section>
  );
}

function ConnectionBar({ room }: { room: RoomConnection }) {
  const s = room.state.value;
  const notice = room.notice.value;
  return (
    <div class="connbar">
      <span class={`conn ${s}`} role="status" data-testid="connection-state">
        {s === "open" ? "Live" : s === "connecting" ? "Connecting…" : s === "reconnecting" ? "Reconnecting…" : "Disconnected"}
      </span>
      {s === "closed" && (
        <>
          <span>{room.closedReason.value}</span>
          <button type="button" onClick={() => room.reconnect()}>
            Reconnect
          </button>
        </>
      )}
      {notice && (
        <span class="notice" role="alert">
          {notice}
          <button type="button" class="link" aria-label="Dismiss" onClick={() => (room.notice.value = null)}>
            ×
          </button>
        </span>
      )}
    </div>
  );
}

const ICONS: Record<string, string> = {
  play: "M8 5v14l11-7z",
  pause: "M6 5h4v14H6zM14 5h4v14h-4z",
  fullscreen: "M4 4h6v2H6v4H4zM14 4h6v6h-2V6h-4zM4 14h2v4h4v2H4zM18 14h2v6h-6v-2h4z",
};

function Icon({ name }: { name: string }) {
  return (
    <svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" focusable="false">
      <path d={ICONS[name]} fill="currentColor" />
    </svg>
  );
}
