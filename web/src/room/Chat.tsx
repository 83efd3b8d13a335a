// The room's chat: history, live messages, typing, reactions, mentions and
// moderation. Every name and message is rendered as text, never as HTML.
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { api, currentUser, describe } from "../api";
import type { Channel, Message, Page as ApiPage } from "../api";
import { formatTime } from "../ui/common";
import type { ChatLine, RoomConnection } from "./connection";

const REACTIONS = ["👍", "😂", "🎉", "❤️", "😮"];
const MAX_CHARS = 2000;

export function Chat({ room, channel, perms }: { room: RoomConnection; channel: Channel; perms: Set<string> }) {
  const draftKey = `videosync.draft.${channel.id}`;
  const [text, setText] = useState(() => sessionStorage.getItem(draftKey) ?? "");
  const [error, setError] = useState<string | null>(null);
  const [editing, setEditing] = useState<number | null>(null);
  const list = useRef<HTMLOListElement>(null);
  const stick = useRef(true);
  const user = currentUser.value;
  const me = room.me.value;
  const canChat = perms.has("chat");
  const moderate = perms.has("moderate_chat");

  // History, once: the newest page, merged below what came live meanwhile.
  useEffect(() => {
    const ctl = new AbortController();
    api<ApiPage<Message>>("GET", `/channels/${channel.id}/messages?limit=50`, undefined, { signal: ctl.signal }).then(
      (page) =>
        room.addHistory(
          page.items.map(
            (m): ChatLine => ({
              id: m.id,
              from: null,
              name: m.author_name,
              text: m.deleted ? "" : m.text,
              at: Date.parse(m.created_at),
              mentionsMe: false,
              deleted: m.deleted,
              edited: !!m.edited_at,
              mine: !!user && m.author_id === user.id,
            }),
          ),
        ),
      () => undefined,
    );
    return () => ctl.abort();
  }, [room, channel.id]);

  // A draft survives a reload and a sign-in in between.
  useEffect(() => {
    if (text) sessionStorage.setItem(draftKey, text);
    else sessionStorage.removeItem(draftKey);
  }, [text]);

  const lines = room.chat.value;
  useLayoutEffect(() => {
    const el = list.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [lines.length]);

  const send = async (e?: Event) => {
    e?.preventDefault();
    const t = text.trim();
    if (!t) return;
    setError(null);
    if (editing !== null) {
      try {
        await api("PATCH", `/channels/${channel.id}/messages/${editing}`, { text: t });
        setEditing(null);
        setText("");
      } catch (err) {
        setError(describe(err));
      }
      return;
    }
    room.sendChat(t);
    room.sendTyping(false);
    setText("");
    stick.current = true;
  };

  const remove = async (id: number) => {
    setError(null);
    try {
      await api("DELETE", `/channels/${channel.id}/messages/${id}`);
    } catch (err) {
      setError(describe(err));
    }
  };

  const typingNames = room.typing.value.filter((id) => id !== me).map((id) => room.nameOf(id));

  return (
    <div class="chat">
      <ol
        class="messages"
        ref={list}
        aria-label="Chat messages"
        aria-live="polite"
        tabIndex={0}
        onScroll={(e) => {
          const el = e.currentTarget;
          stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
        }}
      >
        {lines.map((l, i) => {
          const mine = l.mine || (l.from !== null && l.from === me);
          return (
            <li key={l.id ?? `live-${i}`} class={l.mentionsMe ? "mention" : undefined}>
              <span class="who">{l.name}</span>
              <time class="muted">{formatTime(new Date(l.at).toISOString())}</time>
              {l.deleted ? <em class="muted">message deleted</em> : <span class="text">{l.text}</span>}
              {l.edited && !l.deleted && <span class="muted"> (edited)</span>}
              {l.id !== undefined && !l.deleted && (mine || moderate) && (
                <span class="actions">
                  {mine && (
                    <button
                      type="button"
                      class="link"
                      onClick={() => {
                        setEditing(l.id ?? null);
                        setText(l.text);
                      }}
                    >
                      Edit
                    </button>
                  )}
                  <button type="button" class="link" onClick={() => void remove(l.id as number)}>
                    Delete
                  </button>
                </span>
              )}
            </li>
          );
        })}
      </ol>
      <p class="typing muted" aria-live="polite">
        {typingNames.length === 1 ? `${typingNames[0]} is typing…` : typingNames.length > 1 ? `${typingNames.join(", ")} are typing…` : " "}
      </p>
      <div class="reaction-row" role="group" aria-label="React">
        {REACTIONS.map((r) => (
          <button key={r} type="button" class="icon" disabled={!canChat || room.state.value !== "open"} onClick={() => room.react(r)} aria-label={`React ${r}`}>
            {r}
          </button>
        ))}
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <form class="composer" onSubmit={send}>
        <textarea
          aria-label={editing !== null ? "Edit message" : "Message"}
          placeholder={canChat ? "Say something (@name to mention)" : "You cannot write in this channel"}
          disabled={!canChat}
          maxLength={MAX_CHARS}
          rows={2}
          value={text}
          onInput={(e) => {
            const v = e.currentTarget.value;
            setText(v);
            room.sendTyping(v.trim().length > 0);
          }}
          onBlur={() => room.sendTyping(false)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && !e.shiftKey && !e.isComposing) void send(e);
            if (e.key === "Escape" && editing !== null) {
              setEditing(null);
              setText("");
            }
          }}
        />
        <button type="submit" class="primary" disabled={!canChat || !text.trim() || room.state.value !== "open"}>
          {editing !== null ? "Save" : "Send"}
        </button>
      </form>
    </div>
  );
}
