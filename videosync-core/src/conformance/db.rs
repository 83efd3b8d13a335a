//! The repository suite ([`crate::db`]): one body, run on SQLite and Postgres.

use std::sync::Arc;
use std::time::Duration;

use super::{DbFixture, START};
use crate::catalog::{NewVideo, StatusChange};
use crate::db::*;
use crate::page::{Cursor, PageRequest};
use crate::sql::Database;
use crate::{ChannelId, Clock, ErrorKind, ManualClock, SessionId, UserId, VideoStatus};

async fn open(fx: &DbFixture) -> (Arc<ManualClock>, Database) {
    let clock = Arc::new(ManualClock::new(START));
    let db = (fx.make)(clock.clone()).await;
    (clock, db)
}

fn kind<T>(r: crate::Result<T>) -> Option<ErrorKind> {
    r.err().map(|e| e.kind())
}

async fn user(db: &Database, name: &str) -> User {
    let mut tx = db.begin().await.unwrap();
    let u = tx
        .create_user(NewUser::new(name, "$argon2id$hash"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    u
}

async fn channel(db: &Database, owner: UserId, name: &str, vis: Visibility) -> Channel {
    let mut tx = db.begin().await.unwrap();
    let c = tx
        .create_channel(NewChannel::new(owner, name, vis))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    c
}

async fn member(db: &Database, c: ChannelId, u: UserId, role: Role) {
    let mut tx = db.begin().await.unwrap();
    tx.add_member(c, u, role).await.unwrap();
    tx.commit().await.unwrap();
}

pub async fn users_are_unique_without_regard_to_case(fx: DbFixture) {
    let (_clock, db) = open(&fx).await;
    let mut tx = db.begin().await.unwrap();
    let mut new = NewUser::new("Ada_L", "$argon2id$x");
    new.email = Some("Ada@Example.org".into());
    let ada = tx.create_user(new).await.unwrap();
    assert_eq!(
        (ada.username.as_str(), ada.display_name.as_str()),
        ("Ada_L", "Ada_L")
    );
    assert_eq!(ada.created_at, START);
    assert!(!ada.is_admin);
    tx.commit().await.unwrap();
    for (name, email) in [("ada_l", None), ("other", Some("ADA@example.ORG"))] {
        let mut dup = NewUser::new(name, "$h");
        dup.email = email.map(Into::into);
        // A failed statement aborts a Postgres transaction: each try gets its own.
        let mut t2 = db.begin().await.unwrap();
        assert_eq!(
            kind(t2.create_user(dup).await),
            Some(ErrorKind::AlreadyExists),
            "{name}"
        );
        drop(t2);
    }
    let mut tx = db.read().await.unwrap();
    assert_eq!(tx.user_by_login("ADA_l").await.unwrap().unwrap().id, ada.id);
    assert_eq!(
        tx.user_by_login("ada@EXAMPLE.org")
            .await
            .unwrap()
            .unwrap()
            .id,
        ada.id
    );
    assert!(tx.user_by_login("nobody").await.unwrap().is_none());
    // A login no account can have (NUL, which Postgres text refuses) is
    // simply nobody's.
    assert!(tx.user_by_login("ada\0_l").await.unwrap().is_none());
    assert_eq!(tx.count_users().await.unwrap(), 1);
    drop(tx);
    let mut tx = db.begin().await.unwrap();
    let changed = tx.set_password(ada.id, "$argon2id$new").await.unwrap();
    assert_eq!(changed.password_hash, "$argon2id$new");
    assert!(changed.version > ada.version);
    assert!(tx.set_admin(ada.id, true).await.unwrap().is_admin);
    assert_eq!(
        tx.set_display_name(ada.id, "Ada Lovelace")
            .await
            .unwrap()
            .display_name,
        "Ada Lovelace"
    );
    for bad in ["ab", "with space", "semi;colon", &"x".repeat(33), "ünï"] {
        assert_eq!(
            kind(tx.create_user(NewUser::new(bad, "$h")).await),
            Some(ErrorKind::InvalidInput),
            "{bad}"
        );
    }
    let mut bad_mail = NewUser::new("mailer", "$h");
    bad_mail.email = Some("not-an-address".into());
    assert_eq!(
        kind(tx.create_user(bad_mail).await),
        Some(ErrorKind::InvalidInput)
    );
    assert_eq!(
        kind(tx.set_display_name(ada.id, "bell\u{7}").await),
        Some(ErrorKind::InvalidInput)
    );
    assert_eq!(
        kind(tx.user(UserId::new()).await),
        Some(ErrorKind::NotFound)
    );
    tx.commit().await.unwrap();
}

pub async fn sessions_rotate_and_reuse_is_detected(fx: DbFixture) {
    let (clock, db) = open(&fx).await;
    let u = user(&db, "sam").await;
    let mut tx = db.begin().await.unwrap();
    let first = tx
        .create_session(NewSession {
            user_id: u.id,
            family: None,
            token_hash: "h1".into(),
            user_agent: Some("test\u{0}agent".into()),
            expires_at: START.saturating_add(Duration::from_secs(3600)),
        })
        .await
        .unwrap();
    assert_eq!(first.family, first.id, "a login starts a family");
    assert_eq!(
        first.user_agent.as_deref(),
        Some("testagent"),
        "control characters dropped"
    );
    assert!(tx.use_session(first.id).await.unwrap());
    assert!(
        !tx.use_session(first.id).await.unwrap(),
        "a second use is reuse"
    );
    let second = tx
        .create_session(NewSession {
            user_id: u.id,
            family: Some(first.family),
            token_hash: "h2".into(),
            user_agent: None,
            expires_at: START.saturating_add(Duration::from_secs(3600)),
        })
        .await
        .unwrap();
    assert_eq!(second.family, first.family);
    let found = tx.session_by_token("h2").await.unwrap().unwrap();
    assert!(found.is_live(START));
    assert_eq!(tx.revoke_family(first.family).await.unwrap(), 2);
    assert!(!tx
        .session_by_token("h2")
        .await
        .unwrap()
        .unwrap()
        .is_live(START));
    assert!(!tx.use_session(second.id).await.unwrap(), "revoked");
    let third = tx
        .create_session(NewSession {
            user_id: u.id,
            family: None,
            token_hash: "h3".into(),
            user_agent: None,
            expires_at: START.saturating_add(Duration::from_secs(60)),
        })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    clock.advance(Duration::from_secs(61));
    let mut tx = db.begin().await.unwrap();
    assert!(!tx.use_session(third.id).await.unwrap(), "expired");
    assert_eq!(tx.delete_expired_sessions(clock.now()).await.unwrap(), 1);
    assert!(tx.session_by_token("h3").await.unwrap().is_none());
    assert_eq!(
        kind(
            tx.create_session(NewSession {
                user_id: UserId::new(),
                family: None,
                token_hash: "h4".into(),
                user_agent: None,
                expires_at: START,
            })
            .await
        ),
        Some(ErrorKind::NotFound)
    );
    tx.commit().await.unwrap();
    let _ = SessionId::new();
}

pub async fn transactions_commit_or_roll_back_whole(fx: DbFixture) {
    let (_clock, db) = open(&fx).await;
    {
        let mut tx = db.begin().await.unwrap();
        let u = tx.create_user(NewUser::new("dropped", "$h")).await.unwrap();
        tx.create_channel(NewChannel::new(u.id, "never", Visibility::Public))
            .await
            .unwrap();
        // Dropped without commit.
    }
    let mut tx = db.begin().await.unwrap();
    let u = tx.create_user(NewUser::new("kept", "$h")).await.unwrap();
    tx.rollback().await.unwrap();
    let mut tx = db.read().await.unwrap();
    assert!(tx.user_by_login("dropped").await.unwrap().is_none());
    assert!(tx.user_by_login("kept").await.unwrap().is_none());
    assert!(tx
        .public_channels(PageRequest::default())
        .await
        .unwrap()
        .items
        .is_empty());
    drop(tx);
    let mut tx = db.begin().await.unwrap();
    let u2 = tx.create_user(NewUser::new("kept", "$h")).await.unwrap();
    let c = tx
        .create_channel(NewChannel::new(u2.id, "kept", Visibility::Public))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.read().await.unwrap();
    assert_eq!(tx.channel(c.id).await.unwrap().owner_id, u2.id);
    assert_eq!(
        tx.member(c.id, u2.id).await.unwrap().unwrap().role,
        Role::Owner
    );
    assert_ne!(u.id, u2.id);
}

pub async fn reads_see_a_snapshot_and_autocommit_sees_each_commit(fx: DbFixture) {
    let (_clock, db) = open(&fx).await;
    let mut snapshot = db.read().await.unwrap();
    let mut each = db.autocommit().await.unwrap();
    // A first statement fixes the snapshot of the read.
    assert!(snapshot.user_by_login("late").await.unwrap().is_none());
    assert!(each.user_by_login("late").await.unwrap().is_none());
    let mut tx = db.begin().await.unwrap();
    let late = tx.create_user(NewUser::new("late", "$h")).await.unwrap();
    tx.commit().await.unwrap();
    assert!(
        snapshot.user_by_login("late").await.unwrap().is_none(),
        "a read keeps its snapshot"
    );
    assert_eq!(
        each.user_by_login("late").await.unwrap().map(|u| u.id),
        Some(late.id),
        "outside a transaction each statement sees what was committed before it"
    );
    snapshot.commit().await.unwrap();
    each.commit().await.unwrap();
    // Outside a transaction a write stands at once: there is nothing to
    // roll back.
    let mut each = db.autocommit().await.unwrap();
    let kept = each.create_user(NewUser::new("kept", "$h")).await.unwrap();
    each.rollback().await.unwrap();
    let mut tx = db.read().await.unwrap();
    assert_eq!(
        tx.user_by_login("kept").await.unwrap().map(|u| u.id),
        Some(kept.id)
    );
}

pub async fn channels_members_and_roles(fx: DbFixture) {
    let (_clock, db) = open(&fx).await;
    let (owner, bob, eve) = (
        user(&db, "owner").await,
        user(&db, "bob").await,
        user(&db, "eve").await,
    );
    let c = channel(&db, owner.id, "Film club", Visibility::Private).await;
    assert_eq!(
        (c.visibility, c.allow_guests, c.version),
        (Visibility::Private, false, 1)
    );
    let mut tx = db.begin().await.unwrap();
    let m = tx.add_member(c.id, bob.id, Role::Viewer).await.unwrap();
    assert_eq!((m.role, m.username.as_str()), (Role::Viewer, "bob"));
    assert_eq!(
        kind(tx.add_member(c.id, eve.id, Role::Owner).await),
        Some(ErrorKind::Conflict)
    );
    assert_eq!(
        kind(tx.add_member(ChannelId::new(), eve.id, Role::Viewer).await),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(
        kind(tx.add_member(c.id, UserId::new(), Role::Viewer).await),
        Some(ErrorKind::NotFound)
    );
    tx.commit().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        kind(tx.add_member(c.id, bob.id, Role::Admin).await),
        Some(ErrorKind::AlreadyExists)
    );
    drop(tx);
    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        tx.set_role(c.id, bob.id, Role::Moderator)
            .await
            .unwrap()
            .role,
        Role::Moderator
    );
    assert_eq!(
        kind(tx.set_role(c.id, owner.id, Role::Viewer).await),
        Some(ErrorKind::Conflict)
    );
    assert_eq!(
        kind(tx.set_role(c.id, bob.id, Role::Owner).await),
        Some(ErrorKind::Conflict)
    );
    assert_eq!(
        kind(tx.set_role(c.id, eve.id, Role::Viewer).await),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(
        kind(tx.remove_member(c.id, owner.id).await),
        Some(ErrorKind::Conflict)
    );
    assert!(tx.remove_member(c.id, bob.id).await.unwrap());
    assert!(!tx.remove_member(c.id, bob.id).await.unwrap());
    assert!(tx.member(c.id, bob.id).await.unwrap().is_none());
    assert!(Role::Admin.outranks(Role::Moderator) && !Role::Viewer.outranks(Role::Viewer));
    tx.delete_channel(c.id).await.unwrap();
    assert_eq!(kind(tx.channel(c.id).await), Some(ErrorKind::NotFound));
    assert!(
        tx.member(c.id, owner.id).await.unwrap().is_none(),
        "members go with the channel"
    );
    assert_eq!(
        kind(tx.delete_channel(c.id).await),
        Some(ErrorKind::NotFound)
    );
    tx.commit().await.unwrap();
}

pub async fn channel_lists_page_by_cursor(fx: DbFixture) {
    let (clock, db) = open(&fx).await;
    let owner = user(&db, "lister").await;
    let fan = user(&db, "fan").await;
    let mut public = Vec::new();
    for i in 0..7 {
        let vis = if i % 3 == 2 {
            Visibility::Unlisted
        } else {
            Visibility::Public
        };
        let c = channel(&db, owner.id, &format!("c{i}"), vis).await;
        if vis == Visibility::Public {
            public.push(c.id);
        }
        clock.advance(Duration::from_millis(1));
        member(&db, c.id, fan.id, Role::Viewer).await;
        clock.advance(Duration::from_millis(1));
    }
    public.reverse();
    let mut tx = db.read().await.unwrap();
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let p = tx.public_channels(page.clone()).await.unwrap();
        assert!(p.items.len() <= 2);
        seen.extend(p.items.iter().map(|c| c.id));
        match p.next {
            Some(next) => page = PageRequest::after(next, 2),
            None => break,
        }
    }
    assert_eq!(
        seen, public,
        "newest first, unlisted never listed, no duplicates"
    );
    let mut mine = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let p = tx.channels_of(fan.id, page.clone()).await.unwrap();
        mine.extend(p.items.iter().map(|(c, r)| (c.name.clone(), *r)));
        match p.next {
            Some(next) => page = PageRequest::after(next, 3),
            None => break,
        }
    }
    assert_eq!(mine.len(), 7);
    assert_eq!(mine.first().map(|(n, _)| n.as_str()), Some("c6"));
    assert!(mine.iter().all(|(_, r)| *r == Role::Viewer));
    let first = public.first().copied().unwrap();
    let members = tx.members(first, PageRequest::first(1)).await.unwrap();
    assert_eq!(
        members.items.first().map(|m| m.role),
        Some(Role::Owner),
        "in join order"
    );
    let rest = tx
        .members(first, PageRequest::after(members.next.unwrap(), 5))
        .await
        .unwrap();
    assert_eq!(
        rest.items
            .iter()
            .map(|m| m.username.as_str())
            .collect::<Vec<_>>(),
        ["fan"]
    );
    assert!(rest.next.is_none());
}

pub async fn permission_matrix_defaults_and_overrides(fx: DbFixture) {
    let (_clock, db) = open(&fx).await;
    let owner = user(&db, "boss").await;
    let c = channel(&db, owner.id, "m", Visibility::Public).await;
    let mut tx = db.begin().await.unwrap();
    let m = tx.permissions(c.id).await.unwrap();
    assert!(m.allows(Role::Viewer, Permission::Chat));
    assert!(!m.allows(Role::Viewer, Permission::ControlPlayback));
    assert!(m.allows(Role::Moderator, Permission::KickBan));
    assert!(!m.allows(Role::Moderator, Permission::EditChannel));
    let m = tx
        .set_permission(c.id, Role::Viewer, Permission::ControlPlayback, Some(true))
        .await
        .unwrap();
    assert!(m.allows(Role::Viewer, Permission::ControlPlayback));
    let m = tx
        .set_permission(c.id, Role::Admin, Permission::Upload, Some(false))
        .await
        .unwrap();
    assert!(!m.allows(Role::Admin, Permission::Upload));
    assert!(
        m.allows(Role::Owner, Permission::Upload),
        "the owner may always"
    );
    let m = tx
        .set_permission(c.id, Role::Viewer, Permission::ControlPlayback, None)
        .await
        .unwrap();
    assert!(
        !m.allows(Role::Viewer, Permission::ControlPlayback),
        "back to the default"
    );
    assert_eq!(m.table().len(), Role::ALL.len());
    assert_eq!(
        kind(
            tx.set_permission(c.id, Role::Owner, Permission::Chat, Some(false))
                .await
        ),
        Some(ErrorKind::InvalidInput)
    );
    assert_eq!(
        kind(tx.permissions(ChannelId::new()).await),
        Some(ErrorKind::NotFound)
    );
    tx.commit().await.unwrap();
    assert!("kick_ban".parse::<Permission>().is_ok() && "root".parse::<Permission>().is_err());
}

pub async fn channel_updates_compare_and_set(fx: DbFixture) {
    let (_clock, db) = open(&fx).await;
    let owner = user(&db, "editor").await;
    let c = channel(&db, owner.id, "before", Visibility::Public).await;
    let mut tx = db.begin().await.unwrap();
    let up = ChannelUpdate {
        name: Some("after".into()),
        visibility: Some(Visibility::Unlisted),
        allow_guests: Some(true),
        settings: Some(serde_json::json!({"behind": "wait"})),
        ..Default::default()
    };
    let c2 = tx.update_channel(c.id, Some(c.version), up).await.unwrap();
    assert_eq!(
        (c2.name.as_str(), c2.visibility, c2.allow_guests),
        ("after", Visibility::Unlisted, true)
    );
    assert_eq!(c2.settings["behind"], "wait");
    assert_eq!(c2.description, c.description, "untouched fields stay");
    assert!(c2.version > c.version);
    tx.commit().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    let stale = tx
        .update_channel(
            c.id,
            Some(c.version),
            ChannelUpdate {
                name: Some("lost".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(stale.kind(), ErrorKind::Precondition, "{stale}");
    drop(tx);
    let mut tx = db.begin().await.unwrap();
    for bad in [
        ChannelUpdate {
            name: Some(String::new()),
            ..Default::default()
        },
        ChannelUpdate {
            name: Some("   ".into()),
            ..Default::default()
        },
        ChannelUpdate {
            settings: Some(serde_json::json!([1])),
            ..Default::default()
        },
    ] {
        assert_eq!(
            kind(tx.update_channel(c.id, None, bad).await),
            Some(ErrorKind::InvalidInput)
        );
    }
    assert_eq!(tx.channel(c.id).await.unwrap(), c2, "nothing changed");
}

pub async fn invites_are_redeemed_at_most_max_uses(fx: DbFixture) {
    let (clock, db) = open(&fx).await;
    let owner = user(&db, "host").await;
    let c = channel(&db, owner.id, "inv", Visibility::Private).await;
    let mut tx = db.begin().await.unwrap();
    let inv = tx
        .create_invite(NewInvite {
            code: "abcdefgh1234".into(),
            channel_id: c.id,
            created_by: owner.id,
            role: Role::Viewer,
            max_uses: Some(3),
            expires_at: Some(START.saturating_add(Duration::from_secs(60))),
        })
        .await
        .unwrap();
    assert!(inv.is_usable(START));
    for bad in ["short", "has space in it", "semi;colon;;;;"] {
        let new = NewInvite {
            code: bad.into(),
            ..NewInvite {
                code: String::new(),
                channel_id: c.id,
                created_by: owner.id,
                role: Role::Viewer,
                max_uses: None,
                expires_at: None,
            }
        };
        assert_eq!(
            kind(tx.create_invite(new).await),
            Some(ErrorKind::InvalidInput),
            "{bad}"
        );
    }
    tx.commit().await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = db.begin().await.unwrap();
            let r = tx.redeem_invite("abcdefgh1234").await;
            tx.commit().await.unwrap();
            r.is_ok()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap());
    }
    assert_eq!(ok, 3, "exactly max_uses redemptions");
    let mut tx = db.begin().await.unwrap();
    assert_eq!(tx.invite("abcdefgh1234").await.unwrap().uses, 3);
    let timed = tx
        .create_invite(NewInvite {
            code: "expiring-code".into(),
            channel_id: c.id,
            created_by: owner.id,
            role: Role::Moderator,
            max_uses: None,
            expires_at: Some(START.saturating_add(Duration::from_secs(10))),
        })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    clock.advance(Duration::from_secs(11));
    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        kind(tx.redeem_invite(&timed.code).await),
        Some(ErrorKind::Conflict),
        "expired"
    );
    assert_eq!(
        kind(tx.redeem_invite("no-such-code").await),
        Some(ErrorKind::NotFound)
    );
    let page = tx.invites(c.id, PageRequest::first(1)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let rest = tx
        .invites(c.id, PageRequest::after(page.next.unwrap(), 10))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    tx.revoke_invite(&timed.code).await.unwrap();
    assert!(tx.invite(&timed.code).await.unwrap().revoked);
    tx.commit().await.unwrap();
}

pub async fn bans_remove_members_and_expire(fx: DbFixture) {
    let (clock, db) = open(&fx).await;
    let (owner, troll) = (user(&db, "mod").await, user(&db, "troll").await);
    let c = channel(&db, owner.id, "b", Visibility::Public).await;
    member(&db, c.id, troll.id, Role::Viewer).await;
    let mut tx = db.begin().await.unwrap();
    let ban = tx
        .ban(NewBan {
            channel_id: c.id,
            user_id: troll.id,
            banned_by: owner.id,
            reason: "spam".into(),
            expires_at: Some(START.saturating_add(Duration::from_secs(60))),
        })
        .await
        .unwrap();
    assert_eq!(ban.reason, "spam");
    assert!(
        tx.member(c.id, troll.id).await.unwrap().is_none(),
        "banning removes the member"
    );
    assert!(tx.ban_of(c.id, troll.id).await.unwrap().is_some());
    assert_eq!(
        tx.bans(c.id, PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let owner_ban = NewBan {
        channel_id: c.id,
        user_id: owner.id,
        banned_by: troll.id,
        reason: String::new(),
        expires_at: None,
    };
    assert_eq!(kind(tx.ban(owner_ban).await), Some(ErrorKind::Conflict));
    tx.commit().await.unwrap();
    clock.advance(Duration::from_secs(61));
    let mut tx = db.begin().await.unwrap();
    assert!(
        tx.ban_of(c.id, troll.id).await.unwrap().is_none(),
        "expired"
    );
    assert!(tx
        .bans(c.id, PageRequest::default())
        .await
        .unwrap()
        .items
        .is_empty());
    tx.ban(NewBan {
        channel_id: c.id,
        user_id: troll.id,
        banned_by: owner.id,
        reason: "again".into(),
        expires_at: None,
    })
    .await
    .unwrap();
    assert!(tx.unban(c.id, troll.id).await.unwrap());
    assert!(!tx.unban(c.id, troll.id).await.unwrap());
    tx.commit().await.unwrap();
}

pub async fn messages_get_dense_sequence_numbers(fx: DbFixture) {
    let (_clock, db) = open(&fx).await;
    let owner = user(&db, "talker").await;
    let c = channel(&db, owner.id, "chat", Visibility::Public).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let db = db.clone();
        let author = owner.id;
        tasks.push(tokio::spawn(async move {
            let mut tx = db.begin().await.unwrap();
            let m = tx
                .post_message(NewMessage {
                    channel_id: c.id,
                    author_id: Some(author),
                    author_name: "talker".into(),
                    body: format!("message {i}"),
                })
                .await
                .unwrap();
            tx.commit().await.unwrap();
            m.seq
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=12).collect::<Vec<u64>>(), "dense, no duplicates");
    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        kind(
            tx.post_message(NewMessage {
                channel_id: ChannelId::new(),
                author_id: None,
                author_name: "guest".into(),
                body: "hi".into(),
            })
            .await
        ),
        Some(ErrorKind::NotFound)
    );
}

pub async fn messages_edit_delete_react_and_page(fx: DbFixture) {
    let (clock, db) = open(&fx).await;
    let (a, b) = (user(&db, "alice").await, user(&db, "bobby").await);
    let c = channel(&db, a.id, "chat", Visibility::Public).await;
    let mut tx = db.begin().await.unwrap();
    for i in 1..=5 {
        tx.post_message(NewMessage {
            channel_id: c.id,
            author_id: Some(a.id),
            author_name: "alice".into(),
            body: format!("<b>{i}</b>\nsecond line"),
        })
        .await
        .unwrap();
    }
    for bad in ["", "   ", "bell\u{7}", &"x".repeat(MAX_MESSAGE_CHARS + 1)] {
        let new = NewMessage {
            channel_id: c.id,
            author_id: None,
            author_name: "g".into(),
            body: bad.into(),
        };
        assert_eq!(
            kind(tx.post_message(new).await),
            Some(ErrorKind::InvalidInput)
        );
    }
    clock.advance(Duration::from_secs(1));
    let edited = tx.edit_message(c.id, 2, "edited").await.unwrap();
    assert_eq!(
        (edited.body.as_str(), edited.edited_at),
        ("edited", Some(clock.now()))
    );
    assert!(tx.react(c.id, 3, a.id, "👍").await.unwrap());
    assert!(tx.react(c.id, 3, b.id, "👍").await.unwrap());
    assert!(
        !tx.react(c.id, 3, b.id, "👍").await.unwrap(),
        "once per user and emoji"
    );
    clock.advance(Duration::from_millis(1));
    assert!(tx.react(c.id, 3, b.id, "🎉").await.unwrap());
    let m3 = tx.message(c.id, 3).await.unwrap();
    assert_eq!(m3.reactions.len(), 2);
    assert_eq!(m3.reactions.first().map(|r| r.users.len()), Some(2));
    assert!(tx.unreact(c.id, 3, b.id, "🎉").await.unwrap());
    assert_eq!(
        kind(tx.react(c.id, 3, a.id, "two words").await),
        Some(ErrorKind::InvalidInput)
    );
    let gone = tx.delete_message(c.id, 3).await.unwrap();
    assert!(gone.deleted_at.is_some() && gone.body.is_empty() && gone.reactions.is_empty());
    assert_eq!(
        tx.delete_message(c.id, 3).await.unwrap().deleted_at,
        gone.deleted_at,
        "idempotent"
    );
    assert_eq!(
        kind(tx.edit_message(c.id, 3, "zombie").await),
        Some(ErrorKind::Conflict)
    );
    assert_eq!(
        kind(tx.react(c.id, 3, a.id, "👍").await),
        Some(ErrorKind::Conflict)
    );
    assert_eq!(kind(tx.message(c.id, 99).await), Some(ErrorKind::NotFound));
    let newest = tx.messages(c.id, PageRequest::first(2)).await.unwrap();
    assert_eq!(
        newest.items.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [5, 4]
    );
    let older = tx
        .messages(c.id, PageRequest::after(newest.next.unwrap(), 10))
        .await
        .unwrap();
    assert_eq!(
        older.items.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [3, 2, 1]
    );
    assert!(older.next.is_none());
    assert_eq!(
        older.items.first().map(|m| m.deleted_at.is_some()),
        Some(true),
        "deleted keep their place"
    );
    let after = tx.messages_after(c.id, 3, 10).await.unwrap();
    assert_eq!(after.iter().map(|m| m.seq).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(
        after.first().map(|m| m.body.as_str()),
        Some("<b>4</b>\nsecond line"),
        "stored as written"
    );
    tx.commit().await.unwrap();
}

async fn video(
    db: &Database,
    title: &str,
    desc: &str,
    tags: &[&str],
    channel: Option<ChannelId>,
    owner: UserId,
) -> crate::Video {
    let mut tx = db.begin().await.unwrap();
    let v = tx
        .create_video(NewVideo {
            owner: Some(owner),
            channel_id: channel,
            description: desc.into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            ..NewVideo::titled(title)
        })
        .await
        .unwrap();
    tx.set_video_status(v.id, None, StatusChange::Processing { fence: "f".into() })
        .await
        .unwrap();
    // Every field filled, awkward numbers included, so that search answers
    // the whole record as a read does.
    tx.set_video_source(
        v.id,
        crate::SourceMeta {
            container: Some("mov,mp4,m4a,3gp,3g2,mj2".into()),
            duration_ms: Some(61_234),
            width: Some(1920),
            height: Some(1080),
            rotation: Some(-90),
            frame_rate: Some(30_000.0 / 1001.0),
            bit_rate: Some(u64::from(u32::MAX) + 7),
            video_codec: Some("h264".into()),
            audio_codec: Some("aac".into()),
            audio_channels: Some(2),
            sample_rate: Some(48_000),
            size_bytes: Some(1 << 40),
        },
    )
    .await
    .unwrap();
    let v = tx
        .set_video_status(
            v.id,
            None,
            StatusChange::Ready {
                fence: "f".into(),
                renditions: vec![crate::Rendition {
                    name: "720p \"quoted\" \u{e9}".into(),
                    width: 1280,
                    height: 720,
                    bandwidth: 3_000_001,
                    average_bandwidth: 2_500_000,
                    codecs: "avc1.64001f,mp4a.40.2".into(),
                    frame_rate: 30_000.0 / 1001.0,
                    playlist: "720p/index.m3u8".into(),
                }],
                output_prefix: format!("videos/{}/a1", v.id),
            },
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    v
}

fn ids(hits: &[SearchHit]) -> Vec<crate::VideoId> {
    hits.iter().map(|h| h.video.id).collect()
}

pub async fn search_ranks_and_hides_what_the_viewer_may_not_see(fx: DbFixture) {
    let (_clock, db) = open(&fx).await;
    let (owner, insider, outsider, admin) = (
        user(&db, "uploader").await,
        user(&db, "insider").await,
        user(&db, "outsider").await,
        user(&db, "admin").await,
    );
    let public = channel(&db, owner.id, "pub", Visibility::Public).await;
    let private = channel(&db, owner.id, "priv", Visibility::Private).await;
    let unlisted = channel(&db, owner.id, "unl", Visibility::Unlisted).await;
    member(&db, private.id, insider.id, Role::Viewer).await;
    let in_title = video(
        &db,
        "Sailing the fjords",
        "",
        &[],
        Some(public.id),
        owner.id,
    )
    .await;
    let in_desc = video(
        &db,
        "Holiday",
        "we went sailing once",
        &[],
        Some(public.id),
        owner.id,
    )
    .await;
    let in_tags = video(
        &db,
        "Trip",
        "",
        &["sailing", "norway"],
        Some(public.id),
        owner.id,
    )
    .await;
    let secret = video(&db, "Sailing secrets", "", &[], Some(private.id), owner.id).await;
    let hidden = video(
        &db,
        "Sailing unlisted",
        "",
        &[],
        Some(unlisted.id),
        owner.id,
    )
    .await;
    let mut pending_tx = db.begin().await.unwrap();
    let pending = pending_tx
        .create_video(NewVideo {
            owner: Some(owner.id),
            channel_id: Some(public.id),
            ..NewVideo::titled("Sailing soon")
        })
        .await
        .unwrap();
    pending_tx.commit().await.unwrap();
    let mut tx = db.read().await.unwrap();
    let anon = tx
        .search_videos("sail", Viewer::default(), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(
        ids(&anon.items),
        [in_title.id, in_tags.id, in_desc.id],
        "prefix match, title > tags > description"
    );
    assert!(anon.items.windows(2).all(|w| w[0].score >= w[1].score));
    for hit in &anon.items {
        assert_eq!(
            hit.video,
            tx.video(hit.video.id).await.unwrap(),
            "search answers the whole record, as a read does"
        );
    }
    let out = tx
        .search_videos(
            "sailing",
            Viewer {
                user: Some(outsider.id),
                is_admin: false,
            },
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert!(!ids(&out.items).contains(&secret.id) && !ids(&out.items).contains(&hidden.id));
    assert!(
        !ids(&out.items).contains(&pending.id),
        "not ready: only its owner sees it"
    );
    let ins = tx
        .search_videos(
            "sailing",
            Viewer {
                user: Some(insider.id),
                is_admin: false,
            },
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert!(
        ids(&ins.items).contains(&secret.id),
        "members see their private channel"
    );
    assert!(!ids(&ins.items).contains(&hidden.id));
    let own = tx
        .search_videos(
            "sailing",
            Viewer {
                user: Some(owner.id),
                is_admin: false,
            },
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(own.items.len(), 6, "the owner sees all of theirs");
    let adm = tx
        .search_videos(
            "SAILING",
            Viewer {
                user: Some(admin.id),
                is_admin: true,
            },
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(adm.items.len(), 6);
    let both = tx
        .search_videos("sailing norway", Viewer::default(), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(ids(&both.items), [in_tags.id], "every word must match");
    drop(tx);
    // Edits reach the index.
    let mut tx = db.begin().await.unwrap();
    tx.update_video(
        in_desc.id,
        None,
        VideoUpdate {
            title: Some("Kayaking".into()),
            description: Some(String::new()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    Videos::delete_video(&mut tx, in_title.id).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.read().await.unwrap();
    let anon = tx
        .search_videos("sail", Viewer::default(), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(ids(&anon.items), [in_tags.id]);
    let kayak = tx
        .search_videos("kayak", Viewer::default(), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(ids(&kayak.items), [in_desc.id]);
    assert_eq!(in_desc.status, VideoStatus::Ready);
}

/// Every page of `query` for `viewer`, `size` at a time, concatenated.
async fn search_all(
    db: &Database,
    query: &str,
    viewer: Viewer,
    size: usize,
) -> Vec<crate::VideoId> {
    let mut tx = db.read().await.unwrap();
    let mut got = Vec::new();
    let mut page = PageRequest::first(size);
    loop {
        let p = tx.search_videos(query, viewer, page.clone()).await.unwrap();
        assert!(p.items.len() <= size);
        got.extend(ids(&p.items));
        match p.next {
            Some(n) => page = PageRequest::after(n, size),
            None => break,
        }
    }
    tx.commit().await.unwrap();
    got
}

pub async fn search_finds_old_matches_under_many_newer_videos(fx: DbFixture) {
    let (_clock, db) = open(&fx).await;
    let owner = user(&db, "archivist").await;
    let public = channel(&db, owner.id, "archive", Visibility::Public).await;
    let private = channel(&db, owner.id, "vault", Visibility::Private).await;
    // Old matches in every tier, then more newer videos than a backend may
    // walk for a small page before it turns to its index, then newer
    // matches that only the owner may see, then the newest matches: a
    // search must find every match whatever its age, best tier first and
    // newest first within each, on every page.
    let mut old_titles = Vec::new();
    for i in 0..5 {
        let v = video(
            &db,
            &format!("Zeppelin flight {i}"),
            "",
            &[],
            Some(public.id),
            owner.id,
        )
        .await;
        old_titles.push(v.id);
    }
    let tagged = video(&db, "Airship", "", &["zeppelin"], Some(public.id), owner.id).await;
    let described = video(
        &db,
        "Hangar",
        "a zeppelin hangar",
        &[],
        Some(public.id),
        owner.id,
    )
    .await;
    {
        let mut tx = db.begin().await.unwrap();
        for i in 0..400 {
            tx.create_video(NewVideo {
                owner: Some(owner.id),
                channel_id: Some(public.id),
                ..NewVideo::titled(format!("Unrelated clip {i}"))
            })
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let mut secrets = Vec::new();
    for i in 0..5 {
        let v = video(
            &db,
            &format!("Zeppelin secret {i}"),
            "",
            &[],
            Some(private.id),
            owner.id,
        )
        .await;
        secrets.push(v.id);
    }
    let newest_title = video(&db, "Zeppelin today", "", &[], Some(public.id), owner.id).await;
    let newest_described = video(
        &db,
        "Blimp",
        "not a zeppelin",
        &[],
        Some(public.id),
        owner.id,
    )
    .await;

    let mut anon = vec![newest_title.id];
    anon.extend(old_titles.iter().rev());
    anon.extend([tagged.id, newest_described.id, described.id]);
    let mut own = vec![newest_title.id];
    own.extend(secrets.iter().rev());
    own.extend(old_titles.iter().rev());
    own.extend([tagged.id, newest_described.id, described.id]);
    let owner_viewer = Viewer {
        user: Some(owner.id),
        is_admin: false,
    };
    for size in [1, 3, 50] {
        assert_eq!(
            search_all(&db, "zeppelin", Viewer::default(), size).await,
            anon,
            "anonymous, pages of {size}: hidden matches take no place"
        );
        assert_eq!(
            search_all(&db, "zep", owner_viewer, size).await,
            own,
            "the owner, pages of {size}"
        );
    }
}

pub async fn search_pages_and_survives_hostile_queries(fx: DbFixture) {
    let (_clock, db) = open(&fx).await;
    let owner = user(&db, "bulk").await;
    let c = channel(&db, owner.id, "many", Visibility::Public).await;
    for i in 0..7 {
        video(
            &db,
            &format!("Concert part {i}"),
            "",
            &[],
            Some(c.id),
            owner.id,
        )
        .await;
    }
    let mut tx = db.read().await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut page = PageRequest::first(3);
    loop {
        let p = tx
            .search_videos("concert", Viewer::default(), page.clone())
            .await
            .unwrap();
        for h in &p.items {
            assert!(seen.insert(h.video.id), "no duplicates across pages");
        }
        match p.next {
            Some(n) => page = PageRequest::after(n, 3),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    for hostile in [
        "\"",
        "concert\" OR 1=1 --",
        "'; DROP TABLE vs_videos; --",
        "*",
        "NEAR(",
        "a:*|b",
        "(((",
        "\u{0}",
        "  ",
    ] {
        let r = tx
            .search_videos(hostile, Viewer::default(), PageRequest::default())
            .await;
        assert!(r.is_ok(), "{hostile:?}: {:?}", r.err());
    }
    assert_eq!(
        kind(
            tx.search_videos(&"a".repeat(201), Viewer::default(), PageRequest::default())
                .await
        ),
        Some(ErrorKind::InvalidInput)
    );
    let hits = tx
        .search_videos(
            "concert\" OR 1=1 --",
            Viewer::default(),
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        hits.items.len(),
        0,
        "quotes and operators are not syntax: `1` matches nothing here"
    );
}

pub async fn deleting_a_user_cascades(fx: DbFixture) {
    let (_clock, db) = open(&fx).await;
    let (gone, stays) = (user(&db, "leaver").await, user(&db, "stayer").await);
    let own = channel(&db, gone.id, "theirs", Visibility::Public).await;
    let other = channel(&db, stays.id, "other", Visibility::Public).await;
    member(&db, other.id, gone.id, Role::Moderator).await;
    let mut tx = db.begin().await.unwrap();
    let msg = tx
        .post_message(NewMessage {
            channel_id: other.id,
            author_id: Some(gone.id),
            author_name: "leaver".into(),
            body: "bye".into(),
        })
        .await
        .unwrap();
    tx.react(other.id, msg.seq, gone.id, "👋").await.unwrap();
    tx.create_session(NewSession {
        user_id: gone.id,
        family: None,
        token_hash: "hx".into(),
        user_agent: None,
        expires_at: START,
    })
    .await
    .unwrap();
    tx.delete_user(gone.id).await.unwrap();
    assert_eq!(
        kind(tx.channel(own.id).await),
        Some(ErrorKind::NotFound),
        "owned channels go"
    );
    assert!(tx.member(other.id, gone.id).await.unwrap().is_none());
    assert!(tx.session_by_token("hx").await.unwrap().is_none());
    let kept = tx.message(other.id, msg.seq).await.unwrap();
    assert_eq!(
        (kept.author_id, kept.body.as_str()),
        (None, "bye"),
        "messages stay without an author id"
    );
    assert!(kept.reactions.is_empty());
    assert_eq!(
        kind(tx.delete_user(gone.id).await),
        Some(ErrorKind::NotFound)
    );
    tx.commit().await.unwrap();
}

pub async fn forged_cursors_are_invalid_input(fx: DbFixture) {
    let (_clock, db) = open(&fx).await;
    let owner = user(&db, "cursor").await;
    let c = channel(&db, owner.id, "c", Visibility::Public).await;
    let mut tx = db.read().await.unwrap();
    for fields in [&["x"][..], &["1", "2", "3"], &["-1", "abc", "def"]] {
        let forged = Cursor::from_fields(fields);
        let page = PageRequest::after(forged.to_string().parse().unwrap(), 5);
        let results = [
            kind(tx.public_channels(page.clone()).await),
            kind(tx.messages(c.id, page.clone()).await),
            kind(tx.members(c.id, page.clone()).await),
            kind(tx.search_videos("x", Viewer::default(), page.clone()).await),
        ];
        assert!(
            results.iter().all(|k| *k == Some(ErrorKind::InvalidInput)),
            "{forged}: {results:?}"
        );
    }
    assert!("'; DROP TABLE".parse::<Cursor>().is_err());
}
