//! The [`crate::JobQueue`] conformance suite. Every case moves a
//! [`ManualClock`]; none sleeps.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{QueueFixture, START};
use crate::queue::{
    Acked, Cancelled, ClockCheck, DynJobQueue, Enqueued, Failed, JobState, Lease, QueueOptions,
    ReserveOptions,
};
use crate::{Clock, Cursor, ErrorKind, JobId, ManualClock, NewJob, RetryPolicy};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn lease(n: u64) -> ReserveOptions {
    ReserveOptions::lease(secs(n))
}

/// How long the suite's queues keep done and cancelled jobs.
const RETENTION: Duration = Duration::from_secs(3600);

/// The suite's options: 3 attempts, 1 s doubling to 10 s, an hour of
/// retention, and no clock check (the clock is a [`ManualClock`] in 2023).
fn policy() -> QueueOptions {
    QueueOptions {
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: secs(1),
            max_delay: secs(10),
        },
        retention: RETENTION,
        clock_check: ClockCheck::Off,
    }
}

async fn open(fx: &QueueFixture) -> (Arc<ManualClock>, DynJobQueue) {
    let clock = Arc::new(ManualClock::new(START));
    let q = (fx.make)(clock.clone(), policy()).await.unwrap();
    (clock, q)
}

/// A lease on `job` with `token` that no queue handed out.
fn forged(job: &crate::queue::Job, token: &str, l: &Lease) -> Lease {
    Lease::forged_for_tests(job.clone(), token, l.expires_at())
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
    assert_eq!(l.job().id, id);
    assert_eq!(l.job().kind, "transcode");
    assert_eq!(l.job().payload, payload);
    assert_eq!(l.job().attempts, 1);
    assert_eq!(l.job().max_attempts, 3);
    assert_eq!(l.job().state, JobState::Running);
    assert_eq!(l.expires_at(), START.saturating_add(secs(30)));
    assert_eq!(q.get(id).await.unwrap().state, JobState::Running);
    assert!(q.reserve(lease(30)).await.unwrap().is_none(), "held job");
    assert_eq!(q.counts().await.unwrap().running, 1);

    assert_eq!(q.ack(&l).await.unwrap(), Acked::Done);
    let done = q.get(id).await.unwrap();
    assert_eq!(done.state, JobState::Done);
    assert_eq!(done.finished_at, Some(START));
    assert!(q.reserve(lease(30)).await.unwrap().is_none());
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.ready, counts.running, counts.done), (0, 0, 1));
    assert_eq!(
        q.ack(&l).await.unwrap(),
        Acked::AlreadyAcked,
        "a repeated ack (the reply was lost) is recognised"
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
        order.push(ids[&l.job().id]);
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
    assert_eq!(l.job().id, id);
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
    assert_eq!(second.job().id, id);
    assert_eq!(second.job().attempts, 2);
    assert_ne!(second.token(), first.token());
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
        ("ack", q.ack(&l).await.map(|_| ())),
        ("fail", q.fail(&l, "late").await.map(|_| ())),
    ] {
        let err = r.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{op}: {err}");
        assert!(err.to_string().contains("expired"), "{op}: {err}");
    }
    // Nothing was lost: the job is still there and comes back.
    assert_eq!(q.get(id).await.unwrap().attempts, 1);
    let again = q.reserve(lease(10)).await.unwrap().unwrap();
    assert_eq!(again.job().id, id);
    // A made-up token is no lease at all.
    let forged = forged(again.job(), &"0".repeat(32), &again);
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
    assert_eq!(l2.job().attempts, 2);
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
    assert_eq!(l3.job().attempts, 3);
    assert_eq!(
        q.fail(&l3, "gave up: corrupt input").await.unwrap(),
        Failed::DeadLettered
    );
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.ready, counts.scheduled, counts.dead), (0, 0, 1));
    let dead = q.dead_letters(None, 10).await.unwrap().items;
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
    assert_eq!(l.job().max_attempts, 1);
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
    assert!(q.dead_letters(None, 10).await.unwrap().items.is_empty());
    let mut seen = HashSet::new();
    while let Some(l) = q.reserve(lease(30)).await.unwrap() {
        seen.insert(l.job().id);
        q.ack(&l).await.unwrap();
    }
    assert_eq!(seen, HashSet::from([id, live]));
}

pub async fn dedupe_while_live(fx: QueueFixture) {
    let (clock, q) = open(&fx).await;
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
    assert_eq!(
        q.enqueue(job()).await.unwrap(),
        Enqueued::Duplicate(id),
        "a done job holds its key for the retention window"
    );
    clock.advance(RETENTION);
    assert_eq!(kind(q.get(id).await), Some(ErrorKind::NotFound), "vacuumed");
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
        assert_eq!(l.job().attempts, attempt);
        clock.advance(secs(5)); // The worker dies; its lease runs out.
    }
    assert!(
        q.reserve(lease(5)).await.unwrap().is_none(),
        "no third attempt"
    );
    let dead = q.dead_letters(None, 10).await.unwrap().items;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].id, id);
    let reason = dead[0].last_error.clone().unwrap_or_default();
    assert!(reason.contains("lease"), "{reason}");
}

pub async fn jobs_survive_a_restart(fx: QueueFixture) {
    let clock = Arc::new(ManualClock::new(START));
    let id = {
        let q = (fx.make)(clock.clone(), policy()).await.unwrap();
        q.enqueue(NewJob::new("durable", json!({"keep": true})))
            .await
            .unwrap()
            .id()
    };
    let q = (fx.make)(clock.clone(), policy()).await.unwrap();
    let l = q.reserve(lease(30)).await.unwrap().expect("survived");
    assert_eq!(l.job().id, id);
    assert_eq!(l.job().payload, json!({"keep": true}));
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
                mine.push(l.job().id);
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
        kind(q.reserve(ReserveOptions::lease(Duration::ZERO)).await),
        Some(ErrorKind::InvalidInput)
    );
    assert_eq!(
        kind(q.get(crate::JobId::new()).await),
        Some(ErrorKind::NotFound)
    );
    q.enqueue(NewJob::new("k", json!(1))).await.unwrap();
    let l = q.reserve(lease(30)).await.unwrap().unwrap();
    let mut other = l.job().clone();
    other.id = JobId::new();
    let unknown = forged(&other, l.token().as_str(), &l);
    assert_eq!(kind(q.ack(&unknown).await), Some(ErrorKind::NotFound));
    assert_eq!(
        kind(q.reserve(lease(30).kinds(Vec::<String>::new())).await),
        Some(ErrorKind::InvalidInput),
        "an empty kinds filter"
    );
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

pub async fn acks_are_idempotent_within_retention(fx: QueueFixture) {
    let (clock, q) = open(&fx).await;
    let id = q.enqueue(NewJob::new("k", json!(1))).await.unwrap().id();
    let l = q.reserve(lease(30)).await.unwrap().unwrap();
    clock.advance(secs(5));
    assert_eq!(q.ack(&l).await.unwrap(), Acked::Done);
    let acked_at = START.saturating_add(secs(5));
    assert_eq!(q.get(id).await.unwrap().finished_at, Some(acked_at));
    // The lease's end no longer matters to a repeated ack.
    clock.advance(secs(60));
    assert_eq!(q.ack(&l).await.unwrap(), Acked::AlreadyAcked);
    for (op, r) in [
        ("heartbeat", q.heartbeat(&l, secs(10)).await.map(|_| ())),
        ("fail", q.fail(&l, "after the ack").await.map(|_| ())),
    ] {
        let err = r.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{op}: {err}");
        assert!(err.to_string().contains("acked it already"), "{op}: {err}");
    }
    assert_eq!(q.get(id).await.unwrap().state, JobState::Done, "unchanged");
    // Kept for the retention window, counted from the ack; then vacuumed.
    clock.set_now(acked_at.saturating_add(RETENTION).saturating_sub(secs(1)));
    assert_eq!(q.counts().await.unwrap().done, 1);
    clock.advance(secs(1));
    assert_eq!(q.counts().await.unwrap().done, 0);
    assert_eq!(kind(q.get(id).await), Some(ErrorKind::NotFound));
    assert_eq!(kind(q.ack(&l).await), Some(ErrorKind::NotFound));
}

pub async fn ack_after_the_lease_was_lost_is_a_conflict(fx: QueueFixture) {
    let (clock, q) = open(&fx).await;
    q.enqueue(NewJob::new("k", json!(1))).await.unwrap();
    let a = q.reserve(lease(10)).await.unwrap().unwrap();
    clock.advance(secs(10));
    let b = q.reserve(lease(10)).await.unwrap().expect("taken over");
    let err = q.ack(&a).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(q.ack(&b).await.unwrap(), Acked::Done);
    let err = q.ack(&a).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "another lease's ack is not this lease's: {err}"
    );
    assert_eq!(q.ack(&b).await.unwrap(), Acked::AlreadyAcked);
}

pub async fn requeue_refuses_while_another_job_holds_the_key(fx: QueueFixture) {
    let (clock, q) = open(&fx).await;
    let job = || {
        NewJob::new("transcode", json!(1))
            .dedupe_key("video:9")
            .max_attempts(1)
    };
    let first = q.enqueue(job()).await.unwrap().id();
    let l = q.reserve(lease(30)).await.unwrap().unwrap();
    assert_eq!(q.fail(&l, "broken").await.unwrap(), Failed::DeadLettered);
    // A dead letter releases its key: the same key enqueues a new job.
    let second = match q.enqueue(job()).await.unwrap() {
        Enqueued::New(id) => id,
        other => panic!("enqueue after a dead letter: {other:?}"),
    };
    assert_ne!(first, second);
    let err = q.requeue(first).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("dedupe key"), "{err}");
    // Done, the second job still holds the key for the retention window.
    let l = q.reserve(lease(30)).await.unwrap().unwrap();
    assert_eq!(l.job().id, second);
    q.ack(&l).await.unwrap();
    assert_eq!(kind(q.requeue(first).await), Some(ErrorKind::Conflict));
    assert_eq!(
        q.get(first).await.unwrap().state,
        JobState::Dead,
        "unchanged"
    );
    clock.advance(RETENTION);
    assert_eq!(kind(q.get(second).await), Some(ErrorKind::NotFound));
    q.requeue(first).await.unwrap();
    assert_eq!(
        q.enqueue(job()).await.unwrap(),
        Enqueued::Duplicate(first),
        "the requeued job holds the key again"
    );
}

pub async fn final_attempt_heartbeat_and_ack(fx: QueueFixture) {
    let (clock, q) = open(&fx).await;
    let id = q
        .enqueue(NewJob::new("k", json!(1)).max_attempts(1))
        .await
        .unwrap()
        .id();
    let l = q.reserve(lease(10)).await.unwrap().unwrap();
    clock.advance(secs(9));
    let until = q.heartbeat(&l, secs(20)).await.unwrap();
    assert_eq!(until, START.saturating_add(secs(29)));
    // Past the first end, inside the extension: not exhausted.
    clock.advance(secs(15));
    assert!(q.reserve(lease(10)).await.unwrap().is_none());
    assert_eq!(q.get(id).await.unwrap().state, JobState::Running);
    assert_eq!(q.counts().await.unwrap().dead, 0);
    assert_eq!(q.ack(&l).await.unwrap(), Acked::Done);
    assert_eq!(q.get(id).await.unwrap().state, JobState::Done);
    assert_eq!(q.counts().await.unwrap().dead, 0, "an acked job never dies");

    // A second job whose extended final lease runs out dies with the reason.
    let id = q
        .enqueue(NewJob::new("k", json!(2)).max_attempts(1))
        .await
        .unwrap()
        .id();
    let l = q.reserve(lease(10)).await.unwrap().unwrap();
    q.heartbeat(&l, secs(20)).await.unwrap();
    clock.advance(secs(20));
    assert!(q.reserve(lease(10)).await.unwrap().is_none());
    let job = q.get(id).await.unwrap();
    assert_eq!(job.state, JobState::Dead);
    assert!(job.last_error.unwrap_or_default().contains("lease"));
    assert_eq!(
        kind(q.heartbeat(&l, secs(5)).await),
        Some(ErrorKind::Conflict)
    );
    assert_eq!(kind(q.ack(&l).await), Some(ErrorKind::Conflict));
}

pub async fn a_retry_is_ranked_by_its_new_time(fx: QueueFixture) {
    let (clock, q) = open(&fx).await;
    let a = q.enqueue(NewJob::new("a", json!(1))).await.unwrap().id();
    clock.advance(Duration::from_millis(1));
    let b = q.enqueue(NewJob::new("b", json!(2))).await.unwrap().id();
    let la = q.reserve(lease(30)).await.unwrap().unwrap();
    assert_eq!(la.job().id, a);
    q.fail(&la, "transient").await.unwrap();
    clock.advance(secs(1));
    // Both are due; `a` now runs after `b`, which has waited longer.
    let order: Vec<JobId> = [
        q.reserve(lease(30)).await.unwrap().unwrap(),
        q.reserve(lease(30)).await.unwrap().unwrap(),
    ]
    .iter()
    .map(|l| l.job().id)
    .collect();
    assert_eq!(order, [b, a]);

    // Priority still comes first: a failed high-priority job overtakes
    // older low-priority ones once its backoff is over.
    let hi = q
        .enqueue(NewJob::new("hi", json!(1)).priority(10))
        .await
        .unwrap()
        .id();
    let l = q.reserve(lease(30)).await.unwrap().unwrap();
    assert_eq!(l.job().id, hi);
    q.fail(&l, "transient").await.unwrap();
    let lo = q.enqueue(NewJob::new("lo", json!(1))).await.unwrap().id();
    assert_eq!(q.reserve(lease(30)).await.unwrap().unwrap().job().id, lo);
    let lo2 = q.enqueue(NewJob::new("lo", json!(2))).await.unwrap().id();
    clock.advance(secs(1));
    assert_eq!(q.reserve(lease(30)).await.unwrap().unwrap().job().id, hi);
    assert_eq!(q.reserve(lease(30)).await.unwrap().unwrap().job().id, lo2);
}

pub async fn dead_letters_page_in_death_order(fx: QueueFixture) {
    let (clock, q) = open(&fx).await;
    let err = q.dead_letters(None, 0).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "limit 0: {err}");
    let page = q.dead_letters(None, 5).await.unwrap();
    assert!(page.items.is_empty() && page.next.is_none());

    let mut died = Vec::new();
    for i in 0..5 {
        let id = q
            .enqueue(NewJob::new("k", json!(i)).max_attempts(1))
            .await
            .unwrap()
            .id();
        let l = q.reserve(lease(5)).await.unwrap().unwrap();
        if i == 2 {
            // Its worker vanished: the lease runs out and it dies when the
            // queue next looks.
            clock.advance(secs(5));
            q.counts().await.unwrap();
        } else {
            q.fail(&l, &format!("reason {i}")).await.unwrap();
        }
        died.push((id, clock.now()));
        // Two die at the same millisecond: enqueue order breaks the tie.
        if i != 3 {
            clock.advance(secs(1));
        }
    }
    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let mut pages = 0;
    loop {
        let page = q.dead_letters(cursor.as_ref(), 2).await.unwrap();
        assert!(page.items.len() <= 2);
        pages += 1;
        seen.extend(page.items.iter().map(|j| (j.id, j.finished_at.unwrap())));
        for j in &page.items {
            assert_eq!(j.state, JobState::Dead);
            assert!(j.last_error.is_some(), "{j:?}");
        }
        match page.next {
            // A cursor survives the trip through text.
            Some(next) => cursor = Some(next.to_string().parse().unwrap()),
            None => break,
        }
    }
    assert_eq!(seen, died);
    assert_eq!(pages, 3);
    let reasons: Vec<String> = q
        .dead_letters(None, 10)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|j| j.last_error.unwrap_or_default())
        .collect();
    assert!(reasons[2].contains("lease"), "{reasons:?}");
    assert_eq!(reasons[4], "reason 4");
    // A cursor this listing never made is refused.
    let alien: Cursor = "6869".parse().unwrap();
    assert_eq!(
        kind(q.dead_letters(Some(&alien), 2).await),
        Some(ErrorKind::InvalidInput)
    );
    // New deaths show up after the last cursor.
    let last = q.dead_letters(None, 5).await.unwrap();
    assert!(last.next.is_none());
    let after = q.dead_letters(None, 4).await.unwrap().next.unwrap();
    let page = q.dead_letters(Some(&after), 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].id, died[4].0);
}

pub async fn cancel_waiting_running_and_dead_jobs(fx: QueueFixture) {
    let (clock, q) = open(&fx).await;
    assert_eq!(
        kind(q.cancel(JobId::new()).await),
        Some(ErrorKind::NotFound)
    );

    // Ready and scheduled jobs are removed, and release their dedupe key.
    let ready = q
        .enqueue(NewJob::new("k", json!(1)).dedupe_key("video:1"))
        .await
        .unwrap()
        .id();
    let later = q
        .enqueue(NewJob::new("k", json!(2)).run_after(START.saturating_add(secs(60))))
        .await
        .unwrap()
        .id();
    assert_eq!(q.cancel(ready).await.unwrap(), Cancelled::Removed);
    assert_eq!(q.cancel(later).await.unwrap(), Cancelled::Removed);
    assert_eq!(q.cancel(ready).await.unwrap(), Cancelled::AlreadyCancelled);
    let job = q.get(ready).await.unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(job.finished_at, Some(START));
    clock.advance(secs(60));
    assert!(
        q.reserve(lease(30)).await.unwrap().is_none(),
        "never handed out"
    );
    assert!(matches!(
        q.enqueue(NewJob::new("k", json!(3)).dedupe_key("video:1"))
            .await
            .unwrap(),
        Enqueued::New(_)
    ));
    let fresh = q.reserve(lease(30)).await.unwrap().unwrap();
    q.ack(&fresh).await.unwrap();

    // A running job is signalled: its holder is told at its next call.
    let running = q.enqueue(NewJob::new("k", json!(4))).await.unwrap().id();
    let l = q.reserve(lease(30)).await.unwrap().unwrap();
    assert_eq!(l.job().id, running);
    assert_eq!(q.cancel(running).await.unwrap(), Cancelled::Signalled);
    assert_eq!(
        q.cancel(running).await.unwrap(),
        Cancelled::AlreadyCancelled
    );
    for (op, r) in [
        ("heartbeat", q.heartbeat(&l, secs(30)).await.map(|_| ())),
        ("ack", q.ack(&l).await.map(|_| ())),
        ("fail", q.fail(&l, "stopped").await.map(|_| ())),
    ] {
        let err = r.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Precondition, "{op}: {err}");
        assert!(err.to_string().contains("job was cancelled"), "{op}: {err}");
    }
    clock.advance(secs(30));
    assert!(
        q.reserve(lease(30)).await.unwrap().is_none(),
        "a cancelled job is not redelivered when the lease ends"
    );

    // A dead letter leaves the dead letters; a done job cannot be cancelled.
    let dead = q
        .enqueue(NewJob::new("k", json!(5)).max_attempts(1))
        .await
        .unwrap()
        .id();
    let l = q.reserve(lease(30)).await.unwrap().unwrap();
    q.fail(&l, "boom").await.unwrap();
    assert_eq!(q.cancel(dead).await.unwrap(), Cancelled::Removed);
    assert!(q.dead_letters(None, 10).await.unwrap().items.is_empty());
    assert_eq!(kind(q.requeue(dead).await), Some(ErrorKind::Conflict));
    let err = q.cancel(fresh.job().id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.cancelled, counts.done, counts.dead), (4, 1, 0));
    clock.advance(RETENTION);
    assert_eq!(q.counts().await.unwrap(), Default::default(), "vacuumed");
}

pub async fn reserve_by_kinds(fx: QueueFixture) {
    let (clock, q) = open(&fx).await;
    let part = q
        .enqueue(NewJob::new("transcode.part", json!(1)))
        .await
        .unwrap()
        .id();
    let ladder = q
        .enqueue(NewJob::new("transcode.ladder", json!(2)).priority(5))
        .await
        .unwrap()
        .id();
    let thumb = q
        .enqueue(NewJob::new("thumbnail", json!(3)).priority(10))
        .await
        .unwrap()
        .id();
    let take = |kinds: &'static [&'static str]| {
        let q = q.clone();
        async move {
            q.reserve(lease(5).kinds(kinds.iter().copied()))
                .await
                .unwrap()
                .map(|l| l.job().id)
        }
    };
    assert_eq!(take(&["other"]).await, None);
    assert_eq!(take(&["transcode.part"]).await, Some(part));
    assert_eq!(take(&["transcode.part"]).await, None, "held");
    assert_eq!(take(&["transcode.ladder", "thumbnail"]).await, Some(thumb));
    assert_eq!(take(&["transcode.ladder", "thumbnail"]).await, Some(ladder));
    // An ended lease goes back to workers of its kind only.
    clock.advance(secs(5));
    assert_eq!(take(&["thumbnail"]).await, Some(thumb));
    assert_eq!(take(&["transcode.ladder"]).await, Some(ladder));
    assert_eq!(
        q.reserve(lease(5)).await.unwrap().map(|l| l.job().id),
        Some(part),
        "no filter takes any kind"
    );
}

pub async fn clock_skew_is_checked_at_open(fx: QueueFixture) {
    // The suite's manual clock reads 2023: far from the server's clock.
    let manual: Arc<dyn Clock> = Arc::new(ManualClock::new(START));
    let opts = |check| QueueOptions {
        clock_check: check,
        ..policy()
    };
    let err = (fx.make)(manual.clone(), opts(ClockCheck::Refuse))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Precondition, "{err}");
    assert!(err.to_string().contains("clock"), "{err}");
    (fx.make)(manual, opts(ClockCheck::Warn)).await.unwrap();
    let system: Arc<dyn Clock> = Arc::new(crate::SystemClock::new());
    (fx.make)(system, opts(ClockCheck::Refuse)).await.unwrap();
}
