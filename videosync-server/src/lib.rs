//! The videosync reference server: composes the SDK crates into the platform
//! behind an axum [`Router`].
//!
//! The binary (`videosync`, in `main.rs`) only parses arguments, opens the
//! backends ([`Backends::open`]) and serves [`router`]. Everything HTTP lives
//! here, so it is tested in-process without sockets.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use videosync_core::bus::{bus_from_url, DynEventBus};
use videosync_core::catalog::sql::SqlCatalog;
use videosync_core::catalog::{catalog_from_url, DynCatalog, VideoFilter};
use videosync_core::eventlog::sql::SqlLog;
use videosync_core::eventlog::{eventlog_from_url, DynEventLog, LogOptions};
use videosync_core::queue::sql::SqlQueue;
use videosync_core::queue::{queue_from_url, DynJobQueue};
use videosync_core::sql::Database;
use videosync_core::store::fs::FsStore;
use videosync_core::store::{store_from_url, DynObjectStore};
use videosync_core::{Clock, ObjectKey, ObjectStoreExt, RetryPolicy, SystemClock};

/// Name of the queue transcode jobs go on.
pub const TRANSCODE_QUEUE: &str = "transcode";

/// Name of the server's event log (its topics: `transcode.<video>`, ...).
pub const EVENT_LOG: &str = "events";

/// Where each backend lives, as URLs. [`BackendUrls::embedded`] gives the
/// single-box defaults under a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendUrls {
    /// Object store (`file://`, `memory://`, `s3://`).
    pub store: String,
    /// Job queue database (`sqlite://`, `postgres://`, `redis://`).
    pub queue: String,
    /// Event bus (`memory://`, `redis://`).
    pub bus: String,
    /// Catalog database (`sqlite://`, `postgres://`).
    pub catalog: String,
    /// Event log (`memory://`, `sqlite://`, `postgres://`, `redis://`):
    /// ordered events other processes read (transcode progress, later rooms
    /// and chat).
    pub log: String,
}

impl BackendUrls {
    /// Everything embedded under `data_dir`: files in `objects/`, one SQLite
    /// database for the queue and the catalog, the in-process bus.
    pub fn embedded(data_dir: &Path) -> Self {
        let db = format!("sqlite://{}", data_dir.join("videosync.db").display());
        BackendUrls {
            store: format!("file://{}", data_dir.join("store").display()),
            queue: db.clone(),
            bus: "memory://".to_owned(),
            catalog: db.clone(),
            log: db,
        }
    }
}

/// The opened backends, shared by every request.
#[derive(Debug, Clone)]
pub struct Backends {
    /// Object storage.
    pub store: DynObjectStore,
    /// The transcode queue.
    pub queue: DynJobQueue,
    /// The event bus.
    pub bus: DynEventBus,
    /// The catalog.
    pub catalog: DynCatalog,
    /// The event log.
    pub log: DynEventLog,
    /// The clock everything reads.
    pub clock: Arc<dyn Clock>,
}

impl Backends {
    /// Opens every backend named in `urls` (creating the data directory of
    /// embedded ones and migrating databases).
    ///
    /// # Errors
    /// The first backend that fails to open, saying which.
    pub async fn open(urls: &BackendUrls) -> videosync_core::Result<Self> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let shared_db = (urls.queue == urls.catalog && Database::handles(&urls.queue))
            .then(|| urls.queue.clone());
        let (queue, catalog, log): (DynJobQueue, DynCatalog, Option<DynEventLog>) =
            if let Some(url) = shared_db {
                // One database for both (the embedded default): one pool and
                // one migration run, not two pools contending for one file.
                let db = Database::connect(&url).await?;
                let queue = SqlQueue::open(
                    db.clone(),
                    TRANSCODE_QUEUE,
                    clock.clone(),
                    RetryPolicy::default(),
                )
                .await?;
                // The log shares the pool when it lives in the same database.
                let log: Option<DynEventLog> = if urls.log == url {
                    Some(Arc::new(SqlLog::new(
                        db.clone(),
                        EVENT_LOG,
                        clock.clone(),
                        LogOptions::default(),
                    )?))
                } else {
                    None
                };
                (
                    Arc::new(queue),
                    Arc::new(SqlCatalog::new(db, clock.clone())),
                    log,
                )
            } else {
                (
                    queue_from_url(
                        &urls.queue,
                        TRANSCODE_QUEUE,
                        clock.clone(),
                        RetryPolicy::default(),
                    )
                    .await?,
                    catalog_from_url(&urls.catalog, clock.clone()).await?,
                    None,
                )
            };
        let log = match log {
            Some(log) => log,
            None => {
                eventlog_from_url(&urls.log, EVENT_LOG, clock.clone(), LogOptions::default())
                    .await?
            }
        };
        Ok(Backends {
            store: open_store(&urls.store).await?,
            queue,
            bus: bus_from_url(&urls.bus).await?,
            catalog,
            log,
            clock,
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
async fn open_store(url: &str) -> videosync_core::Result<DynObjectStore> {
    match url.strip_prefix("file://") {
        Some(path) => {
            let fs = FsStore::open(path).await?;
            fs.spawn_sweeper(STORE_SWEEP.0, STORE_SWEEP.1);
            Ok(Arc::new(fs))
        }
        None => store_from_url(url).await,
    }
}

/// State shared by the handlers.
pub type AppState = Arc<Backends>;

/// The server's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Debug, Serialize)]
struct Check {
    backend: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Readiness {
    ready: bool,
    checks: Vec<Check>,
}

/// How long one readiness probe may take before the backend counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

async fn probe<T>(
    backend: String,
    fut: impl std::future::Future<Output = videosync_core::Result<T>>,
) -> Check {
    let error = match tokio::time::timeout(PROBE_TIMEOUT, fut).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {PROBE_TIMEOUT:?}")),
    };
    Check {
        backend,
        ok: error.is_none(),
        error,
    }
}

/// Whether the store takes writes: readiness means uploads can land, so the
/// probe writes one small object (a full disk or a read-only mount fails it).
async fn store_answers(store: &DynObjectStore) -> videosync_core::Result<()> {
    let key = ObjectKey::parse(".readyz/probe")?;
    store.put(&key, "ok".into()).await.map(|_| ())
}

/// Readiness: every backend answers. 200 with the checks when all do, 503
/// when one does not.
async fn readyz(State(b): State<AppState>) -> impl IntoResponse {
    let checks = vec![
        probe(format!("store {}", b.store), store_answers(&b.store)).await,
        probe(format!("queue {}", b.queue), b.queue.counts()).await,
        probe(
            format!("catalog {}", b.catalog),
            b.catalog.list_videos(VideoFilter {
                limit: Some(1),
                ..Default::default()
            }),
        )
        .await,
    ];
    let ready = checks.iter().all(|c| c.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { ready, checks }))
}

/// The default data directory of `videosync serve`.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
