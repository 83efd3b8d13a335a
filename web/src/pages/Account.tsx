// The signed-in person's account: display name, password, deleting it.
import { useState } from "preact/hooks";
import { api, currentUser, logout } from "../api";
import type { User } from "../api";
import { navigate } from "../router";
import { ErrorBox, NewPassword, Page, useAction } from "../ui/common";

export function Account() {
  const user = currentUser.value;
  const [name, setName] = useState(user?.display_name ?? "");
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [confirm, setConfirm] = useState("");
  const [done, setDone] = useState<string | null>(null);
  const profile = useAction();
  const password = useAction();
  const removal = useAction();
  if (!user) {
    return (
      <Page title="Account">
        <section class="card narrow">
          <h1>Account</h1>
          <p>
            <a href="/login?next=/account">Sign in</a> to see your account.
          </p>
        </section>
      </Page>
    );
  }
  return (
    <Page title="Account">
      <h1>Your account</h1>
      <p class="muted">
        @{user.username}
        {user.is_admin ? " · administrator of this instance" : ""}
      </p>
      {done && <p role="status">{done}</p>}
      <section class="card" aria-labelledby="profile-h">
        <h2 id="profile-h">Profile</h2>
        <form
          class="stack"
          onSubmit={(e) => {
            e.preventDefault();
            void profile.run(async () => {
              const u = await api<User>("PATCH", "/me", { display_name: name.trim() });
              currentUser.value = { ...user, ...u };
              setDone("Your display name is saved.");
            });
          }}
        >
          <label>
            Display name
            <input required maxLength={64} value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </label>
          <ErrorBox error={profile.error} />
          <button type="submit" disabled={profile.busy}>
            Save
          </button>
        </form>
      </section>
      <section class="card" aria-labelledby="password-h">
        <h2 id="password-h">Password</h2>
        <form
          class="stack"
          onSubmit={(e) => {
            e.preventDefault();
            void password.run(async () => {
              await api("PUT", "/me/password", { current_password: current, new_password: next });
              setCurrent("");
              setNext("");
              setDone("Your password is changed.");
            });
          }}
        >
          <label>
            Current password
            <input type="password" autocomplete="current-password" required value={current} onInput={(e) => setCurrent(e.currentTarget.value)} />
          </label>
          <NewPassword label="New password" value={next} onValue={setNext} />
          <ErrorBox error={password.error} />
          <button type="submit" disabled={password.busy}>
            Change password
          </button>
        </form>
      </section>
      <section class="card" aria-labelledby="delete-h">
        <h2 id="delete-h">Delete the account</h2>
        <p>Your channels go with it. This cannot be undone.</p>
        <form
          class="stack"
          onSubmit={(e) => {
            e.preventDefault();
            void removal.run(async () => {
              await api("DELETE", "/me", { password: confirm });
              await logout();
              navigate("/", true);
            });
          }}
        >
          <label>
            Your password, to confirm
            <input type="password" autocomplete="current-password" required value={confirm} onInput={(e) => setConfirm(e.currentTarget.value)} />
          </label>
          <ErrorBox error={removal.error} />
          <button type="submit" class="danger" disabled={removal.busy}>
            Delete my account
          </button>
        </form>
      </section>
    </Page>
  );
}
