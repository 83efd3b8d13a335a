//! A server under test: its router over one backend set, and helpers to
//! call it as a client would.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use videosync_core::conformance::{postgres_namespace, service_url, unique_name};
use videosync_core::store::s3::S3Store;
use videosync_core::{Clock, ManualClock, SystemClock};
use videosync_server::config::{Config, Secret};
use videosync_server::{router, App, AppState, BackendUrls, Backends};

/// The signing key of every test server.
pub const SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// Which backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// SQLite, files, in-process.
    Embedded,
    /// Postgres, Redis, S3.
    Services,
}

/// A server under test.
pub struct TestApp {
    pub set: Set,
    pub app: AppState,
    pub router: Router,
    pub clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

/// A fast configuration: cheap Argon2 (tests hash a lot), high rate limits.
pub fn test_config() -> Config {
    let mut c = Config::default();
    c.auth.jwt_secret = Secret::new(SECRET);
    c.auth.argon2_memory_kib = 64;
    c.auth.argon2_iterations = 1;
    c.limits.login_per_ip_per_minute = 10_000;
    c.limits.login_per_account_per_minute = 10_000;
    c.limits.register_per_ip_per_hour = 10_000;
    c
}

impl TestApp {
    /// A server on `set` with the test configuration.
    pub async fn new(set: Set) -> Option<TestApp> {
        Self::with_config(set, test_config()).await
    }

    /// A server on `set` with `config`; `None` when the services are not
    /// configured (and not required).
    pub async fn with_config(set: Set, config: Config) -> Option<TestApp> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // Starts at the real time: the queue checks the database server's
        // clock against it.
        let clock = Arc::new(ManualClock::new(SystemClock::new().now()));
        let (urls, store, uploads) = match set {
            Set::Embedded => (BackendUrls::embedded(dir.path()), None, None),
            Set::Services => {
                let pg = service_url("VIDEOSYNC_TEST_POSTGRES_URL")?;
                let redis = service_url("VIDEOSYNC_TEST_REDIS_URL")?;
                let s3 = service_url("VIDEOSYNC_TEST_S3_URL")?;
                let db = postgres_namespace(&pg).await;
                let name = unique_name("api-");
                let prefix = videosync_core::ObjectKey::parse(&name).unwrap();
                let store = S3Store::from_url(&s3)
                    .await
                    .expect("the S3 store")
                    .with_prefix(Some(prefix));
                // Originals in an interim store of their own: another
                // prefix of the bucket.
                let interim = videosync_core::ObjectKey::parse(&format!("{name}-interim")).unwrap();
                let uploads = S3Store::from_url(&s3)
                    .await
                    .expect("the S3 store")
                    .with_prefix(Some(interim));
                let urls = BackendUrls {
                    store: s3,
                    uploads: None,
                    queue: redis.clone(),
                    bus: redis.clone(),
                    database: db,
                    log: redis.clone(),
                    kv: redis,
                    namespace: unique_name("t"),
                };
                let store: videosync_core::store::DynObjectStore = Arc::new(store);
                let uploads: videosync_core::store::DynObjectStore = Arc::new(uploads);
                (urls, Some(store), Some(uploads))
            }
        };
        let clock_dyn: Arc<dyn Clock> = clock.clone();
        let backends = Backends::open_with(&urls, clock_dyn, store, uploads)
            .await
            .expect("opening the backends");
        let app = Arc::new(App::new(backends, &config, &Secret::new(SECRET)).expect("the app"));
        Some(TestApp {
            set,
            router: router(app.clone()),
            app,
            clock,
            _dir: dir,
        })
    }

    /// One server per backend set that is available.
    pub async fn each() -> Vec<TestApp> {
        let mut apps = vec![TestApp::new(Set::Embedded).await.expect("embedded")];
        apps.extend(TestApp::new(Set::Services).await);
        apps
    }

    /// Sends a request; answers the status and the body as JSON (`Null`
    /// for an empty body, a string for one that is not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("a request");
        self.send(req).await
    }

    /// Sends a prepared request.
    pub async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(req).await.expect("a response");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, body)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Registers `username` (password `password-<username>`).
    pub async fn register(&self, username: &str) -> User {
        let (status, body) = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({"username": username, "password": format!("password-{username}")}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "registering {username}: {body}"
        );
        User::from_tokens(&body)
    }

    /// Makes a channel owned by `owner`.
    pub async fn channel(&self, owner: &User, visibility: &str, allow_guests: bool) -> String {
        let (status, body) = self
            .post(
                "/api/v1/channels",
                Some(&owner.token),
                json!({"name": format!("{visibility} channel"), "visibility": visibility, "allow_guests": allow_guests}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Makes `user` a member of `channel` with `role` through an invite
    /// made by `by`.
    pub async fn add_member(&self, channel: &str, by: &User, user: &User, role: &str) {
        let (status, invite) = self
            .post(
                &format!("/api/v1/channels/{channel}/invites"),
                Some(&by.token),
                json!({"role": role, "max_uses": 1}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{invite}");
        let code = invite["code"].as_str().unwrap();
        let (status, body) = self
            .post(
                &format!("/api/v1/invites/{code}/accept"),
                Some(&user.token),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["role"], role);
    }

    /// Moves the server's clock.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub username: String,
    pub token: String,
    pub refresh: String,
}

impl User {
    pub fn from_tokens(body: &Value) -> User {
        User {
            id: body["user"]["id"].as_str().expect("a user id").to_owned(),
            username: body["user"]["username"].as_str().unwrap().to_owned(),
            token: body["access_token"].as_str().expect("a token").to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    pub fn password(&self) -> String {
        format!("password-{}", self.username)
    }
}

/// Asserts the error shape and code.
#[track_caller]
pub fn assert_error(result: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(result.0, status, "{}", result.1);
    assert_eq!(result.1["error"]["code"], code, "{}", result.1);
    assert!(
        result.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        result.1
    );
}
