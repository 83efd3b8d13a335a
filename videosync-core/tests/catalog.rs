//! The catalog conformance suite against every backend.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::sync::Arc;

use videosync_core::catalog::catalog_from_url;
use videosync_core::conformance::{service_url, CatalogFixture};

fn fixture(url: String, guard: Option<Box<dyn std::any::Any + Send>>) -> CatalogFixture {
    CatalogFixture {
        make: Box::new(move |clock| {
            let url = url.clone();
            Box::pin(async move {
                catalog_from_url(&url, clock)
                    .await
                    .unwrap_or_else(|e| panic!("opening the catalog: {e}"))
            })
        }),
        guard,
    }
}

mod sqlite {
    use super::*;

    videosync_core::catalog_suite!(|| async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
        Some(fixture(url, Some(Box::new(dir))))
    });
}

mod postgres {
    use super::*;

    videosync_core::catalog_suite!(|| async {
        let base = service_url("VIDEOSYNC_TEST_POSTGRES_URL")?;
        let url = videosync_core::conformance::postgres_namespace(&base).await;
        Some(fixture(url, None))
    });
}

#[tokio::test]
async fn unknown_schemes_and_bad_urls_are_invalid_input() {
    let clock = Arc::new(videosync_core::SystemClock::new());
    for url in ["oracle://db", "nonsense", "postgres://[::1"] {
        let err = catalog_from_url(url, clock.clone())
            .await
            .expect_err("not a catalog URL");
        assert_eq!(
            err.kind(),
            videosync_core::ErrorKind::InvalidInput,
            "{url}: {err}"
        );
    }
}
