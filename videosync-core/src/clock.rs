//! Time, injected: [`Clock`], [`SystemClock`], [`ManualClock`] and [`Timestamp`].
//!
//! Production code never reads the system clock directly; it asks a
//! `Clock`. Leases, backoff and expiry therefore run the same under a
//! [`ManualClock`] that a test moves by hand, forwards and backwards.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A wall-clock instant in whole milliseconds since the Unix epoch (UTC).
///
/// Milliseconds are what every backend stores (an `INTEGER` in SQLite, a
/// `BIGINT` in Postgres, a score in Redis), so the type is the same on every
/// side of every contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The instant `millis` milliseconds after the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This instant moved `d` later, saturating at the far future.
    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(duration_millis(d)))
    }

    /// This instant moved `d` earlier, saturating at the far past.
    pub fn saturating_sub(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_sub(duration_millis(d)))
    }

    /// How long after `earlier` this instant is; zero when it is not later.
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0).unsigned_abs())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Whole milliseconds of `d`, saturating at `i64::MAX`.
pub(crate) fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A source of time.
///
/// # Contract
/// - [`Clock::monotonic`] never decreases between two calls on the same clock
///   and is only meaningful relative to other readings of the same clock.
/// - [`Clock::now`] is wall time; it may jump in either direction (an NTP step,
///   a test that winds a [`ManualClock`] back), and code that compares wall
///   times must tolerate that.
///
/// # Implementing
/// Implementations are cheap to call and never block.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// Time elapsed since this clock's origin; never decreases.
    fn monotonic(&self) -> Duration;
    /// Wall time.
    fn now(&self) -> Timestamp;
}

/// The operating system's clocks.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: std::time::Instant,
}

impl SystemClock {
    /// A system clock whose monotonic origin is the moment of this call.
    #[allow(clippy::disallowed_methods)] // This is the one place that reads the OS clock.
    pub fn new() -> Self {
        SystemClock {
            origin: std::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }

    #[allow(clippy::disallowed_methods)] // This is the one place that reads the OS clock.
    fn now(&self) -> Timestamp {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(duration_millis(since_epoch))
    }
}

/// A clock that moves only when told to, for tests and simulations.
///
/// [`ManualClock::advance`] moves both the monotonic and the wall reading;
/// [`ManualClock::set_now`] and [`ManualClock::rewind`] move wall time alone
/// (in either direction), as a stepped system clock would.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use videosync_core::{Clock, ManualClock, Timestamp};
///
/// let clock = ManualClock::new(Timestamp::from_millis(1_000));
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now(), Timestamp::from_millis(3_000));
/// clock.rewind(Duration::from_millis(500));
/// assert_eq!(clock.now(), Timestamp::from_millis(2_500));
/// assert_eq!(clock.monotonic(), Duration::from_secs(2));
/// ```
#[derive(Debug, Default)]
pub struct ManualClock {
    monotonic_nanos: AtomicU64,
    wall_millis: AtomicI64,
}

impl ManualClock {
    /// A clock reading `start` as wall time and zero as monotonic time.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            monotonic_nanos: AtomicU64::new(0),
            wall_millis: AtomicI64::new(start.as_millis()),
        }
    }

    /// Moves monotonic and wall time forward by `d`.
    pub fn advance(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.monotonic_nanos.fetch_add(nanos, Ordering::SeqCst);
        self.wall_millis
            .fetch_add(duration_millis(d), Ordering::SeqCst);
    }

    /// Moves wall time back by `d`; monotonic time stays where it is.
    pub fn rewind(&self, d: Duration) {
        self.wall_millis
            .fetch_sub(duration_millis(d), Ordering::SeqCst);
    }

    /// Sets wall time; monotonic time stays where it is.
    pub fn set_now(&self, now: Timestamp) {
        self.wall_millis.store(now.as_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn monotonic(&self) -> Duration {
        Duration::from_nanos(self.monotonic_nanos.load(Ordering::SeqCst))
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.wall_millis.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_after_2020_and_monotonic() {
        let clock = SystemClock::new();
        assert!(clock.now() > Timestamp::from_millis(1_577_836_800_000));
        let a = clock.monotonic();
        let b = clock.monotonic();
        assert!(b >= a);
    }

    #[test]
    fn timestamp_arithmetic_saturates() {
        let t = Timestamp::from_millis(i64::MAX - 1);
        assert_eq!(
            t.saturating_add(Duration::from_secs(10)),
            Timestamp::from_millis(i64::MAX)
        );
        assert_eq!(
            Timestamp::from_millis(5).duration_since(Timestamp::from_millis(10)),
            Duration::ZERO
        );
    }
}
