//! Channels: listings, updates with versions, the permission matrix at
//! work, invites that expire and run out, roles and bans.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::harness::{assert_error, Set, TestApp};

#[tokio::test]
async fn listings_show_public_channels_and_mine() {
    for t in TestApp::each().await {
        let ada = t.register("ada").await;
        let bob = t.register("bob").await;
        let public = t.channel(&ada, "public", false).await;
        let unlisted = t.channel(&ada, "unlisted", false).await;
        let private = t.channel(&ada, "private", false).await;
        let (status, page) = t.get("/api/v1/channels", None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let ids: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [public.as_str()], "only public channels are listed");
        let (_, mine) = t.get("/api/v1/me/channels", Some(&ada.token)).await;
        assert_eq!(mine["items"].as_array().unwrap().len(), 3);
        assert!(mine["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["my_role"] == "owner"));
        let (_, theirs) = t.get("/api/v1/me/channels", Some(&bob.token)).await;
        assert_eq!(theirs["items"].as_array().unwrap().len(), 0);
        // Unlisted: anyone with the id; private: 404 for outsiders.
        assert_eq!(
            t.get(&format!("/api/v1/channels/{unlisted}"), Some(&bob.token))
                .await
                .0,
            StatusCode::OK
        );
        let r = t
            .get(&format!("/api/v1/channels/{private}"), Some(&bob.token))
            .await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found");
        let unknown = t
            .get(
                &format!("/api/v1/channels/{}", uuid::Uuid::new_v4()),
                Some(&bob.token),
            )
            .await;
        assert_eq!(
            unknown.1, r.1,
            "a private channel answers exactly as a missing one"
        );
        // Paging.
        for i in 0..4 {
            t.post(
                "/api/v1/channels",
                Some(&bob.token),
                json!({"name": format!("p{i}"), "visibility": "public"}),
            )
            .await;
        }
        let (_, p1) = t.get("/api/v1/channels?limit=2", None).await;
        assert_eq!(p1["items"].as_array().unwrap().len(), 2);
        let next = p1["next"].as_str().unwrap();
        let (_, p2) = t
            .get(&format!("/api/v1/channels?limit=2&cursor={next}"), None)
            .await;
        let (_, p3) = t
            .get(
                &format!(
                    "/api/v1/channels?limit=2&cursor={}",
                    p2["next"].as_str().unwrap()
                ),
                None,
            )
            .await;
        assert_eq!(p3["items"].as_array().unwrap().len(), 1);
        assert!(p3.get("next").is_none());
        for bad in ["?limit=0", "?limit=201", "?limit=x", "?cursor=nonsense"] {
            let r = t.get(&format!("/api/v1/channels{bad}"), None).await;
            assert!(
                r.0 == StatusCode::BAD_REQUEST || r.0 == StatusCode::UNPROCESSABLE_ENTITY,
                "{bad}: {:?}",
                r
            );
        }
    }
}

#[tokio::test]
async fn updates_check_fields_and_versions() {
    let t = TestApp::new(Set::Embedded).await.unwrap();
    let ada = t.register("ada").await;
    let c = t.channel(&ada, "public", false).await;
    let path = format!("/api/v1/channels/{c}");
    let (_, before) = t.get(&path, None).await;
    let v = before["version"].as_u64().unwrap();
    let r = t
        .call(Method::PATCH, &path, Some(&ada.token), Some(json!({"name": "Renamed", "expected_version": v, "settings": {"wait_for_all": true}})))
        .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    assert_eq!(r.1["name"], "Renamed");
    assert_eq!(r.1["settings"]["wait_for_all"], true);
    let stale = t
        .call(
            Method::PATCH,
            &path,
            Some(&ada.token),
            Some(json!({"name": "Again", "expected_version": v})),
        )
        .await;
    assert_error(&stale, StatusCode::CONFLICT, "version_mismatch");
    for body in [
        json!({"name": ""}),
        json!({"name": "x".repeat(101)}),
        json!({"visibility": "secret"}),
        json!({"settings": [1, 2]}),
        json!({"name": "ok", "bogus": 1}),
    ] {
        let r = t
            .call(Method::PATCH, &path, Some(&ada.token), Some(body.clone()))
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    }
    let r = t
        .post(
            "/api/v1/channels",
            Some(&ada.token),
            json!({"name": "n", "visibility": "owner-only"}),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
}

#[tokio::test]
async fn the_owner_changes_the_matrix_and_it_applies() {
    for t in TestApp::each().await {
        let owner = t.register("owner").await;
        let viewer = t.register("viewer").await;
        let c = t.channel(&owner, "private", false).await;
        t.add_member(&c, &owner, &viewer, "viewer").await;
        let upload = |token: String| {
            let path = format!("/api/v1/channels/{c}/videos");
            let t = &t;
            async move {
                t.post(&path, Some(&token), json!({"title": "mine"}))
                    .await
                    .0
            }
        };
        assert_eq!(upload(viewer.token.clone()).await, StatusCode::FORBIDDEN);
        let perms = format!("/api/v1/channels/{c}/permissions");
        let r = t
            .call(Method::PATCH, &perms, Some(&owner.token), Some(json!({"changes": [{"role": "viewer", "permission": "upload", "allowed": true}]})))
            .await;
        assert_eq!(r.0, StatusCode::OK, "{}", r.1);
        assert_eq!(r.1["matrix"]["viewer"]["upload"], true);
        assert_eq!(upload(viewer.token.clone()).await, StatusCode::CREATED);
        let (_, view) = t
            .get(&format!("/api/v1/channels/{c}"), Some(&viewer.token))
            .await;
        assert!(view["my_permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("upload")));
        // Back to the default.
        t.call(
            Method::PATCH,
            &perms,
            Some(&owner.token),
            Some(json!({"changes": [{"role": "viewer", "permission": "upload", "allowed": null}]})),
        )
        .await;
        assert_eq!(upload(viewer.token.clone()).await, StatusCode::FORBIDDEN);
        let r = t
            .call(
                Method::PATCH,
                &perms,
                Some(&owner.token),
                Some(
                    json!({"changes": [{"role": "owner", "permission": "chat", "allowed": false}]}),
                ),
            )
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
        let r = t
            .call(
                Method::PATCH,
                &perms,
                Some(&owner.token),
                Some(
                    json!({"changes": [{"role": "viewer", "permission": "fly", "allowed": true}]}),
                ),
            )
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    }
}

#[tokio::test]
async fn invites_expire_run_out_and_respect_rank() {
    for t in TestApp::each().await {
        let owner = t.register("owner").await;
        let moderator = t.register("moder").await;
        let c = t.channel(&owner, "private", false).await;
        t.add_member(&c, &owner, &moderator, "moderator").await;
        let invites = format!("/api/v1/channels/{c}/invites");
        // A moderator cannot hand out their own rank or above.
        let r = t
            .post(
                &invites,
                Some(&moderator.token),
                json!({"role": "moderator"}),
            )
            .await;
        assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
        let r = t
            .post(&invites, Some(&owner.token), json!({"role": "owner"}))
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
        for bad in [
            json!({"max_uses": 0}),
            json!({"expires_in_seconds": 5}),
            json!({"role": "king"}),
        ] {
            let r = t.post(&invites, Some(&owner.token), bad).await;
            assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
        }
        // Two uses, then spent.
        let r = t
            .post(
                &invites,
                Some(&moderator.token),
                json!({"max_uses": 2, "expires_in_seconds": 3600}),
            )
            .await;
        assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
        let code = r.1["code"].as_str().unwrap().to_owned();
        let preview = t.get(&format!("/api/v1/invites/{code}"), None).await;
        assert_eq!(preview.0, StatusCode::OK);
        assert_eq!(preview.1["channel_name"], "private channel");
        for name in ["joiner1", "joiner2"] {
            let u = t.register(name).await;
            let r = t
                .post(
                    &format!("/api/v1/invites/{code}/accept"),
                    Some(&u.token),
                    json!({}),
                )
                .await;
            assert_eq!(r.0, StatusCode::OK, "{}", r.1);
            assert_eq!(
                t.get(&format!("/api/v1/channels/{c}"), Some(&u.token))
                    .await
                    .0,
                StatusCode::OK
            );
        }
        let late = t.register("joiner3").await;
        let r = t
            .post(
                &format!("/api/v1/invites/{code}/accept"),
                Some(&late.token),
                json!({}),
            )
            .await;
        assert_eq!(r.0, StatusCode::GONE, "{}", r.1);
        assert_eq!(
            t.get(&format!("/api/v1/channels/{c}"), Some(&late.token))
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        // Expiry.
        let r = t
            .post(
                &invites,
                Some(&owner.token),
                json!({"expires_in_seconds": 60}),
            )
            .await;
        let code = r.1["code"].as_str().unwrap().to_owned();
        t.advance(Duration::from_secs(61));
        let r = t
            .post(
                &format!("/api/v1/invites/{code}/accept"),
                Some(&late.token),
                json!({}),
            )
            .await;
        assert_eq!(r.0, StatusCode::GONE, "{}", r.1);
        // Hostile codes.
        for code in ["..%2F..%2Fetc", "x".repeat(500).as_str(), "%00", "a%20b"] {
            let r = t.get(&format!("/api/v1/invites/{code}"), None).await;
            assert_eq!(r.0, StatusCode::NOT_FOUND, "{code}: {}", r.1);
        }
    }
}

#[tokio::test]
async fn roles_bans_and_the_owner() {
    for t in TestApp::each().await {
        let owner = t.register("owner").await;
        let admin = t.register("admin").await;
        let moderator = t.register("moder").await;
        let viewer = t.register("viewer").await;
        let c = t.channel(&owner, "public", false).await;
        t.add_member(&c, &owner, &admin, "admin").await;
        t.add_member(&c, &owner, &moderator, "moderator").await;
        t.add_member(&c, &owner, &viewer, "viewer").await;
        let member = |id: &str| format!("/api/v1/channels/{c}/members/{id}");
        // Nobody acts on the owner, not even an admin.
        let r = t
            .call(Method::DELETE, &member(&owner.id), Some(&admin.token), None)
            .await;
        assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
        let r = t
            .call(
                Method::PUT,
                &member(&owner.id),
                Some(&admin.token),
                Some(json!({"role": "viewer"})),
            )
            .await;
        assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
        // An admin cannot make another admin; the owner can.
        let r = t
            .call(
                Method::PUT,
                &member(&viewer.id),
                Some(&admin.token),
                Some(json!({"role": "admin"})),
            )
            .await;
        assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
        let r = t
            .call(
                Method::PUT,
                &member(&viewer.id),
                Some(&owner.token),
                Some(json!({"role": "admin"})),
            )
            .await;
        assert_eq!(r.0, StatusCode::OK, "{}", r.1);
        let r = t
            .call(
                Method::PUT,
                &member(&viewer.id),
                Some(&owner.token),
                Some(json!({"role": "viewer"})),
            )
            .await;
        assert_eq!(r.0, StatusCode::OK);
        // A moderator bans a viewer for an hour; the ban keeps them out.
        let r = t
            .call(
                Method::PUT,
                &format!("/api/v1/channels/{c}/bans/{}", viewer.id),
                Some(&moderator.token),
                Some(json!({"reason": "flooding", "expires_in_seconds": 3600})),
            )
            .await;
        assert_eq!(r.0, StatusCode::OK, "{}", r.1);
        let r = t
            .post(
                &format!("/api/v1/channels/{c}/join"),
                Some(&viewer.token),
                json!({}),
            )
            .await;
        assert_error(&r, StatusCode::FORBIDDEN, "banned");
        let (_, bans) = t
            .get(
                &format!("/api/v1/channels/{c}/bans"),
                Some(&moderator.token),
            )
            .await;
        assert_eq!(bans["items"][0]["reason"], "flooding");
        // A moderator cannot ban a moderator or themselves.
        let r = t
            .call(
                Method::PUT,
                &format!("/api/v1/channels/{c}/bans/{}", moderator.id),
                Some(&moderator.token),
                Some(json!({})),
            )
            .await;
        assert_eq!(r.0, StatusCode::FORBIDDEN);
        // Unknown ids.
        let r = t
            .call(
                Method::DELETE,
                &member(&uuid::Uuid::new_v4().to_string()),
                Some(&owner.token),
                None,
            )
            .await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found");
        let r = t
            .call(
                Method::DELETE,
                &member("not-a-uuid"),
                Some(&owner.token),
                None,
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
        let r = t
            .call(
                Method::PUT,
                &format!("/api/v1/channels/{c}/bans/{}", uuid::Uuid::new_v4()),
                Some(&owner.token),
                Some(json!({})),
            )
            .await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found");
        // The ban lifts by itself.
        t.advance(Duration::from_secs(3601));
        let again = t
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": "viewer", "password": viewer.password()}),
            )
            .await;
        let viewer = crate::harness::User::from_tokens(&again.1);
        let r = t
            .post(
                &format!("/api/v1/channels/{c}/join"),
                Some(&viewer.token),
                json!({}),
            )
            .await;
        assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    }
}
