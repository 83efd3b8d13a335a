// Channel management: details and room rules, invites, members and roles,
// the permission matrix, bans and mutes.
import { useState } from "preact/hooks";
import { PERMISSIONS, ROLES, api, currentUser } from "../api";
import type { Ban, Channel, Invite, Member, Page as ApiPage } from "../api";
import { MUTE_MINUTES, ban, mute, outranks, remove, unmute, untilText, useMutes } from "../moderation";
import { navigate } from "../router";
import { ErrorBox, Page, Spinner, useAction, useLoad } from "../ui/common";

export function Manage({ id }: { id: string }) {
  const channel = useLoad((signal) => api<Channel>("GET", `/channels/${encodeURIComponent(id)}`, undefined, { signal }), [id]);
  const c = channel.data;
  if (!c) {
    return (
      <Page title="Manage">
        {channel.loading ? <Spinner /> : <ErrorBox error={channel.error} retry={channel.reload} />}
      </Page>
    );
  }
  const perms = new Set(c.my_permissions);
  return (
    <Page title={`Manage ${c.name}`}>
      <p>
        <a href={`/c/${c.id}`}>← Back to {c.name}</a>
      </p>
      <h1>Manage {c.name}</h1>
      {perms.has("edit_channel") && <Details channel={c} reload={channel.reload} />}
      {perms.has("invite") && <Invites channel={c} />}
      <Members channel={c} perms={perms} />
      {c.my_role === "owner" && <Matrix channel={c} />}
      {perms.has("kick_ban") && <Bans channel={c} />}
      {c.my_role === "owner" && <DeleteChannel channel={c} />}
    </Page>
  );
}

function Details({ channel, reload }: { channel: Channel; reload: () => void }) {
  const s: Record<string, unknown> = channel.settings ?? {};
  const setting = (key: string, fallback: string) => {
    const v = s[key];
    return typeof v === "string" || typeof v === "number" ? String(v) : fallback;
  };
  const [name, setName] = useState(channel.name);
  const [description, setDescription] = useState(channel.description);
  const [visibility, setVisibility] = useState(channel.visibility);
  const [guests, setGuests] = useState(channel.allow_guests);
  const [slow, setSlow] = useState(setting("slow_mode_seconds", "0"));
  const [behind, setBehind] = useState(setting("behind", "wait"));
  const [waitS, setWaitS] = useState(setting("wait_timeout_seconds", "10"));
  const [longest, setLongest] = useState(setting("max_message_chars", "2000"));
  const [saved, setSaved] = useState(false);
  const { error, run } = useAction();
  const save = (e: Event) => {
    e.preventDefault();
    setSaved(false);
    void run(async () => {
      await api("PATCH", `/channels/${channel.id}`, {
        name: name.trim(),
        description: description.trim(),
        visibility,
        allow_guests: guests && visibility !== "private",
        settings: {
          ...s,
          slow_mode_seconds: Number(slow),
          max_message_chars: Number(longest),
          behind,
          wait_timeout_seconds: Number(waitS),
        },
        expected_version: channel.version,
      });
      setSaved(true);
      reload();
    });
  };
  return (
    <section class="card" aria-labelledby="details-h">
      <h2 id="details-h">Channel</h2>
      <form class="stack" onSubmit={save}>
        <label>
          Name
          <input required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          Description
          <textarea rows={2} maxLength={5000} value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
        </label>
        <label>
          Visibility
          <select value={visibility} onChange={(e) => setVisibility(e.currentTarget.value as Channel["visibility"])}>
            <option value="public">Public</option>
            <option value="unlisted">Unlisted</option>
            <option value="private">Private</option>
          </select>
        </label>
        <label class="row">
          <input type="checkbox" checked={guests} disabled={visibility === "private"} onChange={(e) => setGuests(e.currentTarget.checked)} />
          Admit guests without an account
        </label>
        <label>
          Slow mode (seconds between messages; 0: off)
          <input type="number" min={0} max={3600} value={slow} onInput={(e) => setSlow(e.currentTarget.value)} />
        </label>
        <label>
          Longest chat message (characters)
          <input type="number" min={1} max={2000} value={longest} onInput={(e) => setLongest(e.currentTarget.value)} />
        </label>
        <label>
          When someone falls behind
          <select value={behind} onChange={(e) => setBehind(e.currentTarget.value)}>
            <option value="wait">The room waits for them</option>
            <option value="leave">They catch up on their own</option>
            <option value="skip">They skip ahead</option>
          </select>
        </label>
        {behind === "wait" && (
          <label>
            Wait at most (seconds)
            <input type="number" min={1} max={120} value={waitS} onInput={(e) => setWaitS(e.currentTarget.value)} />
          </label>
        )}
        <ErrorBox error={error} />
        {saved && <p role="status">Saved.</p>}
        <button type="submit" class="primary">
          Save
        </button>
      </form>
    </section>
  );
}

function Invites({ channel }: { channel: Channel }) {
  const list = useLoad((signal) => api<ApiPage<Invite>>("GET", `/channels/${channel.id}/invites`, undefined, { signal }), [channel.id]);
  const [role, setRole] = useState("viewer");
  const [uses, setUses] = useState("");
  const { error, run } = useAction();
  const link = (i: Invite) => i.link ?? `${location.origin}/invite/${i.code}`;
  return (
    <section class="card" aria-labelledby="invites-h">
      <h2 id="invites-h">Invite links</h2>
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          void run(async () => {
            const body: Record<string, unknown> = { role };
            if (uses) body.max_uses = Number(uses);
            await api("POST", `/channels/${channel.id}/invites`, body);
            list.reload();
          });
        }}
      >
        <label>
          Role
          <select value={role} onChange={(e) => setRole(e.currentTarget.value)}>
            {ROLES.filter((r) => r !== "owner").map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
        <label>
          Uses <span class="muted">(empty: unlimited)</span>
          <input type="number" min={1} value={uses} onInput={(e) => setUses(e.currentTarget.value)} />
        </label>
        <button type="submit">Make a link</button>
      </form>
      <ErrorBox error={error ?? list.error} />
      <ul class="plain">
        {(list.data?.items ?? [])
          .filter((i) => !i.revoked)
          .map((i) => (
            <li key={i.code} class="row">
              <input readOnly aria-label={`Invite link for ${i.role}`} value={link(i)} onFocus={(e) => e.currentTarget.select()} />
              <span class="muted">
                {i.role} · used {i.uses}
                {i.max_uses ? ` of ${i.max_uses}` : ""}
              </span>
              <button type="button" onClick={() => void navigator.clipboard?.writeText(link(i))}>
                Copy
              </button>
              <button
                type="button"
                onClick={() =>
                  void run(async () => {
                    await api("DELETE", `/channels/${channel.id}/invites/${encodeURIComponent(i.code)}`);
                    list.reload();
                  })
                }
              >
                Revoke
              </button>
            </li>
          ))}
      </ul>
    </section>
  );
}

function Members({ channel, perms }: { channel: Channel; perms: Set<string> }) {
  const list = useLoad((signal) => api<ApiPage<Member>>("GET", `/channels/${channel.id}/members?limit=200`, undefined, { signal }), [channel.id]);
  const { error, run } = useAction();
  const mutes = useMutes(channel.id, perms.has("moderate_chat"));
  const me = currentUser.value?.id;
  return (
    <section class="card" aria-labelledby="members-h">
      <h2 id="members-h">Members</h2>
      <ErrorBox error={error ?? list.error ?? mutes.error} />
      <table>
        <caption class="sr-only">Members and their roles</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Role</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {(list.data?.items ?? []).map((m) => {
            const above = outranks(channel.my_role, m.role) && m.user.id !== me;
            const mutedUntil = mutes.until.get(m.user.id);
            return (
              <tr key={m.user.id}>
                <td>
                  {m.user.display_name} <span class="muted">@{m.user.username}</span>
                  {mutedUntil && <span class="badge">muted {untilText(mutedUntil)}</span>}
                </td>
                <td>
                  {perms.has("edit_channel") && above ? (
                    <select
                      aria-label={`Role of ${m.user.display_name}`}
                      value={m.role}
                      onChange={(e) => {
                        const role = e.currentTarget.value;
                        void run(async () => {
                          await api("PUT", `/channels/${channel.id}/members/${m.user.id}`, { role });
                          list.reload();
                        });
                      }}
                    >
                      {ROLES.filter((r) => r !== "owner" && outranks(channel.my_role, r)).map((r) => (
                        <option key={r} value={r}>
                          {r}
                        </option>
                      ))}
                    </select>
                  ) : (
                    m.role
                  )}
                </td>
                <td class="row">
                  {above && perms.has("moderate_chat") && (
                    <button
                      type="button"
                      onClick={() =>
                        void run(async () => {
                          await (mutedUntil ? unmute : mute)(channel.id, m.user.id);
                          mutes.reload();
                        })
                      }
                    >
                      {mutedUntil ? "Unmute" : `Mute ${MUTE_MINUTES} min`}
                    </button>
                  )}
                  {above && perms.has("kick_ban") && (
                    <>
                      <button
                        type="button"
                        onClick={() =>
                          void run(async () => {
                            await remove(channel.id, m.user.id);
                            list.reload();
                          })
                        }
                      >
                        Remove
                      </button>
                      <button
                        type="button"
                        onClick={() =>
                          void run(async () => {
                            await ban(channel.id, m.user.id, "banned from the channel page");
                            list.reload();
                          })
                        }
                      >
                        Ban
                      </button>
                    </>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}

interface Matrix {
  matrix: Record<string, Record<string, boolean>>;
}

function Matrix({ channel }: { channel: Channel }) {
  const m = useLoad((signal) => api<Matrix>("GET", `/channels/${channel.id}/permissions`, undefined, { signal }), [channel.id]);
  const { error, run } = useAction();
  const roles = ROLES.filter((r) => r !== "owner");
  return (
    <section class="card" aria-labelledby="matrix-h">
      <h2 id="matrix-h">Permissions</h2>
      <ErrorBox error={error ?? m.error} />
      {m.data && (
        <div class="scroll-x">
          <table class="matrix">
            <caption class="sr-only">What each role may do</caption>
            <thead>
              <tr>
                <th scope="col">Permission</th>
                {roles.map((r) => (
                  <th key={r} scope="col">
                    {r}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {PERMISSIONS.map((p) => (
                <tr key={p}>
                  <th scope="row">{p.replace(/_/g, " ")}</th>
                  {roles.map((r) => (
                    <td key={r}>
                      <input
                        type="checkbox"
                        aria-label={`${r} may ${p.replace(/_/g, " ")}`}
                        checked={!!m.data?.matrix[r]?.[p]}
                        onChange={(e) => {
                          const allowed = e.currentTarget.checked;
                          void run(async () => {
                            await api("PATCH", `/channels/${channel.id}/permissions`, { changes: [{ role: r, permission: p, allowed }] });
                            m.reload();
                          });
                        }}
                      />
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function Bans({ channel }: { channel: Channel }) {
  const list = useLoad((signal) => api<ApiPage<Ban>>("GET", `/channels/${channel.id}/bans`, undefined, { signal }), [channel.id]);
  const { error, run } = useAction();
  const items = list.data?.items ?? [];
  return (
    <section class="card" aria-labelledby="bans-h">
      <h2 id="bans-h">Bans</h2>
      <ErrorBox error={error ?? list.error} />
      {items.length === 0 && <p class="muted">Nobody is banned.</p>}
      <ul class="plain">
        {items.map((b) => (
          <li key={b.user_id} class="row">
            <span>
              {b.user_id} <span class="muted">{b.reason}</span>
            </span>
            <button
              type="button"
              onClick={() =>
                void run(async () => {
                  await api("DELETE", `/channels/${channel.id}/bans/${b.user_id}`);
                  list.reload();
                })
              }
            >
              Lift
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}

function DeleteChannel({ channel }: { channel: Channel }) {
  const { busy, error, run } = useAction();
  const [name, setName] = useState("");
  return (
    <section class="card" aria-labelledby="delete-channel-h">
      <h2 id="delete-channel-h">Delete the channel</h2>
      <p>Its videos, chat and invites go with it. This cannot be undone.</p>
      <form
        class="stack"
        onSubmit={(e) => {
          e.preventDefault();
          void run(async () => {
            await api("DELETE", `/channels/${channel.id}`);
            navigate("/", true);
          });
        }}
      >
        <label>
          Type the channel's name to confirm
          <input required value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <ErrorBox error={error} />
        <button type="submit" class="danger" disabled={busy || name !== channel.name}>
          Delete {channel.name}
        </button>
      </form>
    </section>
  );
}
