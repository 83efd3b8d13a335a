// An invite link: who invites to what, and accepting it.
import { api, currentUser } from "../api";
import { navigate } from "../router";
import { ErrorBox, Page, Spinner, useAction, useLoad } from "../ui/common";

interface Preview {
  code: string;
  channel_id: string;
  channel_name: string;
  channel_description: string;
  role: string;
}

export function InvitePage({ code }: { code: string }) {
  const preview = useLoad((signal) => api<Preview>("GET", `/invites/${encodeURIComponent(code)}`, undefined, { signal }), [code]);
  const { error, run } = useAction();
  const user = currentUser.value;
  const p = preview.data;
  const accept = () =>
    run(async () => {
      await api("POST", `/invites/${encodeURIComponent(code)}/accept`);
      if (p) navigate(`/c/${p.channel_id}`, true);
    });
  return (
    <Page title="Invitation">
      <section class="card narrow">
        {preview.loading && <Spinner />}
        {preview.error && (
          <>
            <h1>This invitation cannot be used</h1>
            <p>{preview.error}. Ask for a new link.</p>
          </>
        )}
        {p && (
          <>
            <h1>Join {p.channel_name}</h1>
            {p.channel_description && <p>{p.channel_description}</p>}
            <p class="muted">You are invited as {p.role}.</p>
            {user ? (
              <button type="button" class="primary" onClick={() => void accept()}>
                Accept the invitation
              </button>
            ) : (
              <p>
                <a href={`/login?next=/invite/${encodeURIComponent(code)}`}>Sign in</a> or{" "}
                <a href={`/signup?next=/invite/${encodeURIComponent(code)}`}>create an account</a> to accept.
              </p>
            )}
            <ErrorBox error={error} />
          </>
        )}
      </section>
    </Page>
  );
}
