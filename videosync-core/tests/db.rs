//! The repository suite on SQLite and Postgres.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use videosync_core::conformance::{service_url, DbFixture};
use videosync_core::sql::{Database, DatabaseOptions};

fn fixture(url: String, guard: Option<Box<dyn std::any::Any + Send>>) -> DbFixture {
    DbFixture {
        make: Box::new(move |clock| {
            let url = url.clone();
            Box::pin(async move {
                let opts = DatabaseOptions {
                    clock,
                    ..DatabaseOptions::default()
                };
                Database::connect_with(&url, opts)
                    .await
                    .unwrap_or_else(|e| panic!("opening the database: {e}"))
            })
        }),
        guard,
    }
}

mod sqlite {
    use super::*;

    videosync_core::db_suite!(|| async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        Some(fixture(url, Some(Box::new(dir))))
    });
}

mod postgres {
    use super::*;

    videosync_core::db_suite!(|| async {
        let base = service_url("VIDEOSYNC_TEST_POSTGRES_URL")?;
        let url = videosync_core::conformance::postgres_namespace(&base).await;
        Some(fixture(url, None))
    });
}

fn leaked_migrator(version: i64, sql: &'static str) -> &'static sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let m = Migration::new(
        version,
        "app".into(),
        MigrationType::Simple,
        sql.into(),
        false,
    );
    Box::leak(Box::new(Migrator {
        migrations: vec![m].into(),
        ..Migrator::DEFAULT
    }))
}

/// Migrations an embedder adds run with the core's through one migrator,
/// survive a reopen, and a version collision is refused with a clear message.
#[tokio::test]
async fn embedder_migrations_join_the_core_ones() {
    use sqlx::Connection;
    use videosync_core::sql::ExtraMigrations;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.sqlite");
    let url = format!("sqlite://{}", path.display());
    let app = leaked_migrator(1000, "CREATE TABLE app_things (id INTEGER PRIMARY KEY)");
    let opts = DatabaseOptions {
        extra_migrations: vec![ExtraMigrations {
            sqlite: app,
            postgres: app,
        }],
        ..DatabaseOptions::default()
    };
    let db = Database::connect_with(&url, opts.clone()).await.unwrap();
    db.close().await;
    Database::connect_with(&url, opts).await.unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO app_things (id) VALUES (1)")
        .execute(&mut conn)
        .await
        .expect("the embedder's table exists");
    let clash = leaked_migrator(1, "SELECT 1");
    let err = Database::connect_with(
        &url,
        DatabaseOptions {
            extra_migrations: vec![ExtraMigrations {
                sqlite: clash,
                postgres: clash,
            }],
            ..DatabaseOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), videosync_core::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("version 1"), "{err}");
}
