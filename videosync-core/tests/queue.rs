//! The job queue conformance suite against every backend.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::sync::Arc;

use videosync_core::conformance::{service_url, unique_name, QueueFixture};
use videosync_core::queue::queue_from_url;

/// A fixture whose every `make` opens queue `name` at `url`.
fn fixture(url: String, guard: Option<Box<dyn std::any::Any + Send>>) -> QueueFixture {
    let name = unique_name("q");
    QueueFixture {
        make: Box::new(move |clock, opts| {
            let (url, name) = (url.clone(), name.clone());
            Box::pin(async move { queue_from_url(&url, &name, clock, opts).await })
        }),
        guard,
    }
}

mod sqlite {
    use super::*;

    videosync_core::queue_suite!(|| async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("queue.db").display());
        Some(fixture(url, Some(Box::new(dir))))
    });
}

mod postgres {
    use super::*;

    videosync_core::queue_suite!(|| async {
        let base = service_url("VIDEOSYNC_TEST_POSTGRES_URL")?;
        let url = videosync_core::conformance::postgres_namespace(&base).await;
        Some(fixture(url, None))
    });
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;

    videosync_core::queue_suite!(|| async {
        let url = service_url("VIDEOSYNC_TEST_REDIS_URL")?;
        Some(fixture(url, None))
    });
}

#[tokio::test]
async fn unknown_schemes_are_invalid_input() {
    let clock = Arc::new(videosync_core::SystemClock::new());
    let err = queue_from_url(
        "mysql://h/db",
        "q",
        clock,
        videosync_core::queue::QueueOptions::default(),
    )
    .await
    .expect_err("mysql is not a queue backend");
    assert_eq!(err.kind(), videosync_core::ErrorKind::InvalidInput);
    assert!(
        err.to_string().contains("unknown queue URL scheme `mysql`"),
        "{err}"
    );
}
