// Small pieces every page uses.
import type { ComponentChildren, ComponentType } from "preact";
import { useEffect, useState } from "preact/hooks";
import { describe } from "../api";

export interface Loaded<T> {
  data: T | null;
  error: string | null;
  loading: boolean;
  reload: () => void;
}

/** Runs `load` when `deps` change; its result, its error (as a sentence), and a way to run it again. */
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [round, setRound] = useState(0);
  useEffect(() => {
    const ctl = new AbortController();
    setLoading(true);
    setError(null);
    load(ctl.signal).then(
      (d) => {
        if (ctl.signal.aborted) return;
        setData(d);
        setLoading(false);
      },
      (e: unknown) => {
        if (ctl.signal.aborted) return;
        setError(describe(e));
        setLoading(false);
      },
    );
    return () => ctl.abort();
  }, [...deps, round]);
  return { data, error, loading, reload: () => setRound((r) => r + 1) };
}

export interface Action {
  /** A call is running (forms disable their button). */
  busy: boolean;
  /** The last call's failure, as a sentence. */
  error: string | null;
  /** Runs `f`, keeping `busy` and `error`; resolves whether it succeeded. */
  run: (f: () => Promise<unknown>) => Promise<boolean>;
}

/** What every form and action button needs around an API call. */
export function useAction(): Action {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const run = async (f: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    try {
      await f();
      return true;
    } catch (e) {
      setError(describe(e));
      return false;
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, run };
}

/** A field for a new password: at least 8 characters, offered to password managers as new. */
export function NewPassword({ label, value, onValue, name }: { label: string; value: string; onValue: (v: string) => void; name?: string }) {
  return (
    <label>
      {label} <span class="muted">(at least 8 characters)</span>
      <input
        name={name}
        type="password"
        autocomplete="new-password"
        required
        minLength={8}
        value={value}
        onInput={(e) => onValue(e.currentTarget.value)}
      />
    </label>
  );
}

export function ErrorBox({ error, retry }: { error: string | null; retry?: () => void }) {
  if (!error) return null;
  return (
    <div class="error" role="alert">
      <span>{error}</span>
      {retry && (
        <button type="button" class="link" onClick={retry}>
          Try again
        </button>
      )}
    </div>
  );
}

export function Spinner({ label = "Loading" }: { label?: string }) {
  return (
    <p class="muted" role="status" aria-live="polite">
      {label}…
    </p>
  );
}

export function Page({ title, children, wide }: { title: string; children: ComponentChildren; wide?: boolean }) {
  useEffect(() => {
    document.title = `${title} · videosync`;
  }, [title]);
  return <main class={wide ? "page wide" : "page"}>{children}</main>;
}

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return "?";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "--:--";
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

export function formatTime(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** A page whose code loads when it is first shown. */
export function lazyPage<P extends object>(load: () => Promise<ComponentType<P>>): ComponentType<P> {
  let loaded: ComponentType<P> | null = null;
  let failed: string | null = null;
  let pending: Promise<void> | null = null;
  return function Lazy(props: P) {
    const [, setTick] = useState(0);
    if (loaded) {
      const C = loaded;
      return <C {...props} />;
    }
    if (failed) {
      return (
        <Page title="Error">
          <ErrorBox error={`This page could not be loaded (${failed}); reload to try again.`} retry={() => location.reload()} />
        </Page>
      );
    }
    pending ??= load().then(
      (c) => {
        loaded = c;
      },
      (e: unknown) => {
        failed = describe(e);
        pending = null;
      },
    );
    void pending.then(() => setTick((t) => t + 1));
    return <Spinner />;
  };
}
