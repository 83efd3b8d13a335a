//! Videos and search: metadata, listing with what non-members may see,
//! deletion with the objects, and search that never leaks private videos.

use axum::http::{Method, StatusCode};
use serde_json::json;
use videosync_core::{ObjectKey, ObjectStoreExt};

use crate::harness::{assert_error, Set, TestApp};
use crate::matrix::make_ready;

#[tokio::test]
async fn metadata_listing_and_deletion() {
    for t in TestApp::each().await {
        let owner = t.register("owner").await;
        let outsider = t.register("outsider").await;
        let c = t.channel(&owner, "public", false).await;
        let videos = format!("/api/v1/channels/{c}/videos");
        let r = t
            .post(&videos, Some(&owner.token), json!({"title": "Night of the Living Dead", "description": "1968", "tags": ["horror", "classic"]}))
            .await;
        assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
        assert_eq!(r.1["status"], "pending");
        let id = r.1["id"].as_str().unwrap().to_owned();
        for bad in [
            json!({"title": ""}),
            json!({"title": "x".repeat(301)}),
            json!({"title": "t", "tags": ["x".repeat(41)]}),
            json!({"title": "t", "tags": vec!["a"; 21]}),
            json!({"title": "a\u{1}b"}),
        ] {
            let r = t.post(&videos, Some(&owner.token), bad.clone()).await;
            assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
        }
        // Pending: the members see it, others do not.
        let (_, list) = t.get(&videos, Some(&owner.token)).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        let (_, list) = t.get(&videos, Some(&outsider.token)).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 0);
        assert_eq!(
            t.get(&format!("/api/v1/videos/{id}"), None).await.0,
            StatusCode::NOT_FOUND
        );
        make_ready(&t, &id).await;
        let (status, v) = t.get(&format!("/api/v1/videos/{id}"), None).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "ready");
        // Versions.
        let version = v["version"].as_u64().unwrap();
        let path = format!("/api/v1/videos/{id}");
        let r = t
            .call(
                Method::PATCH,
                &path,
                Some(&owner.token),
                Some(json!({"title": "NOTLD", "expected_version": version})),
            )
            .await;
        assert_eq!(r.0, StatusCode::OK, "{}", r.1);
        let r = t
            .call(
                Method::PATCH,
                &path,
                Some(&owner.token),
                Some(json!({"title": "x", "expected_version": version})),
            )
            .await;
        assert_error(&r, StatusCode::CONFLICT, "version_mismatch");
        // Deletion takes the objects.
        let store = &t.app.backends.store;
        let prefix = videosync_server::videos::media_prefix(id.parse().unwrap());
        let seg = ObjectKey::parse(&format!("{prefix}/a1/720p/seg-0.m4s")).unwrap();
        store.put(&seg, "segment".into()).await.unwrap();
        let r = t
            .call(Method::DELETE, &path, Some(&outsider.token), None)
            .await;
        assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
        let r = t
            .call(Method::DELETE, &path, Some(&owner.token), None)
            .await;
        assert_eq!(r.0, StatusCode::NO_CONTENT, "{}", r.1);
        assert!(
            !store.exists(&seg).await.unwrap(),
            "{:?}: the segment is gone",
            t.set
        );
        assert_error(
            &t.get(&path, Some(&owner.token)).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
        assert_error(
            &t.get("/api/v1/videos/nope", None).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
    }
}

#[tokio::test]
async fn search_ranks_pages_and_never_leaks_private_videos() {
    for t in TestApp::each().await {
        let owner = t.register("owner").await;
        let member = t.register("member").await;
        let outsider = t.register("outsider").await;
        let public = t.channel(&owner, "public", false).await;
        let private = t.channel(&owner, "private", false).await;
        t.add_member(&private, &owner, &member, "viewer").await;
        let mut add = Vec::new();
        for (channel, title, tags) in [
            (&public, "Sunrise over the harbour", vec!["harbour"]),
            (&public, "A walk", vec!["sunrise"]),
            (&public, "Harbour lights", vec![]),
            (&private, "Secret sunrise", vec![]),
        ] {
            let r = t
                .post(
                    &format!("/api/v1/channels/{channel}/videos"),
                    Some(&owner.token),
                    json!({"title": title, "tags": tags}),
                )
                .await;
            let id = r.1["id"].as_str().unwrap().to_owned();
            make_ready(&t, &id).await;
            add.push(id);
        }
        let titles = |body: &serde_json::Value| -> Vec<String> {
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["video"]["title"].as_str().unwrap().to_owned())
                .collect()
        };
        let (status, r) = t.get("/api/v1/search/videos?q=sunr", None).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        assert_eq!(
            titles(&r),
            ["Sunrise over the harbour", "A walk"],
            "{:?}: title before tags",
            t.set
        );
        let (_, r) = t
            .get("/api/v1/search/videos?q=sunrise", Some(&outsider.token))
            .await;
        assert!(!titles(&r).contains(&"Secret sunrise".to_owned()));
        let (_, r) = t
            .get("/api/v1/search/videos?q=sunrise", Some(&member.token))
            .await;
        assert!(titles(&r).contains(&"Secret sunrise".to_owned()), "{r}");
        let (_, r) = t.get("/api/v1/search/videos?q=harbour&limit=1", None).await;
        assert_eq!(titles(&r).len(), 1);
        let next = r["next"].as_str().unwrap();
        let (_, r2) = t
            .get(
                &format!("/api/v1/search/videos?q=harbour&limit=1&cursor={next}"),
                None,
            )
            .await;
        assert_eq!(titles(&r2).len(), 1);
        assert_ne!(titles(&r), titles(&r2));
        for bad in ["", "?q=", "?q=%20%20", &format!("?q={}", "a".repeat(201))] {
            let r = t.get(&format!("/api/v1/search/videos{bad}"), None).await;
            assert!(matches!(r.0.as_u16(), 400 | 422), "{bad}: {:?}", r);
        }
        // Query syntax is not an injection vector.
        for q in ["%22", "*", "a%20OR%20b", "NEAR(a)", "')%3B--", "%E2%80%AE"] {
            let r = t.get(&format!("/api/v1/search/videos?q={q}"), None).await;
            assert_eq!(r.0, StatusCode::OK, "{q}: {}", r.1);
        }
    }
    let _ = Set::Embedded;
}
