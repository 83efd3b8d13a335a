//! [`SqlQueue`]: the job queue on SQLite (the embedded default) or Postgres.
//!
//! Every state change is one statement guarded by the job's state and lease
//! token, so two workers can never both hold a job. Taking the next job is an
//! `UPDATE ... WHERE seq = (SELECT ... LIMIT 1)`: on SQLite the single writer
//! makes it atomic; on Postgres the subquery adds `FOR UPDATE SKIP LOCKED` so
//! concurrent workers take different jobs without waiting on each other.
//!
//! # Time
//! Leases are compared against the queue's injected [`Clock`], so tests run
//! on a `ManualClock`. At open, [`SqlQueue::open`] reads the database's clock
//! (`clock_timestamp()` on Postgres; on SQLite, a file on this box, the OS
//! clock is the database's clock) and applies [`ClockCheck`]: a host whose
//! clock is off by more than [`super::MAX_CLOCK_SKEW`] is refused or warned
//! about before it can steal or lose leases.
//!
//! # Retention
//! Acked and cancelled jobs stay as rows (`done`, `cancelled`) for
//! [`QueueOptions::retention`], keeping the lease token that finished them,
//! so a repeated ack is recognised; enqueue, reserve, get, counts and the
//! dead-letter listing vacuum the older ones.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::{
    clip_reason, judge_clock_skew, lease_conflict, read_dead_cursor, vacuum_before, validate_lease,
    validate_queue_name, Acked, Cancelled, ClockCheck, Enqueued, Failed, Job, JobQueue, JobState,
    Lease, LeaseToken, NewJob, QueueCounts, QueueOptions, ReserveOptions, LEASE_EXHAUSTED,
};
use crate::page::{check_limit, Cursor, Page};
use crate::sql::{col, convert, Database, Dialect};
use crate::{Clock, Error, JobId, Result, Timestamp};

const COLUMNS: &str = "id, kind, payload, priority, dedupe_key, state, attempts, max_attempts, \
                       run_at, lease_token, lease_until, last_error, created_at, updated_at, \
                       finished_at, seq";

/// The dedupe index's condition, repeated where `ON CONFLICT` names it.
const DEDUPE_LIVE: &str = "dedupe_key IS NOT NULL AND state NOT IN ('dead', 'cancelled')";

/// A job queue on SQLite or Postgres.
#[derive(Clone)]
pub struct SqlQueue {
    db: Database,
    queue: String,
    clock: Arc<dyn Clock>,
    opts: QueueOptions,
}

impl fmt::Debug for SqlQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqlQueue({self})")
    }
}

impl fmt::Display for SqlQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.db, self.queue)
    }
}

/// A job row with its lease columns.
struct Row {
    job: Job,
    lease_token: Option<String>,
    lease_until: Option<Timestamp>,
    seq: i64,
}

impl SqlQueue {
    /// The queue named `queue` in `db`, after the clock check that
    /// [`QueueOptions::clock_check`] asks for. `opts` is a [`QueueOptions`]
    /// or a [`super::RetryPolicy`].
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad queue name, [`Error::Precondition`]
    /// when the clock check refuses, or a database error.
    pub async fn open(
        db: Database,
        queue: &str,
        clock: Arc<dyn Clock>,
        opts: impl Into<QueueOptions>,
    ) -> Result<Self> {
        validate_queue_name(queue)?;
        let q = SqlQueue {
            db,
            queue: queue.to_owned(),
            clock,
            opts: opts.into(),
        };
        if q.opts.clock_check != ClockCheck::Off {
            q.check_clock(q.opts.clock_check).await?;
        }
        Ok(q)
    }

    /// Reads the database's clock and compares it with the queue's
    /// [`Clock`], acting as `check` says.
    ///
    /// # Errors
    /// [`Error::Precondition`] for a skew over [`super::MAX_CLOCK_SKEW`]
    /// under [`ClockCheck::Refuse`], or a database error.
    pub async fn check_clock(&self, check: ClockCheck) -> Result<()> {
        let sql = match self.db.dialect() {
            Dialect::Postgres => {
                "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
            }
            Dialect::Sqlite => {
                "SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
            }
        };
        let before = self.clock.now();
        let server: i64 = sqlx::query_scalar(sql)
            .fetch_one(self.db.pool())
            .await
            .map_err(|e| convert(&format!("reading the clock of {self}"), e))?;
        let after = self.clock.now();
        judge_clock_skew(
            &self.to_string(),
            check,
            before,
            Timestamp::from_millis(server),
            after,
        )
    }

    fn row(&self, r: &AnyRow, now: Timestamp) -> Result<Row> {
        let id: String = col(r, "id")?;
        let payload: String = col(r, "payload")?;
        let state = JobState::parse(&col::<String>(r, "state")?)?;
        let run_at = Timestamp::from_millis(col(r, "run_at")?);
        let state = match state {
            JobState::Ready if run_at > now => JobState::Scheduled,
            s => s,
        };
        let job = Job {
            id: id.parse()?,
            kind: col(r, "kind")?,
            payload: serde_json::from_str(&payload).map_err(|e| {
                Error::backend(format!("decoding payload of job {id} in {self}"), e)
            })?,
            priority: int(col::<i64>(r, "priority")?)?,
            dedupe_key: col(r, "dedupe_key")?,
            state,
            attempts: int(col::<i64>(r, "attempts")?)?,
            max_attempts: int(col::<i64>(r, "max_attempts")?)?,
            run_at,
            last_error: col(r, "last_error")?,
            created_at: Timestamp::from_millis(col(r, "created_at")?),
            updated_at: Timestamp::from_millis(col(r, "updated_at")?),
            finished_at: col::<Option<i64>>(r, "finished_at")?.map(Timestamp::from_millis),
        };
        Ok(Row {
            job,
            lease_token: col(r, "lease_token")?,
            lease_until: col::<Option<i64>>(r, "lease_until")?.map(Timestamp::from_millis),
            seq: col(r, "seq")?,
        })
    }

    async fn fetch(&self, id: &str, now: Timestamp) -> Result<Option<Row>> {
        let sql = format!("SELECT {COLUMNS} FROM vs_jobs WHERE queue = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(&self.queue)
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| convert(&format!("reading job {id} in {self}"), e))?;
        row.map(|r| self.row(&r, now)).transpose()
    }

    /// Dead-letters the jobs whose last lease ended without an ack, and
    /// vacuums the done and cancelled jobs past the retention window.
    async fn housekeep(&self, now: Timestamp) -> Result<()> {
        sqlx::query(
            "UPDATE vs_jobs SET state = 'dead', lease_token = NULL, lease_until = NULL, \
             last_error = $3, updated_at = $2, finished_at = $2 \
             WHERE queue = $1 AND state = 'running' AND lease_until <= $2 AND attempts >= max_attempts",
        )
        .bind(&self.queue)
        .bind(now.as_millis())
        .bind(LEASE_EXHAUSTED)
        .execute(self.db.pool())
        .await
        .map_err(|e| convert(&format!("dead-lettering expired jobs in {self}"), e))?;
        sqlx::query(
            "DELETE FROM vs_jobs WHERE queue = $1 AND state IN ('done', 'cancelled') \
             AND finished_at <= $2",
        )
        .bind(&self.queue)
        .bind(vacuum_before(now, self.opts.retention).as_millis())
        .execute(self.db.pool())
        .await
        .map_err(|e| convert(&format!("vacuuming finished jobs in {self}"), e))?;
        Ok(())
    }
}

fn int<T: TryFrom<i64>>(v: i64) -> Result<T> {
    T::try_from(v).map_err(|_| Error::backend("decoding a job row", format!("{v} is out of range")))
}

impl SqlQueue {
    /// Explains why a lease-guarded statement changed nothing, from the row
    /// as it is now.
    fn explain(&self, op: &str, lease: &Lease, row: Option<Row>, now: Timestamp) -> Error {
        let id = lease.job().id;
        match row {
            None => Error::not_found(format!(
                "{op} of job {id} in {self}: no such job (never enqueued, or vacuumed after the retention window)"
            )),
            Some(row) => lease_conflict(
                op,
                &self.to_string(),
                lease,
                &row.job,
                row.lease_token.as_deref(),
                row.lease_until,
                now,
            ),
        }
    }

    async fn lease_error(&self, op: &str, lease: &Lease, now: Timestamp) -> Error {
        match self.fetch(&lease.job().id.to_string(), now).await {
            Ok(row) => self.explain(op, lease, row, now),
            Err(e) => e,
        }
    }
}

/// A dead-letter cursor: `<finished_at>:<seq>` of the last job listed.
fn dead_cursor(finished_at: i64, seq: i64) -> Cursor {
    Cursor::new(format!("{finished_at}:{seq}"))
}

#[async_trait]
impl JobQueue for SqlQueue {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        job.validate()?;
        let now = self.clock.now();
        self.housekeep(now).await?;
        let id = JobId::new();
        let what = format!("enqueue of a {} job in {self}", job.kind);
        let max_attempts = i64::from(job.max_attempts.unwrap_or(self.opts.retry.max_attempts));
        let insert = format!(
            "INSERT INTO vs_jobs (id, queue, kind, payload, priority, dedupe_key, state, attempts, \
             max_attempts, run_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'ready', 0, $7, $8, $9, $9) \
             ON CONFLICT (queue, dedupe_key) WHERE {DEDUPE_LIVE} DO NOTHING"
        );
        let lookup = format!(
            "SELECT id FROM vs_jobs WHERE queue = $1 AND dedupe_key = $2 AND {DEDUPE_LIVE}"
        );
        // A dedupe conflict inserts nothing; the existing job may die or be
        // cancelled between the insert and the lookup, so try again a few
        // times.
        for _ in 0..3 {
            let inserted = sqlx::query(&insert)
                .bind(id.to_string())
                .bind(&self.queue)
                .bind(&job.kind)
                .bind(job.payload.to_string())
                .bind(i64::from(job.priority))
                .bind(job.dedupe_key.clone())
                .bind(max_attempts)
                .bind(job.run_after.unwrap_or(now).as_millis())
                .bind(now.as_millis())
                .execute(self.db.pool())
                .await
                .map_err(|e| convert(&what, e))?;
            if inserted.rows_affected() == 1 {
                return Ok(Enqueued::New(id));
            }
            let existing: Option<String> = sqlx::query_scalar(&lookup)
                .bind(&self.queue)
                .bind(job.dedupe_key.clone())
                .fetch_optional(self.db.pool())
                .await
                .map_err(|e| convert(&what, e))?;
            if let Some(existing) = existing {
                return Ok(Enqueued::Duplicate(existing.parse()?));
            }
        }
        Err(Error::conflict(format!(
            "{what}: the job holding its dedupe key kept changing; try again"
        )))
    }

    async fn reserve(&self, opts: ReserveOptions) -> Result<Option<Lease>> {
        opts.validate()?;
        let now = self.clock.now();
        self.housekeep(now).await?;
        let token = LeaseToken::generate();
        let expires_at = now.saturating_add(opts.lease);
        let kinds = opts.kinds.unwrap_or_default();
        let kind_filter = if kinds.is_empty() {
            String::new()
        } else {
            let marks: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 5)).collect();
            format!("AND kind IN ({}) ", marks.join(", "))
        };
        let sql = format!(
            "UPDATE vs_jobs SET state = 'running', attempts = attempts + 1, lease_token = $3, \
             lease_until = $4, updated_at = $2 \
             WHERE seq = (SELECT seq FROM vs_jobs WHERE queue = $1 {kind_filter}AND \
               ((state = 'ready' AND run_at <= $2) OR \
                (state = 'running' AND lease_until <= $2 AND attempts < max_attempts)) \
               ORDER BY priority DESC, run_at ASC, seq ASC LIMIT 1 {}) \
             RETURNING {COLUMNS}",
            self.db.dialect().skip_locked()
        );
        let mut query = sqlx::query(&sql)
            .bind(&self.queue)
            .bind(now.as_millis())
            .bind(token.as_str())
            .bind(expires_at.as_millis());
        for kind in &kinds {
            query = query.bind(kind.as_str());
        }
        let row = query
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| convert(&format!("reserving a job in {self}"), e))?;
        let Some(row) = row else { return Ok(None) };
        let row = self.row(&row, now)?;
        Ok(Some(Lease::new(row.job, token, expires_at)))
    }

    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<Timestamp> {
        validate_lease(extend)?;
        let now = self.clock.now();
        let until = now.saturating_add(extend);
        let id = lease.job().id;
        let done = sqlx::query(
            "UPDATE vs_jobs SET lease_until = $4, updated_at = $3 \
             WHERE queue = $1 AND id = $2 AND state = 'running' AND lease_token = $5 AND lease_until > $3",
        )
        .bind(&self.queue)
        .bind(id.to_string())
        .bind(now.as_millis())
        .bind(until.as_millis())
        .bind(lease.token().as_str())
        .execute(self.db.pool())
        .await
        .map_err(|e| convert(&format!("heartbeat of job {id} in {self}"), e))?;
        if done.rows_affected() == 1 {
            Ok(until)
        } else {
            Err(self.lease_error("heartbeat", lease, now).await)
        }
    }

    async fn ack(&self, lease: &Lease) -> Result<Acked> {
        let now = self.clock.now();
        let id = lease.job().id;
        // The token stays on the done row: it is how a repeated ack knows
        // that it was its own.
        let done = sqlx::query(
            "UPDATE vs_jobs SET state = 'done', lease_until = NULL, finished_at = $3, updated_at = $3 \
             WHERE queue = $1 AND id = $2 AND state = 'running' AND lease_token = $4 AND lease_until > $3",
        )
        .bind(&self.queue)
        .bind(id.to_string())
        .bind(now.as_millis())
        .bind(lease.token().as_str())
        .execute(self.db.pool())
        .await
        .map_err(|e| convert(&format!("ack of job {id} in {self}"), e))?;
        if done.rows_affected() == 1 {
            return Ok(Acked::Done);
        }
        let row = self.fetch(&id.to_string(), now).await?;
        match row {
            Some(r)
                if r.job.state == JobState::Done
                    && r.lease_token.as_deref() == Some(lease.token().as_str()) =>
            {
                Ok(Acked::AlreadyAcked)
            }
            row => Err(self.explain("ack", lease, row, now)),
        }
    }

    async fn fail(&self, lease: &Lease, reason: &str) -> Result<Failed> {
        let now = self.clock.now();
        let id = lease.job().id;
        // Retry or dead is decided from the stored row; the token pins the
        // hand-out, so the attempts read here are the ones the update sees.
        let row = self.fetch(&id.to_string(), now).await?;
        let stored = match row {
            Some(r)
                if r.job.state == JobState::Running
                    && r.lease_token.as_deref() == Some(lease.token().as_str())
                    && r.lease_until.is_some_and(|u| u > now) =>
            {
                r.job
            }
            row => return Err(self.explain("fail", lease, row, now)),
        };
        let dead = stored.attempts >= stored.max_attempts;
        let retry_at = now.saturating_add(self.opts.retry.backoff(stored.attempts));
        let done = sqlx::query(
            "UPDATE vs_jobs SET state = $5, run_at = $6, last_error = $7, lease_token = NULL, \
             lease_until = NULL, updated_at = $3, finished_at = $8 \
             WHERE queue = $1 AND id = $2 AND state = 'running' AND lease_token = $4 AND lease_until > $3",
        )
        .bind(&self.queue)
        .bind(id.to_string())
        .bind(now.as_millis())
        .bind(lease.token().as_str())
        .bind(if dead { "dead" } else { "ready" })
        .bind(if dead { stored.run_at } else { retry_at }.as_millis())
        .bind(clip_reason(reason))
        .bind(dead.then_some(now.as_millis()))
        .execute(self.db.pool())
        .await
        .map_err(|e| convert(&format!("fail of job {id} in {self}"), e))?;
        if done.rows_affected() != 1 {
            return Err(self.lease_error("fail", lease, now).await);
        }
        Ok(if dead {
            Failed::DeadLettered
        } else {
            Failed::Retrying { at: retry_at }
        })
    }

    async fn cancel(&self, id: JobId) -> Result<Cancelled> {
        let now = self.clock.now();
        let what = format!("cancel of job {id} in {self}");
        // Read, then change the row only if it is still as read: a worker
        // may ack or a reserve may take it in between.
        for _ in 0..3 {
            let Some(row) = self.fetch(&id.to_string(), now).await? else {
                return Err(Error::not_found(format!("{what}: no such job")));
            };
            let outcome = match row.job.state {
                JobState::Cancelled => return Ok(Cancelled::AlreadyCancelled),
                JobState::Done => {
                    return Err(Error::conflict(format!("{what}: it is done already")))
                }
                JobState::Running => Cancelled::Signalled,
                JobState::Ready | JobState::Scheduled | JobState::Dead => Cancelled::Removed,
            };
            let stored_state = match row.job.state {
                JobState::Scheduled => JobState::Ready,
                s => s,
            };
            let changed = sqlx::query(
                "UPDATE vs_jobs SET state = 'cancelled', lease_until = NULL, finished_at = $3, \
                 updated_at = $3 \
                 WHERE queue = $1 AND id = $2 AND state = $4 AND seq = $5 \
                 AND COALESCE(lease_token, '') = $6",
            )
            .bind(&self.queue)
            .bind(id.to_string())
            .bind(now.as_millis())
            .bind(stored_state.as_str())
            .bind(row.seq)
            .bind(row.lease_token.clone().unwrap_or_default())
            .execute(self.db.pool())
            .await
            .map_err(|e| convert(&what, e))?;
            if changed.rows_affected() == 1 {
                return Ok(outcome);
            }
        }
        Err(Error::conflict(format!(
            "{what}: the job kept changing; try again"
        )))
    }

    async fn get(&self, id: JobId) -> Result<Job> {
        let now = self.clock.now();
        self.housekeep(now).await?;
        self.fetch(&id.to_string(), now)
            .await?
            .map(|r| r.job)
            .ok_or_else(|| Error::not_found(format!("job {id} in {self}: no such job")))
    }

    async fn dead_letters(&self, after: Option<&Cursor>, limit: usize) -> Result<Page<Job>> {
        let limit = check_limit(limit)?;
        let (t, s) = match after {
            Some(c) => read_dead_cursor(c, &self.to_string())?,
            None => (i64::MIN, i64::MIN),
        };
        let now = self.clock.now();
        self.housekeep(now).await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM vs_jobs WHERE queue = $1 AND state = 'dead' \
             AND (finished_at > $2 OR (finished_at = $2 AND seq > $3)) \
             ORDER BY finished_at ASC, seq ASC LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(&self.queue)
            .bind(t)
            .bind(s)
            .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
            .fetch_all(self.db.pool())
            .await
            .map_err(|e| convert(&format!("listing dead letters of {self}"), e))?;
        let mut rows = rows
            .iter()
            .map(|r| self.row(r, now))
            .collect::<Result<Vec<Row>>>()?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = match rows.last() {
            Some(last) if more => Some(dead_cursor(
                last.job.finished_at.map_or(i64::MIN, Timestamp::as_millis),
                last.seq,
            )),
            _ => None,
        };
        Ok(Page {
            items: rows.into_iter().map(|r| r.job).collect(),
            next,
        })
    }

    async fn requeue(&self, id: JobId) -> Result<()> {
        let now = self.clock.now();
        let what = format!("requeue of job {id} in {self}");
        let done = sqlx::query(
            "UPDATE vs_jobs SET state = 'ready', attempts = 0, run_at = $3, updated_at = $3, \
             finished_at = NULL \
             WHERE queue = $1 AND id = $2 AND state = 'dead'",
        )
        .bind(&self.queue)
        .bind(id.to_string())
        .bind(now.as_millis())
        .execute(self.db.pool())
        .await
        .map_err(|e| match convert(&what, e) {
            Error::AlreadyExists { .. } => {
                Error::conflict(format!("{what}: a live job holds its dedupe key"))
            }
            other => other,
        })?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        match self.fetch(&id.to_string(), now).await? {
            None => Err(Error::not_found(format!("{what}: no such job"))),
            Some(row) => Err(Error::conflict(format!(
                "{what}: it is {}, not dead",
                row.job.state
            ))),
        }
    }

    async fn counts(&self) -> Result<QueueCounts> {
        let now = self.clock.now();
        self.housekeep(now).await?;
        let row = sqlx::query(
            "SELECT \
               COUNT(CASE WHEN state = 'ready' AND run_at <= $2 THEN 1 END) AS ready, \
               COUNT(CASE WHEN state = 'ready' AND run_at > $2 THEN 1 END) AS scheduled, \
               COUNT(CASE WHEN state = 'running' THEN 1 END) AS running, \
               COUNT(CASE WHEN state = 'dead' THEN 1 END) AS dead, \
               COUNT(CASE WHEN state = 'done' THEN 1 END) AS done, \
               COUNT(CASE WHEN state = 'cancelled' THEN 1 END) AS cancelled \
             FROM vs_jobs WHERE queue = $1",
        )
        .bind(&self.queue)
        .bind(now.as_millis())
        .fetch_one(self.db.pool())
        .await
        .map_err(|e| convert(&format!("counting jobs in {self}"), e))?;
        let n = |name: &str| -> Result<u64> { int(col::<i64>(&row, name)?) };
        Ok(QueueCounts {
            ready: n("ready")?,
            scheduled: n("scheduled")?,
            running: n("running")?,
            dead: n("dead")?,
            done: n("done")?,
            cancelled: n("cancelled")?,
        })
    }
}
