//! Enqueue a job, reserve it as a worker would, do its work (write an object),
//! and ack it.
//!
//! Runs on the embedded backends (files and SQLite in a temporary directory)
//! with nothing to install:
//!
//! ```sh
//! cargo run --example job_writes_object
//! ```
//!
//! The same code runs on a fleet's backends; name them by URL:
//!
//! ```sh
//! VIDEOSYNC_STORE_URL='s3://videosync-test?endpoint=http://127.0.0.1:3900&region=garage' \
//! VIDEOSYNC_QUEUE_URL=redis://127.0.0.1:6379/ \
//! cargo run --example job_writes_object --features all-backends
//! ```
//!
//! (`postgres://...` works for the queue too; S3 takes its credentials from
//! `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.)

#![allow(clippy::print_stdout)] // An example talks to its reader.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use videosync::core::queue::{queue_from_url, ReserveOptions};
use videosync::core::store::store_from_url;
use videosync::core::{Clock, NewJob, ObjectKey, ObjectStoreExt, RetryPolicy, SystemClock};

/// What the job asks for: write `text` to the object `key`.
#[derive(Debug, Serialize, Deserialize)]
struct WriteNote {
    key: String,
    text: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir().context("making a scratch directory")?;
    let store_url = std::env::var("VIDEOSYNC_STORE_URL")
        .unwrap_or_else(|_| format!("file://{}", scratch.path().join("store").display()));
    let queue_url = std::env::var("VIDEOSYNC_QUEUE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", scratch.path().join("queue.db").display()));

    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let store = store_from_url(&store_url).await?;
    let queue = queue_from_url(&queue_url, "examples", clock, RetryPolicy::default()).await?;
    println!("store: {store}\nqueue: {queue}");

    // The producer side: describe the work and enqueue it. The dedupe key
    // makes a second enqueue of the same note a no-op while the first waits.
    let note = WriteNote {
        key: format!("notes/{}.txt", videosync::core::JobId::new()),
        text: "hello from a worker".into(),
    };
    let job = NewJob::new("write-note", serde_json::to_value(&note)?).dedupe_key(&note.key);
    let id = queue.enqueue(job).await?.id();
    println!("enqueued job {id}");

    // The worker side: take a job under a lease, do the work, ack. A worker
    // that crashed before the ack would see the job come back when the lease
    // ends, so the work is written to be safe to repeat.
    let lease = queue
        .reserve(ReserveOptions::lease(Duration::from_secs(30)))
        .await?
        .context("the job we just enqueued is due")?;
    let task: WriteNote = serde_json::from_value(lease.job().payload.clone())?;
    let key = ObjectKey::parse(&task.key)?;
    match store.put(&key, task.text.clone().into_bytes().into()).await {
        Ok(meta) => {
            queue.ack(&lease).await?;
            println!(
                "job {} wrote {} ({} bytes) and was acked",
                lease.job().id,
                meta.key,
                meta.size
            );
        }
        Err(e) => {
            // Retried with backoff, then dead-lettered with this reason.
            queue.fail(&lease, &format!("writing {key}: {e}")).await?;
            return Err(e).context("the job failed and was scheduled for a retry");
        }
    }

    let written = store.get_bytes(&key).await?;
    println!("read back: {}", String::from_utf8_lossy(&written));
    println!("queue now: {:?}", queue.counts().await?);
    Ok(())
}
