//! Embed the videosync server in a program of your own: choose the
//! backends yourself (here an in-memory object store, and a Redis queue
//! when `REDIS_URL` is set, else the embedded SQLite one), add a route of
//! your own beside the API, and serve.
//!
//! ```sh
//! cargo run --example embed_server
//! REDIS_URL=redis://127.0.0.1:6379/ cargo run --example embed_server --features all-backends
//! ```
//!
//! The program serves on a free port, signs up a user and calls both its
//! own route and the API through a real socket, then shuts down.

#![allow(clippy::print_stdout)] // An example talks to its reader.

use std::sync::Arc;

use anyhow::Context;
use axum::routing::get;
use videosync::core::store::memory::MemoryStore;
use videosync::core::SystemClock;
use videosync_server::config::{Config, Secret};
use videosync_server::{router, App, BackendUrls, Backends};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // The database and the rest stay embedded; the queue moves to Redis
    // when one is named.
    let mut urls = BackendUrls::embedded(dir.path());
    if let Ok(redis) = std::env::var("REDIS_URL") {
        urls.queue = redis;
    }
    let backends = Backends::open_with(
        &urls,
        Arc::new(SystemClock::new()),
        Some(Arc::new(MemoryStore::new())),
        None,
    )
    .await
    .context("opening the backends")?;
    println!(
        "store {}, queue {}, database {}",
        backends.store, backends.queue, backends.db
    );

    // Settings as a program chooses them (here: no file, no environment).
    let config = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    let secret = Secret::new("an example secret of 32 characters or more");
    let app = Arc::new(App::new(backends, &config, &secret)?);

    // The server's router is an axum Router: merge routes of your own.
    let routes = router(app).merge(axum::Router::new().route(
        "/hello",
        get(|| async { "hello from the embedding program\n" }),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, routes)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    println!("serving on http://{addr}");

    let http = reqwest::Client::new();
    let hello = http
        .get(format!("http://{addr}/hello"))
        .send()
        .await?
        .text()
        .await?;
    print!("GET /hello: {hello}");
    let signed_up = post_json(
        &http,
        &format!("http://{addr}/api/v1/auth/register"),
        None,
        serde_json::json!({"username": "ada", "password": "correct horse battery"}),
    )
    .await?;
    let token = signed_up["access_token"].as_str().context("no token")?;
    let channel = post_json(
        &http,
        &format!("http://{addr}/api/v1/channels"),
        Some(token),
        serde_json::json!({"name": "Film club", "visibility": "public"}),
    )
    .await?;
    println!(
        "signed up {} (instance admin: {}) and made channel {} ({})",
        signed_up["user"]["username"],
        signed_up["user"]["is_admin"],
        channel["name"],
        channel["id"]
    );
    let _ = stop.send(());
    server.await??;
    println!("stopped");
    Ok(())
}

/// POSTs `body` as JSON and reads the JSON answer, failing on an error status.
async fn post_json(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let text = req.send().await?.error_for_status()?.text().await?;
    Ok(serde_json::from_str(&text)?)
}
