//! [`SqlQueue`]: the job queue on SQLite (the embedded default) or Postgres.
//!
//! Every state change is one statement guarded by the job's state and lease
//! token, so two workers can never both hold a job. Taking the next job is an
//! `UPDATE ... WHERE seq = (SELECT ... LIMIT 1)`: on SQLite the single writer
//! makes it atomic; on Postgres the subquery adds `FOR UPDATE SKIP LOCKED` so
//! concurrent workers take different jobs without waiting on each other.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{
    clip_reason, lease_conflict, validate_lease, validate_queue_name, Enqueued, Failed, Job,
    JobQueue, JobState, Lease, NewJob, QueueCounts, ReserveOptions, RetryPolicy, LEASE_EXHAUSTED,
};
use crate::sql::{col, convert, Database};
use crate::{Clock, Error, JobId, Result, Timestamp};

const COLUMNS: &str = "id, kind, payload, priority, dedupe_key, state, attempts, max_attempts, \
                       run_at, lease_token, lease_until, last_error, created_at, updated_at";

/// A job queue on SQLite or Postgres.
#[derive(Clone)]
pub struct SqlQueue {
    db: Database,
    queue: String,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
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
}

impl SqlQueue {
    /// The queue named `queue` in `db`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad queue name.
    pub fn new(
        db: Database,
        queue: &str,
        clock: Arc<dyn Clock>,
        retry: RetryPolicy,
    ) -> Result<Self> {
        validate_queue_name(queue)?;
        Ok(SqlQueue {
            db,
            queue: queue.to_owned(),
            clock,
            retry,
        })
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
        };
        Ok(Row {
            job,
            lease_token: col(r, "lease_token")?,
            lease_until: col::<Option<i64>>(r, "lease_until")?.map(Timestamp::from_millis),
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

    /// Explains why a lease-guarded statement changed nothing.
    async fn lease_error(&self, op: &str, lease: &Lease, now: Timestamp) -> Error {
        let id = lease.job.id;
        match self.fetch(&id.to_string(), now).await {
            Err(e) => e,
            Ok(None) => Error::not_found(format!(
                "{op} of job {id} in {self}: no such job (acked, or never enqueued)"
            )),
            Ok(Some(row)) => lease_conflict(
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

    async fn dead_letter_exhausted(&self, now: Timestamp) -> Result<()> {
        sqlx::query(
            "UPDATE vs_jobs SET state = 'dead', lease_token = NULL, lease_until = NULL, \
             last_error = $3, updated_at = $2 \
             WHERE queue = $1 AND state = 'running' AND lease_until <= $2 AND attempts >= max_attempts",
        )
        .bind(&self.queue)
        .bind(now.as_millis())
        .bind(LEASE_EXHAUSTED)
        .execute(self.db.pool())
        .await
        .map_err(|e| convert(&format!("dead-lettering expired jobs in {self}"), e))?;
        Ok(())
    }
}

fn int<T: TryFrom<i64>>(v: i64) -> Result<T> {
    T::try_from(v).map_err(|_| Error::backend("decoding a job row", format!("{v} is out of range")))
}

#[async_trait]
impl JobQueue for SqlQueue {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        job.validate()?;
        let now = self.clock.now();
        let id = JobId::new();
        let what = format!("enqueue of a {} job in {self}", job.kind);
        let max_attempts = i64::from(job.max_attempts.unwrap_or(self.retry.max_attempts));
        // A dedupe conflict inserts nothing; the existing job may finish
        // between the insert and the lookup, so try again a few times.
        for _ in 0..3 {
            let inserted = sqlx::query(
                "INSERT INTO vs_jobs (id, queue, kind, payload, priority, dedupe_key, state, attempts, \
                 max_attempts, run_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'ready', 0, $7, $8, $9, $9) \
                 ON CONFLICT (queue, dedupe_key) WHERE dedupe_key IS NOT NULL AND state <> 'dead' DO NOTHING",
            )
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
            let existing: Option<String> = sqlx::query_scalar(
                "SELECT id FROM vs_jobs WHERE queue = $1 AND dedupe_key = $2 AND state <> 'dead'",
            )
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
        validate_lease(opts.lease)?;
        let now = self.clock.now();
        self.dead_letter_exhausted(now).await?;
        let token = Uuid::new_v4().simple().to_string();
        let expires_at = now.saturating_add(opts.lease);
        let sql = format!(
            "UPDATE vs_jobs SET state = 'running', attempts = attempts + 1, lease_token = $3, \
             lease_until = $4, updated_at = $2 \
             WHERE seq = (SELECT seq FROM vs_jobs WHERE queue = $1 AND \
               ((state = 'ready' AND run_at <= $2) OR \
                (state = 'running' AND lease_until <= $2 AND attempts < max_attempts)) \
               ORDER BY priority DESC, run_at ASC, seq ASC LIMIT 1 {}) \
             RETURNING {COLUMNS}",
            self.db.dialect().skip_locked()
        );
        let row = sqlx::query(&sql)
            .bind(&self.queue)
            .bind(now.as_millis())
            .bind(&token)
            .bind(expires_at.as_millis())
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| convert(&format!("reserving a job in {self}"), e))?;
        let Some(row) = row else { return Ok(None) };
        let row = self.row(&row, now)?;
        Ok(Some(Lease {
            job: row.job,
            token,
            expires_at,
        }))
    }

    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<Timestamp> {
        validate_lease(extend)?;
        let now = self.clock.now();
        let until = now.saturating_add(extend);
        let done = sqlx::query(
            "UPDATE vs_jobs SET lease_until = $4, updated_at = $3 \
             WHERE queue = $1 AND id = $2 AND state = 'running' AND lease_token = $5 AND lease_until > $3",
        )
        .bind(&self.queue)
        .bind(lease.job.id.to_string())
        .bind(now.as_millis())
        .bind(until.as_millis())
        .bind(&lease.token)
        .execute(self.db.pool())
        .await
        .map_err(|e| convert(&format!("heartbeat of job {} in {self}", lease.job.id), e))?;
        if done.rows_affected() == 1 {
            Ok(until)
        } else {
            Err(self.lease_error("heartbeat", lease, now).await)
        }
    }

    async fn ack(&self, lease: &Lease) -> Result<()> {
        let now = self.clock.now();
        let done = sqlx::query(
            "DELETE FROM vs_jobs \
             WHERE queue = $1 AND id = $2 AND state = 'running' AND lease_token = $4 AND lease_until > $3",
        )
        .bind(&self.queue)
        .bind(lease.job.id.to_string())
        .bind(now.as_millis())
        .bind(&lease.token)
        .execute(self.db.pool())
        .await
        .map_err(|e| convert(&format!("ack of job {} in {self}", lease.job.id), e))?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(self.lease_error("ack", lease, now).await)
        }
    }

    async fn fail(&self, lease: &Lease, reason: &str) -> Result<Failed> {
        let now = self.clock.now();
        // The token pins the hand-out, so the lease's attempt count is the
        // row's.
        let dead = lease.job.attempts >= lease.job.max_attempts;
        let retry_at = now.saturating_add(self.retry.backoff(lease.job.attempts));
        let done = sqlx::query(
            "UPDATE vs_jobs SET state = $5, run_at = $6, last_error = $7, lease_token = NULL, \
             lease_until = NULL, updated_at = $3 \
             WHERE queue = $1 AND id = $2 AND state = 'running' AND lease_token = $4 AND lease_until > $3",
        )
        .bind(&self.queue)
        .bind(lease.job.id.to_string())
        .bind(now.as_millis())
        .bind(&lease.token)
        .bind(if dead { "dead" } else { "ready" })
        .bind(if dead { lease.job.run_at } else { retry_at }.as_millis())
        .bind(clip_reason(reason))
        .execute(self.db.pool())
        .await
        .map_err(|e| convert(&format!("fail of job {} in {self}", lease.job.id), e))?;
        if done.rows_affected() != 1 {
            return Err(self.lease_error("fail", lease, now).await);
        }
        Ok(if dead {
            Failed::DeadLettered
        } else {
            Failed::Retrying { at: retry_at }
        })
    }

    async fn get(&self, id: JobId) -> Result<Job> {
        let now = self.clock.now();
        self.dead_letter_exhausted(now).await?;
        self.fetch(&id.to_string(), now)
            .await?
            .map(|r| r.job)
            .ok_or_else(|| Error::not_found(format!("job {id} in {self}: no such job")))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<Job>> {
        let now = self.clock.now();
        self.dead_letter_exhausted(now).await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM vs_jobs WHERE queue = $1 AND state = 'dead' \
             ORDER BY updated_at ASC, seq ASC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(&self.queue)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.db.pool())
            .await
            .map_err(|e| convert(&format!("listing dead letters of {self}"), e))?;
        rows.iter()
            .map(|r| self.row(r, now).map(|r| r.job))
            .collect()
    }

    async fn requeue(&self, id: JobId) -> Result<()> {
        let now = self.clock.now();
        let what = format!("requeue of job {id} in {self}");
        let done = sqlx::query(
            "UPDATE vs_jobs SET state = 'ready', attempts = 0, run_at = $3, updated_at = $3 \
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
        self.dead_letter_exhausted(now).await?;
        let row = sqlx::query(
            "SELECT \
               COUNT(CASE WHEN state = 'ready' AND run_at <= $2 THEN 1 END) AS ready, \
               COUNT(CASE WHEN state = 'ready' AND run_at > $2 THEN 1 END) AS scheduled, \
               COUNT(CASE WHEN state = 'running' THEN 1 END) AS running, \
               COUNT(CASE WHEN state = 'dead' THEN 1 END) AS dead \
             FROM vs_jobs WHERE queue = $1",
        )
        .bind(&self.queue)
        .bind(now.as_millis())
        .fetch_one(self.db.pool())
        .await
        .map_err(|e| convert(&format!("counting jobs in {self}"), e))?;
        Ok(QueueCounts {
            ready: int(col::<i64>(&row, "ready")?)?,
            scheduled: int(col::<i64>(&row, "scheduled")?)?,
            running: int(col::<i64>(&row, "running")?)?,
            dead: int(col::<i64>(&row, "dead")?)?,
        })
    }
}
