//! Opening the backends named by URLs: the database (and the contracts that
//! share it on the embedded default), the object store, the queue, the bus,
//! the event log and the key-value store.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use videosync_core::bus::{bus_from_url, DynEventBus};
use videosync_core::catalog::sql::SqlCatalog;
use videosync_core::catalog::DynCatalog;
use videosync_core::eventlog::sql::SqlLog;
use videosync_core::eventlog::{eventlog_from_url, DynEventLog, LogOptions};
use videosync_core::kv::sql::SqlKv;
use videosync_core::kv::{kv_from_url, DynKeyValue};
use videosync_core::queue::sql::SqlQueue;
use videosync_core::queue::{queue_from_url, DynJobQueue};
use videosync_core::sql::Database;
use videosync_core::store::fs::FsStore;
use videosync_core::store::{store_from_url, DynObjectStore};
use videosync_core::{Clock, Error, RetryPolicy, SystemClock};

/// Name of the queue transcode jobs go on.
pub const TRANSCODE_QUEUE: &str = "transcode";

/// Name of the server's event log (its topics: `transcode.<video>`, ...).
pub const EVENT_LOG: &str = "events";

/// Where each backend lives, as URLs. [`BackendUrls::embedded`] gives the
/// single-box defaults under a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendUrls {
    /// Object store (`file://`, `memory://`, `s3://`): ladders, and the
    /// uploaded originals unless `uploads` names a store of their own.
    pub store: String,
    /// The interim store where uploaded originals wait for their ladder
    /// (`file://`, `memory://`, `s3://`); `None`: `store`, under `uploads/`.
    pub uploads: Option<String>,
    /// Job queue (`sqlite://`, `postgres://`, `redis://`).
    pub queue: String,
    /// Event bus (`memory://`, `redis://`).
    pub bus: String,
    /// The database: accounts, channels, videos (`sqlite://`, `postgres://`).
    pub database: String,
    /// Event log (`memory://`, `sqlite://`, `postgres://`, `redis://`).
    pub log: String,
    /// Key-value store (`memory://`, `sqlite://`, `postgres://`, `redis://`).
    pub kv: String,
    /// Prefix of the queue's and the log's names and of every key, so
    /// several deployments (or tests) can share one Redis or database;
    /// empty for none.
    pub namespace: String,
}

impl BackendUrls {
    /// `name` in this deployment's namespace.
    pub fn scoped(&self, name: &str) -> String {
        scoped(&self.namespace, name)
    }
}

/// `name` in `namespace` (`ns.name`, or `name` alone).
pub fn scoped(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}.{name}")
    }
}

impl BackendUrls {
    /// Everything embedded under `data_dir`: files in `store/`, one SQLite
    /// database for the records, the queue, the log and the key-value
    /// store, and the in-process bus.
    pub fn embedded(data_dir: &Path) -> Self {
        let db = format!("sqlite://{}", data_dir.join("videosync.db").display());
        BackendUrls {
            store: format!("file://{}", data_dir.join("store").display()),
            uploads: None,
            queue: db.clone(),
            bus: "memory://".to_owned(),
            database: db.clone(),
            log: db.clone(),
            kv: db,
            namespace: String::new(),
        }
    }
}

/// The opened backends, shared by every request.
#[derive(Debug, Clone)]
pub struct Backends {
    /// The database (accounts, channels, videos, messages).
    pub db: Database,
    /// Object storage: ladders, images, and whatever is not an upload.
    pub store: DynObjectStore,
    /// Uploaded originals until their ladder is ready (tus sessions, direct
    /// uploads): a store of its own, or the same as `store`.
    pub uploads: DynObjectStore,
    /// The transcode queue.
    pub queue: DynJobQueue,
    /// The event bus.
    pub bus: DynEventBus,
    /// The video catalog (over `db`), as the transcode worker sees it.
    pub catalog: DynCatalog,
    /// The event log.
    pub log: DynEventLog,
    /// The key-value store.
    pub kv: DynKeyValue,
    /// The clock everything reads.
    pub clock: Arc<dyn Clock>,
    /// Prefix of names and keys (see [`BackendUrls::namespace`]).
    pub namespace: String,
}

impl Backends {
    /// Opens every backend named in `urls` on the system clock.
    ///
    /// # Errors
    /// The first backend that fails to open, saying which.
    pub async fn open(urls: &BackendUrls) -> videosync_core::Result<Self> {
        Self::open_with(urls, Arc::new(SystemClock::new()), None, None).await
    }

    /// Opens every backend named in `urls` on `clock`; `store` replaces the
    /// one `urls.store` names (an S3 store with credentials, say) and
    /// `uploads` the one `urls.uploads` names. Contracts whose URL is the
    /// database's share its pool and its one migration run.
    ///
    /// # Errors
    /// The first backend that fails to open, saying which.
    pub async fn open_with(
        urls: &BackendUrls,
        clock: Arc<dyn Clock>,
        store: Option<DynObjectStore>,
        uploads: Option<DynObjectStore>,
    ) -> videosync_core::Result<Self> {
        if !Database::handles(&urls.database) {
            return Err(Error::invalid_input(format!(
                "the database URL `{}` is not sqlite:// or postgres://",
                videosync_core::redact_url(&urls.database)
            )));
        }
        let db = Database::connect(&urls.database)
            .await?
            .with_clock(clock.clone());
        let queue: DynJobQueue = if urls.queue == urls.database {
            Arc::new(
                SqlQueue::open(
                    db.clone(),
                    &urls.scoped(TRANSCODE_QUEUE),
                    clock.clone(),
                    RetryPolicy::default(),
                )
                .await?,
            )
        } else {
            queue_from_url(
                &urls.queue,
                &urls.scoped(TRANSCODE_QUEUE),
                clock.clone(),
                RetryPolicy::default(),
            )
            .await?
        };
        let log: DynEventLog = if urls.log == urls.database {
            Arc::new(SqlLog::new(
                db.clone(),
                &urls.scoped(EVENT_LOG),
                clock.clone(),
                LogOptions::default(),
            )?)
        } else {
            eventlog_from_url(
                &urls.log,
                &urls.scoped(EVENT_LOG),
                clock.clone(),
                LogOptions::default(),
            )
            .await?
        };
        let kv: DynKeyValue = if urls.kv == urls.database {
            Arc::new(SqlKv::new(db.clone(), clock.clone()))
        } else {
            kv_from_url(&urls.kv, clock.clone()).await?
        };
        let store = match store {
            Some(store) => store,
            None => open_store(&urls.store).await?,
        };
        let uploads = match (uploads, &urls.uploads) {
            (Some(uploads), _) => uploads,
            (None, Some(url)) => open_store(url).await?,
            (None, None) => store.clone(),
        };
        Ok(Backends {
            catalog: Arc::new(SqlCatalog::new(db.clone(), clock.clone())),
            db,
            store,
            uploads,
            queue,
            bus: bus_from_url(&urls.bus).await?,
            log,
            kv,
            clock,
            namespace: urls.namespace.clone(),
        })
    }
}

/// How often the filesystem store's staging area is swept, and how old a
/// temp file or an untouched multipart upload must be to go.
const STORE_SWEEP: (Duration, Duration) =
    (Duration::from_secs(3600), Duration::from_secs(48 * 3600));

/// Opens the object store; a filesystem store also gets its periodic sweep
/// of stale staging files (puts cut off by a crash, abandoned multipart
/// uploads), which runs for the life of the runtime.
pub async fn open_store(url: &str) -> videosync_core::Result<DynObjectStore> {
    match url.strip_prefix("file://") {
        Some(path) => {
            let fs = FsStore::open(path).await?;
            fs.spawn_sweeper(STORE_SWEEP.0, STORE_SWEEP.1);
            Ok(Arc::new(fs))
        }
        None => store_from_url(url).await,
    }
}
