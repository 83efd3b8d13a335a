//! Operations: health, readiness, metrics, the OpenAPI document, request
//! ids, security headers, CORS, and JSON answers for unknown routes.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;
use videosync_server::{BackendUrls, Backends};

use crate::harness::{assert_error, test_config, Set, TestApp};

#[tokio::test]
async fn healthy_and_ready_on_every_backend_set() {
    for t in TestApp::each().await {
        let (status, body) = t.get("/healthz", None).await;
        assert_eq!((status, body), (StatusCode::OK, json!("ok\n")));
        let (status, body) = t.get("/readyz", None).await;
        assert_eq!(status, StatusCode::OK, "{:?}: {body}", t.set);
        let names: Vec<&str> = body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["backend"].as_str().unwrap().split(' ').next().unwrap())
            .collect();
        let mut want = vec!["database", "store", "queue", "bus", "log", "kv"];
        // The services set keeps originals in an interim store of their
        // own, which is probed too.
        if t.set == Set::Services {
            want.push("uploads");
        }
        assert_eq!(names, want, "{:?}", t.set);
    }
}

#[tokio::test]
async fn readiness_fails_when_a_backend_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backends = Backends::open(&BackendUrls::embedded(&data)).await.unwrap();
    // The store's directory vanishes under the server (a lost mount).
    std::fs::remove_dir_all(data.join("store")).unwrap();
    std::fs::write(data.join("store"), b"not a directory").unwrap();
    let app = videosync_server::App::new(
        backends,
        &test_config(),
        &videosync_server::config::Secret::new(crate::harness::SECRET),
    )
    .unwrap();
    let response = tower::ServiceExt::oneshot(
        videosync_server::router(std::sync::Arc::new(app)),
        Request::get("/readyz").body(Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn unknown_backend_urls_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut urls = BackendUrls::embedded(dir.path());
    urls.queue = "mysql://localhost/db".into();
    let err = Backends::open(&urls)
        .await
        .expect_err("mysql is not a backend");
    assert_eq!(err.kind(), videosync_core::ErrorKind::InvalidInput);
    let mut urls = BackendUrls::embedded(dir.path());
    urls.database = "memory://".into();
    let err = Backends::open(&urls)
        .await
        .expect_err("the database must be SQL");
    assert!(
        err.to_string().contains("not sqlite:// or postgres://"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let t = TestApp::new(Set::Embedded).await.unwrap();
    assert_error(
        &t.get("/no/such/route", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &t.get("/api/v1/nothing", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let r = t.call(Method::DELETE, "/api/v1/channels", None, None).await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn headers_request_ids_and_metrics() {
    let t = TestApp::new(Set::Embedded).await.unwrap();
    let response = tower::ServiceExt::oneshot(
        t.router.clone(),
        Request::get("/api/v1/channels")
            .header("x-request-id", "abc-123")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    let h = response.headers();
    assert_eq!(h["x-request-id"], "abc-123");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(h.contains_key("content-security-policy"));
    let response = tower::ServiceExt::oneshot(
        t.router.clone(),
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    assert!(
        response.headers()["x-request-id"].len() >= 32,
        "one is made when none comes"
    );
    t.get("/api/v1/channels/not-a-uuid", None).await;
    let made_up = tower::ServiceExt::oneshot(
        t.router.clone(),
        Request::builder()
            .method(Method::from_bytes(b"BREW").unwrap())
            .uri("/api/v1/channels")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(made_up.status(), StatusCode::METHOD_NOT_ALLOWED);
    let (status, text) = t.get("/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap();
    assert!(
        text.contains(
            "http_requests_total{method=\"GET\",route=\"/api/v1/channels\",status=\"200\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains("route=\"/api/v1/channels/{id}\",status=\"400\""),
        "routes, not raw paths: {text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "histograms: {text}"
    );
    assert!(text.contains("videosync_queue_depth"), "{text}");
    assert!(
        text.contains("method=\"OTHER\",route=\"/api/v1/channels\",status=\"405\"")
            && !text.contains("BREW"),
        "a made-up method is counted as OTHER, not as a series of its own: {text}"
    );
}

#[tokio::test]
async fn cors_follows_the_configuration() {
    let mut config = test_config();
    config.cors_origins = vec!["https://app.example".into()];
    let t = TestApp::with_config(Set::Embedded, config).await.unwrap();
    let preflight = |origin: &'static str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/v1/channels")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .body(Body::empty())
            .unwrap()
    };
    let ok = tower::ServiceExt::oneshot(t.router.clone(), preflight("https://app.example"))
        .await
        .unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let other = tower::ServiceExt::oneshot(t.router.clone(), preflight("https://evil.example"))
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let t = TestApp::new(Set::Embedded).await.unwrap();
    let (status, doc) = t.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/guest",
        "/api/v1/me",
        "/api/v1/me/password",
        "/api/v1/me/channels",
        "/api/v1/channels",
        "/api/v1/channels/{id}",
        "/api/v1/channels/{id}/permissions",
        "/api/v1/channels/{id}/members",
        "/api/v1/channels/{id}/members/{user_id}",
        "/api/v1/channels/{id}/join",
        "/api/v1/channels/{id}/leave",
        "/api/v1/channels/{id}/invites",
        "/api/v1/channels/{id}/invites/{code}",
        "/api/v1/invites/{code}",
        "/api/v1/invites/{code}/accept",
        "/api/v1/channels/{id}/bans",
        "/api/v1/channels/{id}/bans/{user_id}",
        "/api/v1/channels/{id}/videos",
        "/api/v1/videos/{id}",
        "/api/v1/search/videos",
        "/api/v1/channels/{id}/live/tickets",
        "/api/v1/channels/{id}/messages",
        "/api/v1/channels/{id}/messages/{message}",
        "/api/v1/channels/{id}/mutes",
        "/api/v1/channels/{id}/mutes/{user_id}",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the document");
    }
    // The settings keys the rooms read are part of the contract.
    let settings = &doc["components"]["schemas"]["UpdateChannelRequest"]["properties"]["settings"];
    assert_eq!(
        settings["properties"]["slow_mode_seconds"]["maximum"], 3600,
        "{settings}"
    );
    assert_eq!(
        settings["properties"]["behind"]["enum"],
        json!(["wait", "leave", "skip"])
    );
    assert_eq!(settings["additionalProperties"], true);
    // Every operation documents the error shape.
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let r = &op["responses"];
            assert!(
                r["404"]["content"]["application/json"].is_object(),
                "{method} {path}"
            );
        }
    }
    assert_eq!(
        doc,
        serde_json::to_value(videosync_server::openapi_document()).unwrap()
    );
}
