//! The worker loop: reserve a transcode job, run it with heartbeats, store
//! the ladder, update the catalog, publish progress, ack or fail with a
//! readable reason.
//!
//! Jobs are [`TranscodeJob`]s of kind [`JOB_KIND`]:
//!
//! - [`TranscodeJob::Ladder`]: a whole video. Short sources (or no
//!   `segments_per_chunk`) run in a single pass; long ones are planned
//!   into chunks: the plan goes to the store (`<prefix>/_parts/plan.json`)
//!   and one [`TranscodeJob::Part`] job per chunk goes on the queue, for
//!   any worker.
//! - [`TranscodeJob::Part`]: one chunk; its result goes to
//!   `<prefix>/_parts/part_NNNN.json`, and the part that completes the set
//!   enqueues the [`TranscodeJob::Finish`] (deduplicated per video).
//! - [`TranscodeJob::Finish`]: playlists, manifest and master over all
//!   parts; the video becomes ready.
//!
//! Progress goes to the bus topic `transcode.<video id>` as JSON
//! [`ProgressEvent`]s. A bad source (the error says the input cannot work)
//! fails the video at once; other failures go back to the queue with
//! backoff and fail the video only once the job is dead-lettered. Every
//! failure removes the partial ladder.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use videosync_core::bus::DynEventBus;
use videosync_core::catalog::{DynCatalog, StatusChange};
use videosync_core::queue::{DynJobQueue, Failed, Lease, ReserveOptions};
use videosync_core::store::DynObjectStore;
use videosync_core::{
    ErrorKind, EventBusExt, NewJob, ObjectKey, ObjectStoreExt, Topic, VideoId, VideoStatus,
};

use crate::chunked::{self, ChunkPlan, PartOutput};
use crate::error::TranscodeError;
use crate::progress::{CancelToken, Progress, ProgressFn, Stage};
use crate::transcode::{transcode, Destination, Manifest, TranscodeOptions};

/// The job kind of every transcode job.
pub const JOB_KIND: &str = "transcode";

/// A transcode job's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum TranscodeJob {
    /// Transcode a whole video.
    Ladder {
        /// The catalog row.
        video: VideoId,
        /// Key of the uploaded source.
        source_key: String,
        /// Where the ladder goes.
        output_prefix: String,
        /// How.
        options: TranscodeOptions,
        /// Chunk sources longer than one chunk of this many segments.
        segments_per_chunk: Option<u32>,
    },
    /// One part of a chunked transcode.
    Part {
        /// The catalog row.
        video: VideoId,
        /// Key of the uploaded source.
        source_key: String,
        /// Where the ladder goes (and `_parts/`).
        output_prefix: String,
        /// The part's index in the plan.
        index: usize,
    },
    /// Finish a chunked transcode.
    Finish {
        /// The catalog row.
        video: VideoId,
        /// Where the ladder goes.
        output_prefix: String,
    },
}

impl TranscodeJob {
    /// The job to enqueue (deduplicated per video and step).
    ///
    /// # Errors
    /// Never in practice: the payload is plain data.
    pub fn to_new_job(&self) -> Result<NewJob, serde_json::Error> {
        let dedupe = match self {
            TranscodeJob::Ladder { video, .. } => format!("ladder:{}", video.as_uuid()),
            TranscodeJob::Part { video, index, .. } => format!("part:{}:{index}", video.as_uuid()),
            TranscodeJob::Finish { video, .. } => format!("finish:{}", video.as_uuid()),
        };
        Ok(NewJob::new(JOB_KIND, serde_json::to_value(self)?).dedupe_key(dedupe))
    }

    fn video(&self) -> VideoId {
        match self {
            TranscodeJob::Ladder { video, .. }
            | TranscodeJob::Part { video, .. }
            | TranscodeJob::Finish { video, .. } => *video,
        }
    }

    fn prefix(&self) -> &str {
        match self {
            TranscodeJob::Ladder { output_prefix, .. }
            | TranscodeJob::Part { output_prefix, .. }
            | TranscodeJob::Finish { output_prefix, .. } => output_prefix,
        }
    }
}

/// A progress event on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressEvent {
    /// The video.
    pub video: VideoId,
    /// The part, in chunked mode.
    pub part: Option<usize>,
    /// Where it is (`failed` is reported as [`ProgressEvent::error`]).
    pub stage: Stage,
    /// The report.
    pub progress: Option<Progress>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// The topic of a video's progress events.
///
/// # Errors
/// Never in practice (ids are plain).
pub fn progress_topic(video: VideoId) -> videosync_core::Result<Topic> {
    Topic::parse(&format!("transcode.{}", video.as_uuid()))
}

/// What the worker needs.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Sources and ladders.
    pub store: DynObjectStore,
    /// Transcode jobs.
    pub queue: DynJobQueue,
    /// Video rows.
    pub catalog: DynCatalog,
    /// Progress events.
    pub bus: DynEventBus,
    /// Tuning.
    pub config: WorkerConfig,
}

/// Worker tuning.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Lease on a reserved job; heartbeats renew it every third of it.
    pub lease: Duration,
    /// Wait between polls of an empty queue.
    pub idle_poll: Duration,
    /// Where sources are downloaded (one file per job, removed after).
    pub scratch_dir: PathBuf,
    /// Remove the uploaded source once its ladder is ready.
    pub remove_source: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            lease: Duration::from_secs(60),
            idle_poll: Duration::from_millis(500),
            scratch_dir: std::env::temp_dir(),
            remove_source: false,
        }
    }
}

/// What handling one job came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The queue was empty.
    Idle,
    /// The ladder is ready.
    Ready(Box<Manifest>),
    /// Chunked: parts were enqueued.
    Planned {
        /// How many parts.
        parts: usize,
    },
    /// Chunked: one part is done.
    PartDone {
        /// Which.
        index: usize,
    },
    /// The job will run again later.
    Retrying {
        /// Why this attempt failed.
        reason: String,
    },
    /// The video failed for good.
    Failed {
        /// Why.
        reason: String,
    },
    /// The job was not ours any more (lease lost, video gone): nothing done.
    Dropped {
        /// Why.
        reason: String,
    },
}

/// Errors of one attempt: permanent ones fail the video at once.
struct AttemptError {
    reason: String,
    permanent: bool,
}

impl From<TranscodeError> for AttemptError {
    fn from(e: TranscodeError) -> Self {
        AttemptError {
            permanent: e.is_permanent(),
            reason: e.to_string(),
        }
    }
}

impl From<videosync_core::Error> for AttemptError {
    fn from(e: videosync_core::Error) -> Self {
        AttemptError {
            permanent: matches!(e.kind(), ErrorKind::InvalidInput),
            reason: e.to_string(),
        }
    }
}

impl Worker {
    /// Reserves and handles at most one job.
    ///
    /// # Errors
    /// Only queue or catalog failures around the job (the job's own
    /// failures are an [`Outcome`]).
    pub async fn run_once(&self) -> videosync_core::Result<Outcome> {
        let Some(lease) = self
            .queue
            .reserve(ReserveOptions::lease(self.config.lease))
            .await?
        else {
            return Ok(Outcome::Idle);
        };
        self.handle(lease).await
    }

    /// Handles jobs until `stop` is cancelled (checked between jobs; a job
    /// in progress is cancelled too and goes back to the queue).
    ///
    /// # Errors
    /// Never: failures of the queue are retried after the idle wait.
    pub async fn run(&self, stop: &CancelToken) -> videosync_core::Result<()> {
        while !stop.is_cancelled() {
            match self.run_once().await {
                Ok(Outcome::Idle) | Err(_) => tokio::time::sleep(self.config.idle_poll).await,
                Ok(_) => {}
            }
        }
        Ok(())
    }

    async fn handle(&self, lease: Lease) -> videosync_core::Result<Outcome> {
        let job: TranscodeJob = match serde_json::from_value(lease.job().payload.clone()) {
            Ok(j) => j,
            Err(e) => {
                // No worker can run it; it goes the queue's way to the
                // dead letters, where an operator sees the reason.
                let reason = format!("unreadable transcode job: {e}");
                return Ok(match self.queue.fail(&lease, &reason).await? {
                    Failed::DeadLettered => Outcome::Failed { reason },
                    Failed::Retrying { .. } => Outcome::Retrying { reason },
                });
            }
        };
        let video = job.video();
        // A part of a video that already failed has nothing left to do.
        if !matches!(job, TranscodeJob::Ladder { .. }) {
            match self.catalog.get_video(video).await {
                Ok(v) if v.status == VideoStatus::Failed => {
                    self.queue.ack(&lease).await?;
                    return Ok(Outcome::Dropped {
                        reason: format!("video {} already failed", video.as_uuid()),
                    });
                }
                _ => {}
            }
        }
        // The catalog says a worker has it (again).
        match self
            .catalog
            .update_status(video, StatusChange::Processing)
            .await
        {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.queue.ack(&lease).await?;
                return Ok(Outcome::Dropped {
                    reason: format!("video {} is gone", video.as_uuid()),
                });
            }
            Err(e) => return Err(e),
        }

        // Heartbeats; a lost lease cancels the work.
        let cancel = CancelToken::new();
        let lost = CancelToken::new();
        let beat = {
            let (queue, lease, cancel, lost) = (
                self.queue.clone(),
                lease.clone(),
                cancel.clone(),
                lost.clone(),
            );
            let every = self.config.lease / 3;
            let extend = self.config.lease;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if queue.heartbeat(&lease, extend).await.is_err() {
                        lost.cancel();
                        cancel.cancel();
                        return;
                    }
                }
            })
        };
        let result = self.attempt(&job, &cancel).await;
        beat.abort();
        if lost.is_cancelled() {
            return Ok(Outcome::Dropped {
                reason: "the job's lease was lost to another worker".to_owned(),
            });
        }
        match result {
            Ok(outcome) => {
                self.queue.ack(&lease).await?;
                if let Outcome::Ready(m) = &outcome {
                    self.catalog
                        .update_status(
                            video,
                            StatusChange::Ready {
                                renditions: m.catalog_renditions(),
                            },
                        )
                        .await?;
                    let _ = self
                        .catalog
                        .set_source_meta(video, m.source.meta.clone())
                        .await;
                    self.publish_done(video, None).await;
                }
                Ok(outcome)
            }
            Err(e) => {
                let dead = if e.permanent {
                    self.queue.ack(&lease).await?;
                    true
                } else {
                    matches!(
                        self.queue.fail(&lease, &e.reason).await?,
                        Failed::DeadLettered
                    )
                };
                if dead {
                    self.remove_ladder(job.prefix()).await;
                    self.catalog
                        .update_status(
                            video,
                            StatusChange::Failed {
                                reason: e.reason.clone(),
                            },
                        )
                        .await?;
                    self.publish_done(video, Some(e.reason.clone())).await;
                    Ok(Outcome::Failed { reason: e.reason })
                } else {
                    self.catalog
                        .update_status(video, StatusChange::Pending)
                        .await?;
                    Ok(Outcome::Retrying { reason: e.reason })
                }
            }
        }
    }

    async fn attempt(
        &self,
        job: &TranscodeJob,
        cancel: &CancelToken,
    ) -> Result<Outcome, AttemptError> {
        let dest = Destination::new(self.store.clone(), Some(key(job.prefix())?));
        match job {
            TranscodeJob::Ladder {
                video,
                source_key,
                options,
                segments_per_chunk,
                ..
            } => {
                let source = self.download(source_key).await?;
                let result = async {
                    if let Some(per) = segments_per_chunk {
                        let plan = chunked::plan(&source, options, *per).await?;
                        if plan.parts().len() > 2 {
                            return self.enqueue_parts(job, &plan, &dest).await;
                        }
                    }
                    let progress = self.progress_fn(*video, None);
                    let m = transcode(&source, &dest, options, Some(progress), cancel).await?;
                    Ok(Outcome::Ready(Box::new(m)))
                }
                .await;
                if result.is_ok()
                    && self.config.remove_source
                    && !matches!(result, Ok(Outcome::Planned { .. }))
                {
                    let _ = self.store.delete(&key(source_key)?).await;
                }
                result
            }
            TranscodeJob::Part {
                video,
                source_key,
                index,
                ..
            } => {
                let plan: ChunkPlan = self.read_json(&dest, "_parts/plan.json").await?;
                let source = self.download(source_key).await?;
                let progress = self.progress_fn(*video, Some(*index));
                let out =
                    chunked::run(&plan, *index, &source, &dest, Some(progress), cancel).await?;
                self.write_json(&dest, &format!("_parts/part_{index:04}.json"), &out)
                    .await?;
                // The part that completes the set enqueues the finish.
                let done = self.store.list(Some(&dest.key("_parts")?)).await?;
                let parts = done
                    .iter()
                    .filter(|m| m.key.file_name().starts_with("part_"))
                    .count();
                if parts == plan.parts().len() {
                    let finish = TranscodeJob::Finish {
                        video: *video,
                        output_prefix: job.prefix().to_owned(),
                    };
                    self.queue.enqueue(new_job(&finish)?).await?;
                }
                Ok(Outcome::PartDone { index: *index })
            }
            TranscodeJob::Finish { .. } => {
                let plan: ChunkPlan = self.read_json(&dest, "_parts/plan.json").await?;
                let mut outputs = Vec::with_capacity(plan.parts().len());
                for i in 0..plan.parts().len() {
                    let out: PartOutput = self
                        .read_json(&dest, &format!("_parts/part_{i:04}.json"))
                        .await?;
                    outputs.push(out);
                }
                let m = chunked::finish(&plan, &outputs, &dest).await?;
                let _ = self.store.delete_prefix(&dest.key("_parts")?).await;
                Ok(Outcome::Ready(Box::new(m)))
            }
        }
    }

    async fn enqueue_parts(
        &self,
        job: &TranscodeJob,
        plan: &ChunkPlan,
        dest: &Destination,
    ) -> Result<Outcome, AttemptError> {
        let TranscodeJob::Ladder {
            video, source_key, ..
        } = job
        else {
            return Err(AttemptError {
                reason: "only a ladder job plans parts".to_owned(),
                permanent: true,
            });
        };
        self.write_json(dest, "_parts/plan.json", plan).await?;
        for index in 0..plan.parts().len() {
            let part = TranscodeJob::Part {
                video: *video,
                source_key: source_key.clone(),
                output_prefix: job.prefix().to_owned(),
                index,
            };
            self.queue.enqueue(new_job(&part)?).await?;
        }
        Ok(Outcome::Planned {
            parts: plan.parts().len(),
        })
    }

    /// Copies the source into a scratch file, streaming.
    async fn download(&self, source_key: &str) -> Result<tempfile::TempPath, AttemptError> {
        let k = key(source_key)?;
        let got = self.store.get(&k).await?;
        let file = tempfile::Builder::new()
            .prefix("videosync-source-")
            .tempfile_in(&self.config.scratch_dir)
            .map_err(|e| AttemptError {
                reason: format!("scratch file in {}: {e}", self.config.scratch_dir.display()),
                permanent: false,
            })?;
        let (std_file, path) = file.into_parts();
        let mut out = tokio::fs::File::from_std(std_file);
        let mut body = got.body;
        while let Some(chunk) = body.try_next().await? {
            out.write_all(&chunk).await.map_err(|e| AttemptError {
                reason: format!("writing the source to {}: {e}", path.display()),
                permanent: false,
            })?;
        }
        out.flush().await.map_err(|e| AttemptError {
            reason: format!("writing the source: {e}"),
            permanent: false,
        })?;
        Ok(path)
    }

    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        dest: &Destination,
        rel: &str,
    ) -> Result<T, AttemptError> {
        let bytes = self.store.get_bytes(&dest.key(rel)?).await?;
        serde_json::from_slice(&bytes).map_err(|e| AttemptError {
            reason: format!("unreadable {rel}: {e}"),
            permanent: true,
        })
    }

    async fn write_json<T: Serialize>(
        &self,
        dest: &Destination,
        rel: &str,
        value: &T,
    ) -> Result<(), AttemptError> {
        let bytes = serde_json::to_vec(value).map_err(|e| AttemptError {
            reason: format!("encoding {rel}: {e}"),
            permanent: true,
        })?;
        self.store.put(&dest.key(rel)?, bytes.into()).await?;
        Ok(())
    }

    /// Publishes progress from the decoding thread without blocking it:
    /// the latest report wins, a task forwards it to the bus.
    fn progress_fn(&self, video: VideoId, part: Option<usize>) -> ProgressFn {
        let (tx, mut rx) = tokio::sync::watch::channel::<Option<Progress>>(None);
        let bus = self.bus.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let latest = rx.borrow_and_update().clone();
                if let (Some(p), Ok(topic)) = (latest, progress_topic(video)) {
                    let event = ProgressEvent {
                        video,
                        part,
                        stage: p.stage,
                        progress: Some(p),
                        error: None,
                    };
                    let _ = bus.publish_json(&topic, &event).await;
                }
            }
        });
        Arc::new(move |p: &Progress| {
            let _ = tx.send(Some(p.clone()));
        })
    }

    /// The last event of a video: done, or failed with the reason.
    async fn publish_done(&self, video: VideoId, error: Option<String>) {
        if let Ok(topic) = progress_topic(video) {
            let event = ProgressEvent {
                video,
                part: None,
                stage: Stage::Done,
                progress: None,
                error,
            };
            let _ = self.bus.publish_json(&topic, &event).await;
        }
    }

    async fn remove_ladder(&self, prefix: &str) {
        if let Ok(k) = key(prefix) {
            let _ = self.store.delete_prefix(&k).await;
        }
    }
}

fn key(s: &str) -> Result<ObjectKey, AttemptError> {
    ObjectKey::parse(s).map_err(|e| AttemptError {
        reason: format!("bad key `{s}`: {e}"),
        permanent: true,
    })
}

fn new_job(job: &TranscodeJob) -> Result<NewJob, AttemptError> {
    job.to_new_job().map_err(|e| AttemptError {
        reason: format!("encoding the job: {e}"),
        permanent: true,
    })
}
