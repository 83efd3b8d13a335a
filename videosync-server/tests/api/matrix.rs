//! Every channel endpoint × every kind of caller × every visibility: the
//! status each gets, on both backend sets. Private things a caller may not
//! see answer 404, as if they did not exist.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{TestApp, User};

/// The callers, in the order of the expectation rows.
const CALLERS: [&str; 9] = [
    "anonymous",
    "guest",
    "non-member",
    "viewer",
    "moderator",
    "admin",
    "owner",
    "instance admin",
    "banned",
];

/// A channel with one of each kind of caller.
pub struct Fixture {
    pub channel: String,
    pub owner: User,
    /// Tokens by caller (`None` for anonymous).
    pub tokens: Vec<Option<String>>,
    pub ready_video: String,
    pub pending_video: String,
    pub invite: String,
    n: std::cell::Cell<u32>,
}

/// Sets a video ready as a worker would.
pub async fn make_ready(t: &TestApp, id: &str) {
    crate::ws::mark_ready(&*t.app.backends.catalog, id.parse().unwrap(), None).await;
}

impl Fixture {
    /// `admin` must be the instance's first account.
    pub async fn new(t: &TestApp, admin: &User, tag: &str, visibility: &str) -> Fixture {
        let name = |role: &str| format!("{tag}{}{role}", &visibility[..2]);
        let owner = t.register(&name("own")).await;
        let channel = t.channel(&owner, visibility, true).await;
        let mut tokens = vec![None];
        let guest = t
            .post("/api/v1/auth/guest", None, json!({"display_name": "g"}))
            .await;
        tokens.push(Some(guest.1["access_token"].as_str().unwrap().to_owned()));
        tokens.push(Some(t.register(&name("out")).await.token));
        for role in ["viewer", "moderator", "admin"] {
            let u = t.register(&name(&role[..3])).await;
            t.add_member(&channel, &owner, &u, role).await;
            tokens.push(Some(u.token));
        }
        tokens.push(Some(owner.token.clone()));
        tokens.push(Some(admin.token.clone()));
        let banned = t.register(&name("ban")).await;
        t.add_member(&channel, &owner, &banned, "viewer").await;
        let r = t
            .call(
                Method::PUT,
                &format!("/api/v1/channels/{channel}/bans/{}", banned.id),
                Some(&owner.token),
                Some(json!({"reason": "spam"})),
            )
            .await;
        assert_eq!(r.0, StatusCode::OK, "{}", r.1);
        tokens.push(Some(banned.token));
        let video = |title: &str| json!({"title": title, "tags": ["matrix"]});
        let ready = t
            .post(
                &format!("/api/v1/channels/{channel}/videos"),
                Some(&owner.token),
                video("ready one"),
            )
            .await;
        assert_eq!(ready.0, StatusCode::CREATED, "{}", ready.1);
        let ready_video = ready.1["id"].as_str().unwrap().to_owned();
        make_ready(t, &ready_video).await;
        let pending = t
            .post(
                &format!("/api/v1/channels/{channel}/videos"),
                Some(&owner.token),
                video("pending one"),
            )
            .await;
        let invite = t
            .post(
                &format!("/api/v1/channels/{channel}/invites"),
                Some(&owner.token),
                json!({}),
            )
            .await;
        Fixture {
            channel,
            owner,
            tokens,
            ready_video,
            pending_video: pending.1["id"].as_str().unwrap().to_owned(),
            invite: invite.1["code"].as_str().unwrap().to_owned(),
            n: std::cell::Cell::new(0),
        }
    }

    fn fresh_name(&self, what: &str) -> String {
        self.n.set(self.n.get() + 1);
        format!("{what}{}{}", &self.channel[..6], self.n.get())
    }

    /// Makes what one call acts on.
    async fn target(&self, t: &TestApp, kind: Target) -> String {
        let c = &self.channel;
        let owner = &self.owner;
        match kind {
            Target::None => String::new(),
            Target::Viewer => {
                let u = t.register(&self.fresh_name("tv")).await;
                t.add_member(c, owner, &u, "viewer").await;
                u.id
            }
            Target::User => t.register(&self.fresh_name("tu")).await.id,
            Target::Banned => {
                let u = t.register(&self.fresh_name("tb")).await;
                let r = t
                    .call(
                        Method::PUT,
                        &format!("/api/v1/channels/{c}/bans/{}", u.id),
                        Some(&owner.token),
                        Some(json!({})),
                    )
                    .await;
                assert_eq!(r.0, StatusCode::OK);
                u.id
            }
            Target::Invite => {
                let r = t
                    .post(
                        &format!("/api/v1/channels/{c}/invites"),
                        Some(&owner.token),
                        json!({}),
                    )
                    .await;
                r.1["code"].as_str().unwrap().to_owned()
            }
            Target::Video => {
                let r = t
                    .post(
                        &format!("/api/v1/channels/{c}/videos"),
                        Some(&owner.token),
                        json!({"title": "doomed"}),
                    )
                    .await;
                let id = r.1["id"].as_str().unwrap().to_owned();
                make_ready(t, &id).await;
                id
            }
        }
    }

    fn path(&self, template: &str, target: &str) -> String {
        template
            .replace("{c}", &self.channel)
            .replace("{v}", &self.ready_video)
            .replace("{p}", &self.pending_video)
            .replace("{i}", &self.invite)
            .replace("{t}", target)
    }
}

#[derive(Debug, Clone, Copy)]
enum Target {
    None,
    Viewer,
    User,
    Banned,
    Invite,
    Video,
}

/// One endpoint: method, path template, body, what each call acts on,
/// whether it needs an account before anything else (so nobody and guests
/// get 401/403 before the channel is looked at), and the statuses per
/// caller in a public (or unlisted) channel.
struct Case {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    target: Target,
    account_first: bool,
    /// The invite endpoints do not depend on seeing the channel: the code
    /// is the key.
    by_code: bool,
    visible: [u16; 9],
}

fn cases() -> Vec<Case> {
    use Method as M;
    let case = |method: M, path, body: Option<Value>, target, account_first, visible| Case {
        method,
        path,
        body,
        target,
        account_first,
        by_code: false,
        visible,
    };
    let mut v = vec![
        case(
            M::GET,
            "/api/v1/channels/{c}",
            None,
            Target::None,
            false,
            [200; 9],
        ),
        case(
            M::PATCH,
            "/api/v1/channels/{c}",
            Some(json!({"description": "changed"})),
            Target::None,
            false,
            [401, 403, 403, 403, 403, 200, 200, 200, 403],
        ),
        case(
            M::GET,
            "/api/v1/channels/{c}/permissions",
            None,
            Target::None,
            false,
            [200; 9],
        ),
        case(
            M::PATCH,
            "/api/v1/channels/{c}/permissions",
            Some(
                json!({"changes": [{"role": "viewer", "permission": "upload", "allowed": false}]}),
            ),
            Target::None,
            false,
            [401, 403, 403, 403, 403, 403, 200, 200, 403],
        ),
        case(
            M::GET,
            "/api/v1/channels/{c}/members",
            None,
            Target::None,
            false,
            [401, 403, 403, 200, 200, 200, 200, 200, 403],
        ),
        case(
            M::PUT,
            "/api/v1/channels/{c}/members/{t}",
            Some(json!({"role": "moderator"})),
            Target::Viewer,
            false,
            [401, 403, 403, 403, 403, 200, 200, 200, 403],
        ),
        case(
            M::DELETE,
            "/api/v1/channels/{c}/members/{t}",
            None,
            Target::Viewer,
            false,
            [401, 403, 403, 403, 204, 204, 204, 204, 403],
        ),
        case(
            M::GET,
            "/api/v1/channels/{c}/invites",
            None,
            Target::None,
            false,
            [401, 403, 403, 403, 200, 200, 200, 200, 403],
        ),
        case(
            M::POST,
            "/api/v1/channels/{c}/invites",
            Some(json!({})),
            Target::None,
            true,
            [401, 403, 403, 403, 201, 201, 201, 201, 403],
        ),
        case(
            M::DELETE,
            "/api/v1/channels/{c}/invites/{t}",
            None,
            Target::Invite,
            false,
            [401, 403, 403, 403, 204, 204, 204, 204, 403],
        ),
        case(
            M::GET,
            "/api/v1/channels/{c}/bans",
            None,
            Target::None,
            false,
            [401, 403, 403, 403, 200, 200, 200, 200, 403],
        ),
        case(
            M::PUT,
            "/api/v1/channels/{c}/bans/{t}",
            Some(json!({"reason": "matrix"})),
            Target::User,
            true,
            [401, 403, 403, 403, 200, 200, 200, 200, 403],
        ),
        case(
            M::DELETE,
            "/api/v1/channels/{c}/bans/{t}",
            None,
            Target::Banned,
            false,
            [401, 403, 403, 403, 204, 204, 204, 204, 403],
        ),
        case(
            M::GET,
            "/api/v1/channels/{c}/videos",
            None,
            Target::None,
            false,
            [200; 9],
        ),
        case(
            M::POST,
            "/api/v1/channels/{c}/videos",
            Some(json!({"title": "new"})),
            Target::None,
            true,
            [401, 403, 403, 403, 201, 201, 201, 201, 403],
        ),
        case(
            M::GET,
            "/api/v1/videos/{v}",
            None,
            Target::None,
            false,
            [200; 9],
        ),
        case(
            M::GET,
            "/api/v1/videos/{p}",
            None,
            Target::None,
            false,
            [404, 404, 404, 200, 200, 200, 200, 200, 404],
        ),
        case(
            M::PATCH,
            "/api/v1/videos/{v}",
            Some(json!({"title": "renamed"})),
            Target::None,
            false,
            [401, 403, 403, 403, 403, 200, 200, 200, 403],
        ),
        case(
            M::DELETE,
            "/api/v1/videos/{t}",
            None,
            Target::Video,
            false,
            [401, 403, 403, 403, 403, 204, 204, 204, 403],
        ),
        case(
            M::POST,
            "/api/v1/channels/{c}/live/tickets",
            None,
            Target::None,
            false,
            [401, 201, 201, 201, 201, 201, 201, 201, 403],
        ),
        case(
            M::GET,
            "/api/v1/channels/{c}/messages",
            None,
            Target::None,
            false,
            [200, 200, 200, 200, 200, 200, 200, 200, 403],
        ),
        case(
            M::GET,
            "/api/v1/channels/{c}/mutes",
            None,
            Target::None,
            true,
            [401, 403, 403, 403, 200, 200, 200, 200, 403],
        ),
        case(
            M::PUT,
            "/api/v1/channels/{c}/mutes/{t}",
            Some(json!({"seconds": 60})),
            Target::User,
            true,
            [401, 403, 403, 403, 200, 200, 200, 200, 403],
        ),
        // Nobody is muted: whoever may lift a mute learns there is none.
        case(
            M::DELETE,
            "/api/v1/channels/{c}/mutes/{t}",
            None,
            Target::User,
            true,
            [401, 403, 403, 403, 404, 404, 404, 404, 403],
        ),
    ];
    v.push(Case {
        by_code: true,
        ..case(
            M::GET,
            "/api/v1/invites/{i}",
            None,
            Target::None,
            false,
            [200; 9],
        )
    });
    v.push(Case {
        by_code: true,
        ..case(
            M::POST,
            "/api/v1/invites/{t}/accept",
            None,
            Target::Invite,
            true,
            [401, 403, 200, 200, 200, 200, 200, 200, 403],
        )
    });
    v
}

/// What a caller gets in a private channel: 404 for anyone who may not
/// see it (after the account check of endpoints that need one).
fn private_row(case: &Case) -> [u16; 9] {
    let mut row = case.visible;
    if case.by_code {
        return row;
    }
    for (i, caller) in CALLERS.iter().enumerate() {
        match *caller {
            // What needs a sign-in says so first, whatever the channel.
            "anonymous" if case.account_first || case.visible[0] == 401 => row[i] = 401,
            "guest" if case.account_first => row[i] = 403,
            "anonymous" | "guest" | "non-member" | "banned" => row[i] = 404,
            _ => {}
        }
    }
    row
}

async fn run_case(
    t: &TestApp,
    fx: &Fixture,
    case: &Case,
    row: [u16; 9],
    visibility: &str,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, caller) in CALLERS.iter().enumerate() {
        let target = fx.target(t, case.target).await;
        let path = fx.path(case.path, &target);
        let body = case
            .body
            .clone()
            .or_else(|| (case.method == Method::POST).then(|| json!({})));
        let (status, answer) = t
            .call(case.method.clone(), &path, fx.tokens[i].as_deref(), body)
            .await;
        if status.as_u16() != row[i] {
            failures.push(format!(
                "{:?} {visibility}: {caller} {} {} -> {status} (expected {}): {answer}",
                t.set, case.method, case.path, row[i]
            ));
        }
        if status.is_client_error() {
            assert!(answer["error"]["code"].is_string(), "{answer}");
        }
    }
    failures
}

#[tokio::test]
async fn every_endpoint_for_every_caller_and_visibility() {
    for t in TestApp::each().await {
        let admin = t.register("rootadmin").await;
        let mut failures = Vec::new();
        for (n, visibility) in ["public", "unlisted", "private"].into_iter().enumerate() {
            let fx = Fixture::new(&t, &admin, &format!("m{n}"), visibility).await;
            for case in cases() {
                let row = if visibility == "private" {
                    private_row(&case)
                } else {
                    case.visible
                };
                failures.extend(run_case(&t, &fx, &case, row, visibility).await);
            }
        }
        assert!(
            failures.is_empty(),
            "{} mismatches:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

/// Endpoints that change the caller's own standing get a fresh channel per
/// visibility (join, leave) or per caller (delete).
#[tokio::test]
async fn join_leave_and_delete_for_every_caller_and_visibility() {
    for t in TestApp::each().await {
        let admin = t.register("rootadmin").await;
        let mut failures = Vec::new();
        let rows: [(&str, Method, [u16; 9], [u16; 9]); 3] = [
            (
                "/api/v1/channels/{c}/join",
                Method::POST,
                [401, 403, 200, 200, 200, 200, 200, 200, 403],
                [401, 403, 404, 200, 200, 200, 200, 403, 404],
            ),
            (
                "/api/v1/channels/{c}/leave",
                Method::POST,
                [401, 403, 404, 204, 204, 204, 409, 404, 404],
                [401, 403, 404, 204, 204, 204, 409, 404, 404],
            ),
            (
                "/api/v1/channels/{c}",
                Method::DELETE,
                [401, 403, 403, 403, 403, 403, 204, 204, 403],
                [401, 404, 404, 403, 403, 403, 204, 204, 404],
            ),
        ];
        let mut n = 0;
        for (path, method, visible, private) in rows {
            for visibility in ["public", "unlisted", "private"] {
                let row = if visibility == "private" {
                    private
                } else {
                    visible
                };
                let mut fx = None;
                for (i, caller) in CALLERS.iter().enumerate() {
                    // A delete that succeeds takes the channel: fresh one next.
                    if fx.is_none() || method == Method::DELETE {
                        n += 1;
                        fx = Some(Fixture::new(&t, &admin, &format!("j{n}"), visibility).await);
                    }
                    let fx = fx.as_ref().unwrap();
                    let body = (method == Method::POST).then(|| json!({}));
                    let (status, answer) = t
                        .call(
                            method.clone(),
                            &fx.path(path, ""),
                            fx.tokens[i].as_deref(),
                            body,
                        )
                        .await;
                    if status.as_u16() != row[i] {
                        failures.push(format!(
                            "{:?} {visibility}: {caller} {method} {path} -> {status} (expected {}): {answer}",
                            t.set, row[i]
                        ));
                    }
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} mismatches:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}
