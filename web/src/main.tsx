// The app shell: header, routes, and the sign-in dialog of an expired session
// (over the page, so nothing typed is lost).
import { render } from "preact";
import { useEffect, useRef } from "preact/hooks";
import { continueSignedOut, currentUser, logout, sessionExpired } from "./api";
import { Account } from "./pages/Account";
import { Admin } from "./pages/Admin";
import { Login, LoginForm, Signup } from "./pages/Auth";
import { Home } from "./pages/Home";
import { InvitePage } from "./pages/Invite";
import { Manage } from "./pages/Manage";
import { NewChannel } from "./pages/NewChannel";
import { match, navigate, path } from "./router";
import { cycleTheme, theme } from "./theme";
import { Page, lazyPage } from "./ui/common";

// The channel page (the sync engine, and hls.js on demand) and the upload
// page (tus-js-client) load when first visited.
const ChannelPage = lazyPage(() => import("./pages/Channel").then((m) => m.ChannelPage));
const Upload = lazyPage(() => import("./pages/Upload").then((m) => m.Upload));
import "./styles.css";

function Routes() {
  const p = path.value;
  let m: Record<string, string> | null;
  if (match("/", p)) return <Home />;
  if (match("/login", p)) return <Login />;
  if (match("/signup", p)) return <Signup />;
  if (match("/new", p)) return <NewChannel />;
  if (match("/upload", p)) return <Upload />;
  if (match("/admin", p)) return <Admin />;
  if (match("/account", p)) return <Account />;
  if ((m = match("/c/:id/manage", p))) return <Manage id={m.id} />;
  if ((m = match("/c/:id", p))) return <ChannelPage id={m.id} />;
  if ((m = match("/invite/:code", p))) return <InvitePage code={m.code} />;
  return (
    <Page title="Not found">
      <section class="card narrow">
        <h1>Nothing here</h1>
        <p>
          This address leads nowhere. <a href="/">Go home</a>.
        </p>
      </section>
    </Page>
  );
}

function Header() {
  const user = currentUser.value;
  return (
    <header class="top">
      <a class="brand" href="/">
        videosync
      </a>
      <nav aria-label="Main">
        {user && <a href="/upload">Upload</a>}
        {user && <a href="/new">New channel</a>}
        {user && <a href="/account">Account</a>}
        {user?.is_admin && <a href="/admin">Admin</a>}
      </nav>
      <div class="row">
        <button type="button" class="icon" onClick={cycleTheme} aria-label={`Theme: ${theme.value}; switch`}>
          ◐
        </button>
        {user ? (
          <>
            <span class="muted who-am-i">{user.display_name}</span>
            <button
              type="button"
              onClick={() => {
                void logout().then(() => navigate("/"));
              }}
            >
              Sign out
            </button>
          </>
        ) : (
          <a class="button" href={`/login?next=${encodeURIComponent(location.pathname)}`}>
            Sign in
          </a>
        )}
      </div>
    </header>
  );
}

function Expired() {
  const dialog = useRef<HTMLDialogElement>(null);
  const open = sessionExpired.value;
  useEffect(() => {
    const d = dialog.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return (
    <dialog ref={dialog} aria-labelledby="expired-h" onCancel={continueSignedOut}>
      <h2 id="expired-h">Your session ended</h2>
      <p>Sign in again to carry on; this page stays as it is.</p>
      {open && <LoginForm onDone={() => (sessionExpired.value = false)} />}
      <button type="button" class="link" onClick={continueSignedOut}>
        Continue signed out
      </button>
    </dialog>
  );
}

function App() {
  return (
    <>
      <a class="skip" href="#content">
        Skip to content
      </a>
      <Header />
      <div id="content">
        <Routes />
      </div>
      <Expired />
    </>
  );
}

const root = document.getElementById("app");
if (root) render(<App />, root);
