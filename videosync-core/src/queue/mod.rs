//! Job queues: the [`JobQueue`] contract and its backends.
//!
//! | backend | module | feature |
//! |---|---|---|
//! | SQLite (default, durable) | [`sql`] | `sqlite` |
//! | PostgreSQL (`FOR UPDATE SKIP LOCKED`) | [`sql`] | `postgres` |
//! | Redis (Lua-scripted sorted sets) | `redis` | `redis` |
//!
//! Delivery is at least once: a job is handed out with a lease, and a job
//! whose worker vanished comes back when the lease ends. Workers must
//! therefore be idempotent.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::page::{Cursor, Page};
use crate::{Error, JobId, Result, Timestamp};

#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sql")]
pub mod sql;

/// Highest and lowest allowed [`NewJob::priority`].
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1_000_000..=1_000_000;

/// Longest [`NewJob::kind`] and [`NewJob::dedupe_key`], in bytes.
pub const MAX_LABEL_LEN: usize = 256;

/// Largest [`NewJob::payload`], serialized, in bytes (1 MiB): a job names its
/// inputs; it does not carry them.
pub const MAX_PAYLOAD_LEN: usize = 1024 * 1024;

/// Longest failure reason kept; longer ones are cut.
pub const MAX_REASON_LEN: usize = 4096;

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// What kind of work this is (`transcode`, `thumbnail`); workers route on
    /// it.
    pub kind: String,
    /// The job's arguments.
    pub payload: serde_json::Value,
    /// Higher runs first; equal priorities run in enqueue order.
    pub priority: i32,
    /// While a job with this key is waiting or running, enqueuing another one
    /// with the same key returns the existing job instead.
    pub dedupe_key: Option<String>,
    /// Not before this time.
    pub run_after: Option<Timestamp>,
    /// Overrides the queue's [`RetryPolicy::max_attempts`].
    pub max_attempts: Option<u32>,
}

impl NewJob {
    /// A job of `kind` with `payload`, default priority, no dedupe key, due now.
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        NewJob {
            kind: kind.into(),
            payload,
            priority: 0,
            dedupe_key: None,
            run_after: None,
            max_attempts: None,
        }
    }

    /// This job with `priority`.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// This job with a dedupe key.
    pub fn dedupe_key(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }

    /// This job, not to run before `at`.
    pub fn run_after(mut self, at: Timestamp) -> Self {
        self.run_after = Some(at);
        self
    }

    /// This job with its own attempt limit.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Checks the job's fields; backends call it before storing anything.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field that is out of bounds.
    pub fn validate(&self) -> Result<()> {
        let label_ok =
            |s: &str| !s.is_empty() && s.len() <= MAX_LABEL_LEN && !s.chars().any(char::is_control);
        if !label_ok(&self.kind) {
            return Err(Error::invalid_input(format!(
                "job kind `{}` must be 1 to {MAX_LABEL_LEN} bytes without control characters",
                self.kind.escape_debug()
            )));
        }
        if let Some(key) = &self.dedupe_key {
            if !label_ok(key) {
                return Err(Error::invalid_input(format!(
                    "dedupe key `{}` must be 1 to {MAX_LABEL_LEN} bytes without control characters",
                    key.escape_debug()
                )));
            }
        }
        if !PRIORITY_RANGE.contains(&self.priority) {
            return Err(Error::invalid_input(format!(
                "job priority {} is outside {}..={}",
                self.priority,
                PRIORITY_RANGE.start(),
                PRIORITY_RANGE.end()
            )));
        }
        if self.max_attempts == Some(0) {
            return Err(Error::invalid_input("a job needs at least one attempt"));
        }
        let len = self.payload.to_string().len();
        if len > MAX_PAYLOAD_LEN {
            return Err(Error::invalid_input(format!(
                "job payload is {len} bytes; the limit is {MAX_PAYLOAD_LEN}"
            )));
        }
        Ok(())
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Due, waiting for a worker.
    Ready,
    /// Waiting for its `run_after` time or its retry backoff.
    Scheduled,
    /// Held by a worker under a lease.
    Running,
    /// Failed its last attempt; kept until requeued or cancelled.
    Dead,
    /// Acked: finished. Kept for the queue's [`QueueOptions::retention`] so
    /// that a repeated ack is recognised and the dedupe key keeps holding,
    /// then vacuumed.
    Done,
    /// Cancelled by [`JobQueue::cancel`]: it never runs (again). Kept for the
    /// retention window like [`JobState::Done`], without holding its dedupe
    /// key.
    Cancelled,
}

impl JobState {
    /// The state's name as stored by the backends.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Ready => "ready",
            JobState::Scheduled => "scheduled",
            JobState::Running => "running",
            JobState::Dead => "dead",
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
        }
    }

    /// The state with this stored name.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unknown name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ready" => Ok(JobState::Ready),
            "scheduled" => Ok(JobState::Scheduled),
            "running" => Ok(JobState::Running),
            "dead" => Ok(JobState::Dead),
            "done" => Ok(JobState::Done),
            "cancelled" => Ok(JobState::Cancelled),
            other => Err(Error::invalid_input(format!(
                "unknown job state `{}`",
                other.escape_debug()
            ))),
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job as the queue holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// See [`NewJob::kind`].
    pub kind: String,
    /// See [`NewJob::payload`].
    pub payload: serde_json::Value,
    /// See [`NewJob::priority`].
    pub priority: i32,
    /// See [`NewJob::dedupe_key`].
    pub dedupe_key: Option<String>,
    /// Where it stands.
    pub state: JobState,
    /// How many times it has been handed to a worker.
    pub attempts: u32,
    /// After this many failed attempts it is dead-lettered.
    pub max_attempts: u32,
    /// When it is (or was) due.
    pub run_at: Timestamp,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// When it last changed state.
    pub updated_at: Timestamp,
    /// When it became [`JobState::Done`], [`JobState::Cancelled`] or
    /// [`JobState::Dead`]; `None` while it may still run.
    pub finished_at: Option<Timestamp>,
}

/// What [`JobQueue::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new job was stored.
    New(JobId),
    /// A live job with the same dedupe key exists; nothing was stored.
    Duplicate(JobId),
}

impl Enqueued {
    /// The job's id, new or existing.
    pub fn id(self) -> JobId {
        match self {
            Enqueued::New(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

/// The proof of one hand-out of a job: unique per [`JobQueue::reserve`], and
/// opaque, so a caller can pass it around and compare it (a catalog may keep
/// it as a fence) but never make one up.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LeaseToken(String);

impl LeaseToken {
    /// A fresh random token.
    #[cfg_attr(not(any(feature = "sql", feature = "redis")), allow(dead_code))]
    pub(crate) fn generate() -> Self {
        LeaseToken(uuid::Uuid::new_v4().simple().to_string())
    }

    /// A token as a backend stored it (a catalog reading back the fence it
    /// keeps, say).
    #[cfg_attr(not(feature = "conformance"), allow(dead_code))]
    pub(crate) fn from_stored(s: impl Into<String>) -> Self {
        LeaseToken(s.into())
    }

    /// The token's text, for storing it beside the work it fences.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaseToken({})", self.0)
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job handed to a worker, and the proof that it holds it.
///
/// Only a queue makes leases ([`JobQueue::reserve`]); the fields are read
/// through accessors so that a caller cannot forge one.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    job: Job,
    token: LeaseToken,
    expires_at: Timestamp,
}

impl Lease {
    #[cfg_attr(not(any(feature = "sql", feature = "redis")), allow(dead_code))]
    pub(crate) fn new(job: Job, token: LeaseToken, expires_at: Timestamp) -> Self {
        Lease {
            job,
            token,
            expires_at,
        }
    }

    /// The job as it was handed out (with `attempts` counting this one).
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// Unique to this hand-out: a worker whose lease ended and whose job was
    /// handed to another worker can no longer ack, fail or heartbeat it.
    pub fn token(&self) -> &LeaseToken {
        &self.token
    }

    /// When the lease ended unless extended, as of the hand-out (a
    /// heartbeat answers the new end; the lease keeps this one).
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// A lease with any job and token, for the conformance suite's
    /// "a made-up lease is no lease" cases. Not for production use.
    #[cfg(feature = "conformance")]
    #[doc(hidden)]
    pub fn forged_for_tests(job: Job, token: &str, expires_at: Timestamp) -> Self {
        Lease::new(job, LeaseToken::from_stored(token), expires_at)
    }
}

/// What [`JobQueue::ack`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    /// This call finished the job.
    Done,
    /// The same lease had acked it already (the reply to an earlier ack was
    /// lost, say); nothing changed.
    AlreadyAcked,
}

/// What [`JobQueue::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The job was waiting (ready, scheduled or dead); it is now
    /// [`JobState::Cancelled`] and will never be handed out.
    Removed,
    /// A worker holds the job: it is now [`JobState::Cancelled`], is never
    /// handed out again, and the holder's next heartbeat, ack or fail answers
    /// [`Error::Precondition`] ("job was cancelled") so it stops.
    Signalled,
    /// It was cancelled already; nothing changed.
    AlreadyCancelled,
}
/// What [`JobQueue::fail`] did with the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failed {
    /// It will be tried again at this time.
    Retrying {
        /// When the next attempt is due.
        at: Timestamp,
    },
    /// It used its last attempt and is now a dead letter.
    DeadLettered,
}

/// How failed jobs are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before a job is dead-lettered (a job's own
    /// [`NewJob::max_attempts`] overrides it).
    pub max_attempts: u32,
    /// Wait after the first failure.
    pub base_delay: Duration,
    /// The wait doubles per failure up to this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt after `attempts` attempts have failed:
    /// `base_delay * 2^(attempts-1)`, capped at `max_delay`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        self.base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay)
    }
}

/// The lease [`ReserveOptions::default`] asks for (60 s).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The most a host's clock may differ from the queue server's before
/// [`ClockCheck`] objects: a tenth of [`DEFAULT_LEASE`] (6 s).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(6);

/// Options of [`JobQueue::reserve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveOptions {
    /// How long the lease lasts unless extended by a heartbeat.
    pub lease: Duration,
    /// Only jobs of these kinds; `None` takes any kind. An empty list is
    /// [`Error::InvalidInput`] (it could never match).
    pub kinds: Option<Vec<String>>,
}

impl Default for ReserveOptions {
    fn default() -> Self {
        ReserveOptions {
            lease: DEFAULT_LEASE,
            kinds: None,
        }
    }
}

impl ReserveOptions {
    /// The default options with a lease of `lease`.
    pub fn lease(lease: Duration) -> Self {
        ReserveOptions { lease, kinds: None }
    }

    /// These options, restricted to jobs of `kinds`.
    pub fn kinds<I, S>(mut self, kinds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.kinds = Some(kinds.into_iter().map(Into::into).collect());
        self
    }

    /// Checks the lease and the kinds; backends call it first.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a lease under 1 ms, an empty kinds list or
    /// a kind that no job could have.
    pub fn validate(&self) -> Result<()> {
        validate_lease(self.lease)?;
        if let Some(kinds) = &self.kinds {
            if kinds.is_empty() {
                return Err(Error::invalid_input(
                    "reserve with an empty list of kinds can match no job; pass None for any kind",
                ));
            }
            for k in kinds {
                NewJob::new(k.clone(), serde_json::Value::Null).validate()?;
            }
        }
        Ok(())
    }
}

/// What a queue does at connect when this host's clock and the queue
/// server's clock differ by more than [`MAX_CLOCK_SKEW`].
///
/// Leases are compared against the injected [`crate::Clock`] of each process;
/// a host whose clock runs ahead would see every lease as ended and take
/// jobs that other workers still hold. The check reads the server's time
/// once (`now()` on Postgres, `TIME` on Redis, the OS clock on SQLite, which
/// is the database's own clock) and compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClockCheck {
    /// Refuse to open the queue ([`Error::Precondition`]).
    #[default]
    Refuse,
    /// Open it, logging a warning.
    Warn,
    /// Do not check (tests that run on a [`crate::ManualClock`]).
    Off,
}

/// How a queue is run: retries, how long finished jobs are kept, and the
/// clock check at connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// How failed jobs are retried.
    pub retry: RetryPolicy,
    /// How long done and cancelled jobs are kept (24 h by default): within
    /// it a repeated ack answers [`Acked::AlreadyAcked`] and a done job's
    /// dedupe key still holds. Later the job is vacuumed and is
    /// [`Error::NotFound`].
    pub retention: Duration,
    /// What to do when the clocks disagree at connect.
    pub clock_check: ClockCheck,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            retry: RetryPolicy::default(),
            retention: Duration::from_secs(24 * 3600),
            clock_check: ClockCheck::default(),
        }
    }
}

impl From<RetryPolicy> for QueueOptions {
    fn from(retry: RetryPolicy) -> Self {
        QueueOptions {
            retry,
            ..QueueOptions::default()
        }
    }
}

/// How many jobs are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    /// Due and waiting.
    pub ready: u64,
    /// Waiting for their time.
    pub scheduled: u64,
    /// Held by workers (including leases that have ended but not yet been
    /// reclaimed).
    pub running: u64,
    /// Dead letters.
    pub dead: u64,
    /// Acked, kept for the retention window.
    pub done: u64,
    /// Cancelled, kept for the retention window.
    pub cancelled: u64,
}

/// A durable queue of jobs, one named queue per instance.
///
/// # Contract
/// - [`JobQueue::reserve`] hands out the due job with the highest priority,
///   oldest first among equals (of the asked kinds, if any), under a lease;
///   it increments `attempts`. A job whose lease has ended (by the injected
///   [`crate::Clock`]) is due again. A job handed out `max_attempts` times
///   whose last lease ended without an ack is dead-lettered, with a reason,
///   instead of being handed out again.
/// - [`JobQueue::heartbeat`], [`JobQueue::ack`] and [`JobQueue::fail`] need
///   the current lease: a lease that has ended, or a token from an earlier
///   hand-out, is [`Error::Conflict`]; a job cancelled under the lease is
///   [`Error::Precondition`]; an unknown (or vacuumed) job is
///   [`Error::NotFound`].
/// - Ack is idempotent: an ack repeated with the same lease answers
///   [`Acked::AlreadyAcked`] for as long as the job is retained
///   ([`QueueOptions::retention`]).
/// - [`JobQueue::fail`] schedules a retry after [`RetryPolicy::backoff`], or
///   dead-letters the job after its last attempt (decided from the stored
///   job, not the caller's copy), keeping the reason.
/// - Enqueue with a dedupe key that a ready, scheduled, running or done
///   (retained) job holds returns [`Enqueued::Duplicate`] and stores
///   nothing; dead and cancelled jobs release their key. Requeue refuses
///   while another job holds the key.
/// - Dead letters are listed in the order they died, a page at a time.
/// - Jobs survive a restart of the process (every backend but none is
///   in-memory).
///
/// # Implementing
/// Read time only from the queue's `Clock`, validate with
/// [`NewJob::validate`] and [`ReserveOptions::validate`], and run
/// `videosync_core::conformance::queue`.
#[async_trait]
pub trait JobQueue: fmt::Display + fmt::Debug + Send + Sync + 'static {
    /// Adds a job.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a job that fails [`NewJob::validate`], or a
    /// backend error.
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued>;

    /// Takes the next due job under a lease, or `None` when none is due.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for options that fail
    /// [`ReserveOptions::validate`], or a backend error.
    ///
    /// # Cancel safety
    /// Not cancel safe: a reserve dropped after the backend handed the job
    /// out leaves it held until the lease ends, then it is due again (one
    /// attempt spent).
    async fn reserve(&self, opts: ReserveOptions) -> Result<Option<Lease>>;

    /// Extends a lease to `extend` from now; returns the new end.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the lease has ended or is not current,
    /// [`Error::Precondition`] when the job was cancelled,
    /// [`Error::NotFound`] when the job is gone.
    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<Timestamp>;

    /// Marks a job done. It is kept as [`JobState::Done`] for the retention
    /// window, so an ack repeated after a lost reply answers
    /// [`Acked::AlreadyAcked`].
    ///
    /// # Errors
    /// As [`JobQueue::heartbeat`]; an ack after the lease was lost to another
    /// worker is [`Error::Conflict`].
    async fn ack(&self, lease: &Lease) -> Result<Acked>;

    /// Records a failed attempt: retry later or dead-letter.
    ///
    /// # Errors
    /// As [`JobQueue::heartbeat`].
    async fn fail(&self, lease: &Lease, reason: &str) -> Result<Failed>;

    /// Cancels a job: a waiting or dead one is never handed out; a running
    /// one is never handed out again and its holder is told at its next
    /// heartbeat, ack or fail. Idempotent.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown job, [`Error::Conflict`] for a job
    /// that is done already.
    async fn cancel(&self, id: JobId) -> Result<Cancelled>;

    /// A job in any state.
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is no such job (or it was vacuumed
    /// after the retention window).
    async fn get(&self, id: JobId) -> Result<Job>;

    /// Dead letters in the order they died (by [`Job::finished_at`], then
    /// enqueue order), at most `limit` after `after`. `last_error` says why
    /// each died (the worker's reason, or that its leases ran out).
    ///
    /// A consumer that must see every dead letter (to mark its video failed,
    /// say) keeps the last `next` cursor and asks again from it. Under a wall
    /// clock that steps back, a job can die "before" a cursor already handed
    /// out; such a consumer should also sweep from the start now and then.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a limit of 0 or a cursor this listing did
    /// not make, or a backend error.
    async fn dead_letters(&self, after: Option<&Cursor>, limit: usize) -> Result<Page<Job>>;

    /// Moves a dead letter back to ready with a fresh attempt count.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown job, [`Error::Conflict`] for a job
    /// that is not dead or whose dedupe key another job holds now.
    async fn requeue(&self, id: JobId) -> Result<()>;

    /// How many jobs are in each state.
    ///
    /// # Errors
    /// A backend error.
    async fn counts(&self) -> Result<QueueCounts>;
}
/// Conveniences over [`JobQueue`].
#[async_trait]
pub trait JobQueueExt: JobQueue {
    /// Reserves with the default lease.
    ///
    /// # Errors
    /// As [`JobQueue::reserve`].
    async fn reserve_default(&self) -> Result<Option<Lease>> {
        self.reserve(ReserveOptions::default()).await
    }
}

impl<T: JobQueue + ?Sized> JobQueueExt for T {}

/// A queue shared between tasks.
pub type DynJobQueue = Arc<dyn JobQueue>;

/// Checks a queue name: 1 to 64 characters of `[A-Za-z0-9_.-]`. It becomes
/// part of table rows and Redis keys, so it is kept plain.
///
/// # Errors
/// [`Error::InvalidInput`] naming the rule.
pub fn validate_queue_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "queue name `{}` must be 1 to 64 characters of A-Z, a-z, 0-9, `_`, `-` and `.`",
            name.escape_debug()
        )))
    }
}

/// Checks a lease duration: at least a millisecond.
#[cfg_attr(not(any(feature = "sql", feature = "redis")), allow(dead_code))]
pub(crate) fn validate_lease(d: Duration) -> Result<()> {
    if d < Duration::from_millis(1) {
        return Err(Error::invalid_input(format!(
            "a lease of {d:?} is too short; leases last at least 1 ms"
        )));
    }
    Ok(())
}

/// A failure reason cut to [`MAX_REASON_LEN`] bytes on a character boundary.
#[cfg_attr(not(any(feature = "sql", feature = "redis")), allow(dead_code))]
pub(crate) fn clip_reason(reason: &str) -> String {
    if reason.len() <= MAX_REASON_LEN {
        return reason.to_owned();
    }
    let mut end = MAX_REASON_LEN;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}

/// The reason recorded for a job whose every attempt ended with a lost lease.
#[cfg_attr(not(any(feature = "sql", feature = "redis")), allow(dead_code))]
pub(crate) const LEASE_EXHAUSTED: &str =
    "the worker's lease ended without an ack on the last attempt";

/// Builds the error for a lease-guarded operation on a job that exists but
/// whose lease does not match; shared by every backend.
#[cfg_attr(not(any(feature = "sql", feature = "redis")), allow(dead_code))]
pub(crate) fn lease_conflict(
    op: &str,
    queue: &str,
    lease: &Lease,
    job: &Job,
    token: Option<&str>,
    until: Option<Timestamp>,
    now: Timestamp,
) -> Error {
    let id = job.id;
    let ours = token == Some(lease.token.as_str());
    match job.state {
        JobState::Cancelled if ours => {
            return Error::precondition(format!(
                "{op} of job {id} in {queue}: job was cancelled while the worker held it; stop working on it"
            ))
        }
        JobState::Done if ours => {
            return Error::conflict(format!(
                "{op} of job {id} in {queue}: this lease acked it already"
            ))
        }
        JobState::Running if ours => {}
        state => {
            return Error::conflict(format!(
                "{op} of job {id} in {queue}: the worker no longer holds it (it is {state} under another lease or state)"
            ))
        }
    }
    match until {
        Some(until) if until <= now => Error::conflict(format!(
            "{op} of job {id} in {queue}: the lease expired at {until} (now {now})"
        )),
        _ => Error::conflict(format!(
            "{op} of job {id} in {queue}: the lease is not current"
        )),
    }
}

/// Compares this host's clock with the queue server's, read between
/// `before` and `after` (local readings), and acts as `check` says.
///
/// The server's reading is compared with the midpoint of the two local ones;
/// half the round trip is forgiven, since the server read its clock somewhere
/// in between.
///
/// # Errors
/// [`Error::Precondition`] when the skew is over [`MAX_CLOCK_SKEW`] and
/// `check` is [`ClockCheck::Refuse`].
#[cfg_attr(not(any(feature = "sql", feature = "redis")), allow(dead_code))]
pub(crate) fn judge_clock_skew(
    queue: &str,
    check: ClockCheck,
    before: Timestamp,
    server: Timestamp,
    after: Timestamp,
) -> Result<()> {
    let (lo, hi) = if before <= after {
        (before, after)
    } else {
        (after, before)
    };
    let half_trip = hi.duration_since(lo) / 2;
    let local = lo.saturating_add(half_trip);
    let skew = server
        .duration_since(local)
        .max(local.duration_since(server));
    if skew.saturating_sub(half_trip) <= MAX_CLOCK_SKEW {
        return Ok(());
    }
    let ahead = if local > server { "ahead of" } else { "behind" };
    let message = format!(
        "opening {queue}: this host's clock is {skew:?} {ahead} the queue server's \
         (local {local}, server {server}); leases need them within {MAX_CLOCK_SKEW:?}. \
         Synchronise the clocks (NTP), or open the queue with ClockCheck::Warn"
    );
    match check {
        ClockCheck::Refuse => Err(Error::precondition(message)),
        ClockCheck::Warn => {
            tracing::warn!("{message}");
            Ok(())
        }
        ClockCheck::Off => Ok(()),
    }
}

/// The position in a dead-letter cursor.
#[cfg_attr(not(any(feature = "sql", feature = "redis")), allow(dead_code))]
pub(crate) fn read_dead_cursor(c: &Cursor, queue: &str) -> Result<(i64, i64)> {
    c.position()
        .split_once(':')
        .and_then(|(t, s)| Some((t.parse().ok()?, s.parse().ok()?)))
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "listing dead letters of {queue}: {c} is not a cursor of this listing"
            ))
        })
}

/// The vacuum horizon: done and cancelled jobs finished at or before it go.
#[cfg_attr(not(any(feature = "sql", feature = "redis")), allow(dead_code))]
pub(crate) fn vacuum_before(now: Timestamp, retention: Duration) -> Timestamp {
    now.saturating_sub(retention)
}

/// The queue behind a URL: `sqlite://path`, `postgres://...` or `redis://...`,
/// with `queue` the queue's name. `opts` is a [`QueueOptions`] or just a
/// [`RetryPolicy`] (the other options at their defaults). The clock check of
/// [`QueueOptions::clock_check`] runs before this returns.
///
/// # Errors
/// [`Error::InvalidInput`] for an unknown scheme or a bad name,
/// [`Error::Precondition`] when the clock check refuses, and what the
/// backend fails with when connecting.
pub async fn queue_from_url(
    url: &str,
    queue: &str,
    clock: Arc<dyn crate::Clock>,
    opts: impl Into<QueueOptions>,
) -> Result<DynJobQueue> {
    validate_queue_name(queue)?;
    let opts = opts.into();
    let scheme = url.split_once(':').map_or(url, |(s, _)| s);
    match scheme {
        #[cfg(feature = "sql")]
        "sqlite" | "postgres" | "postgresql" => {
            let db = crate::sql::Database::connect(url).await?;
            Ok(Arc::new(sql::SqlQueue::open(db, queue, clock, opts).await?))
        }
        #[cfg(feature = "redis")]
        "redis" | "rediss" => Ok(Arc::new(
            redis::RedisQueue::connect(url, queue, clock, opts).await?,
        )),
        other => {
            // Only a build without queue backends reaches here with them
            // unused.
            let _ = (clock, opts);
            Err(Error::invalid_input(format!(
                "unknown queue URL scheme `{}` in `{}`; expected {}",
                other.escape_debug(),
                crate::redact_url(url),
                crate::sql_schemes_hint(&["redis"])
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
        };
        let got: Vec<u64> = (1..=6).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (NewJob::new("", serde_json::json!({})), "job kind"),
            (NewJob::new("k\n", serde_json::json!({})), "job kind"),
            (
                NewJob::new("k", serde_json::json!({})).priority(i32::MAX),
                "priority",
            ),
            (
                NewJob::new("k", serde_json::json!({})).max_attempts(0),
                "attempt",
            ),
            (
                NewJob::new("k", serde_json::json!({})).dedupe_key("x".repeat(300)),
                "dedupe key",
            ),
            (
                NewJob::new("k", serde_json::json!("x".repeat(MAX_PAYLOAD_LEN))),
                "payload",
            ),
        ];
        for (job, field) in cases {
            let msg = job
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(msg.contains(field), "{field}: {msg}");
        }
    }

    #[test]
    fn queue_names_are_plain() {
        assert!(validate_queue_name("transcode.v1").is_ok());
        for bad in ["", "a b", "a:b", "{x}", &"q".repeat(65)] {
            assert!(validate_queue_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clock_skew_is_judged_with_the_round_trip_forgiven() {
        let t = |ms: i64| Timestamp::from_millis(1_000_000 + ms);
        let ok = |before, server, after| {
            judge_clock_skew("q", ClockCheck::Refuse, t(before), t(server), t(after)).is_ok()
        };
        assert!(ok(0, 5, 10));
        assert!(ok(0, 6_000, 0));
        assert!(!ok(0, 6_001, 0), "server 6.001 s ahead");
        assert!(!ok(7_000, 0, 7_000), "host 7 s ahead");
        assert!(
            ok(0, 9_000, 6_000),
            "a slow round trip widens the tolerance"
        );
        let err =
            judge_clock_skew("Q", ClockCheck::Refuse, t(60_000), t(0), t(60_000)).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Precondition);
        assert!(err.to_string().contains("ahead of"), "{err}");
        assert!(judge_clock_skew("q", ClockCheck::Warn, t(60_000), t(0), t(60_000)).is_ok());
    }

    #[test]
    fn reserve_options_are_checked() {
        assert!(ReserveOptions::default().validate().is_ok());
        assert!(ReserveOptions::lease(Duration::ZERO).validate().is_err());
        let none: [&str; 0] = [];
        assert!(ReserveOptions::default().kinds(none).validate().is_err());
        assert!(ReserveOptions::default().kinds([""]).validate().is_err());
        assert!(ReserveOptions::default()
            .kinds(["transcode"])
            .validate()
            .is_ok());
    }

    #[test]
    fn reasons_are_clipped_on_char_boundaries() {
        let long = "é".repeat(MAX_REASON_LEN);
        let clipped = clip_reason(&long);
        assert!(clipped.len() <= MAX_REASON_LEN + '…'.len_utf8());
    }
}
