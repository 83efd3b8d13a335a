// Instance administration: dead-lettered jobs, with their reasons, to requeue.
import { useState } from "preact/hooks";
import { api, currentUser } from "../api";
import type { DeadJob, Page as ApiPage } from "../api";
import { ErrorBox, Page, Spinner, useAction, useLoad } from "../ui/common";

export function Admin() {
  const user = currentUser.value;
  const jobs = useLoad(
    (signal) => (user?.is_admin ? api<ApiPage<DeadJob>>("GET", "/admin/jobs/dead", undefined, { signal }) : Promise.resolve(null)),
    [user?.id],
  );
  const { error, run } = useAction();
  const [done, setDone] = useState<string | null>(null);
  if (!user?.is_admin) {
    return (
      <Page title="Administration">
        <section class="card narrow">
          <h1>Administration</h1>
          <p>Only the instance's administrators see this page.</p>
        </section>
      </Page>
    );
  }
  const items = jobs.data?.items ?? [];
  return (
    <Page title="Administration">
      <h1>Failed jobs</h1>
      <p class="muted">Jobs that failed every attempt. Requeue one once its cause is fixed.</p>
      {jobs.loading && <Spinner />}
      <ErrorBox error={error ?? jobs.error} retry={jobs.reload} />
      {done && <p role="status">{done}</p>}
      {jobs.data && items.length === 0 && <p>No failed job.</p>}
      {items.length > 0 && (
        <table>
          <caption class="sr-only">Dead-lettered jobs</caption>
          <thead>
            <tr>
              <th scope="col">Job</th>
              <th scope="col">Video</th>
              <th scope="col">Attempts</th>
              <th scope="col">Reason</th>
              <th scope="col" />
            </tr>
          </thead>
          <tbody>
            {items.map((j) => (
              <tr key={j.id}>
                <td>
                  {j.kind} <span class="muted">{j.id}</span>
                </td>
                <td>{j.video_id ?? "–"}</td>
                <td>{j.attempts}</td>
                <td class="wrap">{j.last_error ?? "–"}</td>
                <td>
                  <button
                    type="button"
                    onClick={() =>
                      void run(async () => {
                        await api("POST", `/admin/jobs/${encodeURIComponent(j.id)}/requeue`);
                        setDone(`Job ${j.id} is queued again.`);
                        jobs.reload();
                      })
                    }
                  >
                    Requeue
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
