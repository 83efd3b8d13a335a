//! The health endpoints, in-process through `oneshot`.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use videosync_server::{router, BackendUrls, Backends};

async fn get(app: axum::Router, path: &str) -> (StatusCode, String) {
    let response = app
        .oneshot(Request::get(path).body(Body::empty()).expect("a request"))
        .await
        .expect("a response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn embedded_backends_are_healthy_and_ready() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let backends = Backends::open(&BackendUrls::embedded(&dir.path().join("data")))
        .await
        .expect("opening the embedded backends");
    let app = router(Arc::new(backends));
    assert_eq!(
        get(app.clone(), "/healthz").await,
        (StatusCode::OK, "ok\n".into())
    );
    let (status, body) = get(app.clone(), "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["ready"], true);
    assert_eq!(json["checks"].as_array().map(Vec::len), Some(3));
    assert!(dir.path().join("data/videosync.db").exists());
    let (status, _) = get(app, "/no/such/route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn readiness_fails_when_a_backend_is_gone() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let backends = Backends::open(&BackendUrls::embedded(&data))
        .await
        .expect("opening the embedded backends");
    // The store's directory vanishes under the server (a lost mount).
    std::fs::remove_dir_all(data.join("store")).expect("removing the store");
    std::fs::write(data.join("store"), b"not a directory").expect("a file in its place");
    let (status, body) = get(router(Arc::new(backends)), "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["ready"], false);
    assert_eq!(json["checks"][0]["ok"], false, "{body}");
}

#[tokio::test]
async fn unknown_backend_urls_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut urls = BackendUrls::embedded(dir.path());
    urls.queue = "mysql://localhost/db".into();
    let err = Backends::open(&urls)
        .await
        .expect_err("mysql is not a backend");
    assert_eq!(err.kind(), videosync_core::ErrorKind::InvalidInput);
}
