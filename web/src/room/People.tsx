// Who is in the room: role, buffering, round trip and each member's sync error.
import type { RoomConnection, RoomMember } from "./connection";

function syncClass(m: RoomMember): string {
  if (m.sync_error_ms === undefined) return "idle";
  const a = Math.abs(m.sync_error_ms);
  return a < 40 ? "good" : a < 250 ? "warn" : "bad";
}

const ORDER: Record<string, number> = { owner: 0, admin: 1, moderator: 2, viewer: 3, guest: 4 };

export function People({ room }: { room: RoomConnection }) {
  const me = room.me.value;
  const members = [...room.members.value.values()].sort(
    (a, b) => (ORDER[a.role] ?? 9) - (ORDER[b.role] ?? 9) || a.name.localeCompare(b.name),
  );
  return (
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
        {members.map((m) => (
          <tr key={m.id} data-member={m.id}>
            <td>
              {m.name}
              {m.id === me && <span class="muted"> (you)</span>}
              {m.buffering && <span class="badge warn">buffering</span>}
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
        ))}
      </tbody>
    </table>
  );
}
