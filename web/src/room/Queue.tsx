// The channel's queue, and its videos to play or queue.
import { api } from "../api";
import type { Channel, Page as ApiPage, Video } from "../api";
import { ErrorBox, Spinner, formatDuration, useLoad } from "../ui/common";
import type { RoomConnection } from "./connection";

export function Queue({ room, channel, perms }: { room: RoomConnection; channel: Channel; perms: Set<string> }) {
  const videos = useLoad(
    (signal) => api<ApiPage<Video>>("GET", `/channels/${channel.id}/videos?limit=200`, undefined, { signal }),
    [channel.id],
  );
  const ready = (videos.data?.items ?? []).filter((v) => v.status === "ready");
  const titles = new Map(ready.map((v) => [v.id, v.title]));
  const queue = room.queue.value;
  const manage = perms.has("manage_queue");
  const control = perms.has("control_playback");
  const live = room.state.value === "open";
  const current = room.playback.value?.media ?? null;
  return (
    <div class="queue">
      <h2 class="h3">Up next</h2>
      {queue.length === 0 ? (
        <p class="muted">The queue is empty{manage ? ": add videos below." : "."}</p>
      ) : (
        <ol class="queue-list">
          {queue.map((item, i) => (
            <li key={item.id}>
              <span>{titles.get(item.media) ?? item.media}</span>
              {manage && (
                <span class="actions">
                  <button type="button" class="icon" disabled={!live || i === 0} aria-label="Move up" onClick={() => room.command({ command: "queue_reorder", item: item.id, to: i - 1 })}>
                    ↑
                  </button>
                  <button
                    type="button"
                    class="icon"
                    disabled={!live || i === queue.length - 1}
                    aria-label="Move down"
                    onClick={() => room.command({ command: "queue_reorder", item: item.id, to: i + 1 })}
                  >
                    ↓
                  </button>
                  <button type="button" class="icon" disabled={!live} aria-label="Remove" onClick={() => room.command({ command: "queue_remove", item: item.id })}>
                    ×
                  </button>
                </span>
              )}
            </li>
          ))}
        </ol>
      )}
      <h2 class="h3">Videos in {channel.name}</h2>
      {videos.loading && <Spinner />}
      <ErrorBox error={videos.error} retry={videos.reload} />
      {videos.data && ready.length === 0 && <p class="muted">No video is ready yet.</p>}
      <ul class="library">
        {ready.map((v) => (
          <li key={v.id}>
            <span>
              {v.title}
              {v.duration_s ? <span class="muted"> · {formatDuration(v.duration_s * 1000)}</span> : null}
              {current === v.id && <span class="badge">playing</span>}
            </span>
            <span class="actions">
              {control && (
                <button type="button" disabled={!live} onClick={() => room.playNow(v.id)}>
                  Play now
                </button>
              )}
              {manage && (
                <button type="button" disabled={!live} onClick={() => room.command({ command: "queue_add", media: v.id })}>
                  Queue
                </button>
              )}
            </span>
          </li>
        ))}
      </ul>
    </div>
  );
}
