//! A stopwatch on the project's clock, shared by the benchmark harnesses
//! (production code never reads the OS clock directly; benches follow the
//! same rule).

use std::time::Duration;

use videosync::core::{Clock, SystemClock};

/// Time since [`Watch::start`].
pub(crate) struct Watch {
    clock: SystemClock,
    start: Duration,
}

impl Watch {
    /// Starts now.
    pub(crate) fn start(clock: &SystemClock) -> Self {
        Watch {
            clock: *clock,
            start: clock.monotonic(),
        }
    }

    /// Seconds since the start.
    pub(crate) fn secs(&self) -> f64 {
        (self.clock.monotonic() - self.start).as_secs_f64()
    }
}
