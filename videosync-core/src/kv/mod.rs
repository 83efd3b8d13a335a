//! A shared key-value store with expiry: the [`KeyValue`] contract and its
//! backends.
//!
//! | backend | module | feature | expiry follows |
//! |---|---|---|---|
//! | in-process | [`memory`] | always | the injected [`Clock`] |
//! | SQLite / PostgreSQL | [`sql`] | `sqlite` / `postgres` | the injected [`Clock`] |
//! | Redis | `redis` | `redis` | the Redis server's clock |
//!
//! What server instances share through it: presence (sets whose members
//! expire one by one), rate limits (counters that live for a fixed window),
//! hot transcode progress, room state (compare-and-set on a [`Version`]) and
//! room-owner leases (create-only puts with a TTL, renewed with
//! [`PutMode::IfVersion`]).
//!
//! # Examples
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use videosync_core::kv::{memory::MemoryKv, Key, KeyValue, PutOptions};
//! use videosync_core::{ErrorKind, SystemClock};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let kv: Arc<dyn KeyValue> = Arc::new(MemoryKv::new(Arc::new(SystemClock::new())));
//! let room = Key::parse("room:42:state")?;
//! let v1 = kv.put(&room, "paused".into(), PutOptions::create()).await?;
//! // Compare-and-set: only the holder of the current version may write.
//! let v2 = kv.put(&room, "playing".into(), PutOptions::if_version(v1)).await?;
//! let stale = kv.put(&room, "seeking".into(), PutOptions::if_version(v1)).await;
//! assert_eq!(stale.unwrap_err().kind(), ErrorKind::Precondition);
//! assert_eq!(kv.get(&room).await?.map(|v| v.version), Some(v2));
//!
//! // A fixed-window rate limit: the TTL starts with the first increment.
//! let hits = Key::parse("ratelimit:user:7")?;
//! assert_eq!(kv.incr(&hits, 1, Some(Duration::from_secs(60))).await?, 1);
//! assert_eq!(kv.incr(&hits, 1, Some(Duration::from_secs(60))).await?, 2);
//! # Ok::<(), videosync_core::Error>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{Clock, Error, Result, Timestamp};

pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sql")]
pub mod sql;

/// Longest [`Key`], in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// Longest set member name, in bytes.
pub const MAX_MEMBER_LEN: usize = 256;

/// Largest value, in bytes (1 MiB): room state and progress, not media.
pub const MAX_VALUE_LEN: usize = 1024 * 1024;

/// Longest TTL (a year). Anything meant to live longer has no TTL.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// The name of an entry: 1 to [`MAX_KEY_LEN`] bytes of `[A-Za-z0-9_.:/-]`,
/// such as `room:42:state` or `presence/channel:7`.
///
/// Values (with counters) and sets are separate namespaces: the set named
/// `k` and the value at `k` are unrelated.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Key(String);

impl Key {
    /// Checks `name` and makes it a key.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the rule.
    pub fn parse(name: &str) -> Result<Self> {
        let ok = !name.is_empty()
            && name.len() <= MAX_KEY_LEN
            && name.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'/')
            });
        if ok {
            Ok(Key(name.to_owned()))
        } else {
            let shown: String = name.chars().take(64).collect();
            Err(Error::invalid_input(format!(
                "key `{}`{} must be 1 to {MAX_KEY_LEN} bytes of A-Z, a-z, 0-9, `_`, `-`, `.`, `:` and `/`",
                shown.escape_debug(),
                if shown.len() < name.len() {
                    format!("… ({} bytes)", name.len())
                } else {
                    String::new()
                }
            )))
        }
    }

    /// The key's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Key::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The version of a value: it changes with every write of the key
/// (`put`, `incr`) and only ever grows over the key's whole history, across
/// deletes and expiries, so a version read before a delete can never match a
/// later incarnation of the key. Compare versions of one key only; the
/// numbers themselves carry no other meaning and differ between backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(u64);

impl Version {
    /// The version with this number (as read back from [`Version::get`]).
    pub const fn new(n: u64) -> Self {
        Version(n)
    }

    /// The version's number, to store it elsewhere.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// A value and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The value; for a counter, its decimal text (`b"42"`).
    pub value: Bytes,
    /// Pass it to [`PutMode::IfVersion`] or [`KeyValue::delete`] to write only
    /// if nobody else wrote since.
    pub version: Version,
}

/// When a [`KeyValue::put`] may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PutMode {
    /// Always.
    #[default]
    Overwrite,
    /// Only when the key has no live value; otherwise
    /// [`Error::AlreadyExists`].
    Create,
    /// Only when the key's live value has this version; otherwise (another
    /// version, or no live value) [`Error::Precondition`].
    IfVersion(Version),
}

/// How a [`KeyValue::put`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PutOptions {
    /// When to write.
    pub mode: PutMode,
    /// How long the value lives from this write; `None` keeps it until it is
    /// deleted or overwritten. Every put sets the expiry anew: a put without
    /// a TTL makes the value permanent.
    pub ttl: Option<Duration>,
}

impl PutOptions {
    /// Create-only ([`PutMode::Create`]), no TTL.
    pub fn create() -> Self {
        PutOptions {
            mode: PutMode::Create,
            ttl: None,
        }
    }

    /// Compare-and-set ([`PutMode::IfVersion`]), no TTL.
    pub fn if_version(version: Version) -> Self {
        PutOptions {
            mode: PutMode::IfVersion(version),
            ttl: None,
        }
    }

    /// These options with a TTL.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// A live member of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's name.
    pub name: String,
    /// When it expires unless added again, on the clock the backend follows
    /// (the Redis server's for Redis).
    pub expires_at: Timestamp,
}

/// A shared key-value store with versions, expiry, counters and sets whose
/// members expire one by one.
///
/// # Contract
/// - **Versions.** Every write of a key (`put`, `incr`) gives it a new
///   [`Version`] greater than every version the key had before, including
///   versions it had before it was deleted or expired: a stale
///   [`PutMode::IfVersion`] or conditional delete can never succeed.
/// - **Compare-and-set is atomic.** Among concurrent writers holding the same
///   version, at most one succeeds, across handles and processes.
/// - **Expiry is exact from the caller's view.** A value or member whose
///   time is up is never returned, counted or treated as present, whether or
///   not the backend has removed it yet. In-process and SQL follow the
///   injected [`Clock`]; Redis follows the Redis server's clock, so TTLs
///   there are measured by the server, not by the caller.
/// - **Counters.** [`KeyValue::incr`] on a missing (or expired) key creates
///   a counter with value `by` and the given TTL; on a live counter it adds
///   `by` and leaves the TTL as it was (a fixed window). [`KeyValue::get`]
///   reads a counter as its decimal text. A value written by `put` is not a
///   counter, whatever its bytes.
/// - **Sets** are a namespace apart from values. Each member has its own
///   expiry; adding a member again sets its expiry anew.
/// - **Bounds.** Keys are checked by [`Key::parse`]; a value over
///   [`MAX_VALUE_LEN`], a member name that is empty, over [`MAX_MEMBER_LEN`]
///   or has control characters, and a TTL under 1 ms or over [`MAX_TTL`] are
///   [`Error::InvalidInput`]. A TTL is counted in whole milliseconds,
///   rounded up.
///
/// # Implementing
/// Run `videosync_core::conformance::kv` (the `kv_suite!` macro) against the
/// backend, with two handles on the same store.
///
/// # Cancel safety
/// Every operation is a single atomic step on the backend: dropping its
/// future before it completes either applies the whole operation or none of
/// it, and the caller cannot tell which (read the key again).
#[async_trait]
pub trait KeyValue: fmt::Display + fmt::Debug + Send + Sync + 'static {
    /// The live value at `key` with its version, or `None`.
    ///
    /// # Errors
    /// A backend error.
    async fn get(&self, key: &Key) -> Result<Option<Versioned>>;

    /// Writes `value` at `key` as `opts` says and returns its new version.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when [`PutMode::Create`] finds a live value;
    /// [`Error::Precondition`] when [`PutMode::IfVersion`] finds another
    /// version or none; [`Error::InvalidInput`] for an oversized value or a
    /// TTL out of bounds; or a backend error.
    async fn put(&self, key: &Key, value: Bytes, opts: PutOptions) -> Result<Version>;

    /// Deletes the value (or counter) at `key`; with `if_version`, only if
    /// its live value has that version. Returns whether a live value was
    /// deleted (`false` when there was none).
    ///
    /// # Errors
    /// [`Error::Precondition`] when `if_version` is given and the key's live
    /// value has another version or there is none; or a backend error.
    async fn delete(&self, key: &Key, if_version: Option<Version>) -> Result<bool>;

    /// Adds `by` (which may be negative or zero) to the counter at `key` and
    /// returns the new count. A missing or expired key starts a counter at
    /// `by` that expires after `ttl`; a live counter keeps the expiry it
    /// was created with (later `ttl`s are ignored), which is what a
    /// fixed-window rate limit needs.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the key holds a value written by `put`, or
    /// when the sum would overflow an `i64`; [`Error::InvalidInput`] for a
    /// TTL out of bounds; or a backend error.
    async fn incr(&self, key: &Key, by: i64, ttl: Option<Duration>) -> Result<i64>;

    /// Adds `member` to the set at `key`, to expire after `ttl`; adding a
    /// member again replaces its expiry. Returns whether the member is new
    /// (it was absent or had expired).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad member name or TTL; or a backend
    /// error.
    async fn set_add(&self, key: &Key, member: &str, ttl: Duration) -> Result<bool>;

    /// Removes `member` from the set at `key`; returns whether it was a live
    /// member.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad member name; or a backend error.
    async fn set_remove(&self, key: &Key, member: &str) -> Result<bool>;

    /// The live members of the set at `key`, by name.
    ///
    /// # Errors
    /// A backend error.
    async fn set_members(&self, key: &Key) -> Result<Vec<Member>>;

    /// How many live members the set at `key` has.
    ///
    /// # Errors
    /// A backend error.
    async fn set_len(&self, key: &Key) -> Result<u64>;

    /// Physically removes expired values and members and returns how many it
    /// removed. Expired data is never visible anyway; this only reclaims
    /// space. In-process and SQL stores also do it on their own, a batch at a
    /// time, every [`SWEEP_INTERVAL`] of writes; Redis expires keys itself
    /// and trims a set's expired members whenever a member is added, so
    /// there this always returns 0.
    ///
    /// # Errors
    /// A backend error.
    async fn sweep(&self) -> Result<u64>;
}

/// How often in-process and SQL stores sweep expired entries on their own
/// (checked on writes, by the store's clock).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// A key-value store shared between tasks.
pub type DynKeyValue = Arc<dyn KeyValue>;

/// `value` if it fits [`MAX_VALUE_LEN`].
pub(crate) fn check_value(op: &str, key: &Key, value: &Bytes) -> Result<()> {
    if value.len() > MAX_VALUE_LEN {
        return Err(Error::invalid_input(format!(
            "{op} of {key}: the value is {} bytes; the limit is {MAX_VALUE_LEN}",
            value.len()
        )));
    }
    Ok(())
}

/// `ttl` in whole milliseconds, rounded up, if it is within bounds.
pub(crate) fn ttl_millis(op: &str, key: &Key, ttl: Duration) -> Result<i64> {
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(Error::invalid_input(format!(
            "{op} of {key}: a TTL of {ttl:?} is out of bounds; TTLs last 1 ms to {} days",
            MAX_TTL.as_secs() / 86_400
        )));
    }
    let millis = ttl.as_nanos().div_ceil(1_000_000);
    // MAX_TTL keeps this far below i64::MAX.
    Ok(i64::try_from(millis).unwrap_or(i64::MAX))
}

/// The optional TTL of a put or incr, in milliseconds.
pub(crate) fn opt_ttl_millis(op: &str, key: &Key, ttl: Option<Duration>) -> Result<Option<i64>> {
    ttl.map(|t| ttl_millis(op, key, t)).transpose()
}

/// `member` if it is a valid member name.
pub(crate) fn check_member(op: &str, key: &Key, member: &str) -> Result<()> {
    if member.is_empty() || member.len() > MAX_MEMBER_LEN || member.chars().any(char::is_control) {
        let shown: String = member.chars().take(64).collect();
        return Err(Error::invalid_input(format!(
            "{op} of set {key}: member `{}` must be 1 to {MAX_MEMBER_LEN} bytes without control characters",
            shown.escape_debug()
        )));
    }
    Ok(())
}

/// The range of counts to which `by` can be added without overflow.
pub(crate) fn incr_bounds(by: i64) -> (i64, i64) {
    if by >= 0 {
        (i64::MIN, i64::MAX - by)
    } else {
        (i64::MIN - by, i64::MAX)
    }
}

/// The store behind a URL: `memory://`, `sqlite://...`, `postgres://...` or
/// `redis://...`. `clock` drives expiry on every backend but Redis, which
/// follows its own clock.
///
/// # Errors
/// [`Error::InvalidInput`] for an unknown scheme, and what the backend fails
/// with when connecting.
pub async fn kv_from_url(url: &str, clock: Arc<dyn Clock>) -> Result<DynKeyValue> {
    let scheme = url.split_once(':').map_or(url, |(s, _)| s);
    match scheme {
        "memory" => Ok(Arc::new(memory::MemoryKv::new(clock))),
        #[cfg(feature = "sql")]
        "sqlite" | "postgres" | "postgresql" => {
            let db = crate::sql::Database::connect(url).await?;
            Ok(Arc::new(sql::SqlKv::new(db, clock)))
        }
        #[cfg(feature = "redis")]
        "redis" | "rediss" => Ok(Arc::new(redis::RedisKv::connect(url).await?)),
        other => Err(Error::invalid_input(format!(
            "unknown key-value URL scheme `{}` in `{}`; expected memory, {}",
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
    fn keys_are_checked() {
        assert!(Key::parse("room:42/state_v-1.x").is_ok());
        assert!(Key::parse(&"k".repeat(MAX_KEY_LEN)).is_ok());
        for bad in ["", "a b", "a{b}", "ä", "a\n", &"k".repeat(MAX_KEY_LEN + 1)] {
            let err = Key::parse(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn ttls_round_up_and_are_bounded() {
        let k = Key::parse("k").unwrap();
        assert_eq!(ttl_millis("put", &k, Duration::from_micros(1)).unwrap(), 1);
        assert_eq!(
            ttl_millis("put", &k, Duration::from_micros(1500)).unwrap(),
            2
        );
        assert!(ttl_millis("put", &k, Duration::ZERO).is_err());
        assert!(ttl_millis("put", &k, MAX_TTL + Duration::from_millis(1)).is_err());
    }

    #[test]
    fn incr_bounds_prevent_overflow() {
        assert_eq!(incr_bounds(5), (i64::MIN, i64::MAX - 5));
        assert_eq!(incr_bounds(-5), (i64::MIN + 5, i64::MAX));
        assert_eq!(incr_bounds(i64::MIN), (0, i64::MAX));
    }
}
