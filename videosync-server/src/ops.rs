//! Operations: liveness (`/healthz`), readiness (`/readyz`: every backend
//! answers), Prometheus metrics (`/metrics`), and the request metrics
//! middleware.
//!
//! Metrics: `http_requests_total{method,route,status}` and the histogram
//! `http_request_duration_seconds{method,route}` (histograms, not summaries,
//! so they aggregate across instances); at each scrape, the queue's
//! `videosync_jobs{state}` and `videosync_queue_depth`; the transcode
//! workers add `videosync_transcode_speed` (media seconds per wall second).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use tower_http::request_id::{MakeRequestId, RequestId};
use videosync_core::bus::Topic;
use videosync_core::kv::Key;
use videosync_core::{ObjectKey, ObjectStoreExt};

use crate::state::AppState;

/// The process's metrics registry (one per process: the recorder is
/// global).
#[derive(Clone)]
pub struct Metrics(Option<PrometheusHandle>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Latency buckets, seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    /// The registry, installed as the global recorder on first use. `None`
    /// inside when another recorder was installed first (an embedder's):
    /// `/metrics` then says so and the embedder exports them.
    pub fn get() -> Metrics {
        static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
        Metrics(
            HANDLE
                .get_or_init(|| {
                    PrometheusBuilder::new()
                        .set_buckets_for_metric(
                            Matcher::Suffix("duration_seconds".to_owned()),
                            LATENCY_BUCKETS,
                        )
                        .ok()?
                        .install_recorder()
                        .ok()
                })
                .clone(),
        )
    }
}

/// The operations routes (outside `/api/v1`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Counts and times every request by its route template (not the raw path,
/// which would make one series per id).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = method_label(req.method());
    let started = std_now();
    let response = next.run(req).await;
    let elapsed = started.elapsed().as_secs_f64();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let (count, time) = RequestMetrics::get().handles(method, route, response.status());
    count.increment(1);
    time.record(elapsed);
    response
}

/// A method as a metrics label: the standard ones by name, any other as
/// `OTHER`, so made-up methods cannot add series without end.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    STANDARD
        .iter()
        .find(|(m, _)| m == method)
        .map_or("OTHER", |(_, name)| name)
}

/// The handles of the request metrics by method, route and status, made
/// once each: a request then costs a map look-up rather than label strings
/// and a registry search. Bounded by the routes, the standard methods and
/// the statuses the router answers.
#[derive(Default)]
struct RequestMetrics {
    by_route: RwLock<HashMap<Box<str>, Vec<RouteMetrics>>>,
}

struct RouteMetrics {
    method: &'static str,
    status: StatusCode,
    count: Counter,
    time: Histogram,
}

impl RequestMetrics {
    fn get() -> &'static RequestMetrics {
        static METRICS: OnceLock<RequestMetrics> = OnceLock::new();
        METRICS.get_or_init(|| {
            // The recorder first, or the handles would record nowhere.
            Metrics::get();
            RequestMetrics::default()
        })
    }

    fn handles(
        &self,
        method: &'static str,
        route: &str,
        status: StatusCode,
    ) -> (Counter, Histogram) {
        let find = |all: &Vec<RouteMetrics>| {
            all.iter()
                .find(|m| m.status == status && m.method == method)
                .map(|m| (m.count.clone(), m.time.clone()))
        };
        {
            let map = self.by_route.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = map.get(route).and_then(find) {
                return found;
            }
        }
        let mut map = self
            .by_route
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let all = map.entry(route.into()).or_default();
        if let Some(found) = find(all) {
            return found;
        }
        let count = metrics::counter!(
            "http_requests_total",
            "method" => method,
            "route" => route.to_owned(),
            "status" => status.as_u16().to_string()
        );
        let time = metrics::histogram!(
            "http_request_duration_seconds",
            "method" => method,
            "route" => route.to_owned()
        );
        all.push(RouteMetrics {
            method,
            status,
            count: count.clone(),
            time: time.clone(),
        });
        (count, time)
    }
}

/// Request ids (`x-request-id` where the client sent none): a random
/// prefix per process and a counter, so they are unique across instances
/// without a random draw per request.
#[derive(Clone)]
pub struct RequestIds {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    /// Ids with a fresh random prefix.
    pub fn new() -> Self {
        RequestIds {
            prefix: format!("{:016x}", rand::random::<u64>()).into(),
            next: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds::new()
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n:016x}", self.prefix);
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// Monotonic now for latency measurement only (not domain time, which
/// comes from the `Clock`).
#[allow(clippy::disallowed_methods)]
fn std_now() -> std::time::Instant {
    std::time::Instant::now()
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// One backend's answer to the readiness probe.
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

async fn probe<T>(backend: String, fut: impl Future<Output = videosync_core::Result<T>>) -> Check {
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

/// Readiness: every backend answers. 200 with the checks when all do, 503
/// when one does not. The store probe writes one small object (a full disk
/// or a read-only mount fails it), the bus publishes to a probe topic, the
/// key-value store counts.
async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let b = &app.backends;
    let store = async {
        let key = ObjectKey::parse(".readyz/probe")?;
        b.store.put(&key, "ok".into()).await.map(|_| ())
    };
    let bus = async {
        let topic = Topic::parse("readyz")?;
        b.bus.publish(&topic, "ok".into()).await
    };
    let log = async { b.log.position(&Topic::parse("readyz")?).await };
    let kv = async {
        let key = Key::parse(&crate::backends::scoped(&b.namespace, "readyz"))?;
        b.kv.incr(&key, 1, Some(Duration::from_secs(60))).await
    };
    let (db, store, queue, bus, log, kv) = tokio::join!(
        probe(format!("database {}", b.db), b.db.ping()),
        probe(format!("store {}", b.store), store),
        probe(format!("queue {}", b.queue), b.queue.counts()),
        probe(format!("bus {}", b.bus), bus),
        probe(format!("log {}", b.log), log),
        probe(format!("kv {}", b.kv), kv),
    );
    let mut checks = vec![db, store, queue, bus, log, kv];
    if !Arc::ptr_eq(&b.uploads, &b.store) {
        let put = async {
            let key = ObjectKey::parse(".readyz/probe")?;
            b.uploads.put(&key, "ok".into()).await.map(|_| ())
        };
        checks.push(probe(format!("uploads {}", b.uploads), put).await);
    }
    let ready = checks.iter().all(|c| c.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { ready, checks }))
}

/// Prometheus text exposition.
async fn metrics(State(app): State<AppState>) -> Response {
    let Some(handle) = &app.metrics.0 else {
        return (
            StatusCode::NOT_FOUND,
            "metrics are exported by the embedding program's own recorder\n",
        )
            .into_response();
    };
    if let Ok(counts) = app.backends.queue.counts().await {
        for (state, n) in [
            ("ready", counts.ready),
            ("scheduled", counts.scheduled),
            ("running", counts.running),
            ("done", counts.done),
            ("dead", counts.dead),
            ("cancelled", counts.cancelled),
        ] {
            metrics::gauge!("videosync_jobs", "state" => state).set(n as f64);
        }
        metrics::gauge!("videosync_queue_depth").set((counts.ready + counts.scheduled) as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
