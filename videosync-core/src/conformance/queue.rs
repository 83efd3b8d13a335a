//! The [`crate::JobQueue`] conformance suite. Every case moves a
//! [`ManualClock`]; none sleeps.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{QueueFixture, START};
use crate::queue::{DynJobQueue, Enqueued, Failed, JobState, ReserveOptions};
use crate::{ErrorKind, ManualClock, NewJob, RetryPolicy};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn lease(n: u64) -> ReserveOptions {
    ReserveOptions { lease: secs(n) }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: secs(1),
        max_delay: secs(10),
    }
}

async fn open(fx: &QueueFixture) -> (Arc<ManualClock>, DynJobQueue) {
    let clock = Arc::new(ManualClock::new(START));
    let q = (fx.make)(clock.clone(), policy()).await;
    (clock, q)
}

fn kind<T>(r: crate::Result<T>) -> Option<ErrorKind> {
    r.err().map(|e| e.kind())
}

pub async fn enqueue_reserve_ack(fx: QueueFixture) {
    let (_clock, q) = open(&fx).await;
    assert!(q.reserve(lease(30)).await.unwrap().is_none(), "empty queue");
    let payload = json!({"video": "7f3a", "rungs": [1080, 720], "note": "ünïcode"});
    let id = match q
        .enqueue(NewJob::new("transcode", payload.clone()))
        .await
        .unwrap()
    {
        Enqueued::New(id) => id,
        other => panic!("expected a new job, got {other:?}"),
    };
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.ready, counts.running), (1, 0));
    let job = q.get(id).await.unwrap();
    assert_eq!(job.state, JobState::Ready);
    assert_eq!(job.attempts, 0);
    assert_eq!(job.created_at, START);

    let l = q.reserve(lease(30)).await.unwrap().expect("a due job");
    assert_eq!(l.job.id, id);
    assert_eq!(l.job.kind, "transcode");
    assert_eq!(l.job.payload, payload);
    assert_eq!(l.job.attempts, 1);
    assert_eq!(l.job.max_attempts, 3);
    assert_eq!(l.job.state, JobState::Running);
    assert_eq!(l.expires_at, START.saturating_add(secs(30)));
    assert_eq!(q.get(id).await.unwrap().state, JobState::Running);
    assert!(q.reserve(lease(30)).await.unwrap().is_none(), "held job");
    assert_eq!(q.counts().await.unwrap().running, 1);

    q.ack(&l).await.unwrap();
    assert_eq!(kind(q.get(id).await), Some(ErrorKind::NotFound));
    assert!(q.reserve(lease(30)).await.unwrap().is_none());
    assert_eq!(q.counts().await.unwrap(), Default::default());
    assert_eq!(
        kind(q.ack(&l).await),
        Some(ErrorKind::NotFound),
        "double ack"
    );
}

pub async fn priority_then_age_order(fx: QueueFixture) {
    let (clock, q) = open(&fx).await;
    let mut ids = std::collections::HashMap::new();
    for (name, priority) in [("a", 0), ("b", 10), ("c", 0), ("d", -5), ("e", 10)] {
        let id = q
            .enqueue(NewJob::new(name, json!(null)).priority(priority))
            .await
            .unwrap()
            .id();
        ids.insert(id, name);
        clock.advance(Duration::from_millis(1));
    }
    let mut order = Vec::new();
    while let Some(l) = q.reserve(lease(30)).await.unwrap() {
        order.push(ids[&l.job.id]);
    }
    assert_eq!(order, ["b", "e", "a", "c", "d"]);
}

pub async fn run_after_waits(fx: QueueFixture) {
    let (clock, q) = open(&fx).await;
    let at = START.saturating_add(secs(10));
    let id = q
        .enqueue(NewJob::new("later", json!(1)).run_after(at))
        .await
        .unwrap()
        .id();
    assert!(q.reserve(lease(30)).await.unwrap().is_none());
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.ready, counts.scheduled), (0, 1));
    assert_eq!(q.get(id).await.unwrap().state, JobState::Scheduled);
    clock.advance(secs(9));
    assert!(q.reserve(lease(30)).await.unwrap().is_none());
    clock.advance(secs(1));
    let l = q
        .reserve(lease(30))
        .await
        .unwrap()
        .expect("due at run_after");
    assert_eq!(l.job.id, id);
}

pub async fn lease_expiry_redelivers(fx: QueueFixture) {
    let (clock, q) = open(&fx).await;
    let id = q.enqueue(NewJob::new("k", json!(1))).await.unwrap().id();
    let first = q.reserve(lease(30)).await.unwrap().unwrap();
    clock.advance(secs(29));
    assert!(
        q.reserve(lease(30)).await.unwrap().is_none(),
        "lease still held"
    );
    clock.advance(secs(1));
    let second = q.reserve(lease(30)).await.unwrap().expect("redelivered");
    assert_eq!(second.job.id, id);
    assert_eq!(second.job.attempts, 2);
    assert_ne!(second.token, first.token);
    let err = q.ack(&first).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("no longer holds"), "{err}");
    q.ack(&second).await.unwrap();
}

pub async fn heartbeat_extends_the_lease(fx: QueueFixture) {
    let (clock, q) = open(&fx).await;
    q.enqueue(NewJob::new("k", json!(1))).await.unwrap();
    let l = q.reserve(lease(30)).await.unwrap().unwrap();
    clock.advance(secs(20));
    let until = q.heartbeat(&l, secs(30)).await.unwrap();
    assert_eq!(until, START.saturating_add(secs(50)));
    clock.advance(secs(20));
    assert!(
        q.reserve(lease(30)).await.unwrap().is_none(),
        "extended lease holds"
    );
    q.heartbeat(&l, secs(30)).await.unwrap();
    clock.advance(secs(29));
    q.ack(&l).await.unwrap();
}

pub async fn expired_or_stale_leases_are_conflicts(fx: QueueFixture) {
    let (clock, q) = open(&fx).await;
    let id = q.enqueue(NewJob::new("k", json!(1))).await.unwrap().id();
    let l = q.reserve(lease(10)).await.unwrap().unwrap();
    clock.advance(secs(10));
    for (op, r) in [
        ("heartbeat", q.heartbeat(&l, secs(10)).await.map(|_| ())),
        ("ack", q.ack(&l).await),
        ("fail", q.fail(&l, "late").await.map(|_| ())),
    ] {
        let err = r.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{op}: {err}");
        assert!(err.to_string().contains("expired"), "{op}: {err}");
    }
    // Nothing was lost: the job is still there and comes back.
    assert_eq!(q.get(id).await.unwrap().attempts, 1);
    let again = q.reserve(lease(10)).await.unwrap().unwrap();
    assert_eq!(again.job.id, id);
    // A made-up token is no lease at all.
    let mut forged = again.clone();
    forged.token = "0".repeat(32);
    assert_eq!(kind(q.ack(&forged).await), Some(ErrorKind::Conflict));
    q.ack(&again).await.unwrap();
}

pub async fn retry_with_backoff_then_dead_letter(fx: QueueFixture) {
    let (clock, q) = open(&fx).await;
    let id = q
        .enqueue(NewJob::new("flaky", json!(1)))
        .await
        .unwrap()
        .id();
    let l1 = q.reserve(lease(30)).await.unwrap().unwrap();
    assert_eq!(
        q.fail(&l1, "probe failed: no video stream").await.unwrap(),
        Failed::Retrying {
            at: START.saturating_add(secs(1))
        }
    );
    let job = q.get(id).await.unwrap();
    assert_eq!(job.state, JobState::Scheduled);
    assert_eq!(
        job.last_error.as_deref(),
        Some("probe failed: no video stream")
    );
    assert!(q.reserve(lease(30)).await.unwrap().is_none(), "backing off");
    clock.advance(secs(1));
    let l2 = q.reserve(lease(30)).await.unwrap().unwrap();
    assert_eq!(l2.job.attempts, 2);
    let now = START.saturating_add(secs(1));
    assert_eq!(
        q.fail(&l2, "again").await.unwrap(),
        Failed::Retrying {
            at: now.saturating_add(secs(2))
        }
    );
    clock.advance(secs(1));
    assert!(
        q.reserve(lease(30)).await.unwrap().is_none(),
        "second backoff is 2 s"
    );
    clock.advance(secs(1));
    let l3 = q.reserve(lease(30)).await.unwrap().unwrap();
    assert_eq!(l3.job.attempts, 3);
    assert_eq!(
        q.fail(&l3, "gave up: corrupt input").await.unwrap(),
        Failed::DeadLettered
    );
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.ready, counts.scheduled, counts.dead), (0, 0, 1));
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id);
    assert_eq!(dead[0].state, JobState::Dead);
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("gave up: corrupt input")
    );
    clock.advance(secs(3600));
    assert!(
        q.reserve(lease(30)).await.unwrap().is_none(),
        "dead letters stay dead"
    );
}

pub async fn requeue_dead_letters(fx: QueueFixture) {
    let (_clock, q) = open(&fx).await;
    let id = q
        .enqueue(NewJob::new("once", json!(1)).max_attempts(1))
        .await
        .unwrap()
        .id();
    let l = q.reserve(lease(30)).await.unwrap().unwrap();
    assert_eq!(l.job.max_attempts, 1);
    assert_eq!(q.fail(&l, "boom").await.unwrap(), Failed::DeadLettered);
    let live = q.enqueue(NewJob::new("live", json!(2))).await.unwrap().id();
    assert_eq!(
        kind(q.requeue(live).await),
        Some(ErrorKind::Conflict),
        "not dead"
    );
    assert_eq!(
        kind(q.requeue(crate::JobId::new()).await),
        Some(ErrorKind::NotFound)
    );
    q.requeue(id).await.unwrap();
    let job = q.get(id).await.unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Ready, 0));
    assert_eq!(
        job.last_error.as_deref(),
        Some("boom"),
        "the reason is kept"
    );
    assert!(q.dead_letters(10).await.unwrap().is_empty());
    let mut seen = HashSet::new();
    while let Some(l) = q.reserve(lease(30)).await.unwrap() {
        seen.insert(l.job.id);
        q.ack(&l).await.unwrap();
    }
    assert_eq!(seen, HashSet::from([id, live]));
}

pub async fn dedupe_while_live(fx: QueueFixture) {
    let (_clock, q) = open(&fx).await;
    let job = || NewJob::new("transcode", json!({"v": 1})).dedupe_key("video:7f3a");
    let first = q.enqueue(job()).await.unwrap();
    let Enqueued::New(id) = first else {
        panic!("{first:?}")
    };
    assert_eq!(q.enqueue(job()).await.unwrap(), Enqueued::Duplicate(id));
    assert_eq!(q.counts().await.unwrap().ready, 1);
    let l = q.reserve(lease(30)).await.unwrap().unwrap();
    assert_eq!(
        q.enqueue(job()).await.unwrap(),
        Enqueued::Duplicate(id),
        "running jobs dedupe too"
    );
    // Another key is another job.
    let other = q
        .enqueue(NewJob::new("transcode", json!(2)).dedupe_key("video:other"))
        .await
        .unwrap();
    assert!(matches!(other, Enqueued::New(_)));
    q.ack(&l).await.unwrap();
    let again = q.enqueue(job()).await.unwrap();
    assert!(
        matches!(again, Enqueued::New(new) if new != id),
        "{again:?}"
    );
}

pub async fn lost_leases_exhaust_attempts(fx: QueueFixture) {
    let (clock, q) = open(&fx).await;
    let id = q
        .enqueue(NewJob::new("crashy", json!(1)).max_attempts(2))
        .await
        .unwrap()
        .id();
    for attempt in 1..=2 {
        let l = q.reserve(lease(5)).await.unwrap().expect("handed out");
        assert_eq!(l.job.attempts, attempt);
        clock.advance(secs(5)); // The worker dies; its lease runs out.
    }
    assert!(
        q.reserve(lease(5)).await.unwrap().is_none(),
        "no third attempt"
    );
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].id, id);
    let reason = dead[0].last_error.clone().unwrap_or_default();
    assert!(reason.contains("lease"), "{reason}");
}

pub async fn jobs_survive_a_restart(fx: QueueFixture) {
    let clock = Arc::new(ManualClock::new(START));
    let id = {
        let q = (fx.make)(clock.clone(), policy()).await;
        q.enqueue(NewJob::new("durable", json!({"keep": true})))
            .await
            .unwrap()
            .id()
    };
    let q = (fx.make)(clock.clone(), policy()).await;
    let l = q.reserve(lease(30)).await.unwrap().expect("survived");
    assert_eq!(l.job.id, id);
    assert_eq!(l.job.payload, json!({"keep": true}));
    q.ack(&l).await.unwrap();
}

pub async fn concurrent_workers_never_share_a_job(fx: QueueFixture) {
    let (_clock, q) = open(&fx).await;
    let mut enqueued = HashSet::new();
    for i in 0..40 {
        enqueued.insert(q.enqueue(NewJob::new("k", json!(i))).await.unwrap().id());
    }
    let mut workers = Vec::new();
    for _ in 0..6 {
        let q = q.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(l) = q.reserve(lease(60)).await.unwrap() {
                mine.push(l.job.id);
                q.ack(&l).await.unwrap();
            }
            mine
        }));
    }
    let mut seen = Vec::new();
    for w in workers {
        seen.extend(w.await.unwrap());
    }
    let unique: HashSet<_> = seen.iter().copied().collect();
    assert_eq!(seen.len(), unique.len(), "a job was handed out twice");
    assert_eq!(unique, enqueued);
}

pub async fn bad_input_is_rejected(fx: QueueFixture) {
    let (_clock, q) = open(&fx).await;
    for bad in [
        NewJob::new("", json!(1)),
        NewJob::new("k", json!(1)).priority(i32::MIN),
        NewJob::new("k", json!(1)).max_attempts(0),
        NewJob::new("k", json!(1)).dedupe_key("a\0b"),
    ] {
        assert_eq!(
            kind(q.enqueue(bad.clone()).await),
            Some(ErrorKind::InvalidInput),
            "{bad:?}"
        );
    }
    assert_eq!(
        q.counts().await.unwrap(),
        Default::default(),
        "nothing stored"
    );
    assert_eq!(
        kind(
            q.reserve(ReserveOptions {
                lease: Duration::ZERO
            })
            .await
        ),
        Some(ErrorKind::InvalidInput)
    );
    assert_eq!(
        kind(q.get(crate::JobId::new()).await),
        Some(ErrorKind::NotFound)
    );
    q.enqueue(NewJob::new("k", json!(1))).await.unwrap();
    let l = q.reserve(lease(30)).await.unwrap().unwrap();
    let mut unknown = l.clone();
    unknown.job.id = crate::JobId::new();
    assert_eq!(kind(q.ack(&unknown).await), Some(ErrorKind::NotFound));
    assert_eq!(
        kind(q.heartbeat(&l, Duration::ZERO).await),
        Some(ErrorKind::InvalidInput)
    );
    q.ack(&l).await.unwrap();
}

pub async fn wall_clock_stepping_back_keeps_leases(fx: QueueFixture) {
    let (clock, q) = open(&fx).await;
    q.enqueue(NewJob::new("k", json!(1))).await.unwrap();
    let l = q.reserve(lease(30)).await.unwrap().unwrap();
    clock.rewind(secs(3600));
    assert!(
        q.reserve(lease(30)).await.unwrap().is_none(),
        "the lease still holds"
    );
    let until = q.heartbeat(&l, secs(30)).await.unwrap();
    assert_eq!(
        until,
        START.saturating_sub(secs(3600)).saturating_add(secs(30))
    );
    q.ack(&l).await.unwrap();
}
