//! Ordered, replayable logs per topic: the [`EventLog`] contract and its
//! backends.
//!
//! | backend | module | feature | what shares it |
//! |---|---|---|---|
//! | in-process | [`memory`] | always | one process |
//! | SQL | `sql` | `sqlite`, `postgres` | processes on one SQLite file, or one Postgres |
//! | Redis Streams | `redis` | `redis` | every process on one Redis |
//!
//! Every instance appends a room's commands to the room's topic; every
//! member's connection tails it; a member that reconnects resumes from the
//! last [`StreamPosition`] it saw, or learns that history it needed is gone
//! ([`Recovery::Lost`]) and takes a fresh snapshot. This is Centrifugo's
//! history and recovery model: a position is a sequence number plus an
//! [`Epoch`], and the epoch changes whenever the topic's history was lost
//! entirely, so "seq 5 of epoch A" is never mistaken for "seq 5 of epoch B".
//!
//! Unlike [`crate::EventBus`], a log keeps what was appended (within its
//! [`LogOptions`] retention) and every reader sees one order per topic,
//! whichever process appended.
//!
//! # Examples
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use videosync_core::eventlog::{memory::MemoryLog, EventLog, LogOptions, Recovery, TailItem};
//! use videosync_core::{SystemClock, Topic};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new(Arc::new(SystemClock::new()), LogOptions::default())?);
//! let room = Topic::parse("room.42")?;
//! let first = log.append(&room, Bytes::from("play")).await?;
//! assert_eq!(first.seq, 1);
//! log.append(&room, Bytes::from("pause")).await?;
//!
//! // A member that saw seq 1 reconnects and catches up.
//! let missed = log.read(&room, Some(&first.position()), 100).await?;
//! assert_eq!(missed.recovery, Recovery::Recovered);
//! assert_eq!(missed.entries[0].payload, "pause");
//!
//! // ... and then follows the topic live.
//! let mut live = log.tail(&room, Some(&missed.position)).await?;
//! log.append(&room, Bytes::from("seek")).await?;
//! match live.next().await {
//!     Some(Ok(TailItem::Entry(e))) => assert_eq!((e.seq, &e.payload[..]), (3, &b"seek"[..])),
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), videosync_core::Error>(())
//! # }).unwrap();
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::bus::Topic;
use crate::{Clock, Error, Result, Timestamp};

pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sql")]
pub mod sql;

/// Largest entry payload (1 MiB, as [`crate::bus::MAX_EVENT_LEN`]).
pub const MAX_ENTRY_LEN: usize = crate::bus::MAX_EVENT_LEN;

/// The most entries one [`EventLog::read`] returns; a larger `limit` is
/// clamped to it.
pub const MAX_READ_LIMIT: usize = 1000;

/// How many entries a [`LogStream`] fetches per round trip.
pub const TAIL_BATCH: usize = 256;

/// What a [`memory::MemoryLog`] keeps per topic when [`LogOptions::max_len`]
/// is unset: memory is always bounded.
pub const MEMORY_DEFAULT_MAX_LEN: u64 = 10_000;

/// The identity of one unbroken history of a topic: 1 to 64 characters of
/// `[A-Za-z0-9_-]`, chosen at random by the backend when the topic's history
/// starts (its first use, or the first use after the history was lost).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Epoch(String);

impl Epoch {
    /// Checks `s` and makes it an epoch (for positions that come back from a
    /// client).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the rule.
    pub fn parse(s: &str) -> Result<Self> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if ok {
            Ok(Epoch(s.to_owned()))
        } else {
            Err(Error::invalid_input(format!(
                "epoch `{}` must be 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-`",
                s.escape_debug()
            )))
        }
    }

    /// A fresh random epoch.
    pub fn random() -> Self {
        Epoch(uuid::Uuid::new_v4().simple().to_string()[..16].to_owned())
    }

    /// The epoch as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Epoch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Epoch::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A place in a topic's history: "everything up to `seq` of `epoch`".
///
/// `seq` 0 is the start of the epoch, before its first entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The last sequence number seen (0: none).
    pub seq: u64,
    /// The history that `seq` belongs to.
    pub epoch: Epoch,
}

impl fmt::Display for StreamPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.seq, self.epoch)
    }
}

/// What [`EventLog::append`] assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The entry's sequence number.
    pub seq: u64,
    /// The history it was appended to.
    pub epoch: Epoch,
    /// Its append time.
    pub at: Timestamp,
}

impl Appended {
    /// The position just after this entry.
    pub fn position(&self) -> StreamPosition {
        StreamPosition {
            seq: self.seq,
            epoch: self.epoch.clone(),
        }
    }
}

/// One entry of a topic's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Its sequence number: 1 for the first entry of an epoch, then +1.
    pub seq: u64,
    /// When it was appended, by the appender's [`Clock`]; never earlier
    /// than the entry before it, even when that clock stepped back.
    pub at: Timestamp,
    /// What was appended.
    pub payload: Bytes,
}

/// Whether a reader's position could be honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recovery {
    /// Nothing was missed: the entries follow the reader's position directly
    /// (or, without a position, start at the beginning of the epoch).
    Recovered,
    /// The reader's history is gone: its epoch is not the topic's, entries
    /// after its `seq` were trimmed by retention, or its `seq` is ahead of
    /// the head (a forged or foreign position). The entries returned start
    /// at the oldest one retained; the reader should take a fresh snapshot.
    Lost,
}

/// What [`EventLog::read`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Entries in order: after the reader's position when
    /// [`Recovery::Recovered`], from the oldest retained when
    /// [`Recovery::Lost`]; at most the `limit` asked for.
    pub entries: Vec<LogEntry>,
    /// The topic's head (its last sequence number, 0 when it has none) and
    /// epoch, at the moment of the read.
    pub position: StreamPosition,
    /// Whether the reader's position was honoured.
    pub recovery: Recovery,
}

/// What a [`LogStream`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailItem {
    /// The next entry.
    Entry(LogEntry),
    /// History between the stream's position and the next entry is gone
    /// (retention trimmed it while the reader lagged or was disconnected, or
    /// the topic's epoch changed). `position` is the topic's head when this
    /// was found; the entries that follow start at the oldest one retained.
    /// Take a fresh snapshot and skip entries it already covers.
    Lost {
        /// The topic's head and epoch at the time.
        position: StreamPosition,
    },
}

/// Retention of a log, applied to every topic.
///
/// Both bounds may be set; an entry goes when either says so. Retention
/// drops entries from the front only: sequence numbers stay dense, and the
/// head survives even when every entry is gone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep at most this many newest entries per topic (at least 1).
    pub max_len: Option<u64>,
    /// Drop entries appended longer ago than this, by the log's clock (at
    /// least 1 ms).
    pub max_age: Option<Duration>,
}

impl LogOptions {
    /// Checks the bounds.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a zero bound.
    pub fn validate(&self) -> Result<()> {
        if self.max_len == Some(0) {
            return Err(Error::invalid_input(
                "event log max_len must be at least 1 (unset keeps every entry)",
            ));
        }
        if self.max_age.is_some_and(|a| a.as_millis() == 0) {
            return Err(Error::invalid_input(
                "event log max_age must be at least 1 ms (unset keeps entries forever)",
            ));
        }
        Ok(())
    }

    /// The append time before which entries are expired, at `now`.
    pub(crate) fn cutoff(&self, now: Timestamp) -> Option<Timestamp> {
        self.max_age.map(|age| now.saturating_sub(age))
    }
}

/// An ordered, replayable log per topic.
///
/// # Contract
/// - `append` gives each topic's entries sequence numbers 1, 2, 3, … with no
///   gap and no reuse within an epoch, in one order that every reader of
///   every handle on the same backend sees, whatever process appended.
/// - An entry's `at` is the log's [`Clock`] reading at append, raised to the
///   previous entry's `at` if the clock stepped back.
/// - `read` and `tail` honour a position exactly when nothing after it is
///   missing ([`Recovery::Recovered`]); otherwise they say
///   [`Recovery::Lost`] / [`TailItem::Lost`], never skip silently, and never
///   panic or hang on a forged position.
/// - The epoch changes only when the topic's whole history was lost (a
///   fresh in-process log, a Redis key evicted, SQL rows deleted): then the
///   new history starts again at seq 1 under the new epoch.
/// - Retention ([`LogOptions`]) removes entries from the front, at append
///   and at read time; a reader from before them is told it lost them.
/// - A payload over [`MAX_ENTRY_LEN`] and a `limit` of 0 are
///   [`Error::InvalidInput`].
///
/// # Implementing
/// Run `videosync_core::conformance::eventlog` against the backend. A tail is
/// most easily built with [`LogStream::follow`] from the backend's read and a
/// way to wait for the next append.
#[async_trait]
pub trait EventLog: fmt::Display + fmt::Debug + Send + Sync + 'static {
    /// Appends `payload` to `topic`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an oversized payload, or a backend error.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped mid-way, the entry may or may not have been
    /// appended (as with a lost reply).
    async fn append(&self, topic: &Topic, payload: Bytes) -> Result<Appended>;

    /// Up to `limit` (at most [`MAX_READ_LIMIT`]) entries of `topic` after
    /// `since` (from the start of the epoch when `None`), with the topic's
    /// current position and whether `since` was honoured.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a `limit` of 0, or a backend error.
    async fn read(
        &self,
        topic: &Topic,
        since: Option<&StreamPosition>,
        limit: usize,
    ) -> Result<ReadResult>;

    /// Follows `topic` from `since` (from the start of the epoch when
    /// `None`): the stream first replays what is already there, then yields
    /// entries as they are appended, with no gap or duplicate between the
    /// two, and [`TailItem::Lost`] where history it needed is gone.
    ///
    /// # Errors
    /// A backend error opening the stream (a Redis connection, say).
    async fn tail(&self, topic: &Topic, since: Option<&StreamPosition>) -> Result<LogStream>;

    /// The topic's head (0 when it has no entries yet) and epoch.
    ///
    /// # Errors
    /// A backend error.
    async fn position(&self, topic: &Topic) -> Result<StreamPosition>;
}

/// Conveniences over [`EventLog`].
#[async_trait]
pub trait EventLogExt: EventLog {
    /// Appends `value` as JSON.
    ///
    /// # Errors
    /// As [`EventLog::append`], or [`Error::InvalidInput`] when `value` does
    /// not serialize.
    async fn append_json<T: Serialize + Sync>(&self, topic: &Topic, value: &T) -> Result<Appended> {
        let payload = serde_json::to_vec(value).map_err(|e| {
            Error::invalid_input(format!("log entry for {topic} does not serialize: {e}"))
        })?;
        self.append(topic, Bytes::from(payload)).await
    }
}

impl<T: EventLog + ?Sized> EventLogExt for T {}

/// A log shared between tasks.
pub type DynEventLog = Arc<dyn EventLog>;

/// A live, never-ending stream of a topic's entries ([`EventLog::tail`]).
///
/// It yields `Err` when the backend fails (a dropped connection, say) and
/// stays usable: the next call tries again after a short backoff, from the
/// last entry it yielded, and says [`TailItem::Lost`] if entries were trimmed
/// meanwhile. Dropping it stops following.
pub struct LogStream {
    inner: BoxStream<'static, Result<TailItem>>,
}

impl fmt::Debug for LogStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStream").finish_non_exhaustive()
    }
}

impl LogStream {
    /// A log stream reading `inner`.
    pub fn new(inner: BoxStream<'static, Result<TailItem>>) -> Self {
        LogStream { inner }
    }

    /// A stream that follows `source` from `since`: it reads a batch, yields
    /// it, and when it has caught up waits on the source for the next append.
    pub fn follow<F: Follow>(source: F, since: Option<StreamPosition>) -> Self {
        let state = Follower {
            source,
            pos: since,
            pending: VecDeque::new(),
            caught_up: false,
            backoff: None,
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            let item = st.step().await;
            Some((item, st))
        });
        LogStream::new(stream.boxed())
    }

    /// The next item; `None` only if the backend's stream ended, which the
    /// built-in backends never do.
    ///
    /// # Cancel safety
    /// Cancel safe: an entry is consumed only when this returns it; a read
    /// interrupted by dropping this future resumes on the next call, so
    /// `tokio::select!` on it loses and repeats nothing.
    pub async fn next(&mut self) -> Option<Result<TailItem>> {
        self.inner.next().await
    }

    /// The underlying stream, for combinators.
    pub fn into_inner(self) -> BoxStream<'static, Result<TailItem>> {
        self.inner
    }
}

/// What [`LogStream::follow`] needs from a backend.
#[async_trait]
pub trait Follow: Send + 'static {
    /// As [`EventLog::read`] on the followed topic.
    ///
    /// # Errors
    /// As [`EventLog::read`].
    async fn read(&mut self, since: Option<&StreamPosition>, limit: usize) -> Result<ReadResult>;

    /// Returns when an entry after `pos` may exist, or the epoch may have
    /// changed: at once if one was appended since the last `read` began, and
    /// at the latest after a bounded time (spurious returns are fine).
    ///
    /// # Errors
    /// A backend error; the follower backs off and reads again.
    async fn wait(&mut self, pos: &StreamPosition) -> Result<()>;
}

/// The state of a [`LogStream::follow`] stream.
struct Follower<F> {
    source: F,
    /// The last position yielded (or the caller's `since`).
    pos: Option<StreamPosition>,
    /// Entries read but not yet yielded (at most one batch).
    pending: VecDeque<LogEntry>,
    /// The last read returned less than a batch: wait before reading again.
    caught_up: bool,
    /// The delay before retrying after an error.
    backoff: Option<Duration>,
}

const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

impl<F: Follow> Follower<F> {
    async fn step(&mut self) -> Result<TailItem> {
        loop {
            if let Some(entry) = self.pending.pop_front() {
                if let Some(pos) = &mut self.pos {
                    pos.seq = entry.seq;
                }
                return Ok(TailItem::Entry(entry));
            }
            if let Some(delay) = self.backoff {
                tokio::time::sleep(delay).await;
            }
            match self.fetch().await {
                Ok(Some(lost)) => {
                    self.backoff = None;
                    return Ok(lost);
                }
                Ok(None) => self.backoff = None,
                Err(e) => {
                    self.backoff = Some(
                        self.backoff
                            .map_or(BACKOFF_START, |d| (d * 2).min(BACKOFF_MAX)),
                    );
                    return Err(e);
                }
            }
        }
    }

    /// Waits if caught up, then reads the next batch into `pending`;
    /// answers the [`TailItem::Lost`] to yield first, if any.
    async fn fetch(&mut self) -> Result<Option<TailItem>> {
        if self.caught_up {
            if let Some(pos) = &self.pos {
                self.source.wait(pos).await?;
            }
        }
        let read = self.source.read(self.pos.as_ref(), TAIL_BATCH).await?;
        self.caught_up = read.entries.len() < TAIL_BATCH;
        let lost = read.recovery == Recovery::Lost;
        // Where the stream stands once this batch is yielded: the last entry
        // is set as each is yielded, so start from the head when the batch
        // is empty, and from just before the batch otherwise.
        let start = match read.entries.first() {
            Some(first) => first.seq.saturating_sub(1),
            None => read.position.seq,
        };
        self.pos = Some(StreamPosition {
            seq: start,
            epoch: read.position.epoch.clone(),
        });
        self.pending.extend(read.entries);
        Ok(lost.then_some(TailItem::Lost {
            position: read.position,
        }))
    }
}

/// Checks a payload against [`MAX_ENTRY_LEN`].
pub(crate) fn check_payload(log: &dyn fmt::Display, topic: &Topic, payload: &Bytes) -> Result<()> {
    if payload.len() > MAX_ENTRY_LEN {
        return Err(Error::invalid_input(format!(
            "append to {topic} in {log}: the entry is {} bytes; the limit is {MAX_ENTRY_LEN}",
            payload.len()
        )));
    }
    Ok(())
}

/// Checks a read limit and clamps it to [`MAX_READ_LIMIT`].
pub(crate) fn check_limit(log: &dyn fmt::Display, topic: &Topic, limit: usize) -> Result<usize> {
    if limit == 0 {
        return Err(Error::invalid_input(format!(
            "read of {topic} in {log}: the limit must be at least 1"
        )));
    }
    Ok(limit.min(MAX_READ_LIMIT))
}

/// Checks a log name: 1 to 64 characters of `[A-Za-z0-9_.-]`.
pub(crate) fn validate_log_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "event log name `{}` must be 1 to 64 characters of A-Z, a-z, 0-9, `_`, `-` and `.`",
            name.escape_debug()
        )))
    }
}

/// The log behind a URL: `memory://`, `sqlite://…`, `postgres://…` or
/// `redis://…`. `name` separates logs that share a database or Redis (each
/// with its own retention); the in-process log ignores it.
///
/// # Errors
/// [`Error::InvalidInput`] for an unknown scheme, a bad name or bad options,
/// and what the backend fails with when connecting.
pub async fn eventlog_from_url(
    url: &str,
    name: &str,
    clock: Arc<dyn Clock>,
    options: LogOptions,
) -> Result<DynEventLog> {
    validate_log_name(name)?;
    options.validate()?;
    let scheme = url.split_once(':').map_or(url, |(s, _)| s);
    match scheme {
        "memory" => Ok(Arc::new(memory::MemoryLog::new(clock, options)?)),
        #[cfg(feature = "sql")]
        "sqlite" | "postgres" | "postgresql" => {
            let db = crate::sql::Database::connect(url).await?;
            Ok(Arc::new(sql::SqlLog::new(db, name, clock, options)?))
        }
        #[cfg(feature = "redis")]
        "redis" | "rediss" => Ok(Arc::new(
            redis::RedisLog::connect(url, name, clock, options).await?,
        )),
        other => Err(Error::invalid_input(format!(
            "unknown event log URL scheme `{}` in `{}`; expected memory, {}",
            other.escape_debug(),
            crate::redact_url(url),
            crate::sql_schemes_hint(&["redis"])
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_and_options_are_checked() {
        assert!(Epoch::parse("a1_B-2").is_ok());
        for bad in ["", "a b", "é", &"e".repeat(65)] {
            assert!(Epoch::parse(bad).is_err(), "{bad}");
        }
        assert!(Epoch::parse(Epoch::random().as_str()).is_ok());
        assert!(LogOptions {
            max_len: Some(0),
            max_age: None
        }
        .validate()
        .is_err());
        assert!(LogOptions {
            max_len: None,
            max_age: Some(Duration::from_micros(10))
        }
        .validate()
        .is_err());
        assert!(validate_log_name("rooms.v1").is_ok());
        assert!(validate_log_name("a:b").is_err());
    }
}
