// Upload: resumable with tus (pause, resume after a reload), then the
// processing progress until the video is ready, then play it in its channel.
import { useEffect, useRef, useState } from "preact/hooks";
import * as tus from "tus-js-client";
import { accessToken, api, currentUser } from "../api";
import type { Channel, Page as ApiPage, Video } from "../api";
import { navigate, query } from "../router";
import { streamEvents } from "../sse";
import { ErrorBox, Page, Spinner, formatBytes, formatDuration, useLoad } from "../ui/common";

const CHUNK = 8 * 1024 * 1024;

type Phase = "pick" | "uploading" | "paused" | "processing" | "ready" | "failed";

interface Sample {
  t: number;
  bytes: number;
}

/** The message of a tus failure: the server's error body when there is one. */
function tusMessage(err: Error): string {
  const res = (err as tus.DetailedError).originalResponse;
  if (res) {
    const body = res.getBody();
    try {
      const j = JSON.parse(body) as { error?: { message?: string } };
      if (j.error?.message) return j.error.message;
    } catch {
      /* not JSON */
    }
    if (body) return body;
    return `the server answered ${res.getStatus()}`;
  }
  return /network|failed to fetch/i.test(err.message) ? "the connection was lost; the upload will resume when you press Resume" : err.message;
}

export function Upload() {
  const user = currentUser.value;
  const channels = useLoad(
    (signal) =>
      user ? api<ApiPage<Channel>>("GET", "/me/channels?limit=200", undefined, { signal }) : Promise.resolve({ items: [] } as ApiPage<Channel>),
    [user?.id],
  );
  const allowed = (channels.data?.items ?? []).filter((c) => c.my_permissions.includes("upload"));
  const [picked, setChannel] = useState(query.value.get("channel") ?? "");
  // The channel chosen, else the first the person may upload to (derived,
  // so a file dropped as soon as the page shows goes to a channel).
  const channel = picked || (allowed[0]?.id ?? "");
  const [title, setTitle] = useState("");
  const [phase, setPhase] = useState<Phase>("pick");
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [sent, setSent] = useState(0);
  const [total, setTotal] = useState(0);
  const [rate, setRate] = useState(0);
  const [stage, setStage] = useState<{ stage: string; percent: number } | null>(null);
  const [video, setVideo] = useState<Video | null>(null);
  const [dragging, setDragging] = useState(false);
  const upload = useRef<tus.Upload | null>(null);
  const videoId = useRef<string | null>(null);
  const samples = useRef<Sample[]>([]);
  const stream = useRef<AbortController | null>(null);

  useEffect(
    () => () => {
      void upload.current?.abort();
      stream.current?.abort();
    },
    [],
  );

  const follow = (id: string) => {
    setPhase("processing");
    const ctl = new AbortController();
    stream.current = ctl;
    void streamEvents(
      `/api/v1/videos/${encodeURIComponent(id)}/events`,
      (e) => {
        let data: Record<string, unknown>;
        try {
          data = JSON.parse(e.data) as Record<string, unknown>;
        } catch {
          return;
        }
        if (e.event === "snapshot" || e.event === "progress") {
          const p = (e.event === "snapshot" ? data.progress : data) as Record<string, unknown> | null;
          const inner = (p?.progress as Record<string, unknown> | undefined) ?? p;
          if (inner && typeof inner.stage === "string") {
            setStage({ stage: inner.stage, percent: typeof inner.percent === "number" ? inner.percent : 0 });
          }
          if (e.event === "snapshot" && data.video) setVideo(data.video as Video);
        } else if (e.event === "end") {
          const v = data as unknown as Video;
          setVideo(v);
          setPhase(v.status === "ready" ? "ready" : "failed");
          return true;
        } else if (e.event === "error") {
          setNotice((data.message as string) ?? "the progress stream failed");
        }
      },
      ctl.signal,
      setNotice,
    );
  };

  const start = async (file: File) => {
    setError(null);
    setNotice(null);
    if (!channel) {
      setError("Choose a channel first.");
      return;
    }
    setTotal(file.size);
    setSent(0);
    samples.current = [];
    videoId.current = null;
    const up = new tus.Upload(file, {
      endpoint: "/api/v1/uploads",
      chunkSize: CHUNK,
      retryDelays: [0, 1000, 3000, 5000, 10000],
      metadata: { channel, filename: file.name, title: title.trim() || file.name.replace(/\.[^.]+$/, "") },
      removeFingerprintOnSuccess: true,
      onBeforeRequest: async (req) => {
        const token = await accessToken();
        if (token) req.setHeader("Authorization", `Bearer ${token}`);
      },
      onAfterResponse: (_req, res) => {
        const id = res.getHeader("Videosync-Video-Id");
        if (id) videoId.current = id;
      },
      onProgress: (bytes, all) => {
        setSent(bytes);
        setTotal(all);
        const now = performance.now();
        const s = samples.current;
        s.push({ t: now, bytes });
        while (s.length > 2 && now - s[0].t > 5000) s.shift();
        if (s.length >= 2 && now > s[0].t) setRate(((bytes - s[0].bytes) * 1000) / (now - s[0].t));
      },
      onError: (err) => {
        setError(tusMessage(err));
        const status = (err as tus.DetailedError).originalResponse?.getStatus() ?? 0;
        // Refused for good (not media, too large, no right to upload): pick
        // another file. Anything else (the network, the server away): resume.
        const final = status >= 400 && status < 500 && ![408, 409, 423, 429].includes(status);
        setPhase(final ? "pick" : "paused");
        if (final) void up.abort(true).catch(() => undefined);
      },
      onSuccess: () => {
        const id = videoId.current;
        if (id) follow(id);
        else setError("the upload finished, but the server did not name its video");
      },
    });
    upload.current = up;
    const previous = await up.findPreviousUploads();
    if (previous.length > 0) {
      up.resumeFromPreviousUpload(previous[0]);
      setNotice("Resuming your earlier upload of this file.");
    }
    setPhase("uploading");
    up.start();
  };

  const pick = (files: FileList | null) => {
    const f = files?.[0];
    if (f) void start(f);
  };

  if (!user) {
    return (
      <Page title="Upload">
        <section class="card narrow">
          <h1>Upload a video</h1>
          <p>
            <a href="/login?next=/upload">Sign in</a> to upload.
          </p>
        </section>
      </Page>
    );
  }

  const pct = total > 0 ? (sent / total) * 100 : 0;
  const left = rate > 0 ? ((total - sent) / rate) * 1000 : NaN;
  return (
    <Page title="Upload">
      <section class="card">
        <h1>Upload a video</h1>
        {channels.loading && <Spinner />}
        <ErrorBox error={channels.error} retry={channels.reload} />
        {channels.data && allowed.length === 0 && (
          <p>
            You may upload to none of your channels. <a href="/new">Make a channel</a> first.
          </p>
        )}
        {allowed.length > 0 && phase === "pick" && (
          <div class="stack">
            <label>
              Channel
              <select value={channel} onChange={(e) => setChannel(e.currentTarget.value)}>
                {allowed.map((c) => (
                  <option key={c.id} value={c.id}>
                    {c.name}
                  </option>
                ))}
              </select>
            </label>
            <label>
              Title <span class="muted">(optional; else the file's name)</span>
              <input maxLength={200} value={title} onInput={(e) => setTitle(e.currentTarget.value)} />
            </label>
            <label
              class={dragging ? "drop active" : "drop"}
              onDragOver={(e) => {
                e.preventDefault();
                setDragging(true);
              }}
              onDragLeave={() => setDragging(false)}
              onDrop={(e) => {
                e.preventDefault();
                setDragging(false);
                pick(e.dataTransfer?.files ?? null);
              }}
            >
              <span>Drop a video here, or choose a file</span>
              <input type="file" accept="video/*,audio/*,.mkv,.mov,.mp4,.webm,.ts" onChange={(e) => pick(e.currentTarget.files)} />
            </label>
          </div>
        )}
        {(phase === "uploading" || phase === "paused") && (
          <div class="stack">
            <progress max={100} value={pct} aria-label="Upload progress" />
            <p role="status">
              {pct.toFixed(0)} % · {formatBytes(sent)} of {formatBytes(total)}
              {phase === "uploading" && rate > 0 && ` · ${formatBytes(rate)}/s · ${formatDuration(left)} left`}
              {phase === "paused" && " · paused"}
            </p>
            <div class="row">
              {phase === "uploading" ? (
                <button
                  type="button"
                  onClick={() => {
                    void upload.current?.abort();
                    setPhase("paused");
                  }}
                >
                  Pause
                </button>
              ) : (
                <button
                  type="button"
                  class="primary"
                  onClick={() => {
                    setError(null);
                    setPhase("uploading");
                    upload.current?.start();
                  }}
                >
                  Resume
                </button>
              )}
            </div>
          </div>
        )}
        {phase === "processing" && (
          <div class="stack">
            <progress max={100} value={stage?.percent ?? 0} aria-label="Processing progress" />
            <p role="status">
              Processing: {stage ? `${stage.stage}, ${stage.percent.toFixed(0)} %` : "waiting for a worker"}
            </p>
          </div>
        )}
        {phase === "ready" && video && (
          <div class="stack">
            <p role="status">“{video.title}” is ready.</p>
            <button type="button" class="primary" onClick={() => navigate(`/c/${video.channel_id ?? channel}?video=${video.id}&play=1`)}>
              Play it in the channel
            </button>
          </div>
        )}
        {phase === "failed" && video && (
          <p class="error" role="alert">
            “{video.title}” could not be processed: {video.failure_reason ?? "unknown reason"}.
          </p>
        )}
        {notice && <p class="muted">{notice}</p>}
        <ErrorBox error={error} />
        {(phase === "ready" || phase === "failed") && (
          <button
            type="button"
            onClick={() => {
              setPhase("pick");
              setVideo(null);
              setStage(null);
            }}
          >
            Upload another
          </button>
        )}
      </section>
    </Page>
  );
}
