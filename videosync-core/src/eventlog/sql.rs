//! [`SqlLog`]: the event log on SQLite (processes sharing one file) or
//! Postgres.
//!
//! # Layout
//! `vs_eventlog_heads` holds one row per (log, topic): the epoch, the head
//! and the last append time; `vs_eventlog_entries` holds the entries
//! (migration `0003_eventlog.sql`). An append is one transaction that bumps
//! the head with an upsert (`... ON CONFLICT DO UPDATE ... RETURNING`),
//! inserts the entry under that number and trims by retention. On Postgres
//! the upsert locks the head row until commit, so concurrent appenders on
//! any connection queue up per topic; on SQLite the upsert is the
//! transaction's first statement, so it takes the database's write lock at
//! once (waiting out other processes with the busy timeout) and no two
//! appenders can read the same head.
//!
//! A read is one transaction (`REPEATABLE READ` on Postgres) that reads the
//! head row and then the entries up to that head, so it never sees an entry
//! without its head or the reverse. Reads filter expired entries by age
//! themselves, so age retention holds on a topic that nobody appends to;
//! the rows themselves go at the next append.
//!
//! # Tail latency
//! A tail polls every [`TAIL_POLL_INTERVAL`] (100 ms) when it has caught
//! up, and is woken at once by appends made through this `SqlLog` or its
//! clones. So an entry appended in this process reaches its tailers after
//! one query; one appended by another process (or another `SqlLog` on the
//! same database) after at most the interval plus one query.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::any::AnyRow;
use tokio::sync::watch;

use super::{
    check_limit, check_payload, validate_log_name, Appended, Epoch, EventLog, Follow, LogEntry,
    LogOptions, LogStream, ReadResult, Recovery, StreamPosition,
};
use crate::bus::Topic;
use crate::sql::{col, convert, Database, Dialect};
use crate::{Clock, Error, Result, Timestamp};

/// How often a caught-up tail asks the database for new entries when no
/// append in this process woke it.
pub const TAIL_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// An event log in a SQL database.
#[derive(Clone)]
pub struct SqlLog {
    db: Database,
    name: Arc<str>,
    clock: Arc<dyn Clock>,
    options: LogOptions,
    /// Per topic with tailers in this process, a counter that local appends
    /// bump to wake them.
    wakers: Arc<Mutex<HashMap<Topic, watch::Sender<u64>>>>,
}

impl fmt::Debug for SqlLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqlLog({self}, {:?})", self.options)
    }
}

impl fmt::Display for SqlLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/eventlog/{}", self.db, self.name)
    }
}

/// A topic's head row.
struct Head {
    epoch: Epoch,
    head: u64,
}

impl SqlLog {
    /// The log named `name` in `db` (logs of different names share the
    /// tables but nothing else), with `options` as retention and entries
    /// timed by `clock`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad name or bad options.
    pub fn new(
        db: Database,
        name: &str,
        clock: Arc<dyn Clock>,
        options: LogOptions,
    ) -> Result<Self> {
        validate_log_name(name)?;
        options.validate()?;
        Ok(SqlLog {
            db,
            name: name.into(),
            clock,
            options,
            wakers: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn wakers(&self) -> MutexGuard<'_, HashMap<Topic, watch::Sender<u64>>> {
        // The map holds only wake-up channels; a panic elsewhere cannot leave
        // it inconsistent.
        self.wakers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes this process's tailers of `topic`.
    fn wake(&self, topic: &Topic) {
        let mut wakers = self.wakers();
        if let Some(tx) = wakers.get(topic) {
            if tx.receiver_count() == 0 {
                wakers.remove(topic);
            } else {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Creates the head row of `topic` with a new epoch if it has none, and
    /// deletes entries left from a lost history.
    async fn ensure_head(&self, topic: &Topic) -> Result<()> {
        let what = || format!("starting the history of {topic} in {self}");
        let mut tx = self
            .db
            .pool()
            .begin()
            .await
            .map_err(|e| convert(&what(), e))?;
        let created = sqlx::query(
            "INSERT INTO vs_eventlog_heads (log, topic, epoch, head, last_at) \
             VALUES ($1, $2, $3, 0, $4) ON CONFLICT (log, topic) DO NOTHING",
        )
        .bind(&*self.name)
        .bind(topic.as_str())
        .bind(Epoch::random().as_str())
        .bind(i64::MIN)
        .execute(&mut *tx)
        .await
        .map_err(|e| convert(&what(), e))?;
        if created.rows_affected() == 1 {
            self.delete_stale(&mut tx, topic, &what).await?;
        }
        tx.commit().await.map_err(|e| convert(&what(), e))
    }

    async fn delete_stale(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        topic: &Topic,
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<()> {
        sqlx::query("DELETE FROM vs_eventlog_entries WHERE log = $1 AND topic = $2")
            .bind(&*self.name)
            .bind(topic.as_str())
            .execute(&mut **tx)
            .await
            .map_err(|e| convert(&what(), e))?;
        Ok(())
    }

    async fn read_once(
        &self,
        topic: &Topic,
        since: Option<&StreamPosition>,
        limit: usize,
    ) -> Result<Option<ReadResult>> {
        let what = || format!("read of {topic} in {self}");
        let cutoff = self.options.cutoff(self.clock.now());
        let mut tx = self
            .db
            .pool()
            .begin()
            .await
            .map_err(|e| convert(&what(), e))?;
        if self.db.dialect() == Dialect::Postgres {
            // One snapshot for the head and the entries.
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await
                .map_err(|e| convert(&what(), e))?;
        }
        let row =
            sqlx::query("SELECT epoch, head FROM vs_eventlog_heads WHERE log = $1 AND topic = $2")
                .bind(&*self.name)
                .bind(topic.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| convert(&what(), e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let head = Head {
            epoch: Epoch::parse(&col::<String>(&row, "epoch")?)
                .map_err(|e| Error::backend(what(), e))?,
            head: seq_of(col(&row, "head")?, &what)?,
        };
        let honoured_from = match since {
            None => Some(0),
            Some(p) if p.epoch != head.epoch || p.seq > head.head => None,
            Some(p) => Some(p.seq),
        };
        let mut recovery = Recovery::Lost;
        let mut entries = Vec::new();
        if let Some(from) = honoured_from {
            entries = self
                .entries(&mut tx, topic, from, head.head, cutoff, limit, &what)
                .await?;
            let next = entries.first().map(|e| e.seq);
            if from == head.head || next == Some(from + 1) {
                recovery = Recovery::Recovered;
            }
        }
        if recovery == Recovery::Lost {
            entries = self
                .entries(&mut tx, topic, 0, head.head, cutoff, limit, &what)
                .await?;
        }
        tx.commit().await.map_err(|e| convert(&what(), e))?;
        Ok(Some(ReadResult {
            entries,
            position: StreamPosition {
                seq: head.head,
                epoch: head.epoch,
            },
            recovery,
        }))
    }

    /// Up to `limit` unexpired entries in `(from, head]`.
    #[allow(clippy::too_many_arguments)] // A private helper of `read_once`.
    async fn entries(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        topic: &Topic,
        from: u64,
        head: u64,
        cutoff: Option<Timestamp>,
        limit: usize,
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<Vec<LogEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, payload FROM vs_eventlog_entries \
             WHERE log = $1 AND topic = $2 AND seq > $3 AND seq <= $4 AND at >= $5 \
             ORDER BY seq LIMIT $6",
        )
        .bind(&*self.name)
        .bind(topic.as_str())
        .bind(sql_int(from))
        .bind(sql_int(head))
        .bind(cutoff.map_or(i64::MIN, Timestamp::as_millis))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| convert(&what(), e))?;
        rows.iter().map(|r| entry(r, what)).collect()
    }
}

/// A sequence number as SQL stores it (`BIGINT`); sequences stay far below
/// `i64::MAX`, and a larger one saturates.
fn sql_int(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn seq_of(v: i64, what: &(dyn Fn() -> String + Sync)) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::backend(what(), format!("sequence number {v} is negative")))
}

fn entry(r: &AnyRow, what: &(dyn Fn() -> String + Sync)) -> Result<LogEntry> {
    Ok(LogEntry {
        seq: seq_of(col(r, "seq")?, what)?,
        at: Timestamp::from_millis(col(r, "at")?),
        payload: Bytes::from(col::<Vec<u8>>(r, "payload")?),
    })
}

#[async_trait]
impl EventLog for SqlLog {
    async fn append(&self, topic: &Topic, payload: Bytes) -> Result<Appended> {
        check_payload(self, topic, &payload)?;
        let what = || format!("append to {topic} in {self}");
        let now = self.clock.now();
        let new_epoch = Epoch::random();
        let mut tx = self
            .db
            .pool()
            .begin()
            .await
            .map_err(|e| convert(&what(), e))?;
        let row = sqlx::query(
            "INSERT INTO vs_eventlog_heads (log, topic, epoch, head, last_at) \
             VALUES ($1, $2, $3, 1, $4) \
             ON CONFLICT (log, topic) DO UPDATE SET head = vs_eventlog_heads.head + 1, \
             last_at = CASE WHEN vs_eventlog_heads.last_at > excluded.last_at \
             THEN vs_eventlog_heads.last_at ELSE excluded.last_at END \
             RETURNING epoch, head, last_at",
        )
        .bind(&*self.name)
        .bind(topic.as_str())
        .bind(new_epoch.as_str())
        .bind(now.as_millis())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| convert(&what(), e))?;
        let epoch =
            Epoch::parse(&col::<String>(&row, "epoch")?).map_err(|e| Error::backend(what(), e))?;
        let seq = seq_of(col(&row, "head")?, &what)?;
        let at = Timestamp::from_millis(col(&row, "last_at")?);
        if epoch == new_epoch {
            // This append started the history: anything left belongs to a
            // lost one and would collide with the new numbers.
            self.delete_stale(&mut tx, topic, &what).await?;
        }
        sqlx::query(
            "INSERT INTO vs_eventlog_entries (log, topic, seq, at, payload) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&*self.name)
        .bind(topic.as_str())
        .bind(sql_int(seq))
        .bind(at.as_millis())
        .bind(payload.to_vec())
        .execute(&mut *tx)
        .await
        .map_err(|e| convert(&what(), e))?;
        let below_len = self
            .options
            .max_len
            .map_or(0, |max| seq.saturating_sub(max));
        let cutoff = self.options.cutoff(now);
        if below_len > 0 || cutoff.is_some() {
            // Entries' times never decrease, so both bounds cut a prefix.
            sqlx::query(
                "DELETE FROM vs_eventlog_entries WHERE log = $1 AND topic = $2 \
                 AND (seq <= $3 OR at < $4)",
            )
            .bind(&*self.name)
            .bind(topic.as_str())
            .bind(sql_int(below_len))
            .bind(cutoff.map_or(i64::MIN, Timestamp::as_millis))
            .execute(&mut *tx)
            .await
            .map_err(|e| convert(&what(), e))?;
        }
        tx.commit().await.map_err(|e| convert(&what(), e))?;
        self.wake(topic);
        Ok(Appended { seq, epoch, at })
    }

    async fn read(
        &self,
        topic: &Topic,
        since: Option<&StreamPosition>,
        limit: usize,
    ) -> Result<ReadResult> {
        let limit = check_limit(self, topic, limit)?;
        // A topic never touched (or whose history was lost) has no head row:
        // start one, so the reader gets an epoch to resume from.
        for _ in 0..3 {
            if let Some(read) = self.read_once(topic, since, limit).await? {
                return Ok(read);
            }
            self.ensure_head(topic).await?;
        }
        Err(Error::conflict(format!(
            "read of {topic} in {self}: its head row keeps disappearing"
        )))
    }

    async fn tail(&self, topic: &Topic, since: Option<&StreamPosition>) -> Result<LogStream> {
        let woken = self
            .wakers()
            .entry(topic.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        let source = SqlFollow {
            log: self.clone(),
            topic: topic.clone(),
            woken,
        };
        Ok(LogStream::follow(source, since.cloned()))
    }

    async fn position(&self, topic: &Topic) -> Result<StreamPosition> {
        Ok(self.read(topic, None, 1).await?.position)
    }
}

struct SqlFollow {
    log: SqlLog,
    topic: Topic,
    woken: watch::Receiver<u64>,
}

#[async_trait]
impl Follow for SqlFollow {
    async fn read(&mut self, since: Option<&StreamPosition>, limit: usize) -> Result<ReadResult> {
        // Marked before reading: an append that commits after this makes
        // the next `wait` return at once.
        self.woken.borrow_and_update();
        self.log.read(&self.topic, since, limit).await
    }

    async fn wait(&mut self, _pos: &StreamPosition) -> Result<()> {
        tokio::select! {
            _ = self.woken.changed() => {}
            () = tokio::time::sleep(TAIL_POLL_INTERVAL) => {}
        }
        Ok(())
    }
}
