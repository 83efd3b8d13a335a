//! The event bus conformance suite against every backend.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::sync::Arc;

use videosync_core::bus::memory::MemoryBus;
use videosync_core::conformance::BusFixture;

mod memory {
    use super::*;

    videosync_core::bus_suite!(|| async {
        // Two handles: clones share the topics, as the server and an
        // embedded worker do.
        let bus = MemoryBus::new();
        Some(BusFixture {
            other: Arc::new(bus.clone()),
            bus: Arc::new(bus),
        })
    });
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use videosync_core::bus::bus_from_url;
    use videosync_core::conformance::service_url;

    videosync_core::bus_suite!(|| async {
        let url = service_url("VIDEOSYNC_TEST_REDIS_URL")?;
        let bus = bus_from_url(&url).await.expect("connecting to Redis");
        let other = bus_from_url(&url).await.expect("connecting to Redis");
        Some(BusFixture { bus, other })
    });
}
