//! The videosync reference server: composes the SDK crates into the
//! platform behind an axum [`Router`].
//!
//! One module per capability, each owning its routes, request and response
//! types and handlers: [`accounts`], [`channels`], [`videos`], [`search`],
//! [`uploads`] (tus), [`processing`], [`progress`] (SSE), [`delivery`]
//! (HLS), [`realtime`] (watch-together rooms over WebSocket), [`ops`]. Who may do what is decided in [`policy`], by plain functions;
//! who is asking, in [`auth`]. Everything leaves as JSON, errors in one
//! shape ([`error`]). The binary (`videosync`, in `main.rs`) only reads the
//! [`config`], opens the backends and calls [`serve`].
//!
//! # Examples
//!
//! Serve on embedded backends in a temporary directory:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use videosync_server::{config::Config, serve, App};
//! let config = Config { data_dir: "/tmp/videosync".into(), ..Config::default() };
//! let app = std::sync::Arc::new(App::from_config(&config).await?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, app, std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod accounts;
pub mod auth;
pub mod backends;
pub mod channels;
pub mod config;
pub mod delivery;
pub mod dto;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod ops;
pub mod policy;
pub mod processing;
pub mod progress;
pub mod realtime;
pub mod search;
pub mod state;
pub mod uploads;
pub mod videos;
mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, Request};
use axum::routing::get;
use axum::{middleware, Json, Router};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

pub use backends::{BackendUrls, Backends, EVENT_LOG, TRANSCODE_QUEUE};
pub use state::{App, AppState};

/// The API's routes (under `/api/v1`) with their OpenAPI document.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi()).nest(
        "/api/v1",
        OpenApiRouter::new()
            .merge(accounts::routes())
            .merge(channels::routes())
            .merge(videos::routes())
            .merge(processing::routes())
            .merge(uploads::direct::routes())
            .merge(progress::routes())
            .merge(delivery::api_routes())
            .merge(realtime::api_routes())
            .merge(search::routes()),
    )
}

/// The OpenAPI document of [`api`].
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, doc) = api().split_for_parts();
    openapi::with_error_responses(doc)
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The server's routes with every layer: request ids, tracing, metrics,
/// security headers, CORS, body limit, and JSON answers for unknown routes
/// and methods.
pub fn router(app: AppState) -> Router {
    let (api, doc) = api().split_for_parts();
    let doc = openapi::with_error_responses(doc);
    let max_body = app.limits.max_body_bytes;
    let cors = cors_layer(&app.cors_origins);
    let router = Router::new()
        .merge(api)
        .route(
            "/api/v1/openapi.json",
            get(move || std::future::ready(Json(doc.clone()))),
        )
        .merge(ops::routes())
        .merge(uploads::routes())
        .merge(delivery::routes())
        .merge(realtime::routes())
        .fallback(web::fallback)
        .method_not_allowed_fallback(error::method_not_allowed_fallback)
        .layer(middleware::from_fn(ops::track))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app);
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(middleware::map_response(security_headers))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                let (method, uri) = (req.method(), req.uri().path());
                // Media requests come by the thousand per viewer and a span
                // costs about a tenth of serving one: theirs is at debug
                // level (on with `RUST_LOG=videosync_server=debug`).
                if uri.starts_with("/media/") {
                    tracing::debug_span!("request", method = %method, uri = %uri, request_id = %id)
                } else {
                    tracing::info_span!("request", method = %method, uri = %uri, request_id = %id)
                }
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(
            REQUEST_ID.clone(),
            ops::RequestIds::new(),
        ))
}

/// The security headers of every response, where the handler set none.
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    const HEADERS: [(HeaderName, HeaderValue); 4] = [
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ),
    ];
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        headers.entry(name).or_insert(value);
    }
    response
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                uploads::tus::TUS_RESUMABLE,
                uploads::tus::UPLOAD_LENGTH,
                uploads::tus::UPLOAD_DEFER_LENGTH,
                uploads::tus::UPLOAD_OFFSET,
                uploads::tus::UPLOAD_METADATA,
                uploads::tus::UPLOAD_CHECKSUM,
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([
                REQUEST_ID.clone(),
                header::RETRY_AFTER,
                header::LOCATION,
                uploads::tus::TUS_RESUMABLE,
                uploads::tus::TUS_VERSION,
                uploads::tus::TUS_EXTENSION,
                uploads::tus::TUS_MAX_SIZE,
                uploads::tus::UPLOAD_OFFSET,
                uploads::tus::UPLOAD_LENGTH,
                uploads::tus::UPLOAD_EXPIRES,
                uploads::tus::VIDEO_ID,
            ]),
    )
}

/// Serves [`router`] on `listener` until `shutdown` resolves; requests in
/// flight then finish before this returns, and WebSocket connections close
/// with 1001 (going away) so their clients reconnect elsewhere.
///
/// # Errors
/// When accepting connections fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let hub = app.clone();
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        hub.realtime.shut_down();
    })
    .await
}

/// The default data directory of `videosync serve`.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
