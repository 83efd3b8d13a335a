//! `videosync serve` as an operator runs it: the real binary, on the
//! embedded backends and on Postgres + Redis + S3, walked over TCP through
//! the sign-up → channel → invite → join → members → search flow, then
//! stopped with SIGTERM; `--print-config` keeps its secrets, and a bad
//! configuration is one clear line and exit status 1.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.
#![cfg(unix)]

mod common;

use serde_json::{json, Value};

use common::serve::{http, videosync, Server, JWT_SECRET};
use videosync_core::conformance::{postgres_namespace, service_url, unique_name};

fn register(server: &Server, username: &str) -> (String, Value) {
    let body = server.expect(
        201,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"username": username, "password": format!("password of {username}")})),
    );
    (
        body["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned(),
        body,
    )
}

/// The flow of docs/api.md, over TCP.
fn walk_the_flow(server: &Server) {
    let (health_status, _, health) = http(&server.addr, "GET", "/healthz", None, None);
    assert_eq!((health_status, health.as_slice()), (200, &b"ok\n"[..]));
    let (ready_status, _, ready) = http(&server.addr, "GET", "/readyz", None, None);
    assert_eq!(ready_status, 200, "{}", String::from_utf8_lossy(&ready));

    // The first account on an empty instance is its administrator.
    let (owner, owner_body) = register(server, "ada");
    assert_eq!(owner_body["user"]["is_admin"], true, "{owner_body}");
    let (bob, bob_body) = register(server, "bob");
    assert_eq!(bob_body["user"]["is_admin"], false, "{bob_body}");
    let (outsider, _) = register(server, "eve");

    let me = server.expect(200, "GET", "/api/v1/me", Some(&bob), None);
    assert_eq!(me["username"], "bob");

    let channel = server.expect(
        201,
        "POST",
        "/api/v1/channels",
        Some(&owner),
        Some(json!({"name": "Film club", "visibility": "private"})),
    );
    let channel = channel["id"].as_str().expect("a channel id").to_owned();
    server.expect(
        201,
        "POST",
        &format!("/api/v1/channels/{channel}/videos"),
        Some(&owner),
        Some(json!({"title": "Harbour at dawn", "tags": ["sea"]})),
    );

    // Private: bob sees nothing until he joins, and it looks like nothing is there.
    let hidden = server.expect(
        404,
        "GET",
        &format!("/api/v1/channels/{channel}"),
        Some(&bob),
        None,
    );
    assert_eq!(hidden["error"]["code"], "not_found");

    let invite = server.expect(
        201,
        "POST",
        &format!("/api/v1/channels/{channel}/invites"),
        Some(&owner),
        Some(json!({"role": "viewer", "max_uses": 1})),
    );
    let code = invite["code"].as_str().expect("an invite code");
    let joined = server.expect(
        200,
        "POST",
        &format!("/api/v1/invites/{code}/accept"),
        Some(&bob),
        Some(json!({})),
    );
    assert_eq!(joined["role"], "viewer", "{joined}");
    // Used up: the next person is turned away.
    let gone = server.call(
        "POST",
        &format!("/api/v1/invites/{code}/accept"),
        Some(&outsider),
        Some(json!({})),
    );
    assert_eq!(gone.0, 410, "{}", gone.1);

    let members = server.expect(
        200,
        "GET",
        &format!("/api/v1/channels/{channel}/members"),
        Some(&bob),
        None,
    );
    let mut roles: Vec<(String, String)> = members["items"]
        .as_array()
        .expect("a page of members")
        .iter()
        .map(|m| {
            (
                m["user"]["username"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                m["role"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        [
            ("ada".to_owned(), "owner".to_owned()),
            ("bob".to_owned(), "viewer".to_owned())
        ],
        "{members}"
    );

    let titles = |token: &str| -> Vec<String> {
        let hits = server.expect(
            200,
            "GET",
            "/api/v1/search/videos?q=harbour",
            Some(token),
            None,
        );
        hits["items"]
            .as_array()
            .expect("a page of hits")
            .iter()
            .map(|h| h["video"]["title"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        titles(&bob),
        ["Harbour at dawn"],
        "a member finds the channel's video"
    );
    assert!(
        titles(&outsider).is_empty(),
        "a non-member finds nothing of a private channel"
    );

    let (metrics_status, _, metrics) = http(&server.addr, "GET", "/metrics", None, None);
    assert_eq!(metrics_status, 200);
    assert!(
        String::from_utf8_lossy(&metrics).contains("http_requests"),
        "the requests are counted"
    );
}

#[test]
fn embedded_serve_walks_the_flow_over_tcp_and_stops_on_sigterm() {
    let server = Server::start(&[("VIDEOSYNC_JWT_SECRET", JWT_SECRET.to_owned())]);
    walk_the_flow(&server);
    let log = server.stop();
    assert!(
        !log.iter().any(|l| l.contains(JWT_SECRET)),
        "the secret is logged: {log:#?}"
    );
}

#[test]
fn services_serve_walks_the_flow_over_tcp_and_stops_on_sigterm() {
    let (Some(pg), Some(redis), Some(s3)) = (
        service_url("VIDEOSYNC_TEST_POSTGRES_URL"),
        service_url("VIDEOSYNC_TEST_REDIS_URL"),
        service_url("VIDEOSYNC_TEST_S3_URL"),
    ) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let database = runtime.block_on(postgres_namespace(&pg));
    // The test bucket, under a prefix of this run's own.
    let store = match s3.split_once('?') {
        Some((bucket, query)) => format!(
            "{}/{}?{query}",
            bucket.trim_end_matches('/'),
            unique_name("serve-")
        ),
        None => format!("{}/{}", s3.trim_end_matches('/'), unique_name("serve-")),
    };
    let server = Server::start(&[
        ("VIDEOSYNC_JWT_SECRET", JWT_SECRET.to_owned()),
        ("VIDEOSYNC_DATABASE_URL", database),
        ("VIDEOSYNC_STORE_URL", store),
        ("VIDEOSYNC_QUEUE_URL", redis.clone()),
        ("VIDEOSYNC_BUS_URL", redis.clone()),
        ("VIDEOSYNC_LOG_URL", redis.clone()),
        ("VIDEOSYNC_KV_URL", redis),
        ("VIDEOSYNC_NAMESPACE", unique_name("serve")),
    ]);
    walk_the_flow(&server);
    let log = server.stop();
    assert!(
        !log.iter().any(|l| l.contains(JWT_SECRET)),
        "the secret is logged: {log:#?}"
    );
}

#[test]
fn print_config_shows_the_settings_but_no_secret() {
    let out = videosync()
        .args(["serve", "--print-config"])
        .env("VIDEOSYNC_JWT_SECRET", JWT_SECRET)
        .env("VIDEOSYNC_STORE_SECRET_ACCESS_KEY", "store-secret-key-42")
        .env(
            "VIDEOSYNC_DATABASE_URL",
            "postgres://app:db-password-42@db.internal/videosync",
        )
        .env(
            "VIDEOSYNC_QUEUE_URL",
            "redis://:redis-password-42@cache.internal:6379",
        )
        .env("VIDEOSYNC_LISTEN", "0.0.0.0:9000")
        .output()
        .expect("running videosync serve --print-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("listen = \"0.0.0.0:9000\""), "{stdout}");
    assert!(
        stdout.contains("db.internal"),
        "the database is named: {stdout}"
    );
    assert!(stdout.contains("[redacted]"), "{stdout}");
    for secret in [
        JWT_SECRET,
        "store-secret-key-42",
        "db-password-42",
        "redis-password-42",
    ] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
        assert!(!stderr.contains(secret), "{secret} printed:\n{stderr}");
    }
}

#[test]
fn a_bad_configuration_is_one_clear_line_and_exit_status_1() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bad_toml = dir.path().join("videosync.toml");
    std::fs::write(&bad_toml, "listen = [\n").expect("writing the file");
    // (environment, extra arguments, what the one line says)
    type Case<'a> = (Vec<(&'a str, String)>, Vec<String>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![("VIDEOSYNC_LISTN", "0.0.0.0:80".to_owned())],
            vec![],
            "unknown environment variable VIDEOSYNC_LISTN",
        ),
        (
            vec![("VIDEOSYNC_WORKERS", "two".to_owned())],
            vec![],
            "VIDEOSYNC_WORKERS=`two` is not a whole number",
        ),
        (
            vec![("VIDEOSYNC_JWT_SECRET", "short".to_owned())],
            vec![],
            "at least 32 characters",
        ),
        (
            vec![],
            vec!["--config".to_owned(), bad_toml.display().to_string()],
            "is not valid TOML",
        ),
        (
            vec![],
            vec![
                "--config".to_owned(),
                dir.path().join("missing.toml").display().to_string(),
            ],
            "cannot read the configuration file",
        ),
    ];
    for (env, args, expected) in cases {
        let mut cmd = videosync();
        cmd.args(&args).args(["serve", "--addr", "127.0.0.1:0"]);
        cmd.env("VIDEOSYNC_DATA_DIR", dir.path().join("data"));
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("running videosync serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let what = format!("{env:?} {args:?}");
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: one line, not a dump:\n{stderr}");
        assert!(lines[0].starts_with("videosync: "), "{what}: {stderr}");
        assert!(lines[0].contains(expected), "{what}: {stderr}");
        assert!(
            !stderr.contains("Error {") && !stderr.contains("backtrace"),
            "{what}: {stderr}"
        );
    }
    // The secret of a rejected setting is not echoed back either.
    let out = videosync()
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("VIDEOSYNC_DATA_DIR", dir.path().join("data"))
        .env("VIDEOSYNC_JWT_SECRET", "tooshort-but-secret")
        .output()
        .expect("running videosync serve");
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("tooshort-but-secret"));
}
