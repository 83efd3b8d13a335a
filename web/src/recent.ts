// Channels this browser visited, newest first, for the home page.
const KEY = "videosync.recent";
const MAX = 8;

export interface Recent {
  id: string;
  name: string;
}

export function recentChannels(): Recent[] {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) ?? "[]") as unknown;
    return Array.isArray(v) ? (v as Recent[]).filter((r) => typeof r?.id === "string" && typeof r?.name === "string") : [];
  } catch {
    return [];
  }
}

export function rememberChannel(r: Recent): void {
  const rest = recentChannels().filter((x) => x.id !== r.id);
  localStorage.setItem(KEY, JSON.stringify([r, ...rest].slice(0, MAX)));
}
