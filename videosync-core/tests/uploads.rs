//! The upload sessions conformance suite: state on SQLite or Postgres, bytes
//! on every object store.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::sync::Arc;

use videosync_core::conformance::{service_url, unique_name, UploadsFixture, UploadsInstance};
use videosync_core::sql::Database;
use videosync_core::store::DynObjectStore;
use videosync_core::uploads::{StoreUploads, UploadOptions};
use videosync_core::ObjectKey;

/// The smallest part size S3 allows, so the cases cross parts quickly.
const PART: usize = videosync_core::store::MIN_PART_SIZE;

/// A fixture whose instances each open their own database handle on `db_url`.
fn fixture(
    db_url: String,
    store: DynObjectStore,
    prefix: Option<ObjectKey>,
    guard: Option<Box<dyn std::any::Any + Send>>,
) -> UploadsFixture {
    let staging = match &prefix {
        Some(p) => p.join(".uploads").unwrap(),
        None => ObjectKey::parse(".uploads").unwrap(),
    };
    let opts = UploadOptions {
        part_size: PART,
        staging: staging.clone(),
        ..UploadOptions::default()
    };
    let made_store = store.clone();
    UploadsFixture {
        make: Box::new(move |clock| {
            let (url, store, opts) = (db_url.clone(), made_store.clone(), opts.clone());
            Box::pin(async move {
                let db = Database::connect(&url)
                    .await
                    .unwrap_or_else(|e| panic!("opening the database: {e}"));
                let uploads = Arc::new(StoreUploads::new(db, store, clock, opts).unwrap());
                let (peak, reset) = (uploads.clone(), uploads.clone());
                UploadsInstance {
                    uploads,
                    peak_buffered: Box::new(move || peak.peak_buffered()),
                    reset_peak_buffered: Box::new(move || reset.reset_peak_buffered()),
                }
            })
        }),
        store,
        prefix,
        staging,
        part_size: PART,
        guard,
    }
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("state.db").display())
}

mod fs_sqlite {
    use super::*;
    use videosync_core::store::fs::FsStore;

    videosync_core::uploads_suite!(|| async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = FsStore::open(dir.path().join("objects"))
            .await
            .expect("opening the store");
        Some(fixture(
            sqlite_url(&dir),
            Arc::new(store),
            None,
            Some(Box::new(dir)),
        ))
    });
}

mod memory_sqlite {
    use super::*;
    use videosync_core::store::memory::MemoryStore;

    videosync_core::uploads_suite!(|| async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Some(fixture(
            sqlite_url(&dir),
            Arc::new(MemoryStore::new()),
            None,
            Some(Box::new(dir)),
        ))
    });
}

mod fs_postgres {
    use super::*;
    use videosync_core::store::fs::FsStore;

    videosync_core::uploads_suite!(|| async {
        let base = service_url("VIDEOSYNC_TEST_POSTGRES_URL")?;
        let url = videosync_core::conformance::postgres_namespace(&base).await;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = FsStore::open(dir.path()).await.expect("opening the store");
        Some(fixture(url, Arc::new(store), None, Some(Box::new(dir))))
    });
}

mod s3_sqlite {
    use super::*;

    videosync_core::uploads_suite!(|| async {
        let url = service_url("VIDEOSYNC_TEST_S3_URL")?;
        let store = videosync_core::store::store_from_url(&url)
            .await
            .expect("connecting to the S3 test bucket");
        let prefix = ObjectKey::parse(&format!("conformance/{}", unique_name("up"))).unwrap();
        let dir = tempfile::tempdir().expect("a temporary directory");
        Some(fixture(
            sqlite_url(&dir),
            store,
            Some(prefix),
            Some(Box::new(dir)),
        ))
    });
}
