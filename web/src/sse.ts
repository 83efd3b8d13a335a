// Server-Sent Events over fetch: EventSource cannot send the Authorization
// header. Reconnects with `Last-Event-ID` until `onEvent` returns true (the
// stream's last word) or `signal` aborts.
import { accessToken } from "./api";

export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

export async function streamEvents(
  url: string,
  onEvent: (e: SseEvent) => boolean | void,
  signal: AbortSignal,
  onTrouble: (message: string | null) => void,
): Promise<void> {
  let lastId: string | undefined;
  let delay = 1000;
  while (!signal.aborted) {
    try {
      const headers: Record<string, string> = { Accept: "text/event-stream" };
      const token = await accessToken();
      if (token) headers.Authorization = `Bearer ${token}`;
      if (lastId) headers["Last-Event-ID"] = lastId;
      const res = await fetch(url, { headers, signal });
      if (res.status === 401) {
        await accessToken(true);
        continue;
      }
      if (!res.ok || !res.body) {
        if (res.status === 404) {
          onTrouble("this video is gone");
          return;
        }
        throw new Error(`the progress stream answered ${res.status}`);
      }
      onTrouble(null);
      delay = 1000;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      let event: SseEvent = { event: "message", data: "" };
      let hasData = false;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, "");
          buf = buf.slice(nl + 1);
          if (line === "") {
            if (hasData) {
              if (event.id !== undefined) lastId = event.id;
              if (onEvent(event) === true) {
                await reader.cancel();
                return;
              }
            }
            event = { event: "message", data: "" };
            hasData = false;
          } else if (!line.startsWith(":")) {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event.event = val;
            else if (field === "data") {
              event.data = hasData ? `${event.data}\n${val}` : val;
              hasData = true;
            } else if (field === "id") event.id = val;
          }
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      onTrouble(`lost the progress stream (${e instanceof Error ? e.message : String(e)}); reconnecting`);
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 15000);
  }
}
