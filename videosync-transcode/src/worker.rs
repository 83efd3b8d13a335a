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
//! failure removes the attempt's partial ladder.
//!
//! # Fencing and crash safety
//! Each attempt takes the video with a fresh fence
//! ([`StatusChange::Processing`]) and writes under its own prefix,
//! `<output_prefix>/a<attempt>`. Only the attempt holding the current fence
//! can make the video ready, which points it at that prefix in one step;
//! a stale worker (its lease ran out and another took over) is refused and
//! removes only its own files. The video is marked ready *before* the job is
//! acked: a crash in between redelivers a job that finds the video ready and
//! does nothing, so a retry never takes a ready video off air. Jobs that die
//! without anyone to fail them (a worker killed on the last attempt) are
//! swept by [`Worker::sweep_dead_letters`], which fails their videos with
//! the queue's reason.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use videosync_core::bus::DynEventBus;
use videosync_core::catalog::{DynCatalog, StatusChange};
use videosync_core::eventlog::{DynEventLog, EventLogExt};
use videosync_core::queue::{DynJobQueue, Failed, Lease, ReserveOptions};
use videosync_core::store::DynObjectStore;
use videosync_core::{
    ErrorKind, EventBusExt, NewJob, ObjectKey, ObjectStoreExt, Topic, VideoId, VideoStatus,
};

use crate::chunked::{self, ChunkPlan, PartOutput};
use crate::error::TranscodeError;
use crate::progress::{CancelToken, Progress, ProgressFn, Stage};
use crate::transcode::{transcode, Destination, Manifest, TranscodeOptions};

/// Pages of 1000 dead letters one sweep reads at most.
const MAX_SWEEP_PAGES: usize = 20;

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
        /// The attempt's prefix: where the ladder goes (and `_parts/`).
        output_prefix: String,
        /// The fence of the attempt the part belongs to.
        fence: String,
        /// The part's index in the plan.
        index: usize,
    },
    /// Finish a chunked transcode.
    Finish {
        /// The catalog row.
        video: VideoId,
        /// The attempt's prefix.
        output_prefix: String,
        /// The fence of the attempt.
        fence: String,
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
            TranscodeJob::Part {
                video,
                index,
                fence,
                ..
            } => format!("part:{}:{fence}:{index}", video.as_uuid()),
            TranscodeJob::Finish { video, fence, .. } => {
                format!("finish:{}:{fence}", video.as_uuid())
            }
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
    /// Ladders (and, in chunked mode, the parts and the plan).
    pub store: DynObjectStore,
    /// Uploaded sources: an interim store of its own, or the same as
    /// `store`.
    pub sources: DynObjectStore,
    /// Transcode jobs.
    pub queue: DynJobQueue,
    /// Video rows.
    pub catalog: DynCatalog,
    /// Progress ticks, fire and forget.
    pub bus: DynEventBus,
    /// Progress kept in order for readers in other processes (the server
    /// beside a separate `videosync worker`): stage changes, the final
    /// event, and at most one tick a second.
    pub log: Option<DynEventLog>,
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
    /// How often [`Worker::run`] sweeps the dead letters for videos left
    /// processing ([`Worker::sweep_dead_letters`]).
    pub sweep_every: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            lease: Duration::from_secs(60),
            idle_poll: Duration::from_millis(500),
            scratch_dir: std::env::temp_dir(),
            remove_source: false,
            sweep_every: Duration::from_secs(30),
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
        self.run_once_until(&CancelToken::new()).await
    }

    /// [`Worker::run_once`], giving the job back to the queue (as a failed
    /// attempt, retried later) if `stop` is cancelled while it runs.
    ///
    /// # Errors
    /// As [`Worker::run_once`].
    pub async fn run_once_until(&self, stop: &CancelToken) -> videosync_core::Result<Outcome> {
        let Some(lease) = self
            .queue
            .reserve(ReserveOptions::lease(self.config.lease))
            .await?
        else {
            return Ok(Outcome::Idle);
        };
        self.handle(lease, stop).await
    }

    /// Handles jobs until `stop` is cancelled; a job in progress then is
    /// cancelled and goes back to the queue. Sweeps the dead letters every
    /// [`WorkerConfig::sweep_every`].
    ///
    /// # Errors
    /// Never: failures of the queue are retried after the idle wait.
    pub async fn run(&self, stop: &CancelToken) -> videosync_core::Result<()> {
        let mut sweep = tokio::time::interval(self.config.sweep_every.max(Duration::from_secs(1)));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.is_cancelled() {
            if tokio::time::timeout(Duration::ZERO, sweep.tick())
                .await
                .is_ok()
            {
                if let Err(e) = self.sweep_dead_letters().await {
                    tracing::warn!("sweeping the dead letters: {e}");
                }
            }
            match self.run_once_until(stop).await {
                Ok(Outcome::Idle) => tokio::time::sleep(self.config.idle_poll).await,
                Err(e) => {
                    tracing::warn!("worker: {e}");
                    tokio::time::sleep(self.config.idle_poll).await;
                }
                Ok(_) => {}
            }
        }
        Ok(())
    }

    async fn handle(&self, lease: Lease, stop: &CancelToken) -> videosync_core::Result<Outcome> {
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
        let (fence, prefix) = match self.take(&job).await? {
            Ok(taken) => taken,
            Err(reason) => {
                // Nothing to do for this job: its work is done or superseded.
                self.ack_quietly(&lease).await;
                return Ok(Outcome::Dropped { reason });
            }
        };

        // Heartbeats; a lost lease or a stop cancels the work.
        let cancel = CancelToken::new();
        let lost = CancelToken::new();
        let beat = {
            let (queue, lease, cancel, lost, stop) = (
                self.queue.clone(),
                lease.clone(),
                cancel.clone(),
                lost.clone(),
                stop.clone(),
            );
            let every = self.config.lease / 3;
            let extend = self.config.lease;
            // The stop flag is looked at every quarter second, the lease
            // renewed every third of it.
            let tick = every
                .min(Duration::from_millis(250))
                .max(Duration::from_millis(1));
            tokio::spawn(async move {
                let mut since_beat = Duration::ZERO;
                loop {
                    tokio::time::sleep(tick).await;
                    if stop.is_cancelled() {
                        cancel.cancel();
                        return;
                    }
                    since_beat += tick;
                    if since_beat < every {
                        continue;
                    }
                    since_beat = Duration::ZERO;
                    if queue.heartbeat(&lease, extend).await.is_err() {
                        lost.cancel();
                        cancel.cancel();
                        return;
                    }
                }
            })
        };
        let result = self.attempt(&job, &fence, &prefix, &cancel).await;
        beat.abort();
        if lost.is_cancelled() {
            // Another worker has the job (and the video, under its own
            // fence); this attempt's files are ours alone to remove.
            if !matches!(job, TranscodeJob::Part { .. }) {
                self.remove_ladder(&prefix).await;
            }
            return Ok(Outcome::Dropped {
                reason: "the job's lease was lost to another worker".to_owned(),
            });
        }
        match result {
            Ok(Outcome::Ready(m)) => {
                let source = match &job {
                    TranscodeJob::Ladder { source_key, .. } => Some(source_key.clone()),
                    _ => None,
                };
                self.publish(&lease, video, &fence, &prefix, source, m)
                    .await
            }
            Ok(outcome) => {
                self.queue.ack(&lease).await?;
                Ok(outcome)
            }
            Err(e) => {
                self.give_up_or_retry(&lease, &job, &fence, &prefix, e)
                    .await
            }
        }
    }

    /// Takes the video for this job: a ladder job starts a new attempt (a
    /// fresh fence, its own prefix); a part or finish job continues the
    /// attempt it belongs to, if that attempt still owns the video.
    /// `Ok(Err(reason))` when the job has nothing left to do.
    async fn take(
        &self,
        job: &TranscodeJob,
    ) -> videosync_core::Result<Result<(String, String), String>> {
        let video = job.video();
        let current = match self.catalog.get_video(video).await {
            Ok(v) => v,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(Err(format!("video {} is gone", video.as_uuid())));
            }
            Err(e) => return Err(e),
        };
        match job {
            TranscodeJob::Ladder { output_prefix, .. } => {
                if !current.status.can_become(VideoStatus::Processing) {
                    return Ok(Err(format!(
                        "video {} is {}: nothing to transcode",
                        video.as_uuid(),
                        current.status
                    )));
                }
                let fence = uuid::Uuid::new_v4().simple().to_string();
                let change = StatusChange::Processing {
                    fence: fence.clone(),
                };
                match self
                    .catalog
                    .update_status(video, Some(current.version), change)
                    .await
                {
                    Ok(v) => {
                        // Taking over from an attempt whose lease ran out
                        // (its worker died or stalled): its files are
                        // unreachable, since only this fence can publish.
                        if current.status == VideoStatus::Processing {
                            self.remove_ladder(&format!("{output_prefix}/a{}", current.attempt))
                                .await;
                        }
                        Ok(Ok((fence, format!("{output_prefix}/a{}", v.attempt))))
                    }
                    // Another worker took it meanwhile, or it was deleted.
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::Precondition | ErrorKind::Conflict | ErrorKind::NotFound
                        ) =>
                    {
                        Ok(Err(format!("video {}: {e}", video.as_uuid())))
                    }
                    Err(e) => Err(e),
                }
            }
            TranscodeJob::Part {
                fence,
                output_prefix,
                ..
            }
            | TranscodeJob::Finish {
                fence,
                output_prefix,
                ..
            } => {
                if current.status == VideoStatus::Processing
                    && current.fence.as_deref() == Some(fence.as_str())
                {
                    Ok(Ok((fence.clone(), output_prefix.clone())))
                } else {
                    Ok(Err(format!(
                        "video {} is {} under another attempt: this part's attempt is over",
                        video.as_uuid(),
                        current.status
                    )))
                }
            }
        }
    }

    /// Makes the video ready with this attempt's ladder, then acks: a crash
    /// in between redelivers a job that finds the video ready.
    async fn publish(
        &self,
        lease: &Lease,
        video: VideoId,
        fence: &str,
        prefix: &str,
        source_key: Option<String>,
        m: Box<Manifest>,
    ) -> videosync_core::Result<Outcome> {
        let before = self.catalog.get_video(video).await?;
        let change = StatusChange::Ready {
            fence: fence.to_owned(),
            renditions: m.catalog_renditions(),
            output_prefix: prefix.to_owned(),
        };
        match self.catalog.update_status(video, None, change).await {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Precondition | ErrorKind::Conflict | ErrorKind::NotFound
                ) =>
            {
                // Superseded: another attempt owns the video now.
                self.remove_ladder(prefix).await;
                self.ack_quietly(lease).await;
                return Ok(Outcome::Dropped {
                    reason: format!("video {}: {e}", video.as_uuid()),
                });
            }
            Err(e) => return Err(e),
        }
        let _ = self
            .catalog
            .set_source_meta(video, m.source.meta.clone())
            .await;
        self.ack_quietly(lease).await;
        // The previous ladder (a re-transcode) is unreachable now.
        if let Some(old) = before.output_prefix.filter(|old| old != prefix) {
            self.remove_ladder(&old).await;
        }
        if self.config.remove_source {
            let source = source_key.or(before.source_key);
            if let Some(k) = source.as_deref().and_then(|s| ObjectKey::parse(s).ok()) {
                let _ = self.sources.delete(&k).await;
            }
        }
        self.publish_done(video, None).await;
        Ok(Outcome::Ready(m))
    }

    async fn give_up_or_retry(
        &self,
        lease: &Lease,
        job: &TranscodeJob,
        fence: &str,
        prefix: &str,
        e: AttemptError,
    ) -> videosync_core::Result<Outcome> {
        let video = job.video();
        if !matches!(job, TranscodeJob::Part { .. }) || e.permanent {
            self.remove_ladder(prefix).await;
        }
        let dead = e.permanent
            || matches!(
                self.queue.fail(lease, &e.reason).await?,
                Failed::DeadLettered
            );
        if !dead {
            // The video stays processing; the next attempt takes it over
            // with a fresh fence.
            return Ok(Outcome::Retrying { reason: e.reason });
        }
        let change = StatusChange::Failed {
            fence: Some(fence.to_owned()),
            reason: e.reason.clone(),
        };
        match self.catalog.update_status(video, None, change).await {
            Ok(_) => self.publish_done(video, Some(e.reason.clone())).await,
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::Precondition | ErrorKind::Conflict | ErrorKind::NotFound
                ) => {}
            Err(err) => return Err(err),
        }
        if e.permanent {
            self.ack_quietly(lease).await;
        }
        Ok(Outcome::Failed { reason: e.reason })
    }

    /// Acks, ignoring a lease that is gone: the job's work is settled
    /// either way, and a redelivery finds nothing to do.
    async fn ack_quietly(&self, lease: &Lease) {
        if let Err(e) = self.queue.ack(lease).await {
            tracing::debug!(job = %lease.job().id, "ack after settling the video: {e}");
        }
    }

    /// Fails the videos of transcode jobs that reached the dead letters with
    /// nobody left to fail them (a worker killed on the last attempt, a
    /// lease that ran out once too often), with the queue's reason.
    /// Idempotent; answers how many videos it failed.
    ///
    /// # Errors
    /// Queue or catalog failures.
    pub async fn sweep_dead_letters(&self) -> videosync_core::Result<usize> {
        let mut failed = 0;
        let mut dead_letters = Vec::new();
        let mut cursor = None;
        // Every page, up to a bound: dead letters stay until an operator
        // requeues them, and each sweep looks at all of them.
        for _ in 0..MAX_SWEEP_PAGES {
            let page = self.queue.dead_letters(cursor.as_ref(), 1000).await?;
            dead_letters.extend(page.items);
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        for dead in dead_letters {
            if dead.kind != JOB_KIND {
                continue;
            }
            let Ok(job) = serde_json::from_value::<TranscodeJob>(dead.payload.clone()) else {
                continue;
            };
            let video = job.video();
            let reason = dead
                .last_error
                .clone()
                .unwrap_or_else(|| "the transcode job was dead-lettered".to_owned());
            let Ok(v) = self.catalog.get_video(video).await else {
                continue;
            };
            // Only the attempt the dead job belonged to: a part of an old
            // attempt says nothing about a newer one.
            let belongs = match &job {
                TranscodeJob::Ladder { .. } => true,
                TranscodeJob::Part { fence, .. } | TranscodeJob::Finish { fence, .. } => {
                    v.fence.as_deref() == Some(fence.as_str())
                }
            };
            if !belongs || !v.status.can_become(VideoStatus::Failed) {
                continue;
            }
            let change = StatusChange::Failed {
                fence: None,
                reason: reason.clone(),
            };
            if self
                .catalog
                .update_status(video, Some(v.version), change)
                .await
                .is_ok()
            {
                let attempt_prefix = match &job {
                    TranscodeJob::Ladder { output_prefix, .. } => (v.status
                        == VideoStatus::Processing)
                        .then(|| format!("{output_prefix}/a{}", v.attempt)),
                    TranscodeJob::Part { output_prefix, .. }
                    | TranscodeJob::Finish { output_prefix, .. } => Some(output_prefix.clone()),
                };
                if let Some(prefix) = attempt_prefix {
                    self.remove_ladder(&prefix).await;
                }
                self.publish_done(video, Some(reason)).await;
                failed += 1;
            }
        }
        Ok(failed)
    }

    async fn attempt(
        &self,
        job: &TranscodeJob,
        fence: &str,
        prefix: &str,
        cancel: &CancelToken,
    ) -> Result<Outcome, AttemptError> {
        let dest = Destination::new(self.store.clone(), Some(key(prefix)?));
        match job {
            TranscodeJob::Ladder {
                video,
                source_key,
                options,
                segments_per_chunk,
                ..
            } => {
                let source = self.download(source_key).await?;
                if let Some(per) = segments_per_chunk {
                    let plan = chunked::plan(&source, options, *per).await?;
                    if plan.parts().len() > 2 {
                        return self
                            .enqueue_parts(*video, source_key, fence, prefix, &plan, &dest)
                            .await;
                    }
                }
                let progress = self.progress_fn(*video, None);
                let m = transcode(&source, &dest, options, Some(progress), cancel).await?;
                Ok(Outcome::Ready(Box::new(m)))
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
                        output_prefix: prefix.to_owned(),
                        fence: fence.to_owned(),
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
        video: VideoId,
        source_key: &str,
        fence: &str,
        prefix: &str,
        plan: &ChunkPlan,
        dest: &Destination,
    ) -> Result<Outcome, AttemptError> {
        self.write_json(dest, "_parts/plan.json", plan).await?;
        for index in 0..plan.parts().len() {
            let part = TranscodeJob::Part {
                video,
                source_key: source_key.to_owned(),
                output_prefix: prefix.to_owned(),
                fence: fence.to_owned(),
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
        let got = self.sources.get(&k).await?;
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
        let log = self.log.clone();
        tokio::spawn(async move {
            // What went to the log last: its stage and elapsed time.
            let mut logged: Option<(Stage, u64)> = None;
            // The encoding speed, recorded as a metric once encoding ends.
            let mut encoding_speed: Option<f64> = None;
            while rx.changed().await.is_ok() {
                let latest = rx.borrow_and_update().clone();
                if let Some(p) = &latest {
                    if p.stage == Stage::Encoding {
                        encoding_speed = Some(p.speed);
                    } else if let Some(speed) = encoding_speed.take() {
                        // Media seconds per wall second: the worker's pace.
                        metrics::histogram!("videosync_transcode_speed").record(speed);
                    }
                }
                if let (Some(p), Ok(topic)) = (latest, progress_topic(video)) {
                    let due = logged.is_none_or(|(stage, at)| {
                        stage != p.stage || p.elapsed_ms.saturating_sub(at) >= 1000
                    });
                    let (stage, elapsed) = (p.stage, p.elapsed_ms);
                    let event = ProgressEvent {
                        video,
                        part,
                        stage: p.stage,
                        progress: Some(p),
                        error: None,
                    };
                    let _ = bus.publish_json(&topic, &event).await;
                    if let (true, Some(log)) = (due, &log) {
                        if log.append_json(&topic, &event).await.is_ok() {
                            logged = Some((stage, elapsed));
                        }
                    }
                }
            }
        });
        Arc::new(move |p: &Progress| {
            // The ladder's own "done" comes before the video is marked
            // ready; a reader that saw it could find the video still
            // processing. publish_done says done once the catalog does.
            if p.stage != Stage::Done {
                let _ = tx.send(Some(p.clone()));
            }
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
            if let Some(log) = &self.log {
                if let Err(e) = log.append_json(&topic, &event).await {
                    tracing::warn!(%video, "recording the final progress event: {e}");
                }
            }
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
