//! [`MemoryLog`]: the event log within one process.
//!
//! Each topic is a ring buffer of at most [`LogOptions::max_len`] entries
//! ([`MEMORY_DEFAULT_MAX_LEN`] when unset, so memory is always bounded) and a
//! `watch` channel holding its head. Tailers keep no buffer of their own:
//! they read the ring from their position and wait on the channel, so an
//! append never waits for a tailer. A tailer that falls further behind than
//! the ring holds finds its next entry trimmed and gets [`TailItem::Lost`]
//! (then the oldest retained entries), which is the lag signal.
//!
//! A topic's state lives until [`MemoryLog::forget`] or the log is dropped;
//! the epoch is chosen when a topic is first touched, so a new process (or a
//! forgotten topic) starts a new epoch.
//!
//! [`TailItem::Lost`]: super::TailItem::Lost

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use super::{
    check_limit, check_payload, Appended, Epoch, EventLog, Follow, LogEntry, LogOptions, LogStream,
    ReadResult, Recovery, StreamPosition, MEMORY_DEFAULT_MAX_LEN,
};
use crate::bus::Topic;
use crate::{Clock, Result, Timestamp};

/// An event log within one process.
#[derive(Clone)]
pub struct MemoryLog {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Arc<dyn Clock>,
    options: LogOptions,
    max_len: usize,
    topics: Mutex<HashMap<Topic, TopicLog>>,
}

struct TopicLog {
    epoch: Epoch,
    head: u64,
    last_at: Timestamp,
    entries: VecDeque<LogEntry>,
    /// The head, for tailers to wait on.
    changed: watch::Sender<u64>,
}

impl TopicLog {
    fn new() -> Self {
        TopicLog {
            epoch: Epoch::random(),
            head: 0,
            last_at: Timestamp::EPOCH,
            entries: VecDeque::new(),
            changed: watch::channel(0).0,
        }
    }

    /// Drops the entries older than `cutoff` (they form a prefix, as `at`
    /// never decreases).
    fn expire(&mut self, cutoff: Option<Timestamp>) {
        if let Some(cutoff) = cutoff {
            while self.entries.front().is_some_and(|e| e.at < cutoff) {
                self.entries.pop_front();
            }
        }
    }

    fn position(&self) -> StreamPosition {
        StreamPosition {
            seq: self.head,
            epoch: self.epoch.clone(),
        }
    }

    /// The first `limit` entries after `seq`, if that many are retained
    /// right after it, or `None` when the entry after `seq` is gone.
    fn after(&self, seq: u64, limit: usize) -> Option<Vec<LogEntry>> {
        if seq >= self.head {
            return Some(Vec::new());
        }
        let first = self.entries.front()?.seq;
        if first > seq + 1 {
            return None;
        }
        let skip = usize::try_from(seq + 1 - first).unwrap_or(usize::MAX);
        Some(
            self.entries
                .iter()
                .skip(skip)
                .take(limit)
                .cloned()
                .collect(),
        )
    }
}

impl fmt::Debug for MemoryLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemoryLog({:?})", self.inner.options)
    }
}

impl fmt::Display for MemoryLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Memory/eventlog")
    }
}

impl MemoryLog {
    /// An empty log with `options` as retention, timing entries by `clock`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidInput`] for bad options.
    pub fn new(clock: Arc<dyn Clock>, options: LogOptions) -> Result<Self> {
        options.validate()?;
        let max_len = options.max_len.unwrap_or(MEMORY_DEFAULT_MAX_LEN);
        Ok(MemoryLog {
            inner: Arc::new(Inner {
                clock,
                max_len: usize::try_from(max_len).unwrap_or(usize::MAX),
                options,
                topics: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Forgets `topic` entirely: its entries, head and epoch. Its next use
    /// starts a new epoch at seq 1, and readers and tailers from before are
    /// told [`Recovery::Lost`].
    pub fn forget(&self, topic: &Topic) {
        // Dropping the topic drops its watch sender, which wakes its tailers.
        self.inner.lock().remove(topic);
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<Topic, TopicLog>> {
        // A panic while holding the lock cannot leave a topic half-updated
        // in a way that matters more than the panic itself.
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self, topic: &Topic, since: Option<&StreamPosition>, limit: usize) -> ReadResult {
        let cutoff = self.options.cutoff(self.clock.now());
        let mut topics = self.lock();
        let log = topics.entry(topic.clone()).or_insert_with(TopicLog::new);
        log.expire(cutoff);
        let honoured = match since {
            None => log.after(0, limit),
            Some(p) if p.epoch != log.epoch || p.seq > log.head => None,
            Some(p) => log.after(p.seq, limit),
        };
        let (entries, recovery) = match honoured {
            Some(entries) => (entries, Recovery::Recovered),
            None => (
                log.entries.iter().take(limit).cloned().collect(),
                Recovery::Lost,
            ),
        };
        ReadResult {
            entries,
            position: log.position(),
            recovery,
        }
    }
}

#[async_trait]
impl EventLog for MemoryLog {
    async fn append(&self, topic: &Topic, payload: Bytes) -> Result<Appended> {
        check_payload(self, topic, &payload)?;
        let now = self.inner.clock.now();
        let cutoff = self.inner.options.cutoff(now);
        let mut topics = self.inner.lock();
        let log = topics.entry(topic.clone()).or_insert_with(TopicLog::new);
        log.head += 1;
        log.last_at = log.last_at.max(now);
        log.entries.push_back(LogEntry {
            seq: log.head,
            at: log.last_at,
            payload,
        });
        while log.entries.len() > self.inner.max_len {
            log.entries.pop_front();
        }
        log.expire(cutoff);
        // Never waits: a watch keeps only the latest value.
        log.changed.send_replace(log.head);
        Ok(Appended {
            seq: log.head,
            epoch: log.epoch.clone(),
            at: log.last_at,
        })
    }

    async fn read(
        &self,
        topic: &Topic,
        since: Option<&StreamPosition>,
        limit: usize,
    ) -> Result<ReadResult> {
        let limit = check_limit(self, topic, limit)?;
        Ok(self.inner.read(topic, since, limit))
    }

    async fn tail(&self, topic: &Topic, since: Option<&StreamPosition>) -> Result<LogStream> {
        let source = MemoryFollow {
            inner: self.inner.clone(),
            topic: topic.clone(),
        };
        Ok(LogStream::follow(source, since.cloned()))
    }

    async fn position(&self, topic: &Topic) -> Result<StreamPosition> {
        let mut topics = self.inner.lock();
        Ok(topics
            .entry(topic.clone())
            .or_insert_with(TopicLog::new)
            .position())
    }
}

struct MemoryFollow {
    inner: Arc<Inner>,
    topic: Topic,
}

#[async_trait]
impl Follow for MemoryFollow {
    async fn read(&mut self, since: Option<&StreamPosition>, limit: usize) -> Result<ReadResult> {
        Ok(self.inner.read(&self.topic, since, limit))
    }

    async fn wait(&mut self, pos: &StreamPosition) -> Result<()> {
        let mut rx = {
            let mut topics = self.inner.lock();
            let log = topics
                .entry(self.topic.clone())
                .or_insert_with(TopicLog::new);
            if log.head != pos.seq || log.epoch != pos.epoch {
                return Ok(());
            }
            // Subscribed under the lock that appends take: no append can
            // slip between the check and the subscription.
            log.changed.subscribe()
        };
        // An error means the topic was forgotten: read again to see the new
        // epoch.
        let _ = rx.changed().await;
        Ok(())
    }
}
