//! What the API fuzzer (scripts/api-fuzz.sh, schemathesis) found, one test
//! each, so the fixes stay fixed without the fuzzer.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::harness::{assert_error, Set, TestApp};

#[tokio::test]
async fn the_first_account_registers_as_administrator_on_every_backend() {
    // The first-admin claim waited for the registration's own transaction on
    // SQLite (one writer) and answered 500 after the busy timeout.
    for t in TestApp::each().await {
        let ada = t.register("ada").await;
        let (_, me) = t.get("/api/v1/me", Some(&ada.token)).await;
        assert_eq!(me["is_admin"], true, "{:?}", t.set);
    }
}

#[tokio::test]
async fn an_empty_permission_change_still_needs_the_owner() {
    let t = TestApp::new(Set::Embedded).await.unwrap();
    let owner = t.register("owner").await;
    let viewer = t.register("viewer").await;
    let c = t.channel(&owner, "public", false).await;
    t.add_member(&c, &owner, &viewer, "viewer").await;
    let path = format!("/api/v1/channels/{c}/permissions");
    let empty = json!({"changes": []});
    let anonymous = t
        .call(Method::PATCH, &path, None, Some(empty.clone()))
        .await;
    assert_error(&anonymous, StatusCode::UNAUTHORIZED, "unauthenticated");
    let member = t
        .call(
            Method::PATCH,
            &path,
            Some(&viewer.token),
            Some(empty.clone()),
        )
        .await;
    assert_error(&member, StatusCode::FORBIDDEN, "forbidden");
    let mine = t
        .call(Method::PATCH, &path, Some(&owner.token), Some(empty))
        .await;
    assert_eq!(mine.0, StatusCode::OK, "{}", mine.1);
}

#[tokio::test]
async fn operations_that_need_a_token_say_so_before_looking_anything_up() {
    let t = TestApp::new(Set::Embedded).await.unwrap();
    let nobody = uuid::Uuid::new_v4();
    for (method, path) in [
        (Method::DELETE, format!("/api/v1/channels/{nobody}")),
        (Method::PATCH, format!("/api/v1/channels/{nobody}")),
        (Method::DELETE, format!("/api/v1/videos/{nobody}")),
        (Method::PATCH, format!("/api/v1/videos/{nobody}")),
        (Method::GET, format!("/api/v1/channels/{nobody}/invites")),
        (Method::GET, format!("/api/v1/channels/{nobody}/bans")),
        (
            Method::DELETE,
            format!("/api/v1/channels/{nobody}/members/{nobody}"),
        ),
    ] {
        let body = matches!(method, Method::PATCH).then(|| json!({}));
        let r = t.call(method.clone(), &path, None, body).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
    }
}

#[tokio::test]
async fn bodies_are_json_objects_and_whole_numbers_may_be_spelled_as_floats() {
    let t = TestApp::new(Set::Embedded).await.unwrap();
    let owner = t.register("owner").await;
    let c = t.channel(&owner, "public", false).await;
    let invites = format!("/api/v1/channels/{c}/invites");
    // An array filled the struct by position.
    let r = t
        .post(&invites, Some(&owner.token), json!([null, null]))
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    // JSON Schema's integer admits 5.0.
    let r = t
        .post(
            &invites,
            Some(&owner.token),
            json!({"max_uses": 5.0, "expires_in_seconds": 600.0}),
        )
        .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    assert_eq!(r.1["max_uses"], 5);
    for bad in [
        json!({"max_uses": 5.5}),
        json!({"max_uses": -1.0}),
        json!({"max_uses": "5"}),
    ] {
        let r = t.post(&invites, Some(&owner.token), bad.clone()).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    }
    let r = t
        .post(&invites, Some(&owner.token), json!({"role": null}))
        .await;
    assert_eq!(
        r.0,
        StatusCode::CREATED,
        "null is the default role, as documented: {}",
        r.1
    );
    // The same for a mute's length and the room's settings.
    let viewer = t.register("viewer").await;
    let r = t
        .call(
            Method::PUT,
            &format!("/api/v1/channels/{c}/mutes/{}", viewer.id),
            Some(&owner.token),
            Some(json!({"seconds": 5034.0})),
        )
        .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    let r = t
        .call(
            Method::PATCH,
            &format!("/api/v1/channels/{c}"),
            Some(&owner.token),
            Some(json!({"settings": {"slow_mode_seconds": 30.0, "max_message_chars": 500.0}})),
        )
        .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
}

#[tokio::test]
async fn names_and_queries_follow_the_documented_rules_as_sent() {
    let t = TestApp::new(Set::Embedded).await.unwrap();
    let ada = t.register("ada").await;
    let r = t
        .post("/api/v1/auth/guest", None, json!({"display_name": "   "}))
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    let r = t
        .post(
            "/api/v1/auth/guest",
            None,
            json!({"display_name": "  Sam  "}),
        )
        .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    assert_eq!(r.1["display_name"], "Sam");
    let padded = format!(" {} ", "x".repeat(64));
    let r = t
        .call(
            Method::PATCH,
            "/api/v1/me",
            Some(&ada.token),
            Some(json!({"display_name": padded})),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    let q = format!("%20{}", "a".repeat(200));
    let r = t.get(&format!("/api/v1/search/videos?q={q}"), None).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
}

#[tokio::test]
async fn a_direct_uploads_content_type_is_checked_as_documented() {
    // The documented pattern let "/q%/," through (its `[!-~]+` before the
    // slash matched a slash) and the server refused it: a type comes
    // before the first slash.
    let t = TestApp::new(Set::Embedded).await.unwrap();
    let owner = t.register("owner").await;
    let c = t.channel(&owner, "public", false).await;
    let (_, doc) = t.get("/api/v1/openapi.json", None).await;
    let pattern = &doc["components"]["schemas"]["DirectUploadRequest"]["properties"]
        ["content_type"]["pattern"];
    assert_eq!(pattern, "^[!-.0-~]+/[!-~]+$");
    for (content_type, refused) in [
        ("/q%/,", true),
        ("video/", true),
        ("video mp4", true),
        ("video/mp4", false),
        ("a/b/c", false),
    ] {
        let body = json!({"channel_id": c, "size": 3, "content_type": content_type});
        let r = t
            .post("/api/v1/uploads/direct", Some(&owner.token), body)
            .await;
        // Accepted ones go on to the store, which cannot sign here (409).
        let got = r.0 == StatusCode::UNPROCESSABLE_ENTITY;
        assert_eq!(got, refused, "{content_type}: {} {}", r.0, r.1);
    }
}
