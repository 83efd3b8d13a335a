// The channel page: the shared player, chat, people and queue.
import { useEffect, useMemo, useState } from "preact/hooks";
import { ApiError, accessToken, api, currentUser, describe } from "../api";
import type { Channel as ChannelInfo } from "../api";
import { rememberChannel } from "../recent";
import { navigate, query } from "../router";
import { RoomConnection } from "../room/connection";
import { Chat } from "../room/Chat";
import { People } from "../room/People";
import { Queue } from "../room/Queue";
import { Watch } from "../room/Watch";
import { ErrorBox, Page, Spinner, useLoad } from "../ui/common";

interface GuestResponse {
  access_token: string;
  expires_in: number;
  display_name: string;
}

const GUEST_KEY = "videosync.guest";

/** A guest's token for this visit (kept in the tab, never in a URL). */
function guestCredential(name: string): (fresh: boolean) => Promise<string | null> {
  return async (fresh) => {
    const saved = sessionStorage.getItem(GUEST_KEY);
    if (saved && !fresh) {
      const g = JSON.parse(saved) as { token: string; until: number; name: string };
      if (g.until > Date.now() && g.name === name) return g.token;
    }
    const r = await api<GuestResponse>("POST", "/auth/guest", { display_name: name }, { auth: false });
    sessionStorage.setItem(
      GUEST_KEY,
      JSON.stringify({ token: r.access_token, until: Date.now() + r.expires_in * 1000 - 30_000, name }),
    );
    return r.access_token;
  };
}

export function ChannelPage({ id }: { id: string }) {
  const user = currentUser.value;
  const [guestName, setGuestName] = useState<string | null>(null);
  const channel = useLoad((signal) => api<ChannelInfo>("GET", `/channels/${encodeURIComponent(id)}`, undefined, { signal }), [id, user?.id]);
  const c = channel.data;
  useEffect(() => {
    if (c) rememberChannel({ id: c.id, name: c.name });
  }, [c?.id, c?.name]);

  if (channel.loading && !c) return <Page title="Channel"><Spinner /></Page>;
  if (channel.error || !c) {
    const missing = channel.error && /not found/i.test(channel.error);
    return (
      <Page title="Channel">
        <section class="card narrow">
          <h1>{missing ? "Channel not found" : "The channel could not be loaded"}</h1>
          <p>
            {missing
              ? user
                ? "It does not exist, or it is private and you are not a member. Ask for an invite link."
                : "It does not exist, or it is private. Sign in if you are a member."
              : channel.error}
          </p>
          <p>
            {!missing && (
              <button type="button" onClick={channel.reload}>
                Try again
              </button>
            )}{" "}
            {!user && <a href={`/login?next=${encodeURIComponent(location.pathname)}`}>Sign in</a>} <a href="/">Home</a>
          </p>
        </section>
      </Page>
    );
  }
  if (!user && guestName === null) {
    return <GuestGate channel={c} onJoin={setGuestName} />;
  }
  return <Room key={`${c.id}:${user?.id ?? "guest"}`} channel={c} guestName={guestName} reload={channel.reload} />;
}

function GuestGate({ channel, onJoin }: { channel: ChannelInfo; onJoin: (name: string) => void }) {
  const [name, setName] = useState("");
  const next = encodeURIComponent(location.pathname + location.search);
  return (
    <Page title={channel.name}>
      <section class="card narrow">
        <h1>{channel.name}</h1>
        {channel.allow_guests ? (
          <form
            class="stack"
            onSubmit={(e) => {
              e.preventDefault();
              if (name.trim()) onJoin(name.trim());
            }}
          >
            <label>
              Your name for this visit
              <input required maxLength={64} value={name} onInput={(e) => setName(e.currentTarget.value)} />
            </label>
            <button type="submit" class="primary">
              Watch as a guest
            </button>
          </form>
        ) : (
          <p>This channel admits people with an account.</p>
        )}
        <p class="muted">
          <a href={`/login?next=${next}`}>Sign in</a> or <a href={`/signup?next=${next}`}>create an account</a>.
        </p>
      </section>
    </Page>
  );
}

function Room({ channel, guestName, reload }: { channel: ChannelInfo; guestName: string | null; reload: () => void }) {
  const user = currentUser.value;
  const room = useMemo(() => {
    const credential = guestName !== null ? guestCredential(guestName) : (fresh: boolean) => accessToken(fresh);
    const name = () => guestName ?? currentUser.value?.display_name ?? currentUser.value?.username ?? "viewer";
    return new RoomConnection(channel.id, credential, name);
  }, [channel.id, guestName]);
  useEffect(() => () => room.close(), [room]);
  const [tab, setTab] = useState<"chat" | "people" | "queue">("chat");
  const [joinError, setJoinError] = useState<string | null>(null);
  const perms = new Set(channel.my_permissions);
  const videoParam = query.value.get("video");

  // `?video=ID&play=1` (after an upload): load it once the room is live.
  useEffect(() => {
    if (!videoParam || query.value.get("play") !== "1") return;
    return room.state.subscribe((s) => {
      if (s === "open" && perms.has("control_playback")) {
        room.playNow(videoParam);
        navigate(`/c/${channel.id}`, true);
      }
    });
  }, [room, videoParam]);

  const join = async () => {
    setJoinError(null);
    try {
      await api("POST", `/channels/${channel.id}/join`);
      reload();
    } catch (e) {
      setJoinError(e instanceof ApiError && e.code === "banned" ? "You are banned from this channel." : describe(e));
    }
  };

  return (
    <Page title={channel.name} wide>
      <header class="channel-head">
        <div>
          <h1>{channel.name}</h1>
          {channel.description && <p class="muted">{channel.description}</p>}
        </div>
        <div class="row">
          <span class="badge">{channel.visibility}</span>
          {channel.my_role ? <span class="badge">{channel.my_role}</span> : null}
          {user && !channel.my_role && channel.visibility !== "private" && (
            <button type="button" onClick={join}>
              Join channel
            </button>
          )}
          {perms.has("upload") && (
            <a class="button" href={`/upload?channel=${channel.id}`}>
              Upload
            </a>
          )}
          {(perms.has("edit_channel") || perms.has("invite") || perms.has("kick_ban") || perms.has("moderate_chat")) && (
            <a class="button" href={`/c/${channel.id}/manage`}>
              Manage
            </a>
          )}
        </div>
      </header>
      <ErrorBox error={joinError} />
      <div class="room">
        <Watch room={room} channel={channel} perms={perms} />
        <aside class="side" aria-label="Room">
          <div role="tablist" class="tabs" aria-label="Room panels">
            {(["chat", "people", "queue"] as const).map((t) => (
              <button
                key={t}
                type="button"
                role="tab"
                id={`tab-${t}`}
                aria-selected={tab === t}
                aria-controls={`panel-${t}`}
                onClick={() => setTab(t)}
              >
                {t === "chat" ? "Chat" : t === "people" ? `People (${room.members.value.size})` : `Queue (${room.queue.value.length})`}
              </button>
            ))}
          </div>
          <div role="tabpanel" id="panel-chat" aria-labelledby="tab-chat" hidden={tab !== "chat"} class="panel">
            <Chat room={room} channel={channel} perms={perms} />
          </div>
          <div role="tabpanel" id="panel-people" aria-labelledby="tab-people" hidden={tab !== "people"} class="panel">
            <People room={room} channel={channel} perms={perms} />
          </div>
          <div role="tabpanel" id="panel-queue" aria-labelledby="tab-queue" hidden={tab !== "queue"} class="panel">
            <Queue room={room} channel={channel} perms={perms} />
          </div>
        </aside>
      </div>
    </Page>
  );
}
