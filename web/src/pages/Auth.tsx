// Sign in and sign up.
import { useState } from "preact/hooks";
import { login, register } from "../api";
import { navigate, query } from "../router";
import { ErrorBox, NewPassword, Page, useAction } from "../ui/common";

/** The sign-in form; `onDone` replaces the default (go where the person was headed). */
export function LoginForm({ onDone }: { onDone?: () => void }) {
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const { busy, error, run } = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      await login(name.trim(), password);
      if (onDone) onDone();
      else navigate(safeNext(), true);
    });
  };
  return (
    <form class="stack" onSubmit={submit}>
      <label>
        Username or e-mail
        <input name="login" autocomplete="username" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label>
        Password
        <input
          name="password"
          type="password"
          autocomplete="current-password"
          required
          value={password}
          onInput={(e) => setPassword(e.currentTarget.value)}
        />
      </label>
      <ErrorBox error={error} />
      <button type="submit" class="primary" disabled={busy}>
        {busy ? "Signing in…" : "Sign in"}
      </button>
    </form>
  );
}

/** Where to go after signing in: a path of this app only (`?next=`). */
function safeNext(): string {
  const next = query.value.get("next");
  return next && next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

export function Login() {
  return (
    <Page title="Sign in">
      <section class="card narrow">
        <h1>Sign in</h1>
        <LoginForm />
        <p class="muted">
          New here? <a href={`/signup${location.search}`}>Create an account</a>
        </p>
      </section>
    </Page>
  );
}

export function Signup() {
  const [username, setUsername] = useState("");
  const [displayName, setDisplayName] = useState("");
  const [password, setPassword] = useState("");
  const { busy, error, run } = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      await register(username.trim(), password, displayName.trim() || undefined);
      navigate(safeNext(), true);
    });
  };
  return (
    <Page title="Create an account">
      <section class="card narrow">
        <h1>Create an account</h1>
        <form class="stack" onSubmit={submit}>
          <label>
            Username
            <input
              name="username"
              autocomplete="username"
              required
              minLength={3}
              maxLength={32}
              value={username}
              onInput={(e) => setUsername(e.currentTarget.value)}
            />
          </label>
          <label>
            Display name <span class="muted">(optional)</span>
            <input name="display_name" maxLength={64} value={displayName} onInput={(e) => setDisplayName(e.currentTarget.value)} />
          </label>
          <NewPassword label="Password" name="password" value={password} onValue={setPassword} />
          <ErrorBox error={error} />
          <button type="submit" class="primary" disabled={busy}>
            {busy ? "Creating…" : "Create account"}
          </button>
        </form>
        <p class="muted">
          Have an account? <a href={`/login${location.search}`}>Sign in</a>
        </p>
      </section>
    </Page>
  );
}
