// Who is in the room: role, buffering, round trip and each member's sync
// error; for moderators, muting, removing and banning a member.
import { useState } from "preact/hooks";
import { ROLES, api } from "../api";
import type { Channel } from "../api";
import { ErrorBox, useAction } from "../ui/common";
import type { RoomConnection, RoomMember } from "./connection";

function syncClass(m: RoomMember): string {
  if (m.sync_error_ms === undefined) return "idle";
  const a = Math.abs(m.sync_error_ms);
  return a < 40 ? "good" : a < 250 ? "warn" : "bad";
}

const rank = (role: string | null | undefined) => {
  const i = ROLES.indexOf((role ?? "") as (typeof ROLES)[number]);
  return i < 0 ? ROLES.length : i;
};

export function People({ room, channel, perms }: { room: RoomConnection; channel: Channel; perms: Set<string> }) {
  const [notice, setNotice] = useState<string | null>(null);
  const me = room.me.value;
  const members = [...room.members.value.values()].sort((a, b) => rank(a.role) - rank(b.role) || a.name.localeCompare(b.name));
  const mine = rank(channel.my_role);
  const mute = perms.has("moderate_chat");
  const kick = perms.has("kick_ban");
  const { error, run } = useAction();
  const act = async (what: string, method: string, path: string, body?: unknown) => {
    setNotice(null);
    if (await run(() => api(method, path, body))) setNotice(what);
  };
  return (
    <>
      <table class="people">
        <caption class="sr-only">People in the room</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Role</th>
            <th scope="col">Sync</th>
            <th scope="col">RTT</th>
          </tr>
        </thead>
        <tbody>
          {members.map((m) => {
            const account = m.account;
            const actions = account !== undefined && m.id !== me && mine < rank(m.role) && (mute || kick);
            return (
              <tr key={m.id} data-member={m.id}>
                <td>
                  {m.name}
                  {m.id === me && <span class="muted"> (you)</span>}
                  {m.buffering && <span class="badge warn">buffering</span>}
                  {actions && (
                    <span class="actions">
                      {mute && (
                        <button
                          type="button"
                          class="link"
                          onClick={() => void act(`${m.name} is muted for 10 minutes.`, "PUT", `/channels/${channel.id}/mutes/${account}`, { seconds: 600 })}
                        >
                          Mute
                        </button>
                      )}
                      {kick && (
                        <button
                          type="button"
                          class="link"
                          onClick={() => void act(`${m.name} was removed.`, "DELETE", `/channels/${channel.id}/members/${account}`)}
                        >
                          Remove
                        </button>
                      )}
                      {kick && (
                        <button
                          type="button"
                          class="link"
                          onClick={() =>
                            void act(`${m.name} is banned.`, "PUT", `/channels/${channel.id}/bans/${account}`, { reason: "banned from the room" })
                          }
                        >
                          Ban
                        </button>
                      )}
                    </span>
                  )}
                </td>
                <td>{m.role}</td>
                <td>
                  <span class={`sync ${syncClass(m)}`}>
                    <span class="dot" aria-hidden="true" />
                    {m.sync_error_ms === undefined ? "–" : `${m.sync_error_ms >= 0 ? "+" : ""}${m.sync_error_ms.toFixed(0)} ms`}
                  </span>
                </td>
                <td>{m.rtt_ms === undefined ? "–" : `${m.rtt_ms.toFixed(0)} ms`}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <ErrorBox error={error} />
      {notice && (
        <p role="status" class="muted">
          {notice}
        </p>
      )}
    </>
  );
}
