//! The event log conformance suite against every backend.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::sync::{Arc, Mutex};

use videosync_core::conformance::eventlog::EventLogFixture;
use videosync_core::conformance::{service_url, unique_name};
use videosync_core::eventlog::memory::MemoryLog;
use videosync_core::eventlog::{eventlog_from_url, DynEventLog, LogOptions};
use videosync_core::{ErrorKind, SystemClock};

mod memory {
    use super::*;

    videosync_core::eventlog_suite!(|| async {
        // One log per test: the first `make` builds it, later ones share it.
        let shared: Arc<Mutex<Option<MemoryLog>>> = Arc::default();
        let for_make = shared.clone();
        Some(EventLogFixture {
            make: Box::new(move |clock, options| {
                let shared = for_make.clone();
                Box::pin(async move {
                    let mut slot = shared.lock().unwrap();
                    let log = slot
                        .get_or_insert_with(|| MemoryLog::new(clock, options).unwrap())
                        .clone();
                    Arc::new(log) as DynEventLog
                })
            }),
            lose_history: Box::new(move |topic| {
                let shared = shared.clone();
                Box::pin(async move {
                    if let Some(log) = &*shared.lock().unwrap() {
                        log.forget(&topic);
                    }
                })
            }),
            guard: None,
        })
    });
}

/// A fixture whose every `make` connects anew to log `name` at `url`, and
/// whose history loss deletes the topic's head row (its entries stay behind,
/// as after a partial restore, and must not come back).
fn sql_fixture(url: String, guard: Option<Box<dyn std::any::Any + Send>>) -> EventLogFixture {
    let name = unique_name("log");
    let (make_url, make_name) = (url.clone(), name.clone());
    EventLogFixture {
        make: Box::new(move |clock, options| {
            let (url, name) = (make_url.clone(), make_name.clone());
            Box::pin(async move {
                eventlog_from_url(&url, &name, clock, options)
                    .await
                    .unwrap_or_else(|e| panic!("opening event log {name}: {e}"))
            })
        }),
        lose_history: Box::new(move |topic| {
            let (url, name) = (url.clone(), name.clone());
            Box::pin(async move {
                sqlx::any::install_default_drivers();
                let pool = sqlx::AnyPool::connect(&url).await.unwrap();
                sqlx::query("DELETE FROM vs_eventlog_heads WHERE log = $1 AND topic = $2")
                    .bind(&name)
                    .bind(topic.as_str())
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            })
        }),
        guard,
    }
}

mod sqlite {
    use super::*;

    videosync_core::eventlog_suite!(|| async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("log.db").display());
        Some(sql_fixture(url, Some(Box::new(dir))))
    });
}

mod postgres {
    use super::*;

    videosync_core::eventlog_suite!(|| async {
        let base = service_url("VIDEOSYNC_TEST_POSTGRES_URL")?;
        let url = videosync_core::conformance::postgres_namespace(&base).await;
        Some(sql_fixture(url, None))
    });
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;

    /// Deletes the test's keys when the test ends.
    struct DropKeys {
        url: String,
        pattern: String,
    }

    impl Drop for DropKeys {
        fn drop(&mut self) {
            let Ok(mut conn) =
                ::redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
            else {
                return;
            };
            let keys: Vec<String> = ::redis::cmd("KEYS")
                .arg(&self.pattern)
                .query(&mut conn)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = ::redis::cmd("DEL").arg(keys).query(&mut conn);
            }
        }
    }

    videosync_core::eventlog_suite!(|| async {
        let url = service_url("VIDEOSYNC_TEST_REDIS_URL")?;
        let name = unique_name("log");
        let guard = DropKeys {
            url: url.clone(),
            pattern: format!("vs:log:{name}:*"),
        };
        let (make_url, make_name) = (url.clone(), name.clone());
        Some(EventLogFixture {
            make: Box::new(move |clock, options| {
                let (url, name) = (make_url.clone(), make_name.clone());
                Box::pin(async move {
                    eventlog_from_url(&url, &name, clock, options)
                        .await
                        .unwrap_or_else(|e| panic!("opening event log {name}: {e}"))
                })
            }),
            // Only the meta key goes, as when Redis evicts it: the stream
            // left behind must not leak into the new history.
            lose_history: Box::new(move |topic| {
                let (url, name) = (url.clone(), name.clone());
                Box::pin(async move {
                    let client = ::redis::Client::open(url.as_str()).unwrap();
                    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
                    let () = ::redis::cmd("DEL")
                        .arg(format!("vs:log:{name}:{{{topic}}}:m"))
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                })
            }),
            guard: Some(Box::new(guard)),
        })
    });
}

#[tokio::test]
async fn urls_names_and_options_are_checked() {
    let clock = Arc::new(SystemClock::new());
    let err = eventlog_from_url("mysql://h/db", "log", clock.clone(), LogOptions::default())
        .await
        .expect_err("mysql is not an event log backend");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.to_string()
            .contains("unknown event log URL scheme `mysql`"),
        "{err}"
    );
    let err = eventlog_from_url("memory://", "a b", clock.clone(), LogOptions::default())
        .await
        .expect_err("a name with a space");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let zero = LogOptions {
        max_len: Some(0),
        max_age: None,
    };
    let err = eventlog_from_url("memory://", "log", clock.clone(), zero)
        .await
        .expect_err("max_len 0");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let log = eventlog_from_url("memory://", "log", clock.clone(), LogOptions::default())
        .await
        .unwrap();
    assert_eq!(log.to_string(), "Memory/eventlog");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let log = eventlog_from_url(&url, "rooms", clock.clone(), LogOptions::default())
        .await
        .unwrap();
    assert!(
        log.to_string().starts_with("Sqlite(") && log.to_string().ends_with("/eventlog/rooms"),
        "{log}"
    );
}
