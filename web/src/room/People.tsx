// Who is in the room: role, buffering, round trip and each member's sync
// error; for moderators, muting, removing and banning a member.
import { useState } from "preact/hooks";
import type { Channel } from "../api";
import { MUTE_MINUTES, ban, outranks, rank, remove, mute as muteMember, unmute, untilText, useMutes } from "../moderation";
import { ErrorBox, useAction } from "../ui/common";
import type { RoomConnection, RoomMember } from "./connection";

function syncClass(m: RoomMember): string {
  if (m.sync_error_ms === undefined) return "idle";
  const a = Math.abs(m.sync_error_ms);
  return a < 40 ? "good" : a < 250 ? "warn" : "bad";
}

export function People({ room, channel, perms }: { room: RoomConnection; channel: Channel; perms: Set<string> }) {
  const [notice, setNotice] = useState<string | null>(null);
  const me = room.me.value;
  const members = [...room.members.value.values()].sort((a, b) => rank(a.role) - rank(b.role) || a.name.localeCompare(b.name));
  const mute = perms.has("moderate_chat");
  const kick = perms.has("kick_ban");
  const { error, run } = useAction();
  const mutes = useMutes(channel.id, mute);
  const act = async (what: string, call: () => Promise<unknown>) => {
    setNotice(null);
    if (await run(call)) setNotice(what);
    mutes.reload();
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
            const actions = account !== undefined && m.id !== me && outranks(channel.my_role, m.role) && (mute || kick);
            const mutedUntil = account === undefined ? undefined : mutes.until.get(account);
            return (
              <tr key={m.id} data-member={m.id}>
                <td>
                  {m.name}
                  {m.id === me && <span class="muted"> (you)</span>}
                  {m.buffering && <span class="badge warn">buffering</span>}
                  {mutedUntil && <span class="badge">muted {untilText(mutedUntil)}</span>}
                  {actions && (
                    <span class="actions">
                      {mute && (
                        <button
                          type="button"
                          class="link"
                          onClick={() =>
                            void (mutedUntil
                              ? act(`${m.name} may chat again.`, () => unmute(channel.id, account))
                              : act(`${m.name} is muted for ${MUTE_MINUTES} minutes.`, () => muteMember(channel.id, account)))
                          }
                        >
                          {mutedUntil ? "Unmute" : "Mute"}
                        </button>
                      )}
                      {kick && (
                        <button
                          type="button"
                          class="link"
                          onClick={() => void act(`${m.name} was removed.`, () => remove(channel.id, account))}
                        >
                          Remove
                        </button>
                      )}
                      {kick && (
                        <button
                          type="button"
                          class="link"
                          onClick={() =>
                            void act(`${m.name} is banned.`, () => ban(channel.id, account, "banned from the room"))
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
      <ErrorBox error={error ?? mutes.error} />
      {notice && (
        <p role="status" class="muted">
          {notice}
        </p>
      )}
    </>
  );
}
