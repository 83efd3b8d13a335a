// The REST API client: one error shape, bearer tokens that refresh
// themselves, and one refresh at a time across every tab of the browser
// (refresh tokens rotate, and presenting a used one revokes the login).
import { signal } from "@preact/signals";

const BASE = "/api/v1";
const STORE = "videosync.auth";

export interface User {
  id: string;
  username: string;
  display_name: string;
  email?: string | null;
  is_admin: boolean;
  created_at: string;
}

interface Tokens {
  access_token: string;
  refresh_token: string;
  /** Local wall-clock ms when the access token stops being accepted. */
  access_expires_at: number;
  user: User;
}

interface TokenResponse {
  access_token: string;
  expires_in: number;
  refresh_token: string;
  user: User;
}

/** An error the server answered (or a network failure, status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** The signed-in user, or null. */
export const currentUser = signal<User | null>(load()?.user ?? null);
/** Set when a session ended on its own (expired, revoked): the UI asks to sign in again. */
export const sessionExpired = signal(false);

/** The person chose to go on signed out after their session ended. */
export function continueSignedOut(): void {
  sessionExpired.value = false;
  currentUser.value = null;
}

function load(): Tokens | null {
  try {
    const raw = localStorage.getItem(STORE);
    return raw ? (JSON.parse(raw) as Tokens) : null;
  } catch {
    return null;
  }
}

function save(t: Tokens | null): void {
  if (t) localStorage.setItem(STORE, JSON.stringify(t));
  else localStorage.removeItem(STORE);
  currentUser.value = t?.user ?? null;
}

// Another tab signed in, refreshed or signed out.
window.addEventListener("storage", (e) => {
  if (e.key === STORE) currentUser.value = load()?.user ?? null;
});

function fromResponse(r: TokenResponse): Tokens {
  // Refresh a little early: the clock of this machine and the server's may differ.
  return {
    access_token: r.access_token,
    refresh_token: r.refresh_token,
    access_expires_at: Date.now() + r.expires_in * 1000 - 30_000,
    user: r.user,
  };
}

async function withLock<T>(f: () => Promise<T>): Promise<T> {
  if ("locks" in navigator) return navigator.locks.request("videosync.refresh", f);
  return f();
}

/** A fresh access token (refreshing it when needed), or null when signed out. */
export async function accessToken(forceRefresh = false): Promise<string | null> {
  const seen = load();
  if (!seen) return null;
  if (!forceRefresh && seen.access_expires_at > Date.now()) return seen.access_token;
  return withLock(async () => {
    // Another tab may have refreshed while this one waited for the lock.
    const now = load();
    if (!now) return null;
    if (now.access_token !== seen.access_token && now.access_expires_at > Date.now()) return now.access_token;
    try {
      const r = await request<TokenResponse>("POST", "/auth/refresh", { refresh_token: now.refresh_token }, { auth: false });
      const t = fromResponse(r);
      save(t);
      return t.access_token;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        // The login ended (expired, revoked, signed out elsewhere). The page
        // keeps its user until the person signs in again or chooses to go
        // on signed out, so nothing on it is torn down meanwhile.
        localStorage.removeItem(STORE);
        sessionExpired.value = true;
        return null;
      }
      throw e;
    }
  });
}

interface RequestOptions {
  auth?: boolean;
  signal?: AbortSignal;
}

async function request<T>(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (opts.auth !== false) {
    const token = await accessToken();
    if (token) headers.Authorization = `Bearer ${token}`;
  }
  let res: Response;
  try {
    res = await fetch(BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: opts.signal,
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === "AbortError") throw e;
    throw new ApiError(0, "network", "the server could not be reached; check your connection");
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    const err = (json as { error?: { code?: string; message?: string } } | null)?.error;
    const retry = Number(res.headers.get("Retry-After") ?? "");
    throw new ApiError(
      res.status,
      err?.code ?? "http_" + res.status,
      err?.message ?? `the server answered ${res.status}`,
      Number.isFinite(retry) && retry > 0 ? retry : undefined,
    );
  }
  return json as T;
}

/** Calls the API; an expired access token is refreshed once and the call repeated. */
export async function api<T>(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<T> {
  try {
    return await request<T>(method, path, body, opts);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401 && e.code === "token_expired" && opts.auth !== false) {
      await accessToken(true);
      return request<T>(method, path, body, opts);
    }
    throw e;
  }
}

export async function register(username: string, password: string, displayName?: string): Promise<User> {
  const body: Record<string, string> = { username, password };
  if (displayName) body.display_name = displayName;
  const r = await request<TokenResponse>("POST", "/auth/register", body, { auth: false });
  save(fromResponse(r));
  sessionExpired.value = false;
  return r.user;
}

export async function login(loginName: string, password: string): Promise<User> {
  const r = await request<TokenResponse>("POST", "/auth/login", { login: loginName, password }, { auth: false });
  save(fromResponse(r));
  sessionExpired.value = false;
  return r.user;
}

export async function logout(): Promise<void> {
  const t = load();
  save(null);
  if (t) {
    await request("POST", "/auth/logout", { refresh_token: t.refresh_token }, { auth: false }).catch(() => undefined);
  }
}

// ---------------------------------------------------------------- types

export interface Page<T> {
  items: T[];
  next?: string | null;
}

export interface Channel {
  id: string;
  name: string;
  description: string;
  owner_id: string;
  visibility: "public" | "unlisted" | "private";
  allow_guests: boolean;
  settings: Record<string, unknown> | null;
  version: number;
  created_at: string;
  updated_at: string;
  my_role?: string | null;
  my_permissions: string[];
}

export interface Video {
  id: string;
  channel_id?: string | null;
  owner_id?: string | null;
  title: string;
  description: string;
  tags: string[];
  status: string;
  failure_reason?: string | null;
  duration_s?: number | null;
  renditions: { name: string; width: number; height: number; bandwidth: number; frame_rate: number }[];
  created_at: string;
}

export interface Person {
  id: string;
  username: string;
  display_name: string;
}

export interface Member {
  user: Person;
  role: string;
  joined_at: string;
}

export interface Invite {
  code: string;
  link?: string | null;
  channel_id: string;
  role: string;
  max_uses?: number | null;
  uses: number;
  expires_at?: string | null;
  revoked: boolean;
}

export interface Ban {
  user_id: string;
  reason: string;
  created_at: string;
  expires_at?: string | null;
}

export interface Message {
  id: number;
  author_id?: string | null;
  author_name: string;
  text: string;
  created_at: string;
  edited_at?: string | null;
  deleted: boolean;
}

export interface PlaybackUrls {
  master_url: string;
  poster_url?: string | null;
  storyboard_url?: string | null;
}

export interface DeadJob {
  id: string;
  kind: string;
  video_id?: string | null;
  attempts: number;
  last_error?: string | null;
  finished_at?: string | null;
}

export const ROLES = ["owner", "admin", "moderator", "viewer"] as const;
export const PERMISSIONS = [
  "control_playback",
  "manage_queue",
  "upload",
  "chat",
  "moderate_chat",
  "invite",
  "kick_ban",
  "edit_channel",
] as const;

/** The message to show a person for any failure. */
export function describe(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}
