// Acting on a channel's member: the REST calls the management page and the
// room's member list share, and the rank rule both ask before offering them.
import { ROLES, api } from "./api";
import { useLoad } from "./ui/common";

/** Minutes a mute from the UI lasts. */
export const MUTE_MINUTES = 10;

/** A role's rank: 0 is the owner; unknown roles (guests) rank last. */
export function rank(role: string | null | undefined): number {
  const i = ROLES.indexOf((role ?? "") as (typeof ROLES)[number]);
  return i < 0 ? ROLES.length : i;
}

/** Whether `mine` may act on a member with role `theirs` (the server decides; this hides what it would refuse). */
export function outranks(mine: string | null | undefined, theirs: string | null | undefined): boolean {
  return rank(mine) < rank(theirs);
}

export const mute = (channel: string, user: string) =>
  api("PUT", `/channels/${channel}/mutes/${user}`, { seconds: MUTE_MINUTES * 60 });

export const unmute = (channel: string, user: string) => api("DELETE", `/channels/${channel}/mutes/${user}`);

interface MuteList {
  items: { user_id: string; expires_at: string }[];
}

/** The channel's mutes in force, by user id (loaded only for someone who may moderate the chat). */
export function useMutes(channel: string, allowed: boolean) {
  const list = useLoad(
    (signal) =>
      allowed ? api<MuteList>("GET", `/channels/${channel}/mutes`, undefined, { signal }) : Promise.resolve({ items: [] }),
    [channel, allowed],
  );
  const until = new Map((list.data?.items ?? []).map((m) => [m.user_id, new Date(m.expires_at)]));
  return { until, error: list.error, reload: list.reload };
}

/** "until 14:05" (or with the date when it is not today). */
export function untilText(d: Date): string {
  const today = new Date().toDateString() === d.toDateString();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return today ? `until ${time}` : `until ${d.toLocaleDateString()} ${time}`;
}

export const remove = (channel: string, user: string) => api("DELETE", `/channels/${channel}/members/${user}`);

export const ban = (channel: string, user: string, reason: string) =>
  api("PUT", `/channels/${channel}/bans/${user}`, { reason });
