// Home: search as you type, my channels, recently watched, public channels.
import { useEffect, useState } from "preact/hooks";
import { api, currentUser, describe } from "../api";
import type { Channel, Page as ApiPage, Video } from "../api";
import { recentChannels } from "../recent";
import { ErrorBox, Page, Spinner, formatDuration, useLoad } from "../ui/common";

function ChannelList({ items, empty }: { items: Channel[]; empty: string }) {
  if (items.length === 0) return <p class="muted">{empty}</p>;
  return (
    <ul class="cards">
      {items.map((c) => (
        <li key={c.id} class="card channel-card">
          <a href={`/c/${c.id}`}>
            <strong>{c.name}</strong>
          </a>
          {c.description && <p class="muted clamp">{c.description}</p>}
          <span class="badge">{c.visibility}</span>
          {c.my_role && <span class="badge">{c.my_role}</span>}
        </li>
      ))}
    </ul>
  );
}

function Search() {
  const [q, setQ] = useState("");
  const [results, setResults] = useState<Video[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const term = q.trim();
    if (!term) {
      setResults(null);
      setError(null);
      return;
    }
    const ctl = new AbortController();
    // Results as you type, without a request per keystroke.
    const t = window.setTimeout(() => {
      api<ApiPage<Video>>("GET", `/search/videos?q=${encodeURIComponent(term)}&limit=20`, undefined, { signal: ctl.signal }).then(
        (r) => {
          setResults(r.items);
          setError(null);
        },
        (e: unknown) => {
          if (!ctl.signal.aborted) setError(describe(e));
        },
      );
    }, 150);
    return () => {
      window.clearTimeout(t);
      ctl.abort();
    };
  }, [q]);
  return (
    <section aria-labelledby="search-h">
      <h2 id="search-h">Find a video</h2>
      <input
        type="search"
        aria-label="Search videos"
        placeholder="Search titles, tags and descriptions"
        value={q}
        onInput={(e) => setQ(e.currentTarget.value)}
      />
      <ErrorBox error={error} />
      {results && (
        <ul class="results" aria-live="polite">
          {results.length === 0 && <li class="muted">No video matches “{q.trim()}”.</li>}
          {results.map((v) => (
            <li key={v.id}>
              {v.channel_id ? <a href={`/c/${v.channel_id}?video=${v.id}`}>{v.title}</a> : <span>{v.title}</span>}
              {v.duration_s ? <span class="muted"> · {formatDuration(v.duration_s * 1000)}</span> : null}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

export function Home() {
  const user = currentUser.value;
  const pub = useLoad((signal) => api<ApiPage<Channel>>("GET", "/channels?limit=50", undefined, { signal }), []);
  const mine = useLoad(
    (signal) => (user ? api<ApiPage<Channel>>("GET", "/me/channels?limit=50", undefined, { signal }) : Promise.resolve(null)),
    [user?.id],
  );
  const recent = recentChannels();
  return (
    <Page title="Home">
      <div class="hero">
        <h1>Watch together, in sync</h1>
        {user ? (
          <p>
            <a class="button primary" href="/new">
              New channel
            </a>{" "}
            <a class="button" href="/upload">
              Upload a video
            </a>
          </p>
        ) : (
          <p>
            <a class="button primary" href="/signup">
              Create an account
            </a>{" "}
            <a class="button" href="/login">
              Sign in
            </a>
          </p>
        )}
      </div>
      <Search />
      {user && (
        <section aria-labelledby="mine-h">
          <h2 id="mine-h">My channels</h2>
          {mine.loading ? <Spinner /> : <ErrorBox error={mine.error} retry={mine.reload} />}
          {mine.data && <ChannelList items={mine.data.items} empty="You are in no channel yet." />}
        </section>
      )}
      {recent.length > 0 && (
        <section aria-labelledby="recent-h">
          <h2 id="recent-h">Recently watched</h2>
          <ul class="inline-list">
            {recent.map((r) => (
              <li key={r.id}>
                <a href={`/c/${r.id}`}>{r.name}</a>
              </li>
            ))}
          </ul>
        </section>
      )}
      <section aria-labelledby="public-h">
        <h2 id="public-h">Public channels</h2>
        {pub.loading ? <Spinner /> : <ErrorBox error={pub.error} retry={pub.reload} />}
        {pub.data && <ChannelList items={pub.data.items} empty="No public channel yet." />}
      </section>
    </Page>
  );
}
