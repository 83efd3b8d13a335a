//! Accounts: sign up, sign in, tokens, refresh rotation, the signed-in
//! user, and what forged or stale credentials get.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;
use videosync_server::config::Registration;

use crate::harness::{assert_error, test_config, Set, TestApp, User};

#[tokio::test]
async fn sign_up_sign_in_and_me() {
    for t in TestApp::each().await {
        let first = t.register("first").await;
        let second = t.register("Second").await;
        let (status, me) = t.get("/api/v1/me", Some(&first.token)).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(
            me["is_admin"], true,
            "{:?}: the first account administers",
            t.set
        );
        let (_, me2) = t.get("/api/v1/me", Some(&second.token)).await;
        assert_eq!(me2["is_admin"], false);
        // Names are unique without regard to case.
        let dup = t
            .post(
                "/api/v1/auth/register",
                None,
                json!({"username": "second", "password": "long enough"}),
            )
            .await;
        assert_error(&dup, StatusCode::CONFLICT, "already_exists");
        // Log in by name (any case) and by e-mail.
        let ok = t
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": "SECOND", "password": second.password()}),
            )
            .await;
        assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
        assert_eq!(ok.1["token_type"], "Bearer");
        let wrong = t
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": "second", "password": "not it at all"}),
            )
            .await;
        assert_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_credentials");
        let nobody = t
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": "nobody", "password": "whatever1"}),
            )
            .await;
        assert_eq!(
            nobody.1, wrong.1,
            "an unknown login answers as a wrong password"
        );
        // Display name.
        let (status, me) = t
            .call(
                Method::PATCH,
                "/api/v1/me",
                Some(&second.token),
                Some(json!({"display_name": "Zweite"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["display_name"], "Zweite");
        let bad = t
            .call(
                Method::PATCH,
                "/api/v1/me",
                Some(&second.token),
                Some(json!({"display_name": "a\u{0}b"})),
            )
            .await;
        assert_error(&bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    }
}

#[tokio::test]
async fn registration_checks_its_fields() {
    let t = TestApp::new(Set::Embedded).await.unwrap();
    for body in [
        json!({"username": "ab", "password": "long enough"}),
        json!({"username": "with space", "password": "long enough"}),
        json!({"username": "../etc", "password": "long enough"}),
        json!({"username": "okname", "password": "short"}),
        json!({"username": "okname", "password": "x".repeat(2000)}),
        json!({"username": "okname", "password": "long enough", "email": "not-an-address"}),
        json!({"username": "okname", "password": "long enough", "display_name": ""}),
    ] {
        let r = t.post("/api/v1/auth/register", None, body.clone()).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    }
    for body in [
        json!({"username": "okname"}),
        json!({"username": 5, "password": "long enough"}),
        json!([]),
    ] {
        let r = t.post("/api/v1/auth/register", None, body).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    }
    let r = t
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": "okname", "password": "long enough", "admin": true}),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    // Not JSON, or not said to be JSON.
    let req = axum::http::Request::post("/api/v1/auth/register")
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{not json"))
        .unwrap();
    assert_error(&t.send(req).await, StatusCode::BAD_REQUEST, "bad_request");
    let req = axum::http::Request::post("/api/v1/auth/register")
        .header("content-type", "text/plain")
        .body(axum::body::Body::from("{}"))
        .unwrap();
    assert_error(
        &t.send(req).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let big = json!({"username": "okname", "password": "p".repeat(100_000)});
    let r = t.post("/api/v1/auth/register", None, big).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_login() {
    for t in TestApp::each().await {
        let u = t.register("rotor").await;
        let r1 = t
            .post(
                "/api/v1/auth/refresh",
                None,
                json!({"refresh_token": u.refresh}),
            )
            .await;
        assert_eq!(r1.0, StatusCode::OK, "{}", r1.1);
        let second = User::from_tokens(&r1.1);
        assert_ne!(second.refresh, u.refresh);
        // The first token again: stolen. The whole login ends.
        let reuse = t
            .post(
                "/api/v1/auth/refresh",
                None,
                json!({"refresh_token": u.refresh}),
            )
            .await;
        assert_error(&reuse, StatusCode::UNAUTHORIZED, "refresh_token_reused");
        let after = t
            .post(
                "/api/v1/auth/refresh",
                None,
                json!({"refresh_token": second.refresh}),
            )
            .await;
        assert_error(&after, StatusCode::UNAUTHORIZED, "unauthenticated");
        // Another login of the same account is untouched.
        let other = t
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": "rotor", "password": u.password()}),
            )
            .await;
        let other = User::from_tokens(&other.1);
        let ok = t
            .post(
                "/api/v1/auth/refresh",
                None,
                json!({"refresh_token": other.refresh}),
            )
            .await;
        assert_eq!(ok.0, StatusCode::OK);
        let junk = t
            .post(
                "/api/v1/auth/refresh",
                None,
                json!({"refresh_token": "junk"}),
            )
            .await;
        assert_error(&junk, StatusCode::UNAUTHORIZED, "unauthenticated");
    }
}

#[tokio::test]
async fn logout_password_change_and_account_deletion() {
    for t in TestApp::each().await {
        let u = t.register("leaver").await;
        let a = t
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": "leaver", "password": u.password()}),
            )
            .await;
        let a = User::from_tokens(&a.1);
        // Logging out one login leaves the other.
        let r = t
            .post(
                "/api/v1/auth/logout",
                None,
                json!({"refresh_token": u.refresh}),
            )
            .await;
        assert_eq!(r.0, StatusCode::NO_CONTENT);
        let r = t
            .post(
                "/api/v1/auth/refresh",
                None,
                json!({"refresh_token": u.refresh}),
            )
            .await;
        assert_eq!(r.0, StatusCode::UNAUTHORIZED);
        // Changing the password ends every login and answers a new one.
        let wrong = t
            .call(Method::PUT, "/api/v1/me/password", Some(&a.token),
                Some(json!({"current_password": "not the password", "new_password": "a new password"})))
            .await;
        assert_error(&wrong, StatusCode::FORBIDDEN, "invalid_credentials");
        let changed = t
            .call(
                Method::PUT,
                "/api/v1/me/password",
                Some(&a.token),
                Some(json!({"current_password": u.password(), "new_password": "a new password"})),
            )
            .await;
        assert_eq!(changed.0, StatusCode::OK, "{}", changed.1);
        let fresh = User::from_tokens(&changed.1);
        let r = t
            .post(
                "/api/v1/auth/refresh",
                None,
                json!({"refresh_token": a.refresh}),
            )
            .await;
        assert_eq!(r.0, StatusCode::UNAUTHORIZED);
        let old = t
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": "leaver", "password": u.password()}),
            )
            .await;
        assert_eq!(old.0, StatusCode::UNAUTHORIZED);
        let new = t
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": "leaver", "password": "a new password"}),
            )
            .await;
        assert_eq!(new.0, StatusCode::OK);
        // Deleting the account takes its channels and ends its tokens.
        let channel = t.channel(&fresh, "public", false).await;
        let r = t
            .call(
                Method::DELETE,
                "/api/v1/me",
                Some(&fresh.token),
                Some(json!({"password": "wrong password"})),
            )
            .await;
        assert_error(&r, StatusCode::FORBIDDEN, "invalid_credentials");
        let r = t
            .call(
                Method::DELETE,
                "/api/v1/me",
                Some(&fresh.token),
                Some(json!({"password": "a new password"})),
            )
            .await;
        assert_eq!(r.0, StatusCode::NO_CONTENT, "{}", r.1);
        let r = t.get("/api/v1/me", Some(&fresh.token)).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
        let r = t.get(&format!("/api/v1/channels/{channel}"), None).await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn forged_expired_and_malformed_tokens_are_refused() {
    let t = TestApp::new(Set::Embedded).await.unwrap();
    let u = t.register("holder").await;
    let (header, rest) = u.token.split_once('.').unwrap();
    let (payload, _sig) = rest.split_once('.').unwrap();
    let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let hs512 = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT"}"#);
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let mut admin_claims = claims.clone();
    admin_claims["sub"] = json!(uuid::Uuid::new_v4().to_string());
    let other_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"another secret, another secret!!"),
    )
    .unwrap();
    let forged = [
        format!("{none}.{payload}."),
        format!("{none}.{payload}"),
        format!("{hs512}.{payload}.{}", rest.split_once('.').unwrap().1),
        format!(
            "{header}.{}.{}",
            URL_SAFE_NO_PAD.encode(admin_claims.to_string()),
            rest.split_once('.').unwrap().1
        ),
        other_key,
        "garbage".to_owned(),
        String::new(),
    ];
    for token in &forged {
        let r = t.get("/api/v1/me", Some(token)).await;
        assert_eq!(r.0, StatusCode::UNAUTHORIZED, "{token}: {}", r.1);
    }
    let req = axum::http::Request::get("/api/v1/me")
        .header("authorization", format!("Basic {}", u.token))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_error(
        &t.send(req).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    // A bad token on a public endpoint is refused too, not read as anonymous.
    let r = t.get("/api/v1/channels", Some("garbage")).await;
    assert_eq!(r.0, StatusCode::UNAUTHORIZED);
    // Expiry follows the server's clock.
    assert_eq!(t.get("/api/v1/me", Some(&u.token)).await.0, StatusCode::OK);
    t.advance(Duration::from_secs(15 * 60));
    let r = t.get("/api/v1/me", Some(&u.token)).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "token_expired");
    let r = t
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": u.refresh}),
        )
        .await;
    assert_eq!(
        r.0,
        StatusCode::OK,
        "the refresh token outlives the access token"
    );
    t.advance(Duration::from_secs(31 * 24 * 3600));
    let r2 = User::from_tokens(&r.1);
    let r = t
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": r2.refresh}),
        )
        .await;
    assert_eq!(r.0, StatusCode::UNAUTHORIZED, "refresh tokens expire too");
}

#[tokio::test]
async fn closed_registration_admits_only_the_first_account() {
    let mut config = test_config();
    config.auth.registration = Registration::Closed;
    let t = TestApp::with_config(Set::Embedded, config).await.unwrap();
    let first = t.register("founder").await;
    let r = t
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": "late", "password": "long enough"}),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "registration_closed");
    // The administrator makes accounts out of band.
    let user = videosync_server::accounts::create_user(&t.app, "late", "long enough", false)
        .await
        .unwrap();
    assert!(!user.is_admin);
    let r = t
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "late", "password": "long enough"}),
        )
        .await;
    assert_eq!(r.0, StatusCode::OK);
    let (_, me) = t.get("/api/v1/me", Some(&first.token)).await;
    assert_eq!(me["is_admin"], true);
}

#[tokio::test]
async fn logins_are_rate_limited_per_account_across_instances() {
    for set in [Set::Embedded, Set::Services] {
        let mut config = test_config();
        config.limits.login_per_account_per_minute = 3;
        let Some(t) = TestApp::with_config(set, config.clone()).await else {
            continue;
        };
        // A second instance on the same backends shares the counters.
        let second = videosync_server::router(std::sync::Arc::new(
            videosync_server::App::new(
                t.app.backends.clone(),
                &config,
                &videosync_server::config::Secret::new(crate::harness::SECRET),
            )
            .unwrap(),
        ));
        t.register("target").await;
        let attempt = json!({"login": "target", "password": "guessing wrong"});
        for _ in 0..3 {
            let r = t.post("/api/v1/auth/login", None, attempt.clone()).await;
            assert_eq!(r.0, StatusCode::UNAUTHORIZED);
        }
        let req = axum::http::Request::post("/api/v1/auth/login")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(attempt.to_string()))
            .unwrap();
        let response = tower::ServiceExt::oneshot(second, req).await.unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{set:?}");
        assert!(response.headers().get("retry-after").is_some());
        // Other accounts are not held up, and the window passes.
        t.register("bystander").await;
        let r = t
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": "bystander", "password": "password-bystander"}),
            )
            .await;
        assert_eq!(r.0, StatusCode::OK);
        if set == Set::Embedded {
            t.advance(Duration::from_secs(61));
            let r = t
                .post(
                    "/api/v1/auth/login",
                    None,
                    json!({"login": "target", "password": "password-target"}),
                )
                .await;
            assert_eq!(r.0, StatusCode::OK, "{}", r.1);
        }
    }
}

#[tokio::test]
async fn guests_get_a_named_token() {
    let t = TestApp::new(Set::Embedded).await.unwrap();
    let r = t
        .post(
            "/api/v1/auth/guest",
            None,
            json!({"display_name": "  Visitor  "}),
        )
        .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    assert_eq!(r.1["display_name"], "Visitor");
    let token = r.1["access_token"].as_str().unwrap();
    // A guest has no account.
    let me = t.get("/api/v1/me", Some(token)).await;
    assert_error(&me, StatusCode::FORBIDDEN, "forbidden");
    let bad = t
        .post("/api/v1/auth/guest", None, json!({"display_name": ""}))
        .await;
    assert_error(&bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
}
