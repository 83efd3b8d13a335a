//! [`MemoryKv`]: the key-value store within one process.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    check_member, check_value, incr_bounds, opt_ttl_millis, ttl_millis, Key, KeyValue, Member,
    PutMode, PutOptions, Version, Versioned, SWEEP_INTERVAL,
};
use crate::{Clock, Error, Result, Timestamp};

/// The key-value store within one process; expiry follows the injected
/// [`Clock`].
///
/// Clones share the store. Expired entries are dropped when their key is
/// next touched, and all of them by a full sweep at most every
/// [`SWEEP_INTERVAL`] of writes (by the clock's monotonic time) or on
/// [`KeyValue::sweep`].
#[derive(Clone)]
pub struct MemoryKv {
    inner: Arc<Mutex<Inner>>,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct Inner {
    values: HashMap<Key, Entry>,
    sets: HashMap<Key, HashMap<String, Timestamp>>,
    /// The last version handed out, for every key: versions never repeat.
    last_version: u64,
    /// Monotonic time of the last full sweep.
    swept_at: Option<Duration>,
}

struct Entry {
    data: Data,
    version: Version,
    expires_at: Option<Timestamp>,
}

enum Data {
    Bytes(Bytes),
    Counter(i64),
}

impl Entry {
    fn live(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

impl Inner {
    fn next_version(&mut self) -> Version {
        self.last_version += 1;
        Version(self.last_version)
    }

    fn live(&self, key: &Key, now: Timestamp) -> Option<&Entry> {
        self.values.get(key).filter(|e| e.live(now))
    }

    fn sweep(&mut self, now: Timestamp) -> u64 {
        let before = self.values.len();
        self.values.retain(|_, e| e.live(now));
        let mut removed = (before - self.values.len()) as u64;
        for members in self.sets.values_mut() {
            let before = members.len();
            members.retain(|_, at| *at > now);
            removed += (before - members.len()) as u64;
        }
        self.sets.retain(|_, members| !members.is_empty());
        removed
    }
}

impl fmt::Debug for MemoryKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryKv")
    }
}

impl fmt::Display for MemoryKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Memory/kv")
    }
}

impl MemoryKv {
    /// An empty store whose expiry follows `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryKv {
            inner: Arc::default(),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the maps consistent, so a panic in
        // another thread does not make them unusable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the store for a write, sweeping first when a sweep is due.
    fn lock_for_write(&self, now: Timestamp) -> MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        let mono = self.clock.monotonic();
        match inner.swept_at {
            Some(at) if mono.saturating_sub(at) < SWEEP_INTERVAL => {}
            _ => {
                inner.sweep(now);
                inner.swept_at = Some(mono);
            }
        }
        inner
    }
}

#[async_trait]
impl KeyValue for MemoryKv {
    async fn get(&self, key: &Key) -> Result<Option<Versioned>> {
        let now = self.clock.now();
        let inner = self.lock();
        Ok(inner.live(key, now).map(|e| Versioned {
            value: match &e.data {
                Data::Bytes(b) => b.clone(),
                Data::Counter(n) => Bytes::from(n.to_string()),
            },
            version: e.version,
        }))
    }

    async fn put(&self, key: &Key, value: Bytes, opts: PutOptions) -> Result<Version> {
        check_value("put", key, &value)?;
        let ttl = opt_ttl_millis("put", key, opts.ttl)?;
        let now = self.clock.now();
        let mut inner = self.lock_for_write(now);
        let current = inner.live(key, now).map(|e| e.version);
        match (opts.mode, current) {
            (PutMode::Create, Some(v)) => {
                return Err(Error::already_exists(format!(
                    "create of {key} in {self}: it exists (version {v})"
                )))
            }
            (PutMode::IfVersion(want), current) if current != Some(want) => {
                return Err(Error::precondition(format!(
                    "put of {key} in {self} if version {want}: {}",
                    match current {
                        Some(v) => format!("the version is {v}"),
                        None => "there is no value".to_owned(),
                    }
                )))
            }
            _ => {}
        }
        let version = inner.next_version();
        inner.values.insert(
            key.clone(),
            Entry {
                data: Data::Bytes(value),
                version,
                expires_at: ttl
                    .map(|ms| Timestamp::from_millis(now.as_millis().saturating_add(ms))),
            },
        );
        Ok(version)
    }

    async fn delete(&self, key: &Key, if_version: Option<Version>) -> Result<bool> {
        let now = self.clock.now();
        let mut inner = self.lock_for_write(now);
        let current = inner.live(key, now).map(|e| e.version);
        if let Some(want) = if_version {
            if current != Some(want) {
                return Err(Error::precondition(format!(
                    "delete of {key} in {self} if version {want}: {}",
                    match current {
                        Some(v) => format!("the version is {v}"),
                        None => "there is no value".to_owned(),
                    }
                )));
            }
        }
        inner.values.remove(key);
        Ok(current.is_some())
    }

    async fn incr(&self, key: &Key, by: i64, ttl: Option<Duration>) -> Result<i64> {
        let ttl = opt_ttl_millis("incr", key, ttl)?;
        let now = self.clock.now();
        let mut inner = self.lock_for_write(now);
        let version = inner.next_version();
        let (lo, hi) = incr_bounds(by);
        match inner.values.get_mut(key).filter(|e| e.live(now)) {
            Some(Entry {
                data: Data::Counter(n),
                version: v,
                ..
            }) => {
                if *n < lo || *n > hi {
                    return Err(Error::conflict(format!(
                        "incr of {key} by {by} in {self}: the count {n} would overflow"
                    )));
                }
                *n += by;
                *v = version;
                Ok(*n)
            }
            Some(_) => Err(Error::conflict(format!(
                "incr of {key} in {self}: it holds a value written by put, not a counter"
            ))),
            None => {
                inner.values.insert(
                    key.clone(),
                    Entry {
                        data: Data::Counter(by),
                        version,
                        expires_at: ttl
                            .map(|ms| Timestamp::from_millis(now.as_millis().saturating_add(ms))),
                    },
                );
                Ok(by)
            }
        }
    }

    async fn set_add(&self, key: &Key, member: &str, ttl: Duration) -> Result<bool> {
        check_member("set_add", key, member)?;
        let ttl = ttl_millis("set_add", key, ttl)?;
        let now = self.clock.now();
        let mut inner = self.lock_for_write(now);
        let members = inner.sets.entry(key.clone()).or_default();
        members.retain(|_, at| *at > now);
        let at = Timestamp::from_millis(now.as_millis().saturating_add(ttl));
        Ok(members.insert(member.to_owned(), at).is_none())
    }

    async fn set_remove(&self, key: &Key, member: &str) -> Result<bool> {
        check_member("set_remove", key, member)?;
        let now = self.clock.now();
        let mut inner = self.lock_for_write(now);
        let Some(members) = inner.sets.get_mut(key) else {
            return Ok(false);
        };
        let was_live = members.remove(member).is_some_and(|at| at > now);
        if members.is_empty() {
            inner.sets.remove(key);
        }
        Ok(was_live)
    }

    async fn set_members(&self, key: &Key) -> Result<Vec<Member>> {
        let now = self.clock.now();
        let inner = self.lock();
        let mut members: Vec<Member> = inner
            .sets
            .get(key)
            .into_iter()
            .flatten()
            .filter(|(_, at)| **at > now)
            .map(|(name, at)| Member {
                name: name.clone(),
                expires_at: *at,
            })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(members)
    }

    async fn set_len(&self, key: &Key) -> Result<u64> {
        let now = self.clock.now();
        let inner = self.lock();
        Ok(inner
            .sets
            .get(key)
            .map_or(0, |m| m.values().filter(|at| **at > now).count() as u64))
    }

    async fn sweep(&self) -> Result<u64> {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.swept_at = Some(self.clock.monotonic());
        Ok(inner.sweep(now))
    }
}
