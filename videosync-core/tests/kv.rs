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

/// The SQLite file the second process of
/// [`sqlite_compare_and_set_across_two_processes`] opens.
const CHILD_URL: &str = "VIDEOSYNC_KV_TEST_CHILD_URL";

/// How many compare-and-set increments each process makes.
const PER_PROCESS: u64 = 150;

/// Adds one to the decimal counter at `key` by read, then compare-and-set,
/// retrying until it wins.
async fn cas_increment(kv: &videosync_core::kv::DynKeyValue, key: &videosync_core::kv::Key) {
    use videosync_core::kv::PutOptions;
    for _ in 0..100_000 {
        let current = kv.get(key).await.unwrap();
        let (n, opts) = match &current {
            None => (0u64, PutOptions::create()),
            Some(v) => (
                std::str::from_utf8(&v.value).unwrap().parse().unwrap(),
                PutOptions::if_version(v.version),
            ),
        };
        match kv.put(key, (n + 1).to_string().into(), opts).await {
            Ok(_) => return,
            Err(e)
                if matches!(
                    e.kind(),
                    videosync_core::ErrorKind::Precondition
                        | videosync_core::ErrorKind::AlreadyExists
                ) => {}
            Err(e) => panic!("{e}"),
        }
    }
    panic!("never won a compare-and-set on {key}");
}

/// Two processes on one SQLite file (SQLite's locks between processes are
/// not the ones between two connections of one process): no increment is
/// lost. The second process is this test binary running
/// `sqlite_second_process`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_compare_and_set_across_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kv.db").display());
    let clock = Arc::new(videosync_core::SystemClock::new());
    // Migrated before the second process opens it.
    let kv = kv_from_url(&url, clock).await.unwrap();
    let key = videosync_core::kv::Key::parse("two-processes").unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sqlite_second_process",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_URL, &url)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("starting the second process");
    // Start once the other process is writing, so the two overlap.
    let started = tokio::time::timeout(videosync_core::conformance::WAIT, async {
        while kv.get(&key).await.unwrap().is_none() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    if started.is_err() {
        let _ = child.kill();
        panic!("the second process wrote nothing");
    }
    for _ in 0..PER_PROCESS {
        cas_increment(&kv, &key).await;
    }
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the second process failed: {status}");
    let total = kv.get(&key).await.unwrap().unwrap().value;
    assert_eq!(total, (2 * PER_PROCESS).to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the second process of sqlite_compare_and_set_across_two_processes"]
async fn sqlite_second_process() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let clock = Arc::new(videosync_core::SystemClock::new());
    let kv = kv_from_url(&url, clock).await.unwrap();
    let key = videosync_core::kv::Key::parse("two-processes").unwrap();
    for _ in 0..PER_PROCESS {
        cas_increment(&kv, &key).await;
    }
}
