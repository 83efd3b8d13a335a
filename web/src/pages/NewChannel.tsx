// Make a channel.
import { useState } from "preact/hooks";
import { api } from "../api";
import type { Channel } from "../api";
import { navigate } from "../router";
import { ErrorBox, Page, useAction } from "../ui/common";

export function NewChannel() {
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [visibility, setVisibility] = useState("public");
  const [guests, setGuests] = useState(false);
  const { busy, error, run } = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      const c = await api<Channel>("POST", "/channels", {
        name: name.trim(),
        description: description.trim(),
        visibility,
        allow_guests: guests && visibility !== "private",
      });
      navigate(`/c/${c.id}`, true);
    });
  };
  return (
    <Page title="New channel">
      <section class="card narrow">
        <h1>New channel</h1>
        <form class="stack" onSubmit={submit}>
          <label>
            Name
            <input name="name" required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </label>
          <label>
            Description <span class="muted">(optional)</span>
            <textarea name="description" maxLength={2000} rows={3} value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
          </label>
          <fieldset>
            <legend>Who can watch</legend>
            {[
              ["public", "Public: listed, anyone can watch"],
              ["unlisted", "Unlisted: anyone with the link"],
              ["private", "Private: members only, by invite"],
            ].map(([v, label]) => (
              <label key={v} class="row">
                <input type="radio" name="visibility" value={v} checked={visibility === v} onChange={() => setVisibility(v)} />
                {label}
              </label>
            ))}
          </fieldset>
          {visibility !== "private" && (
            <label class="row">
              <input type="checkbox" checked={guests} onChange={(e) => setGuests(e.currentTarget.checked)} />
              Let guests without an account watch and chat
            </label>
          )}
          <ErrorBox error={error} />
          <button type="submit" class="primary" disabled={busy}>
            {busy ? "Creating…" : "Create channel"}
          </button>
        </form>
      </section>
    </Page>
  );
}
