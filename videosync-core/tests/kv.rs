//! The key-value conformance suite against every backend.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::sync::Arc;

use videosync_core::conformance::{service_url, KvFixture, START};
use videosync_core::kv::kv_from_url;
use videosync_core::ManualClock;

/// Two handles (two pools or connections, as two processes would have) on
/// the store at `url`, both following one manual clock.
async fn sql_fixture(url: String, guard: Option<Box<dyn std::any::Any + Send>>) -> KvFixture {
    let clock = Arc::new(ManualClock::new(START));
    let kv = kv_from_url(&url, clock.clone())
        .await
        .expect("opening the store");
    let other = kv_from_url(&url, clock.clone())
        .await
        .expect("opening the store");
    KvFixture {
        kv,
        other,
        clock: Some(clock),
        guard,
    }
}

mod memory {
    use super::*;

    videosync_core::kv_suite!(|| async {
        let clock = Arc::new(ManualClock::new(START));
        let kv = kv_from_url("memory://", clock.clone()).await.unwrap();
        Some(KvFixture {
            kv: kv.clone(),
            other: kv,
            clock: Some(clock),
            guard: None,
        })
    });
}

mod sqlite {
    use super::*;

    videosync_core::kv_suite!(|| async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("kv.db").display());
        Some(sql_fixture(url, Some(Box::new(dir))).await)
    });
}

mod postgres {
    use super::*;

    videosync_core::kv_suite!(|| async {
        let base = service_url("VIDEOSYNC_TEST_POSTGRES_URL")?;
        let url = videosync_core::conformance::postgres_namespace(&base).await;
        Some(sql_fixture(url, None).await)
    });
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;

    videosync_core::kv_suite!(|| async {
        let url = service_url("VIDEOSYNC_TEST_REDIS_URL")?;
        // Redis follows its own clock; the manual one is only for the API.
        let clock = Arc::new(ManualClock::new(START));
        let kv = kv_from_url(&url, clock.clone())
            .await
            .expect("connecting to Redis");
        let other = kv_from_url(&url, clock).await.expect("connecting to Redis");
        Some(KvFixture {
            kv,
            other,
            clock: None,
            guard: None,
        })
    });
}

#[tokio::test]
async fn unknown_schemes_are_invalid_input() {
    let clock = Arc::new(videosync_core::SystemClock::new());
    let err = kv_from_url("mysql://u:secret@h/db", clock)
        .await
        .expect_err("mysql is not a key-value backend");
    assert_eq!(err.kind(), videosync_core::ErrorKind::InvalidInput);
    let msg = err.to_string();
    assert!(
        msg.contains("unknown key-value URL scheme `mysql`"),
        "{msg}"
    );
    assert!(!msg.contains("secret"), "{msg}");
}
