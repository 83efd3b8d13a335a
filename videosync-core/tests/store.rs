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
    use videosync_core::store::s3::S3Store;
    use videosync_core::store::sign::Signer;

    videosync_core::store_suite!(|| async {
        let url = service_url("VIDEOSYNC_TEST_S3_URL")?;
        // Presigned URLs name a public endpoint other than the one the store
        // talks to (`localhost` where the store uses `127.0.0.1`), as a
        // browser outside the cluster would reach the server.
        let public = endpoint_of(&url).replace("127.0.0.1", "localhost");
        // Garage ignores `If-None-Match`/`If-Match` on writes: the store
        // checks first (racy, see `ConditionalWrites::Checked`).
        let store = S3Store::from_url(&format!(
            "{url}&public_endpoint={public}&conditional_writes=checked"
        ))
        .await
        .expect("connecting to the S3 test bucket");
        let mut fx = StoreFixture::with_random_prefix(Arc::new(store.clone()));
        fx.atomic_conditions = false;
        fx.signer_at = Some(Box::new(move |clock| {
            Arc::new(store.with_clock(clock).s3_signer()) as Arc<dyn Signer>
        }));
        Some(fx)
    });

    /// The `endpoint` parameter of an `s3://` URL.
    fn endpoint_of(url: &str) -> String {
        let parsed = url::Url::parse(url).expect("an S3 URL");
        parsed
            .query_pairs()
            .find(|(k, _)| k == "endpoint")
            .map(|(_, v)| v.into_owned())
            .expect("an endpoint parameter")
    }
}
