//! The [`crate::KeyValue`] conformance suite.
//!
//! Time: a fixture with a [`crate::ManualClock`] has its clock moved; one
//! without (Redis, which follows its own clock) waits, with a bound, until a
//! sentinel key written last with the same TTL has expired, so no case
//! asserts after a fixed sleep.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{unique_name, KvFixture, WAIT};
use crate::kv::{Key, KeyValue, PutOptions, Version, MAX_KEY_LEN, MAX_MEMBER_LEN, MAX_VALUE_LEN};
use crate::{Clock, ErrorKind};

/// The TTL of things a case lets expire.
const SHORT: Duration = Duration::from_millis(1000);

/// The TTL of things that must outlive a case.
const LONG: Duration = Duration::from_secs(600);

fn key(name: &str) -> Key {
    Key::parse(&format!("{}:{name}", unique_name("conformance:"))).unwrap()
}

/// Returns once everything written so far with a TTL of [`SHORT`] or less
/// has expired.
async fn let_expire(fx: &KvFixture) {
    let sentinel = key("sentinel");
    fx.kv
        .put(
            &sentinel,
            Bytes::from("tick"),
            PutOptions::default().ttl(SHORT),
        )
        .await
        .unwrap();
    match &fx.clock {
        Some(clock) => clock.advance(SHORT),
        None => {
            let waited = tokio::time::timeout(WAIT, async {
                while fx.kv.get(&sentinel).await.unwrap().is_some() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            assert!(
                waited.is_ok(),
                "a {SHORT:?} TTL did not run out within {WAIT:?}"
            );
        }
    }
}

async fn value(kv: &Arc<dyn KeyValue>, k: &Key) -> Option<Bytes> {
    kv.get(k).await.unwrap().map(|v| v.value)
}

pub async fn put_get_overwrite(fx: KvFixture) {
    let k = key("a");
    assert_eq!(fx.kv.get(&k).await.unwrap(), None);
    let v1 = fx
        .kv
        .put(
            &k,
            Bytes::from_static(b"\x00one\xff"),
            PutOptions::default(),
        )
        .await
        .unwrap();
    let got = fx.other.get(&k).await.unwrap().expect("written");
    assert_eq!(got.value, Bytes::from_static(b"\x00one\xff"));
    assert_eq!(got.version, v1);
    let v2 = fx
        .kv
        .put(&k, Bytes::new(), PutOptions::default())
        .await
        .unwrap();
    assert!(v2 > v1, "an overwrite gets a later version: {v1} then {v2}");
    let got = fx.kv.get(&k).await.unwrap().expect("written");
    assert_eq!(
        (got.value, got.version),
        (Bytes::new(), v2),
        "empty values are values"
    );
    // Other keys are untouched.
    assert_eq!(fx.kv.get(&key("b")).await.unwrap(), None);
}

pub async fn create_only_when_absent(fx: KvFixture) {
    let k = key("lease");
    let v1 = fx
        .kv
        .put(&k, Bytes::from("owner-1"), PutOptions::create())
        .await
        .unwrap();
    let err = fx
        .other
        .put(&k, Bytes::from("owner-2"), PutOptions::create())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(
        err.to_string().contains(k.as_str()),
        "the error names the key: {err}"
    );
    let got = fx.kv.get(&k).await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (Bytes::from("owner-1"), v1));
    // Gone, it can be created again.
    assert!(fx.kv.delete(&k, None).await.unwrap());
    fx.other
        .put(&k, Bytes::from("owner-2"), PutOptions::create())
        .await
        .unwrap();
    assert_eq!(value(&fx.kv, &k).await, Some(Bytes::from("owner-2")));
}

pub async fn if_version_compare_and_set(fx: KvFixture) {
    let k = key("state");
    let missing = fx
        .kv
        .put(
            &k,
            Bytes::from("x"),
            PutOptions::if_version(Version::new(1)),
        )
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::Precondition, "{missing}");
    assert_eq!(
        fx.kv.get(&k).await.unwrap(),
        None,
        "a failed CAS writes nothing"
    );

    let v1 = fx
        .kv
        .put(&k, Bytes::from("paused"), PutOptions::default())
        .await
        .unwrap();
    let v2 = fx
        .other
        .put(&k, Bytes::from("playing"), PutOptions::if_version(v1))
        .await
        .unwrap();
    assert!(v2 > v1);
    let stale = fx
        .kv
        .put(&k, Bytes::from("seeking"), PutOptions::if_version(v1))
        .await
        .unwrap_err();
    assert_eq!(stale.kind(), ErrorKind::Precondition, "{stale}");
    assert!(stale.to_string().contains(k.as_str()), "{stale}");
    let got = fx.kv.get(&k).await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (Bytes::from("playing"), v2));

    assert!(fx.kv.delete(&k, None).await.unwrap());
    let after_delete = fx
        .kv
        .put(&k, Bytes::from("again"), PutOptions::if_version(v2))
        .await
        .unwrap_err();
    assert_eq!(
        after_delete.kind(),
        ErrorKind::Precondition,
        "{after_delete}"
    );
    assert_eq!(fx.kv.get(&k).await.unwrap(), None);
}

pub async fn delete_with_and_without_version(fx: KvFixture) {
    let k = key("d");
    assert!(!fx.kv.delete(&k, None).await.unwrap(), "nothing to delete");
    let err = fx.kv.delete(&k, Some(Version::new(1))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Precondition, "{err}");

    let v1 = fx
        .kv
        .put(&k, Bytes::from("1"), PutOptions::default())
        .await
        .unwrap();
    let v2 = fx
        .kv
        .put(&k, Bytes::from("2"), PutOptions::default())
        .await
        .unwrap();
    let err = fx.other.delete(&k, Some(v1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Precondition, "{err}");
    assert_eq!(value(&fx.kv, &k).await, Some(Bytes::from("2")), "kept");
    assert!(fx.other.delete(&k, Some(v2)).await.unwrap());
    assert_eq!(fx.kv.get(&k).await.unwrap(), None);
    assert!(!fx.kv.delete(&k, None).await.unwrap());

    // A counter is deleted like a value.
    fx.kv.incr(&k, 3, None).await.unwrap();
    assert!(fx.kv.delete(&k, None).await.unwrap());
    assert_eq!(fx.kv.incr(&k, 1, None).await.unwrap(), 1, "a fresh counter");
}

/// Read-modify-write with compare-and-set and retry, from many tasks on two
/// handles: no increment is lost.
pub async fn cas_race_counts_every_increment(fx: KvFixture) {
    const TASKS: usize = 16;
    let k = key("race");
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let kv = if i % 2 == 0 {
            fx.kv.clone()
        } else {
            fx.other.clone()
        };
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            for attempt in 0.. {
                assert!(attempt < 10_000, "task {i} never won a compare-and-set");
                let current = kv.get(&k).await.unwrap();
                let (n, opts) = match &current {
                    None => (0u64, PutOptions::create()),
                    Some(v) => (
                        std::str::from_utf8(&v.value).unwrap().parse().unwrap(),
                        PutOptions::if_version(v.version),
                    ),
                };
                match kv.put(&k, Bytes::from((n + 1).to_string()), opts).await {
                    Ok(_) => return attempt,
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::Precondition | ErrorKind::AlreadyExists
                        ) =>
                    {
                        tokio::task::yield_now().await;
                    }
                    Err(e) => panic!("task {i}: {e}"),
                }
            }
            unreachable!()
        }));
    }
    let mut retries = 0;
    for t in tasks {
        retries += t.await.unwrap();
    }
    assert_eq!(
        value(&fx.kv, &k).await,
        Some(Bytes::from(TASKS.to_string())),
        "{TASKS} increments with {retries} retries"
    );
}

pub async fn incr_is_atomic_across_handles(fx: KvFixture) {
    const TASKS: i64 = 8;
    const EACH: i64 = 25;
    let k = key("hits");
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let kv = if i % 2 == 0 {
            fx.kv.clone()
        } else {
            fx.other.clone()
        };
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..EACH {
                seen.push(kv.incr(&k, 1, Some(LONG)).await.unwrap());
            }
            seen
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        for n in t.await.unwrap() {
            assert!(all.insert(n), "{n} was handed out twice");
        }
    }
    assert_eq!(all.len() as i64, TASKS * EACH);
    assert_eq!(all.iter().max(), Some(&(TASKS * EACH)));
    assert_eq!(fx.kv.incr(&k, -5, None).await.unwrap(), TASKS * EACH - 5);
    assert_eq!(fx.kv.incr(&k, 0, None).await.unwrap(), TASKS * EACH - 5);
}

pub async fn incr_ttl_is_set_once(fx: KvFixture) {
    let window = key("window");
    let forever = key("forever");
    assert_eq!(fx.kv.incr(&window, 1, Some(SHORT)).await.unwrap(), 1);
    // Later increments neither extend nor drop the window.
    assert_eq!(fx.other.incr(&window, 2, Some(LONG)).await.unwrap(), 3);
    assert_eq!(fx.kv.incr(&window, 1, None).await.unwrap(), 4);
    // A counter made without a TTL keeps none, whatever later calls say.
    assert_eq!(fx.kv.incr(&forever, 1, None).await.unwrap(), 1);
    assert_eq!(fx.kv.incr(&forever, 1, Some(SHORT)).await.unwrap(), 2);
    let before = fx.kv.get(&window).await.unwrap().unwrap();
    assert_eq!(
        before.value,
        Bytes::from("4"),
        "a counter reads as its decimal text"
    );

    let_expire(&fx).await;
    assert_eq!(fx.kv.get(&window).await.unwrap(), None, "the window ended");
    assert_eq!(
        fx.kv.incr(&window, 1, Some(SHORT)).await.unwrap(),
        1,
        "a new window starts from scratch"
    );
    let after = fx.kv.get(&window).await.unwrap().unwrap();
    assert!(after.version > before.version);
    assert_eq!(value(&fx.kv, &forever).await, Some(Bytes::from("2")));
}

pub async fn counters_and_values_do_not_mix(fx: KvFixture) {
    let k = key("typed");
    fx.kv
        .put(&k, Bytes::from("7"), PutOptions::default())
        .await
        .unwrap();
    let err = fx.kv.incr(&k, 1, None).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "a put value is not a counter: {err}"
    );
    assert_eq!(value(&fx.kv, &k).await, Some(Bytes::from("7")), "unchanged");

    let c = key("counter");
    assert_eq!(
        fx.kv.incr(&c, i64::MAX - 1, None).await.unwrap(),
        i64::MAX - 1
    );
    let v = fx.kv.get(&c).await.unwrap().unwrap();
    let err = fx.kv.incr(&c, 2, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "overflow: {err}");
    let same = fx.kv.get(&c).await.unwrap().unwrap();
    assert_eq!(same, v, "a refused incr changes nothing");
    assert_eq!(fx.kv.incr(&c, i64::MIN, None).await.unwrap(), -2);
    let err = fx.kv.incr(&c, i64::MIN, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "underflow: {err}");

    // A counter can be replaced by a compare-and-set like any value.
    let v = fx.kv.get(&c).await.unwrap().unwrap();
    assert_eq!(v.value, Bytes::from("-2"));
    fx.kv
        .put(&c, Bytes::from("text"), PutOptions::if_version(v.version))
        .await
        .unwrap();
    assert_eq!(
        fx.kv.incr(&c, 1, None).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );

    // Sets are a namespace apart.
    assert!(fx.kv.set_add(&k, "m", LONG).await.unwrap());
    assert_eq!(value(&fx.kv, &k).await, Some(Bytes::from("7")));
    assert_eq!(fx.kv.set_len(&k).await.unwrap(), 1);
}

pub async fn values_expire(fx: KvFixture) {
    let short = key("short");
    let long = key("long");
    let made_permanent = key("permanent");
    fx.kv
        .put(&short, Bytes::from("s"), PutOptions::default().ttl(SHORT))
        .await
        .unwrap();
    fx.kv
        .put(&long, Bytes::from("l"), PutOptions::default().ttl(LONG))
        .await
        .unwrap();
    fx.kv
        .put(
            &made_permanent,
            Bytes::from("1"),
            PutOptions::default().ttl(SHORT),
        )
        .await
        .unwrap();
    // An overwrite without a TTL drops the expiry.
    fx.kv
        .put(&made_permanent, Bytes::from("2"), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(value(&fx.other, &short).await, Some(Bytes::from("s")));

    let_expire(&fx).await;
    assert_eq!(fx.kv.get(&short).await.unwrap(), None);
    assert_eq!(fx.other.get(&short).await.unwrap(), None);
    assert_eq!(value(&fx.kv, &long).await, Some(Bytes::from("l")));
    assert_eq!(value(&fx.kv, &made_permanent).await, Some(Bytes::from("2")));
    // Expired is absent for every operation.
    assert!(!fx.kv.delete(&short, None).await.unwrap());
    fx.kv
        .put(&short, Bytes::from("new"), PutOptions::create())
        .await
        .unwrap();
}

pub async fn stale_version_after_expiry_and_recreate_fails(fx: KvFixture) {
    let k = key("lease");
    let v1 = fx
        .kv
        .put(&k, Bytes::from("owner-1"), PutOptions::create().ttl(SHORT))
        .await
        .unwrap();
    let_expire(&fx).await;
    // Reclaiming space must not make old versions valid again.
    fx.kv.sweep().await.unwrap();
    fx.other.sweep().await.unwrap();
    let err = fx
        .kv
        .put(
            &k,
            Bytes::from("owner-1"),
            PutOptions::if_version(v1).ttl(LONG),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Precondition,
        "renewing an expired lease: {err}"
    );
    let v2 = fx
        .other
        .put(&k, Bytes::from("owner-2"), PutOptions::create().ttl(LONG))
        .await
        .unwrap();
    assert!(
        v2 > v1,
        "a re-created key gets a later version: {v1} then {v2}"
    );
    for stale in [v1, Version::new(v1.get() + 1)] {
        if stale == v2 {
            continue;
        }
        let err = fx
            .kv
            .put(&k, Bytes::from("owner-1"), PutOptions::if_version(stale))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Precondition, "{err}");
        let err = fx.kv.delete(&k, Some(stale)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Precondition, "{err}");
    }
    assert_eq!(value(&fx.kv, &k).await, Some(Bytes::from("owner-2")));
}

pub async fn versions_grow_across_deletes(fx: KvFixture) {
    let k = key("v");
    let mut last = Version::new(0);
    let mut bump = |v: Version, what: &str| {
        assert!(v > last, "{what}: {v} must be above {last}");
        last = v;
    };
    for round in 0..3 {
        let v = fx
            .kv
            .put(&k, Bytes::from("a"), PutOptions::default())
            .await
            .unwrap();
        bump(v, "put");
        let v = fx
            .kv
            .put(&k, Bytes::from("b"), PutOptions::default())
            .await
            .unwrap();
        bump(v, "overwrite");
        fx.kv.delete(&k, None).await.unwrap();
        fx.kv.sweep().await.unwrap();
        let v = fx
            .other
            .put(&k, Bytes::from("c"), PutOptions::create())
            .await
            .unwrap();
        bump(v, "create after delete");
        fx.kv.delete(&k, Some(v)).await.unwrap();
        fx.kv.incr(&k, 1, None).await.unwrap();
        let v = fx.kv.get(&k).await.unwrap().unwrap().version;
        bump(v, "incr after delete");
        fx.kv.incr(&k, 1, None).await.unwrap();
        let v = fx.kv.get(&k).await.unwrap().unwrap().version;
        bump(v, "incr");
        assert!(fx.kv.delete(&k, None).await.unwrap(), "round {round}");
    }
}

pub async fn set_members_expire_individually(fx: KvFixture) {
    let room = key("presence");
    assert!(fx.kv.set_add(&room, "alice", SHORT).await.unwrap());
    assert!(fx.other.set_add(&room, "bob", LONG).await.unwrap());
    assert!(fx.kv.set_add(&room, "carol ☕", LONG).await.unwrap());
    let names = |m: Vec<crate::kv::Member>| m.into_iter().map(|m| m.name).collect::<Vec<_>>();
    assert_eq!(
        names(fx.kv.set_members(&room).await.unwrap()),
        ["alice", "bob", "carol ☕"]
    );
    assert_eq!(fx.other.set_len(&room).await.unwrap(), 3);
    if let Some(clock) = &fx.clock {
        let members = fx.kv.set_members(&room).await.unwrap();
        assert_eq!(members[0].expires_at, clock.now().saturating_add(SHORT));
        assert_eq!(members[1].expires_at, clock.now().saturating_add(LONG));
    }

    let_expire(&fx).await;
    assert_eq!(
        names(fx.kv.set_members(&room).await.unwrap()),
        ["bob", "carol ☕"]
    );
    assert_eq!(fx.kv.set_len(&room).await.unwrap(), 2);
    assert!(
        !fx.kv.set_remove(&room, "alice").await.unwrap(),
        "expired is not live"
    );
    assert!(
        fx.kv.set_add(&room, "alice", LONG).await.unwrap(),
        "expired, so new again"
    );
    assert!(fx.other.set_remove(&room, "bob").await.unwrap());
    assert!(!fx.other.set_remove(&room, "bob").await.unwrap());
    assert_eq!(
        names(fx.kv.set_members(&room).await.unwrap()),
        ["alice", "carol ☕"]
    );
    assert!(fx.kv.set_members(&key("empty")).await.unwrap().is_empty());
    assert_eq!(fx.kv.set_len(&key("empty")).await.unwrap(), 0);
}

pub async fn set_readd_refreshes(fx: KvFixture) {
    let room = key("presence");
    assert!(fx.kv.set_add(&room, "alice", SHORT).await.unwrap());
    assert!(fx.kv.set_add(&room, "bob", SHORT).await.unwrap());
    // A heartbeat: alice is added again, with a longer TTL.
    assert!(
        !fx.other.set_add(&room, "alice", LONG).await.unwrap(),
        "not new"
    );
    let_expire(&fx).await;
    let members = fx.kv.set_members(&room).await.unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0].name, "alice");
    // And a shorter TTL replaces a longer one too.
    assert!(!fx.kv.set_add(&room, "alice", SHORT).await.unwrap());
    let_expire(&fx).await;
    assert_eq!(fx.kv.set_len(&room).await.unwrap(), 0);
    assert!(fx.kv.set_members(&room).await.unwrap().is_empty());
}

pub async fn sweep_keeps_live_data(fx: KvFixture) {
    let (gone, kept, counter, set) = (key("gone"), key("kept"), key("counter"), key("set"));
    fx.kv
        .put(&gone, Bytes::from("g"), PutOptions::default().ttl(SHORT))
        .await
        .unwrap();
    let kept_v = fx
        .kv
        .put(&kept, Bytes::from("k"), PutOptions::default().ttl(LONG))
        .await
        .unwrap();
    fx.kv.incr(&counter, 5, Some(LONG)).await.unwrap();
    fx.kv.set_add(&set, "gone", SHORT).await.unwrap();
    fx.kv.set_add(&set, "kept", LONG).await.unwrap();
    let_expire(&fx).await;
    fx.kv.sweep().await.unwrap();
    assert_eq!(fx.kv.sweep().await.unwrap(), 0, "nothing left to sweep");
    assert_eq!(fx.kv.get(&gone).await.unwrap(), None);
    let got = fx.other.get(&kept).await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (Bytes::from("k"), kept_v));
    assert_eq!(fx.kv.incr(&counter, 1, None).await.unwrap(), 6);
    let members = fx.kv.set_members(&set).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].name, "kept");
}

pub async fn bad_input_is_rejected(fx: KvFixture) {
    for bad in ["", "has space", "{tag}", "é", &"k".repeat(MAX_KEY_LEN + 1)] {
        let err = Key::parse(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    let k = key("bad");
    let invalid = |r: crate::Result<()>| {
        let err = r.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    };
    invalid(
        fx.kv
            .put(
                &k,
                Bytes::from(vec![0u8; MAX_VALUE_LEN + 1]),
                PutOptions::default(),
            )
            .await
            .map(drop),
    );
    invalid(
        fx.kv
            .put(
                &k,
                Bytes::from("x"),
                PutOptions::default().ttl(Duration::ZERO),
            )
            .await
            .map(drop),
    );
    invalid(
        fx.kv
            .put(
                &k,
                Bytes::from("x"),
                PutOptions::create().ttl(crate::kv::MAX_TTL * 2),
            )
            .await
            .map(drop),
    );
    invalid(fx.kv.incr(&k, 1, Some(Duration::ZERO)).await.map(drop));
    invalid(fx.kv.set_add(&k, "m", Duration::ZERO).await.map(drop));
    invalid(fx.kv.set_add(&k, "", LONG).await.map(drop));
    invalid(fx.kv.set_add(&k, "a\nb", LONG).await.map(drop));
    invalid(
        fx.kv
            .set_add(&k, &"m".repeat(MAX_MEMBER_LEN + 1), LONG)
            .await
            .map(drop),
    );
    invalid(fx.kv.set_remove(&k, "").await.map(drop));
    // Nothing was written by the refused calls.
    assert_eq!(fx.kv.get(&k).await.unwrap(), None);
    assert_eq!(fx.kv.set_len(&k).await.unwrap(), 0);
    // The largest value and key fit.
    let name = unique_name("conformance:big:");
    let big = Key::parse(&format!("{name}{}", "k".repeat(MAX_KEY_LEN - name.len()))).unwrap();
    let payload = Bytes::from(vec![7u8; MAX_VALUE_LEN]);
    fx.kv
        .put(&big, payload.clone(), PutOptions::default().ttl(LONG))
        .await
        .unwrap();
    assert_eq!(value(&fx.other, &big).await, Some(payload));
    fx.kv.delete(&big, None).await.unwrap();
}

pub async fn display_names_the_backend(fx: KvFixture) {
    let shown = fx.kv.to_string();
    assert!(shown.ends_with("/kv"), "{shown}");
    assert!(!shown.contains('@'), "no credentials in {shown}");
}
