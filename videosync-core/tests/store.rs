//! The object store conformance suite against every backend.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::sync::Arc;

use videosync_core::conformance::StoreFixture;

mod memory {
    use super::*;
    use videosync_core::store::memory::MemoryStore;

    videosync_core::store_suite!(|| async {
        Some(StoreFixture::new(Arc::new(MemoryStore::new())))
    });
}

mod fs {
    use super::*;
    use videosync_core::store::fs::FsStore;

    videosync_core::store_suite!(|| async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = FsStore::open(dir.path()).await.expect("opening the store");
        let mut fx = StoreFixture::new(Arc::new(store));
        fx.guard = Some(Box::new(dir));
        Some(fx)
    });
}

#[cfg(feature = "s3")]
mod s3 {
    use super::*;
    use videosync_core::conformance::service_url;

    videosync_core::store_suite!(|| async {
        let url = service_url("VIDEOSYNC_TEST_S3_URL")?;
        let store = videosync_core::store::store_from_url(&url)
            .await
            .expect("connecting to the S3 test bucket");
        Some(StoreFixture::with_random_prefix(store))
    });
}
