// Seek-bar previews from the storyboard: a WebVTT file whose cues name a
// region of a sprite sheet (`sheet_000.jpg#xywh=0,0,160,90`).

export interface Thumb {
  start: number;
  end: number;
  url: string;
  x: number;
  y: number;
  w: number;
  h: number;
}

function seconds(t: string): number {
  const parts = t.trim().split(":").map(Number);
  if (parts.some((p) => !Number.isFinite(p))) return NaN;
  return parts.reduce((acc, p) => acc * 60 + p, 0);
}

/** The cues of a storyboard at `base` (sheet URLs are relative to it). */
export function parseStoryboard(text: string, base: string): Thumb[] {
  const out: Thumb[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\S+)\s+-->\s+(\S+)/.exec(lines[i]);
    if (!m) continue;
    const target = lines[i + 1]?.trim() ?? "";
    const hash = target.lastIndexOf("#xywh=");
    if (hash < 0) continue;
    const xywh = target.slice(hash + 6).split(",").map(Number);
    let url: string;
    try {
      url = new URL(target.slice(0, hash), base).href;
    } catch {
      continue;
    }
    const [x, y, w, h] = xywh;
    const start = seconds(m[1]);
    const end = seconds(m[2]);
    if ([x, y, w, h, start, end].every(Number.isFinite)) out.push({ start, end, url, x, y, w, h });
  }
  return out;
}

export function thumbAt(thumbs: Thumb[], s: number): Thumb | null {
  let lo = 0;
  let hi = thumbs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (thumbs[mid].end <= s) lo = mid + 1;
    else if (thumbs[mid].start > s) hi = mid - 1;
    else return thumbs[mid];
  }
  return null;
}
